"""The three Ethereum transaction types as frozen data, with their encodings and signing hashes.

Each class holds exactly the fields its network encoding carries, so that encoding is a pure
function of the fields and ``decode(encode(tx)) == tx``. The expensive derived values (``raw``,
``hash``, ``sender``) are computed once and cached in non-init slots; the decoder fills them in
from the bytes it already has, so a decoded transfer costs one RLP decode, two keccaks and one
public-key recovery.

Legacy transactions keep ``chain_id`` and ``y_parity`` as fields and derive ``v`` from them
(EIP-155: ``v = 35 + 2 * chain_id + y_parity``; pre-EIP-155: ``v = 27 + y_parity`` with
``chain_id=None``), so all three types share one signature shape. A transaction built in code
with ``r == s == 0`` is unsigned: pass it to :func:`sign_transaction`.
"""

from __future__ import annotations

from typing import ClassVar, TypeAlias, TypeVar

import attrs

from moderntensor.codec import RLPItem, encode_rlp, encode_uint
from moderntensor.crypto import PrivateKey, Signature, keccak256, recover_address

__all__ = [
    "MAX_TX_SIZE",
    "AccessList",
    "AccessListTransaction",
    "DynamicFeeTransaction",
    "LegacyTransaction",
    "Transaction",
    "encode_transaction",
    "sign_transaction",
    "signing_hash",
]

MAX_TX_SIZE = 128 * 1024
"""Largest network encoding accepted (geth's txpool limit): bounds memory per gossiped tx."""

UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1

AccessList: TypeAlias = tuple[tuple[bytes, tuple[bytes, ...]], ...]
"""EIP-2930 access list: ``((address20, (storage_key32, ...)), ...)``."""


