"""Parsers for JSON-RPC arguments: each takes the decoded JSON value and returns a Python value.

They raise ``ValueError`` with the problem only; the dispatcher adds which argument it was
(``invalid argument 0 (address): ...``). Strict like geth: quantities are ``0x`` hex without
leading zeros, data is ``0x`` hex with whole bytes, addresses are 20 bytes in any case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = [
    "BLOCK_TAGS",
    "BlockRef",
    "CallArgs",
    "LogFilter",
    "parse_address",
    "parse_block_count",
    "parse_block_id",
    "parse_block_ref",
    "parse_bool",
    "parse_call_args",
    "parse_data",
    "parse_hash",
    "parse_log_filter",
    "parse_percentiles",
    "parse_quantity",
    "parse_storage_key",
    "parse_storage_keys",
]

BLOCK_TAGS = frozenset(("latest", "earliest", "pending", "safe", "finalized"))
_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_QUANTITY_DIGITS = 64  # 256 bits

T = TypeVar("T")


def _hex_body(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a 0x-prefixed hex string ({what}), got {_kind(value)}")
    if not value.startswith(("0x", "0X")):
        raise ValueError(f"hex string without 0x prefix: {_short(value)}")
    body = value[2:]
    if not _HEX.issuperset(body):
        raise ValueError(f"invalid hex string: {_short(value)}")
    return body


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: str) -> str:
    return repr(value if len(value) <= 70 else value[:67] + "...")


def parse_quantity(value: Any) -> int:
    """A QUANTITY: ``0x0``, ``0x1f``, ... (no leading zeros, at most 256 bits)."""
    body = _hex_body(value, "quantity")
    if not body:
        raise ValueError('hex string "0x" is not a number')
    if len(body) > 1 and body[0] == "0":
        raise ValueError(f"hex number with leading zero digits: {_short(value)}")
    if len(body) > _MAX_QUANTITY_DIGITS:
        raise ValueError("hex number > 256 bits")
    return int(body, 16)


def parse_block_count(value: Any) -> int:
    """eth_feeHistory's block count: a quantity, or a plain JSON integer as geth accepts."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("block count must not be negative")
        return value
    return parse_quantity(value)


def parse_data(value: Any) -> bytes:
    """DATA: ``0x`` followed by an even number of hex digits."""
    body = _hex_body(value, "data")
    if len(body) % 2:
        raise ValueError(f"hex string of odd length: {_short(value)}")
    return bytes.fromhex(body)


def _fixed(value: Any, size: int, what: str) -> bytes:
    raw = parse_data(value)
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def parse_address(value: Any) -> bytes:
    return _fixed(value, 20, "an address")


def parse_hash(value: Any) -> bytes:
    return _fixed(value, 32, "a hash")


def parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_kind(value)}")
    return value


def parse_storage_key(value: Any) -> bytes:
    """A storage slot: up to 32 bytes of hex, short and odd-length forms left-padded (geth)."""
    body = _hex_body(value, "storage key")
    if len(body) > 64:
        raise ValueError("storage key longer than 32 bytes")
    return bytes.fromhex(body.rjust(64, "0"))


def parse_storage_keys(value: Any) -> list[bytes]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array of storage keys, got {_kind(value)}")
    if len(value) > 1024:
        raise ValueError("more than 1024 storage keys")
    return [parse_storage_key(v) for v in value]


def parse_block_id(value: Any) -> str | int:
    """A block number or tag (``BlockNumberOrTag``)."""
    if isinstance(value, str) and value in BLOCK_TAGS:
        return value
    if isinstance(value, str) and value.startswith(("0x", "0X")):
        number = parse_quantity(value)
        if number >= 2**63:
            raise ValueError("block number too large")
        return number
    raise ValueError(
        "expected a block number (0x hex) or one of latest, earliest, pending, safe, finalized"
    )


@attrs.frozen(slots=True)
class BlockRef:
    """A block by number/tag or by hash (EIP-1898)."""

    id: str | int | None = None
    hash: bytes | None = None
    require_canonical: bool = False


