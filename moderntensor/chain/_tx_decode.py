"""Strict, total decoding of network-encoded transactions.

Any bytes give a :data:`Transaction` or :class:`~moderntensor.codec.DecodeError` (STYLE rule 5).
What decoding enforces (everything that needs no chain context):

* envelope: size <= ``MAX_TX_SIZE``; first byte >= 0xc0 is a legacy RLP list, 0x01/0x02 a typed
  transaction whose payload must be one RLP list spanning the rest; any other first byte
  (0x00, 0x03 blob txs, 0x04+ and RLP byte strings 0x80-0xbf) is an unsupported type;
* canonical RLP (lengths, single bytes, no trailing bytes), exact field counts, byte strings
  where integers/addresses/data go;
* integers canonical (no leading zeros) and in range: nonce and gas limit fit 64 bits
  (EIP-2681 / geth's uint64), every other integer 256 bits;
* ``to`` empty or 20 bytes; access-list addresses 20 bytes and storage keys 32 bytes;
* signature: legacy ``v`` in {27, 28, 35 + 2 * chain_id + {0, 1}} with chain_id >= 1, typed
  ``y_parity`` 0 or 1, ``0 < r, s < n``, ``s <= n/2`` (EIP-2), and a public key must recover.

Rules that depend on the chain or are "valid bytes, invalid transaction" live in
:func:`validate_transaction_static` (chain id, intrinsic gas, nonce 2^64-1, fee ordering,
gas * price overflow, initcode size).
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from moderntensor.chain._tx_fast import parse_dynamic_fee
from moderntensor.chain._tx_types import (
    MAX_TX_SIZE,
    AccessList,
    AccessListTransaction,
    DynamicFeeTransaction,
    LegacyTransaction,
    Transaction,
)
from moderntensor.codec import (
    DecodeError,
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_bytes,
    expect_fixed,
    expect_list,
    expect_uint,
)
from moderntensor.crypto import InvalidSignature, Signature, keccak256, recover_address

__all__ = ["decode_stored_transaction", "decode_transaction"]

_LEGACY = "legacy tx"
_TYPE1 = "EIP-2930 tx"
_TYPE2 = "EIP-1559 tx"


RECENT_DECODED = 32_768
"""Transactions decoded lately, kept by their raw bytes (about 15 MB at most)."""
_recent: dict[bytes, Transaction] = {}
_recent_lock = threading.Lock()


def decode_transaction(raw: bytes) -> Transaction:
    """Decode and check one network-encoded transaction, recovering its sender.

    The result has ``raw``, ``hash`` and ``sender`` cached.

    The last ``RECENT_DECODED`` results are kept by their raw bytes: a node decodes most
    transactions twice -- when they arrive (JSON-RPC, gossip) and again in the block that
    includes them -- and recovering the sender (about 60 us) is most of the cost. Decoding
    is a pure function of the bytes, so the kept result is the one a second decode would
    give. Worker threads decode concurrently: reads are single dict lookups, writes and
    evictions hold a lock.

    Raises:
        DecodeError: naming the field and the problem; never any other exception.
    """
    if not isinstance(raw, bytes):
        if not isinstance(raw, bytearray | memoryview):
            raise DecodeError("transaction", f"expected bytes, got {type(raw).__name__}")
        raw = bytes(raw)
    tx = _recent.get(raw)
    if tx is not None:
        return tx
    tx = _decode_uncached(raw)
    with _recent_lock:
        _recent[raw] = tx
        if len(_recent) > RECENT_DECODED:
            del _recent[next(iter(_recent))]  # the oldest (dicts keep insertion order)
    return tx


def decode_stored_transaction(raw: bytes) -> Transaction:
    """Decode a transaction this node stored in a block it committed, without recovering the
    sender then: ``sender`` is recovered on first use (an RPC answer needs it; serving the
    block to a peer, which re-encodes ``raw``, never does).

    Every check of :func:`decode_transaction` but the signature's is made, and a transaction
    decoded lately is taken from its cache. The signature was checked when the block was
    imported, so a later recovery gives the sender that execution used.

    Raises:
        DecodeError: as :func:`decode_transaction` (for a corrupt database).
    """
    tx = _recent.get(raw)
    if tx is not None:
        return tx
    return _decode_uncached(raw, recover=False)


def _decode_uncached(raw: bytes, recover: bool = True) -> Transaction:
    size = len(raw)
    if size == 0:
        raise DecodeError("transaction", "empty input")
    if size > MAX_TX_SIZE:
        raise DecodeError("transaction", f"oversize: {size} bytes > limit {MAX_TX_SIZE}")
    first = raw[0]
    if first >= 0xC0:
        return _decode_legacy(raw, recover)
    if first == 2:
        return _decode_dynamic_fee(raw, recover)
    if first == 1:
        return _decode_access_list_tx(raw, recover)
    if first >= 0x80:
        raise DecodeError(
            "transaction", "an RLP byte string is not a transaction (legacy txs are RLP lists)"
        )
    if first == 3:
        raise DecodeError("transaction", "type 0x03 (EIP-4844 blob transaction) is not supported")
    raise DecodeError("transaction", f"unsupported transaction type {first:#04x}")


def _uint(item: RLPItem, what: str, max_bits: int = 256) -> int:
    """expect_uint with a fast path for the common, valid case (the decoder's hot loop)."""
    if type(item) is bytes and len(item) * 8 <= max_bits and item[:1] != b"\x00":
        return int.from_bytes(item, "big")
    return expect_uint(item, what, max_bits)  # raises the named error


def _to(item: RLPItem, what: str) -> bytes | None:
    raw = expect_bytes(item, what)
    if not raw:
        return None
    if len(raw) != 20:
        raise DecodeError(what, f"address is {len(raw)} bytes, expected 20 (or empty to create)")
    return raw


def _access_list(item: RLPItem, label: str) -> AccessList:
    what = f"{label} access_list"
    entries = expect_list(item, what)
    result = []
    for index, entry in enumerate(entries):
        pair = expect_list(entry, f"{what}[{index}]", 2)
        address = expect_fixed(pair[0], f"{what}[{index}].address", 20)
        keys = expect_list(pair[1], f"{what}[{index}].storage_keys")
        result.append(
            (
                address,
                tuple(
                    expect_fixed(key, f"{what}[{index}].storage_keys[{k}]", 32)
                    for k, key in enumerate(keys)
                ),
            )
        )
    return tuple(result)


def _recover(label: str, payload: bytes, y_parity: int, r: int, s: int) -> bytes:
    try:
        return recover_address(keccak256(payload), Signature(y_parity, r, s))
    except InvalidSignature as exc:
        raise DecodeError(f"{label} signature", str(exc)) from None


def _y_parity(item: RLPItem, label: str) -> int:
    y_parity = _uint(item, f"{label} y_parity", 8)
    if y_parity > 1:
        raise DecodeError(f"{label} y_parity", f"must be 0 or 1, got {y_parity}")
    return y_parity


_T = TypeVar("_T", LegacyTransaction, AccessListTransaction, DynamicFeeTransaction)


def _build(cls: type[_T], what: str, raw: bytes, sender: bytes | None, **fields: Any) -> _T:
    """Construct a decoded transaction with its raw bytes, hash and sender (None: recovered
    on first use) already cached.

    Raises:
        DecodeError: a field the constructor refuses (unreachable after the decoder's own
            checks; keeps decoding total).
    """
    try:
        tx = cls(**fields)
    except ValueError as exc:
        raise DecodeError(what, str(exc)) from None
    tx._fill_cache(raw, keccak256(raw), sender)
    return tx


def _decode_legacy(raw: bytes, recover: bool) -> LegacyTransaction:
    items = expect_list(decode_rlp(raw, _LEGACY), _LEGACY, 9)
    nonce = _uint(items[0], "legacy tx nonce", 64)
    gas_price = _uint(items[1], "legacy tx gas_price")
    gas = _uint(items[2], "legacy tx gas", 64)
    to = _to(items[3], "legacy tx to")
    value = _uint(items[4], "legacy tx value")
    data = expect_bytes(items[5], "legacy tx data")
    v = _uint(items[6], "legacy tx v")
    r = _uint(items[7], "legacy tx r")
    s = _uint(items[8], "legacy tx s")
    chain_id: int | None
    if v == 27 or v == 28:
        chain_id, y_parity = None, v - 27
        unsigned = items[:6]
    elif v >= 37:
        chain_id, y_parity = (v - 35) >> 1, (v - 35) & 1
        unsigned = [*items[:6], encode_uint(chain_id), b"", b""]
    else:
        raise DecodeError(
            "legacy tx v", f"{v} is not 27, 28 or 35 + 2 * chain_id + y_parity (chain_id >= 1)"
        )
    sender = _recover(_LEGACY, encode_rlp(unsigned), y_parity, r, s) if recover else None
    return _build(
        LegacyTransaction,
        _LEGACY,
        raw,
        sender,
        chain_id=chain_id,
        nonce=nonce,
        gas_price=gas_price,
        gas=gas,
        to=to,
        value=value,
        data=data,
        y_parity=y_parity,
        r=r,
        s=s,
    )


def _decode_access_list_tx(raw: bytes, recover: bool) -> AccessListTransaction:
    items = expect_list(decode_rlp(raw[1:], f"{_TYPE1} payload"), f"{_TYPE1} payload", 11)
    chain_id = _uint(items[0], "EIP-2930 tx chain_id")
    nonce = _uint(items[1], "EIP-2930 tx nonce", 64)
    gas_price = _uint(items[2], "EIP-2930 tx gas_price")
    gas = _uint(items[3], "EIP-2930 tx gas", 64)
    to = _to(items[4], "EIP-2930 tx to")
    value = _uint(items[5], "EIP-2930 tx value")
    data = expect_bytes(items[6], "EIP-2930 tx data")
    access_list = _access_list(items[7], _TYPE1)
    y_parity = _y_parity(items[8], _TYPE1)
    r = _uint(items[9], "EIP-2930 tx r")
    s = _uint(items[10], "EIP-2930 tx s")
    sender = _recover(_TYPE1, b"\x01" + encode_rlp(items[:8]), y_parity, r, s) if recover else None
    return _build(
        AccessListTransaction,
        _TYPE1,
        raw,
        sender,
        chain_id=chain_id,
        nonce=nonce,
        gas_price=gas_price,
        gas=gas,
        to=to,
        value=value,
        data=data,
        access_list=access_list,
        y_parity=y_parity,
        r=r,
        s=s,
    )


def _decode_dynamic_fee(raw: bytes, recover: bool) -> DynamicFeeTransaction:
    fast = parse_dynamic_fee(raw)
    if fast is not None:
        chain_id, nonce, tip, max_fee, gas, to, value, data, y_parity, r, s, payload = fast
        return _build(
            DynamicFeeTransaction,
            _TYPE2,
            raw,
            _recover(_TYPE2, payload, y_parity, r, s) if recover else None,
            chain_id=chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=max_fee,
            gas=gas,
            to=to,
            value=value,
            data=data,
            access_list=(),
            y_parity=y_parity,
            r=r,
            s=s,
        )
    return _decode_generic_dynamic_fee(raw, recover)


def _decode_generic_dynamic_fee(raw: bytes, recover: bool) -> DynamicFeeTransaction:
    items = expect_list(decode_rlp(raw[1:], f"{_TYPE2} payload"), f"{_TYPE2} payload", 12)
    chain_id = _uint(items[0], "EIP-1559 tx chain_id")
    nonce = _uint(items[1], "EIP-1559 tx nonce", 64)
    max_priority_fee = _uint(items[2], "EIP-1559 tx max_priority_fee_per_gas")
    max_fee = _uint(items[3], "EIP-1559 tx max_fee_per_gas")
    gas = _uint(items[4], "EIP-1559 tx gas", 64)
    to = _to(items[5], "EIP-1559 tx to")
    value = _uint(items[6], "EIP-1559 tx value")
    data = expect_bytes(items[7], "EIP-1559 tx data")
    access_list = _access_list(items[8], _TYPE2)
    y_parity = _y_parity(items[9], _TYPE2)
    r = _uint(items[10], "EIP-1559 tx r")
    s = _uint(items[11], "EIP-1559 tx s")
    sender = _recover(_TYPE2, b"\x02" + encode_rlp(items[:9]), y_parity, r, s) if recover else None
    return _build(
        DynamicFeeTransaction,
        _TYPE2,
        raw,
        sender,
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=max_priority_fee,
        max_fee_per_gas=max_fee,
        gas=gas,
        to=to,
        value=value,
        data=data,
        access_list=access_list,
        y_parity=y_parity,
        r=r,
        s=s,
    )