def _check_uint(name: str, value: object, limit: int) -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{name} must be an integer in [0, {limit:#x}], got {value!r}")


def _check_common(
    tx: LegacyTransaction | AccessListTransaction | DynamicFeeTransaction,
) -> None:
    """Field checks shared by the three types; raises ValueError naming the field."""
    _check_uint("nonce", tx.nonce, UINT64_MAX)
    _check_uint("gas", tx.gas, UINT64_MAX)
    _check_uint("value", tx.value, UINT256_MAX)
    to = tx.to
    if to is not None and (type(to) is not bytes or len(to) != 20):
        raise ValueError(f"to must be 20 bytes or None, got {to!r}")
    if type(tx.data) is not bytes:
        raise ValueError(f"data must be bytes, got {type(tx.data).__name__}")
    if tx.y_parity not in (0, 1) or type(tx.y_parity) is not int:
        raise ValueError(f"y_parity must be 0 or 1, got {tx.y_parity!r}")
    _check_uint("r", tx.r, UINT256_MAX)
    _check_uint("s", tx.s, UINT256_MAX)


def _check_access_list(access_list: object) -> None:
    if type(access_list) is not tuple:
        raise ValueError("access_list must be a tuple of (address, storage_keys) tuples")
    for entry in access_list:
        if type(entry) is not tuple or len(entry) != 2:
            raise ValueError(f"access_list entry must be (address, storage_keys), got {entry!r}")
        address, keys = entry
        if type(address) is not bytes or len(address) != 20:
            raise ValueError(f"access_list address must be 20 bytes, got {address!r}")
        if type(keys) is not tuple:
            raise ValueError("access_list storage_keys must be a tuple of 32-byte keys")
        for key in keys:
            if type(key) is not bytes or len(key) != 32:
                raise ValueError(f"access_list storage key must be 32 bytes, got {key!r}")


def _access_list_items(access_list: AccessList) -> list[RLPItem]:
    return [[address, list(keys)] for address, keys in access_list]


@attrs.frozen(slots=True)
class _Cached:
    """Lazily computed ``raw``/``hash``/``sender``, shared by the three transaction types.

    The cache slots are excluded from ``__init__``, equality and repr, so two transactions are
    equal exactly when their fields are.
    """

    _raw: bytes | None = attrs.field(init=False, default=None, eq=False, repr=False)
    _hash: bytes | None = attrs.field(init=False, default=None, eq=False, repr=False)
    _sender: bytes | None = attrs.field(init=False, default=None, eq=False, repr=False)

    def _encode(self) -> bytes:
        raise NotImplementedError

    def _signing_payload(self) -> bytes:
        raise NotImplementedError

    def _signature(self) -> Signature:
        raise NotImplementedError

    @property
    def raw(self) -> bytes:
        """The network encoding (legacy: an RLP list; typed: type byte || RLP payload)."""
        raw = self._raw
        if raw is None:
            raw = self._encode()
            object.__setattr__(self, "_raw", raw)
        return raw

    @property
    def hash(self) -> bytes:
        """keccak256 of the network encoding: the transaction hash clients look up."""
        digest = self._hash
        if digest is None:
            digest = keccak256(self.raw)
            object.__setattr__(self, "_hash", digest)
        return digest

    @property
    def sender(self) -> bytes:
        """The 20-byte address recovered from the signature.

        Raises:
            InvalidSignature: the transaction is unsigned or its signature is invalid (only
                possible for one built in code; decoded transactions were checked).
        """
        sender = self._sender
        if sender is None:
            digest = keccak256(self._signing_payload())
            sender = recover_address(digest, self._signature())
            object.__setattr__(self, "_sender", sender)
        return sender

    def _fill_cache(self, raw: bytes | None, digest: bytes | None, sender: bytes | None) -> None:
        """Store values already known (by the decoder or the signer) so they are never redone."""
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_hash", digest)
        object.__setattr__(self, "_sender", sender)


@attrs.frozen(slots=True, kw_only=True)
class LegacyTransaction(_Cached):
    """A pre-typed transaction; ``chain_id=None`` means pre-EIP-155 (replayable across chains)."""

    type: ClassVar[int] = 0

    chain_id: int | None
    nonce: int
    gas_price: int
    gas: int
    to: bytes | None
    value: int = 0
    data: bytes = b""
    y_parity: int = 0
    r: int = 0
    s: int = 0

    def __attrs_post_init__(self) -> None:
        _check_common(self)
        _check_uint("gas_price", self.gas_price, UINT256_MAX)
        chain_id = self.chain_id
        if chain_id is not None and (
            type(chain_id) is not int or chain_id < 1 or self.v > UINT256_MAX
        ):
            # chain id 0 would give v = 35/36, which EIP-155 decoders read as no chain at all
            raise ValueError(
                f"legacy chain_id must be None or >= 1 with v < 2**256, got {chain_id!r}"
            )

    @property
    def v(self) -> int:
        """27/28 before EIP-155, ``35 + 2 * chain_id + y_parity`` after."""
        if self.chain_id is None:
            return 27 + self.y_parity
        return 35 + 2 * self.chain_id + self.y_parity

    @property
    def max_fee_per_gas(self) -> int:
        return self.gas_price

    @property
    def max_priority_fee_per_gas(self) -> int:
        return self.gas_price

    @property
    def access_list(self) -> AccessList:
        return ()

    def _unsigned_items(self) -> list[RLPItem]:
        return [
            encode_uint(self.nonce),
            encode_uint(self.gas_price),
            encode_uint(self.gas),
            self.to or b"",
            encode_uint(self.value),
            self.data,
        ]

    def _encode(self) -> bytes:
        items = self._unsigned_items()
        items += [encode_uint(self.v), encode_uint(self.r), encode_uint(self.s)]
        return encode_rlp(items)

    def _signing_payload(self) -> bytes:
        items = self._unsigned_items()
        if self.chain_id is not None:
            items += [encode_uint(self.chain_id), b"", b""]
        return encode_rlp(items)

    def _signature(self) -> Signature:
        return Signature(self.y_parity, self.r, self.s)


@attrs.frozen(slots=True, kw_only=True)
class AccessListTransaction(_Cached):
    """EIP-2930 (type 1): a legacy-priced transaction with a chain id and an access list."""

    type: ClassVar[int] = 1

    chain_id: int
    nonce: int
    gas_price: int
    gas: int
    to: bytes | None
    value: int = 0
    data: bytes = b""
    access_list: AccessList = ()
    y_parity: int = 0
    r: int = 0
    s: int = 0

    def __attrs_post_init__(self) -> None:
        _check_uint("chain_id", self.chain_id, UINT256_MAX)
        _check_common(self)
        _check_uint("gas_price", self.gas_price, UINT256_MAX)
        if self.access_list:
            _check_access_list(self.access_list)
        elif self.access_list != ():
            raise ValueError("access_list must be a tuple")

    @property
    def v(self) -> int:
        return self.y_parity

    @property
    def max_fee_per_gas(self) -> int:
        return self.gas_price

    @property
    def max_priority_fee_per_gas(self) -> int:
        return self.gas_price

    def _unsigned_items(self) -> list[RLPItem]:
        return [
            encode_uint(self.chain_id),
            encode_uint(self.nonce),
            encode_uint(self.gas_price),
            encode_uint(self.gas),
            self.to or b"",
            encode_uint(self.value),
            self.data,
            _access_list_items(self.access_list),
        ]

    def _encode(self) -> bytes:
        items = self._unsigned_items()
        items += [encode_uint(self.y_parity), encode_uint(self.r), encode_uint(self.s)]
        return b"\x01" + encode_rlp(items)

    def _signing_payload(self) -> bytes:
        return b"\x01" + encode_rlp(self._unsigned_items())

    def _signature(self) -> Signature:
        return Signature(self.y_parity, self.r, self.s)


@attrs.frozen(slots=True, kw_only=True)
class DynamicFeeTransaction(_Cached):
    """EIP-1559 (type 2): pays ``min(max_fee, base_fee + max_priority_fee)`` per gas."""

    type: ClassVar[int] = 2

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes | None
    value: int = 0
    data: bytes = b""
    access_list: AccessList = ()
    y_parity: int = 0
    r: int = 0
    s: int = 0

    def __attrs_post_init__(self) -> None:
        _check_uint("chain_id", self.chain_id, UINT256_MAX)
        _check_common(self)
        _check_uint("max_priority_fee_per_gas", self.max_priority_fee_per_gas, UINT256_MAX)
        _check_uint("max_fee_per_gas", self.max_fee_per_gas, UINT256_MAX)
        if self.access_list:
            _check_access_list(self.access_list)
        elif self.access_list != ():
            raise ValueError("access_list must be a tuple")

    @property
    def v(self) -> int:
        return self.y_parity

    def _unsigned_items(self) -> list[RLPItem]:
        return [
            encode_uint(self.chain_id),
            encode_uint(self.nonce),
            encode_uint(self.max_priority_fee_per_gas),
            encode_uint(self.max_fee_per_gas),
            encode_uint(self.gas),
            self.to or b"",
            encode_uint(self.value),
            self.data,
            _access_list_items(self.access_list),
        ]

    def _encode(self) -> bytes:
        items = self._unsigned_items()
        items += [encode_uint(self.y_parity), encode_uint(self.r), encode_uint(self.s)]
        return b"\x02" + encode_rlp(items)

    def _signing_payload(self) -> bytes:
        return b"\x02" + encode_rlp(self._unsigned_items())

    def _signature(self) -> Signature:
        return Signature(self.y_parity, self.r, self.s)


Transaction: TypeAlias = LegacyTransaction | AccessListTransaction | DynamicFeeTransaction
"""Any transaction this chain accepts; dispatch on ``tx.type`` (0, 1, 2)."""

_T = TypeVar("_T", LegacyTransaction, AccessListTransaction, DynamicFeeTransaction)


def encode_transaction(tx: Transaction) -> bytes:
    """The network encoding (what ``tx.hash`` hashes and what gossip and blocks carry)."""
    return tx.raw


def signing_hash(tx: Transaction) -> bytes:
    """keccak256 of what the sender signs: the fields without the signature (EIP-155 adds
    ``chain_id, 0, 0`` for protected legacy txs; typed txs prefix their type byte)."""
    return keccak256(tx._signing_payload())


def sign_transaction(tx: _T, key: PrivateKey) -> _T:
    """Sign ``tx`` (its signature fields are ignored) with ``key`` (RFC 6979, low s).

    Returns a copy of the same type with ``y_parity``, ``r``, ``s`` set and ``raw``, ``hash``
    and ``sender`` already cached (the sender is the key's address, no recovery needed).
    """
    sig = key.sign(signing_hash(tx))
    signed = attrs.evolve(tx, y_parity=sig.y_parity, r=sig.r, s=sig.s)
    raw = signed._encode()
    signed._fill_cache(raw, keccak256(raw), key.address)
    return signed