def parse_block_ref(value: Any) -> BlockRef:
    """``BlockNumberOrTagOrHash``: a tag, a number, a 32-byte hash or an EIP-1898 object."""
    if isinstance(value, dict):
        unknown = set(value) - {"blockNumber", "blockHash", "requireCanonical"}
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r} in block reference")
        if ("blockNumber" in value) == ("blockHash" in value):
            raise ValueError("block reference needs exactly one of blockNumber, blockHash")
        if "blockHash" in value:
            canonical = parse_bool(value.get("requireCanonical", False))
            return BlockRef(hash=parse_hash(value["blockHash"]), require_canonical=canonical)
        return BlockRef(id=parse_block_id(value["blockNumber"]))
    if isinstance(value, str) and len(value) == 66:
        return BlockRef(hash=parse_hash(value))
    return BlockRef(id=parse_block_id(value))


def _optional(doc: dict[str, Any], key: str, parse: Callable[[Any], T]) -> T | None:
    value = doc.get(key)
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


@attrs.frozen(slots=True)
class CallArgs:
    """The transaction object of eth_call and eth_estimateGas (``GenericTransaction``)."""

    sender: bytes | None = None
    to: bytes | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None


def parse_call_args(value: Any) -> CallArgs:
    if not isinstance(value, dict):
        raise ValueError(f"expected a transaction object, got {_kind(value)}")
    data = _optional(value, "input", parse_data)
    alt = _optional(value, "data", parse_data)
    if data is not None and alt is not None and data != alt:
        raise ValueError('both "data" and "input" are set and not equal')
    return CallArgs(
        sender=_optional(value, "from", parse_address),
        to=_optional(value, "to", parse_address),
        gas=_optional(value, "gas", parse_quantity),
        gas_price=_optional(value, "gasPrice", parse_quantity),
        max_fee_per_gas=_optional(value, "maxFeePerGas", parse_quantity),
        max_priority_fee_per_gas=_optional(value, "maxPriorityFeePerGas", parse_quantity),
        value=_optional(value, "value", parse_quantity) or 0,
        data=data if data is not None else (alt or b""),
        nonce=_optional(value, "nonce", parse_quantity),
    )


def parse_percentiles(value: Any) -> list[float]:
    """eth_feeHistory's reward percentiles: numbers in [0, 100], non-decreasing."""
    if not isinstance(value, list):
        raise ValueError(f"expected an array of numbers, got {_kind(value)}")
    if len(value) > 100:
        raise ValueError("more than 100 percentiles")
    out: list[float] = []
    for p in value:
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise ValueError(f"percentile must be a number, got {_kind(p)}")
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} is outside [0, 100]")
        if out and p < out[-1]:
            raise ValueError(f"percentiles must be non-decreasing: {p} after {out[-1]}")
        out.append(float(p))
    return out


@attrs.frozen(slots=True)
class LogFilter:
    from_block: str | int = "latest"
    to_block: str | int = "latest"
    block_hash: bytes | None = None
    addresses: tuple[bytes, ...] = ()
    topics: tuple[tuple[bytes, ...] | None, ...] = ()


def _parse_topics(value: Any) -> tuple[tuple[bytes, ...] | None, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"topics must be an array, got {_kind(value)}")
    if len(value) > 4:
        raise ValueError("more than 4 topic positions")
    out: list[tuple[bytes, ...] | None] = []
    for entry in value:
        if entry is None:
            out.append(None)
        elif isinstance(entry, list):
            out.append(tuple(parse_hash(t) for t in entry))
        else:
            out.append((parse_hash(entry),))
    return tuple(out)


def parse_log_filter(value: Any) -> LogFilter:
    if not isinstance(value, dict):
        raise ValueError(f"expected a filter object, got {_kind(value)}")
    unknown = set(value) - {"fromBlock", "toBlock", "blockHash", "address", "topics"}
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r} in filter")
    block_hash = _optional(value, "blockHash", parse_hash)
    if block_hash is not None and (
        value.get("fromBlock") is not None or value.get("toBlock") is not None
    ):
        raise ValueError("cannot specify both blockHash and fromBlock/toBlock")
    raw_address = value.get("address")
    if raw_address is None:
        addresses: tuple[bytes, ...] = ()
    elif isinstance(raw_address, list):
        addresses = tuple(parse_address(a) for a in raw_address)
    else:
        addresses = (parse_address(raw_address),)
    try:
        topics = _parse_topics(value.get("topics"))
    except ValueError as exc:
        raise ValueError(f"topics: {exc}") from None
    from_block = _optional(value, "fromBlock", parse_block_id)
    to_block = _optional(value, "toBlock", parse_block_id)
    return LogFilter(
        from_block="latest" if from_block is None else from_block,
        to_block="latest" if to_block is None else to_block,
        block_hash=block_hash,
        addresses=addresses,
        topics=topics,
    )
