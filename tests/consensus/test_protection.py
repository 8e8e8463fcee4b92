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
    s.sign(first[0], 0, 9, first[1])
    if allowed:
        s.sign(second[0], 0, 9, second[1])
    else:
        with pytest.raises(SlashingRefused, match="epoch 0 slot 9"):
            s.sign(second[0], 0, 9, second[1])
    s.sign(VoteKind.NOTARIZE, 0, 10, B)  # other slots are independent
    s.sign(second[0], 1, 9, second[1])  # and so are other epochs' rounds of the same slot


def test_refusal_happens_before_anything_is_signed() -> None:
    store = MemoryStore()
    s = signer(store)
    s.sign(VoteKind.NOTARIZE, 0, 3, A)
    snapshot = dict(store.data)
    with pytest.raises(SlashingRefused):
        s.sign(VoteKind.NOTARIZE, 0, 3, B)
    assert store.data == snapshot


def test_record_survives_restart_in_rocksdb(tmp_path: Path) -> None:
    path = tmp_path / "node-db"
    with Database.open(path) as db:
        s = signer(DatabaseStore(db))
        s.sign(VoteKind.NOTARIZE, 0, 5, A)
        s.sign(VoteKind.FINALIZE, 0, 5, A)
        s.sign(VoteKind.NULLIFY, 0, 6, ZERO_HASH)
    with Database.open(path) as db:  # a restarted process: fresh caches, same files
        s = signer(DatabaseStore(db))
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.NOTARIZE, 0, 5, B)
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.NULLIFY, 0, 5, ZERO_HASH)
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.FINALIZE, 0, 6, A)
        assert s.sign(VoteKind.NOTARIZE, 0, 5, A).block_hash == A  # the same vote again is fine
        stored = [k for k, _ in db.iterate(Column.CONSENSUS, b"slashing-protection/")]
        assert len(stored) == 2
        assert s.protection.signed_mark == (0, 6)


def test_no_nullify_at_or_below_a_certified_round_and_marks_persist(tmp_path: Path) -> None:
    """Review H2: a certificate of round r proves the network moved past r, so a new NULLIFY
    at or below r could only contradict a FINALIZE our lost database held."""
    path = tmp_path / "node-db"
    with Database.open(path) as db:
        s = signer(DatabaseStore(db))
        s.protection.observe_certificate(2, 7)
        s.sign(VoteKind.NULLIFY, 2, 9, ZERO_HASH)  # above the mark: fine, and writes it
        for epoch, slot in ((2, 7), (2, 3), (1, 50)):
            with pytest.raises(SlashingRefused, match="certificate of round"):
                s.sign(VoteKind.NULLIFY, epoch, slot, ZERO_HASH)
        s.sign(VoteKind.NOTARIZE, 2, 7, A)  # other kinds follow the per-round table only
    with Database.open(path) as db:
        s = signer(DatabaseStore(db))
        assert (s.protection.signed_mark, s.protection.certified_mark) == ((2, 9), (2, 7))
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.NULLIFY, 2, 6, ZERO_HASH)
        assert s.sign(VoteKind.NULLIFY, 2, 9, ZERO_HASH).slot == 9  # the same vote again
        s.protection.raise_marks((1, 0), (1, 0))  # never lowers
        assert (s.protection.signed_mark, s.protection.certified_mark) == ((2, 9), (2, 7))


def test_records_are_per_validator_and_corruption_is_loud() -> None:
    store = MemoryStore()
    signer(store).sign(VoteKind.NOTARIZE, 0, 1, A)
    other = ProtectedSigner(
        KEYS[1], SlashingProtection(store, KEYS[1].address), CHAIN_ID, GENESIS_HASH
    )
    other.sign(VoteKind.NOTARIZE, 0, 1, B)
    with pytest.raises(ValueError, match="another key"):
        ProtectedSigner(KEYS[1], SlashingProtection(store, KEY.address), CHAIN_ID, GENESIS_HASH)
    for key in store.data:
        store.data[key] = b"\xff"
    with pytest.raises(ValueError):
        signer(store).sign(VoteKind.NOTARIZE, 0, 1, A)


def test_record_encoding_round_trip() -> None:
    rec = SignedRecord(A, B, True, A)
    assert SignedRecord.decode(rec.encode()) == rec
    assert SignedRecord.decode(SignedRecord().encode()) == SignedRecord()


def test_votes_learned_from_peers_are_recorded_durably(tmp_path: Path) -> None:
    """Review H2: a wiped validator takes back from peers the votes of its own they hold;
    afterwards anything contradicting them is refused, across a restart too."""
    path = tmp_path / "node-db"
    with Database.open(path) as db:
        s = signer(DatabaseStore(db))
        assert s.protection.learn(VoteKind.FINALIZE, 2, 7, A) is None
        assert s.protection.learn(VoteKind.PROPOSE, 2, 8, B) is None
        assert s.protection.signed_mark == (2, 8)
        assert s.protection.learn(VoteKind.FINALIZE, 2, 7, B) is not None  # a conflict: kept
    with Database.open(path) as db:
        s = signer(DatabaseStore(db))
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.NULLIFY, 2, 7, ZERO_HASH)
        with pytest.raises(SlashingRefused):
            s.sign(VoteKind.PROPOSE, 2, 8, A)
        assert s.sign(VoteKind.FINALIZE, 2, 7, A).block_hash == A
