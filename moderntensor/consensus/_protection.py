"""Slashing protection: a durable record of what this validator signed, checked before signing.

The record is written (and, for the database store, fsynced) *before* the signature is
returned, so a crash between recording and broadcasting at worst loses a vote; it can never
let a restarted validator sign something that conflicts with a vote already sent.

Which signature may follow which is one table, :data:`ALLOWED_AFTER` (STYLE rule 3). Records
are per *round* (epoch, slot): a new epoch starts its views again after the previous epoch's
boundary block, and its votes carry their epoch in the digest, so rounds never collide.

Two high-water marks live beside the records (one key per validator):

* ``signed``: the highest round this key ever signed in;
* ``certified``: the highest round of a verified certificate this node has seen.

A new NULLIFY is refused at or below ``certified``: a certificate there proves the network
moved on, so a NULLIFY could only contradict a FINALIZE signed before a restore from a backup
(review H2). The marks are written with the next record, in the same atomic put.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from moderntensor.chain.votes import SignedVote, VoteKind, vote_digest
from moderntensor.codec import (
    DecodeError,
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_bytes,
    expect_list,
    expect_uint,
)
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
_MARKS_PREFIX = b"slashing-protection-marks/"

Round = tuple[int, int]
"""(epoch, slot): ordered lexicographically, as the protocol moves through them."""


class KeyValueStore(Protocol):
    """Where the record lives; ``put_many`` must be atomic and durable when it returns."""

    def get(self, key: bytes) -> bytes | None: ...

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None: ...

    def items(self, prefix: bytes) -> list[tuple[bytes, bytes]]: ...


class MemoryStore:
    """A dict store: for tests and for nodes that do not validate."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        self.data.update(items)

    def items(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))


