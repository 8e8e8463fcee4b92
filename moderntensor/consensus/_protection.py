"""Slashing protection: a durable record of what this validator signed, checked before signing.

The record is written (and, for the database store, fsynced) *before* the signature is
returned, so a crash between recording and broadcasting at worst loses a vote; it can never
let a restarted validator sign something that conflicts with a vote already sent.

Which signature may follow which is one table, :data:`ALLOWED_AFTER` (STYLE rule 3).
"""

from __future__ import annotations

from typing import Protocol

import attrs

from moderntensor.chain.votes import SignedVote, VoteKind, vote_digest
from moderntensor.codec import DecodeError, decode_rlp, encode_rlp, expect_bytes, expect_list
from moderntensor.crypto import PrivateKey
from moderntensor.state.store import Column, Database

from ._errors import SlashingRefused

__all__ = [
    "ALLOWED_AFTER",
    "DatabaseStore",
    "KeyValueStore",
    "MemoryStore",
    "ProtectedSigner",
    "SignedRecord",
    "SlashingProtection",
]

_PREFIX = b"slashing-protection/"


class KeyValueStore(Protocol):
    """Where the record lives; ``put`` must be durable when it returns."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...


class MemoryStore:
    """A dict store: for tests and for nodes that do not validate."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value


class DatabaseStore:
    """The node's RocksDB, column CONSENSUS; every put is its own fsynced batch."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(Column.CONSENSUS, key)

    def put(self, key: bytes, value: bytes) -> None:
        batch = self.db.batch()
        batch.put(Column.CONSENSUS, key, value)
        self.db.write(batch, sync=True)


@attrs.frozen(slots=True)
class SignedRecord:
    """What one validator signed in one slot (``b""`` = nothing of that kind)."""

    propose: bytes = b""
    notarize: bytes = b""
    nullify: bool = False
    finalize: bytes = b""

    def get(self, kind: VoteKind) -> bytes | None:
        """The hash signed for ``kind`` (the zero hash stands for NULLIFY), or None."""
        if kind is VoteKind.NULLIFY:
            return b"\x00" * 32 if self.nullify else None
        value = {
            VoteKind.PROPOSE: self.propose,
            VoteKind.NOTARIZE: self.notarize,
            VoteKind.FINALIZE: self.finalize,
        }[kind]
        return value or None

    def with_signed(self, kind: VoteKind, block_hash: bytes) -> SignedRecord:
        """The record after also signing ``kind`` on ``block_hash``."""
        if kind is VoteKind.NULLIFY:
            return attrs.evolve(self, nullify=True)
        if kind is VoteKind.PROPOSE:
            return attrs.evolve(self, propose=block_hash)
        if kind is VoteKind.NOTARIZE:
            return attrs.evolve(self, notarize=block_hash)
        return attrs.evolve(self, finalize=block_hash)

    def encode(self) -> bytes:
        return encode_rlp(
            [self.propose, self.notarize, b"\x01" if self.nullify else b"", self.finalize]
        )

    @classmethod
    def decode(cls, raw: bytes) -> SignedRecord:
        """Raises: DecodeError (a corrupt record: the node must not sign until it is fixed)."""
        fields = expect_list(decode_rlp(raw, "slashing record"), "slashing record", 4)
        values = [expect_bytes(f, "slashing record field", 32) for f in fields]
        if values[2] not in (b"", b"\x01"):
            raise DecodeError("slashing record", "nullify flag must be empty or 0x01")
        return cls(values[0], values[1], values[2] == b"\x01", values[3])


# kind to sign -> the kinds already signed in the slot that forbid it. A kind listed against
# itself forbids only a *different* hash (re-signing the same thing is the same message).
ALLOWED_AFTER: dict[VoteKind, tuple[VoteKind, ...]] = {
    VoteKind.PROPOSE: (VoteKind.PROPOSE,),
    VoteKind.NOTARIZE: (VoteKind.NOTARIZE,),
    VoteKind.NULLIFY: (VoteKind.FINALIZE,),
    VoteKind.FINALIZE: (VoteKind.NULLIFY, VoteKind.FINALIZE),
}


class SlashingProtection:
    """The per-slot record of one validator, with a write-through memory cache."""

    def __init__(self, store: KeyValueStore, validator_id: bytes) -> None:
        self.store = store
        self.validator_id = validator_id
        self._cache: dict[int, SignedRecord] = {}

    def _key(self, slot: int) -> bytes:
        return _PREFIX + self.validator_id + slot.to_bytes(8, "big")

    def record_of(self, slot: int) -> SignedRecord:
        """What was signed in ``slot`` (read from the store on a cache miss).

        Raises:
            DecodeError: the stored record is corrupt.
        """
        record = self._cache.get(slot)
        if record is None:
            raw = self.store.get(self._key(slot))
            record = SignedRecord() if raw is None else SignedRecord.decode(raw)
            self._cache[slot] = record
        return record

    def check(self, kind: VoteKind, slot: int, block_hash: bytes) -> None:
        """Refuse what would conflict with the record.

        Raises:
            SlashingRefused: naming the earlier signature it would conflict with.
        """
        record = self.record_of(slot)
        for earlier in ALLOWED_AFTER[kind]:
            signed = record.get(earlier)
            if signed is None or (earlier is kind and signed == block_hash):
                continue
            raise SlashingRefused(
                f"slot {slot}: already signed {earlier.name} 0x{signed.hex()}, "
                f"refusing {kind.name} 0x{block_hash.hex()}",
                int(kind),
                slot,
            )

    def check_and_record(self, kind: VoteKind, slot: int, block_hash: bytes) -> None:
        """:meth:`check`, then durably record the signature about to be made.

        Raises:
            SlashingRefused: as :meth:`check`.
        """
        self.check(kind, slot, block_hash)
        record = self.record_of(slot)
        updated = record.with_signed(kind, block_hash)
        if updated != record:
            self.store.put(self._key(slot), updated.encode())
            self._cache[slot] = updated

    def forget_cache_below(self, slot: int) -> None:
        """Drop cached records of slots below ``slot`` (the store keeps them)."""
        for old in [s for s in self._cache if s < slot]:
            del self._cache[old]


class ProtectedSigner:
    """A consensus key that signs only through slashing protection."""

    __slots__ = ("chain_id", "genesis_hash", "key", "protection")

    def __init__(
        self, key: PrivateKey, protection: SlashingProtection, chain_id: int, genesis_hash: bytes
    ) -> None:
        if protection.validator_id != key.address:
            raise ValueError("slashing protection record belongs to another key")
        self.key = key
        self.protection = protection
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash

    @property
    def validator_id(self) -> bytes:
        return self.key.address

    def sign(self, kind: VoteKind, slot: int, block_hash: bytes) -> SignedVote:
        """Record, then sign.

        Raises:
            SlashingRefused: the record shows a conflicting signature in this slot.
        """
        digest = vote_digest(self.chain_id, self.genesis_hash, kind, slot, block_hash)
        self.protection.check_and_record(kind, slot, block_hash)
        return SignedVote(kind, slot, block_hash, self.key.address, self.key.sign(digest))
