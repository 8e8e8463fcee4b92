"""Slashing protection: the table, durability in the node's real RocksDB, and restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderntensor.chain.votes import ZERO_HASH, VoteKind
from moderntensor.consensus import (
    DatabaseStore,
    MemoryStore,
    ProtectedSigner,
    SignedRecord,
    SlashingProtection,
    SlashingRefused,
)
from moderntensor.crypto import keccak256
from moderntensor.state.store import Column, Database

from .harness import CHAIN_ID, GENESIS_HASH, KEYS

A, B = keccak256(b"a"), keccak256(b"b")
KEY = KEYS[0]


def signer(store: object) -> ProtectedSigner:
    return ProtectedSigner(
        KEY,
        SlashingProtection(store, KEY.address),
        CHAIN_ID,
        GENESIS_HASH,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("first", "second", "allowed"),
    [
        ((VoteKind.NOTARIZE, A), (VoteKind.NOTARIZE, A), True),
        ((VoteKind.NOTARIZE, A), (VoteKind.NOTARIZE, B), False),
        ((VoteKind.PROPOSE, A), (VoteKind.PROPOSE, B), False),
        ((VoteKind.PROPOSE, A), (VoteKind.PROPOSE, A), True),
        ((VoteKind.NULLIFY, ZERO_HASH), (VoteKind.FINALIZE, A), False),
        ((VoteKind.FINALIZE, A), (VoteKind.NULLIFY, ZERO_HASH), False),
        ((VoteKind.FINALIZE, A), (VoteKind.FINALIZE, B), False),
        ((VoteKind.NOTARIZE, A), (VoteKind.NULLIFY, ZERO_HASH), True),
        ((VoteKind.NOTARIZE, A), (VoteKind.FINALIZE, B), True),
        ((VoteKind.NULLIFY, ZERO_HASH), (VoteKind.NULLIFY, ZERO_HASH), True),
    ],
)
def test_table(
    first: tuple[VoteKind, bytes], second: tuple[VoteKind, bytes], allowed: bool
) -> None:
    s = signer(MemoryStore())
    s.sign(first[0], 9, first[1])
    if allowed:
        s.sign(second[0], 9, second[1])
    else:
        with pytest.raises(SlashingRefused, match="slot 9"):
            s.sign(second[0], 9, second[1])
    s.sign(VoteKind.NOTARIZE, 10, B)  # other slots are independent


def test_refusal_happens_before_anything_is_signed() -> None:
    store = MemoryStore()
    s = signer(store)
    s.sign(VoteKind.NOTARIZE, 3, A)
    snapshot = dict(store.data)
    with pytest.raises(SlashingRefused):
        s.sign(VoteKind.NOTARIZE, 3, B)
    assert store.data == snapshot


def test_record_survives_restart_in_rocksdb(tmp_path: Path) -> None:
    path = tmp_path / "node-db"
    with Database.open(path) as db:
        s = signer(DatabaseStore(db))
        s.sign(VoteKind.NOTARIZE, 5, A)
        s.sign(VoteKind.FINALIZE, 5, A)
        s.sign(VoteKind.NULLIFY, 6, ZERO_HASH)
    with Database.open(path) as db:  # a restarted process: fresh caches, same files
        s = signer(DatabaseStore(db))
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.NOTARIZE, 5, B)
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.NULLIFY, 5, ZERO_HASH)
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.FINALIZE, 6, A)
        assert s.sign(VoteKind.NOTARIZE, 5, A).block_hash == A  # the same vote again is fine
        stored = [k for k, _ in db.iterate(Column.CONSENSUS, b"slashing-protection/")]
        assert len(stored) == 2


def test_records_are_per_validator_and_corruption_is_loud() -> None:
    store = MemoryStore()
    signer(store).sign(VoteKind.NOTARIZE, 1, A)
    other = ProtectedSigner(
        KEYS[1], SlashingProtection(store, KEYS[1].address), CHAIN_ID, GENESIS_HASH
    )
    other.sign(VoteKind.NOTARIZE, 1, B)
    with pytest.raises(ValueError, match="another key"):
        ProtectedSigner(KEYS[1], SlashingProtection(store, KEY.address), CHAIN_ID, GENESIS_HASH)
    for key in store.data:
        store.data[key] = b"\xff"
    fresh = signer(store)
    with pytest.raises(ValueError):
        fresh.sign(VoteKind.NOTARIZE, 1, A)


def test_record_encoding_round_trip() -> None:
    rec = SignedRecord(A, B, True, A)
    assert SignedRecord.decode(rec.encode()) == rec
    assert SignedRecord.decode(SignedRecord().encode()) == SignedRecord()