class DatabaseStore:
    """The node's RocksDB, column CONSENSUS; every put is its own fsynced batch."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(Column.CONSENSUS, key)

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        batch = self.db.batch()
        for key, value in items:
            batch.put(Column.CONSENSUS, key, value)
        self.db.write(batch, sync=True)

    def items(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return list(self.db.iterate(Column.CONSENSUS, prefix))


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


def _encode_round(r: Round) -> list[bytes]:
    return [encode_uint(r[0]), encode_uint(r[1])]


def _decode_round(item: object, what: str) -> Round:
    pair = expect_list(item, what, 2)  # type: ignore[arg-type]
    return expect_uint(pair[0], what + ".epoch", 64), expect_uint(pair[1], what + ".slot", 64)


class SlashingProtection:
    """The per-round record of one validator, with a write-through memory cache."""

    def __init__(self, store: KeyValueStore, validator_id: bytes) -> None:
        self.store = store
        self.validator_id = validator_id
        self._cache: dict[Round, SignedRecord] = {}
        self.signed_mark: Round | None = None
        self.certified_mark: Round | None = None
        self._marks_dirty = False
        raw = store.get(self._marks_key())
        if raw is not None:
            fields = expect_list(decode_rlp(raw, "protection marks"), "protection marks", 2)
            marks = [None if f == b"" else _decode_round(f, "mark") for f in fields]
            self.signed_mark, self.certified_mark = marks[0], marks[1]

    def _key(self, epoch: int, slot: int) -> bytes:
        return _PREFIX + self.validator_id + epoch.to_bytes(8, "big") + slot.to_bytes(8, "big")

    def _marks_key(self) -> bytes:
        return _MARKS_PREFIX + self.validator_id

    def _encode_marks(self) -> bytes:
        items: list[RLPItem] = [
            b"" if m is None else list[RLPItem](_encode_round(m))
            for m in (self.signed_mark, self.certified_mark)
        ]
        return encode_rlp(items)

    def record_of(self, epoch: int, slot: int) -> SignedRecord:
        """What was signed in round (``epoch``, ``slot``) (read from the store on a miss).

        Raises:
            DecodeError: the stored record is corrupt.
        """
        record = self._cache.get((epoch, slot))
        if record is None:
            raw = self.store.get(self._key(epoch, slot))
            record = SignedRecord() if raw is None else SignedRecord.decode(raw)
            self._cache[(epoch, slot)] = record
        return record

    def observe_certificate(self, epoch: int, slot: int) -> None:
        """A verified certificate of this round exists: raise the ``certified`` mark."""
        if self.certified_mark is None or (epoch, slot) > self.certified_mark:
            self.certified_mark = (epoch, slot)
            self._marks_dirty = True

    def check(self, kind: VoteKind, epoch: int, slot: int, block_hash: bytes) -> None:
        """Refuse what would conflict with the record or the marks.

        Raises:
            SlashingRefused: naming the earlier signature (or mark) it would conflict with.
        """
        record = self.record_of(epoch, slot)
        if record.get(kind) == block_hash:
            return  # the very same message again: RFC 6979 makes it byte-identical
        for earlier in ALLOWED_AFTER[kind]:
            signed = record.get(earlier)
            if signed is None or (earlier is kind and signed == block_hash):
                continue
            raise SlashingRefused(
                f"epoch {epoch} slot {slot}: already signed {earlier.name} 0x{signed.hex()}, "
                f"refusing {kind.name} 0x{block_hash.hex()}",
                int(kind),
                slot,
            )
        mark = self.certified_mark
        if kind is VoteKind.NULLIFY and mark is not None and (epoch, slot) <= mark:
            raise SlashingRefused(
                f"epoch {epoch} slot {slot}: a certificate of round {mark} was seen, "
                "refusing a NULLIFY at or below it",
                int(kind),
                slot,
            )

    def check_and_record(self, kind: VoteKind, epoch: int, slot: int, block_hash: bytes) -> None:
        """:meth:`check`, then durably record the signature about to be made (with the marks).

        Raises:
            SlashingRefused: as :meth:`check`.
        """
        self.check(kind, epoch, slot, block_hash)
        record = self.record_of(epoch, slot)
        updated = record.with_signed(kind, block_hash)
        if self.signed_mark is None or (epoch, slot) > self.signed_mark:
            self.signed_mark = (epoch, slot)
            self._marks_dirty = True
        writes: list[tuple[bytes, bytes]] = []
        if updated != record:
            writes.append((self._key(epoch, slot), updated.encode()))
        if self._marks_dirty:
            writes.append((self._marks_key(), self._encode_marks()))
        if writes:
            self.store.put_many(writes)
            self._marks_dirty = False
            self._cache[(epoch, slot)] = updated

    def forget_cache_below(self, epoch: int, slot: int) -> None:
        """Drop cached records of rounds below (``epoch``, ``slot``) (the store keeps them)."""
        for old in [r for r in self._cache if r < (epoch, slot)]:
            del self._cache[old]

    def records(self) -> list[tuple[Round, SignedRecord]]:
        """Every stored record of this validator, in round order (for export).

        Raises:
            DecodeError: a stored record is corrupt.
        """
        prefix = _PREFIX + self.validator_id
        out = []
        for key, raw in self.store.items(prefix):
            rest = key[len(prefix) :]
            if len(rest) != 16:
                continue
            rnd = (int.from_bytes(rest[:8], "big"), int.from_bytes(rest[8:], "big"))
            out.append((rnd, SignedRecord.decode(raw)))
        return out

    def merge(self, rnd: Round, incoming: SignedRecord) -> str | None:
        """Import a record: the union of what both say was signed, written durably.

        Returns None, or a reason when the two records conflict (then the local record is
        kept unchanged: a key that signed both already equivocated, and importing cannot help).
        """
        local = self.record_of(*rnd)
        merged = local
        for kind in VoteKind:
            theirs = incoming.get(kind)
            if theirs is None:
                continue
            mine = merged.get(kind)
            if mine is not None and mine != theirs:
                return f"round {rnd}: {kind.name} 0x{mine.hex()} here, 0x{theirs.hex()} imported"
            merged = merged.with_signed(kind, theirs)
        if merged != local:
            self.store.put_many([(self._key(*rnd), merged.encode())])
            self._cache[rnd] = merged
        return None

    def learn(self, kind: VoteKind, epoch: int, slot: int, block_hash: bytes) -> str | None:
        """Record, durably, that this key signed ``kind`` on ``block_hash`` in a round (a
        vote of ours that a peer kept, after our own record was lost). Returns None, or the
        reason it conflicts with the record (then the record is kept as it is).
        """
        reason = self.merge((epoch, slot), SignedRecord().with_signed(kind, block_hash))
        if reason is None and (self.signed_mark is None or (epoch, slot) > self.signed_mark):
            self.raise_marks((epoch, slot), None)
        return reason

    def raise_marks(self, signed: Round | None, certified: Round | None) -> None:
        """Raise both marks (never lower them) and store them durably (for import)."""
        if signed is not None and (self.signed_mark is None or signed > self.signed_mark):
            self.signed_mark = signed
        if certified is not None and (
            self.certified_mark is None or certified > self.certified_mark
        ):
            self.certified_mark = certified
        self.store.put_many([(self._marks_key(), self._encode_marks())])
        self._marks_dirty = False


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

    def sign(self, kind: VoteKind, epoch: int, slot: int, block_hash: bytes) -> SignedVote:
        """Record, then sign.

        Raises:
            SlashingRefused: the record shows a conflicting signature in this round.
        """
        digest = vote_digest(self.chain_id, self.genesis_hash, kind, epoch, slot, block_hash)
        self.protection.check_and_record(kind, epoch, slot, block_hash)
        return SignedVote(kind, epoch, slot, block_hash, self.key.address, self.key.sign(digest))
