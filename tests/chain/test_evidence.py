"""Evidence in blocks on real RocksDB: one slash per jail, and a pre-filter that keeps one bad
item from costing the good ones their place (review M4)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from moderntensor.chain.chain import Chain, ExecutedBlock, InvalidBlock
from moderntensor.chain.constants import MAX_BLOCK_EVIDENCE
from moderntensor.chain.staking import get_total, get_validator, is_evidence_used
from moderntensor.chain.votes import (
    ZERO_HASH,
    Evidence,
    SignedVote,
    VoteKind,
    decode_evidence,
    encode_evidence,
    evidence_id,
    sign_vote,
)
from moderntensor.crypto import PrivateKey, keccak256
from moderntensor.state.store import Database
from tests.factories import VALIDATOR_CONSENSUS, key, make_genesis

GENESIS = make_genesis(users=1, extra_validators=2)
OFFENDER, OWNER = key(3000), key(2000).address  # consensus key and owner of validator v1
OTHER, OTHER_OWNER = key(3001), key(2001).address  # validator v2
OUTSIDER = key(77)  # never registered
STAKE = GENESIS.validators[1].stake
CUT = STAKE * GENESIS.consensus.slash_fraction_bps // 10_000


@pytest.fixture
def chains(tmp_path: Path) -> Iterator[tuple[Chain, Chain]]:
    """A producer and a follower that re-executes every block."""
    dbs = [Database.open(tmp_path / "a"), Database.open(tmp_path / "b")]
    yield Chain(dbs[0], GENESIS), Chain(dbs[1], GENESIS)
    for db in dbs:
        db.close()


def vote(
    chain: Chain,
    signer: PrivateKey,
    kind: VoteKind,
    slot: int,
    block_hash: bytes = b"\x01" * 32,
    *,
    chain_id: int | None = None,
    genesis_hash: bytes | None = None,
) -> SignedVote:
    """A really signed vote of epoch 0 (every vote the evidence tests need)."""
    return sign_vote(
        signer,
        chain.params.chain_id if chain_id is None else chain_id,
        chain.genesis_hash if genesis_hash is None else genesis_hash,
        kind,
        0,
        slot,
        ZERO_HASH if kind is VoteKind.NULLIFY else block_hash,
    )


def pair(first: SignedVote, second: SignedVote) -> bytes:
    return encode_evidence(Evidence(first, second))


def double_notarize(chain: Chain, signer: PrivateKey, slot: int, a: int = 1, b: int = 2) -> bytes:
    return pair(
        vote(chain, signer, VoteKind.NOTARIZE, slot, bytes([a]) * 32),
        vote(chain, signer, VoteKind.NOTARIZE, slot, bytes([b]) * 32),
    )


def nullify_and_finalize(chain: Chain, signer: PrivateKey, slot: int) -> bytes:
    return pair(
        vote(chain, signer, VoteKind.NULLIFY, slot), vote(chain, signer, VoteKind.FINALIZE, slot)
    )


def double_propose(chain: Chain, signer: PrivateKey, slot: int) -> bytes:
    return pair(
        vote(chain, signer, VoteKind.PROPOSE, slot, b"\x0a" * 32),
        vote(chain, signer, VoteKind.PROPOSE, slot, b"\x0b" * 32),
    )


def swapped(raw: bytes) -> bytes:
    """Another proof of the same offence: the two messages in the other order."""
    item = decode_evidence(raw)
    return encode_evidence(Evidence(item.second, item.first))


def eid(raw: bytes) -> bytes:
    return evidence_id(decode_evidence(raw))


def produce(chain: Chain, slot: int, evidence: list[bytes]) -> ExecutedBlock:
    executed = chain.build_block(chain.head, slot, VALIDATOR_CONSENSUS, [], evidence)
    chain.commit(executed)
    return executed


def stake_and_slashed(chain: Chain, owner: bytes = OWNER) -> tuple[int, bool, int]:
    state = chain.state_at(chain.head)
    record = get_validator(state, owner)
    assert record is not None
    return record.stake, record.jailed, get_total(state, "slashed")


def test_a_jailed_validator_is_slashed_once_however_many_offences(
    chains: tuple[Chain, Chain], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = chains
    notarized = double_notarize(a, OFFENDER, 5)
    nullified = nullify_and_finalize(a, OFFENDER, 6)
    assert eid(notarized) != eid(nullified)  # two different offences
    first = produce(a, 1, [notarized, nullified])
    assert first.block.evidence == (notarized, nullified)
    b.import_block(first.block)  # the follower agrees, root for root
    assert stake_and_slashed(b) == (STAKE - CUT, True, CUT)  # one cut, not two
    state = b.state_at(b.head)
    assert is_evidence_used(state, eid(notarized)) and is_evidence_used(state, eid(nullified))

    proposed = double_propose(a, OFFENDER, 7)  # a third offence, in a later block
    assert a.select_evidence(a.head, [proposed], MAX_BLOCK_EVIDENCE) == ((proposed,), ())
    with caplog.at_level(logging.INFO, logger="moderntensor.chain"):
        second = produce(a, 2, [proposed])
    assert "recorded, not slashed again" in caplog.text
    b.import_block(second.block)
    assert stake_and_slashed(b) == (STAKE - CUT, True, CUT)  # still jailed: nothing more
    assert is_evidence_used(b.state_at(b.head), eid(proposed))
    # every proof of these offences is now used on this fork, in any order
    offered = [proposed, swapped(notarized), nullified]
    assert a.select_evidence(a.head, offered, MAX_BLOCK_EVIDENCE) == ((), tuple(offered))


def mixed_evidence(chain: Chain, slot: int = 1) -> tuple[bytes, list[bytes]]:
    """One valid new offence of validator v1 among 64 items no block can use.

    Commits one block at ``slot`` that slashes validator v2, so that its offence is already
    used. The valid item comes after garbage and forgeries of its own offence, and before
    other valid proofs of that offence (which are then duplicates).
    """
    used = double_notarize(chain, OTHER, 3)
    produce(chain, slot, [used])
    valid = double_notarize(chain, OFFENDER, 5)
    forged = attrs.evolve(vote(chain, OUTSIDER, VoteKind.NOTARIZE, 5), signer=OFFENDER.address)
    before = [
        b"",
        b"\x80",
        b"\xc0",
        keccak256(b"garbage") * 5,
        b"\xff" * 600,  # over the size cap
        valid[:-1],  # truncated
        valid + b"\x00",  # trailing byte
        pair(forged, vote(chain, OFFENDER, VoteKind.NOTARIZE, 5, b"\x09" * 32)),  # same offence
        pair(  # same offence, signed for another chain
            vote(chain, OFFENDER, VoteKind.NOTARIZE, 5, b"\x07" * 32, chain_id=99),
            vote(chain, OFFENDER, VoteKind.NOTARIZE, 5, b"\x08" * 32, chain_id=99),
        ),
        pair(  # same offence, signed for another genesis
            vote(chain, OFFENDER, VoteKind.NOTARIZE, 5, b"\x07" * 32, genesis_hash=b"\x42" * 32),
            vote(chain, OFFENDER, VoteKind.NOTARIZE, 5, b"\x08" * 32, genesis_hash=b"\x42" * 32),
        ),
        pair(
            vote(chain, OFFENDER, VoteKind.NOTARIZE, 5), vote(chain, OFFENDER, VoteKind.NOTARIZE, 5)
        ),
        pair(
            vote(chain, OFFENDER, VoteKind.NOTARIZE, 5), vote(chain, OFFENDER, VoteKind.NOTARIZE, 6)
        ),
        pair(vote(chain, OFFENDER, VoteKind.NOTARIZE, 5), vote(chain, OTHER, VoteKind.NOTARIZE, 5)),
        double_notarize(chain, OUTSIDER, 5),  # signed by a key that is no validator's
        double_propose(chain, OUTSIDER, 5),
        used,  # already slashed on this fork
        swapped(used),
        double_notarize(chain, OTHER, 3, 4, 5),  # the used offence, another conflicting pair
    ]
    repeats = [valid, swapped(valid), double_notarize(chain, OFFENDER, 5, 3, 4)]
    after = [repeats[i % len(repeats)] for i in range(64 - len(before))]
    return valid, [*before, valid, *after]


def test_one_valid_item_among_64_unusable_ones_is_included_and_slashes_once(
    chains: tuple[Chain, Chain],
) -> None:
    a, b = chains
    valid, items = mixed_evidence(a)
    b.import_block(a.chaindb.get_block(a.head.hash))  # type: ignore[arg-type]
    assert len(items) == 65
    slashed_before = stake_and_slashed(a)[2]
    usable, dropped = a.select_evidence(a.head, items, MAX_BLOCK_EVIDENCE)
    assert usable == (valid,)
    # every other item, in order; copies of the valid one are not dropped (it is included)
    assert dropped == tuple(raw for raw in items if raw != valid) and len(dropped) > 40
    executed = produce(a, 2, list(usable))
    assert executed.block.evidence == (valid,)
    b.import_block(executed.block)
    assert stake_and_slashed(b) == (STAKE - CUT, True, slashed_before + CUT)
    # the whole mixed batch, as it was offered, would make the block invalid
    with pytest.raises(InvalidBlock, match=r"evidence\[0\]"):
        a.build_block(a.head, 3, VALIDATOR_CONSENSUS, [], items[:MAX_BLOCK_EVIDENCE])


def test_select_evidence_stops_at_the_limit_and_keeps_the_rest(
    chains: tuple[Chain, Chain],
) -> None:
    a, _ = chains
    one, two = double_notarize(a, OFFENDER, 5), double_notarize(a, OTHER, 5)
    assert a.select_evidence(a.head, [b"\x80", one, two], 1) == ((one,), (b"\x80",))
    assert a.select_evidence(a.head, [one, two], 0) == ((), ())
    assert a.select_evidence(a.head, [one, two], MAX_BLOCK_EVIDENCE) == ((one, two), ())
    for bad in (-1, MAX_BLOCK_EVIDENCE + 1):
        with pytest.raises(ValueError, match=f"limit {bad} is not in 0..{MAX_BLOCK_EVIDENCE}"):
            a.select_evidence(a.head, [one], bad)
    # a pure read: the parent's state and the chain's head are untouched
    head = a.head
    a.select_evidence(head, [one, two], MAX_BLOCK_EVIDENCE)
    assert a.head == head and stake_and_slashed(a) == (STAKE, False, 0)


def test_select_evidence_reads_a_pending_parent(chains: tuple[Chain, Chain]) -> None:
    """The producer builds on notarized blocks that are executed but not committed."""
    a, _ = chains
    notarized = double_notarize(a, OFFENDER, 5)
    pending = a.build_block(a.head, 1, VALIDATOR_CONSENSUS, [], [notarized])
    parent = pending.block.header
    again = nullify_and_finalize(a, OFFENDER, 6)
    assert a.select_evidence(parent, [notarized, again], MAX_BLOCK_EVIDENCE) == (
        (again,),
        (notarized,),
    )


def test_evidence_older_than_evidence_epochs_is_dropped_and_invalid_in_a_block(
    chains: tuple[Chain, Chain],
) -> None:
    """Review H2/M5: an offence of epoch e may be included up to epoch e + evidence_epochs
    and never after, so a lost database is a bounded liability and unbonded stake is safe."""
    a, b = chains
    old = double_notarize(a, OFFENDER, 3)  # epoch 0
    limit = a.params.evidence_epochs  # 1 in the test genesis; epochs of 4 blocks
    slot = 1
    while a.head.number + 1 <= (limit + 1) * a.params.epoch_length:  # through epoch 1
        usable, dropped = a.select_evidence(a.head, [old], MAX_BLOCK_EVIDENCE)
        assert (usable, dropped) == ((old,), ())  # still in time
        b.import_block(produce(a, slot, []).block)
        slot += 1
    usable, dropped = a.select_evidence(a.head, [old], MAX_BLOCK_EVIDENCE)
    assert (usable, dropped) == ((), (old,))  # the block after is of epoch 2: too old
    with pytest.raises(InvalidBlock, match="older than evidence_epochs"):
        a.draft_block(a.head, slot, VALIDATOR_CONSENSUS.address, [], (old,))
