"""Targeted behaviours of the voting core (the stateful tests cover the combinations)."""

from __future__ import annotations

import random

import attrs
import pytest

from moderntensor.chain.blocks import Block
from moderntensor.chain.votes import ZERO_HASH, Offence, VoteKind, compute_offence, sign_vote
from moderntensor.consensus import (
    BlockRef,
    Broadcast,
    BuildBlock,
    ConsensusLocalError,
    CoreFailed,
    EvidenceFound,
    ExecuteBlock,
    FetchBlock,
    Finalized,
    InvalidMessage,
    MemoryStore,
    Proposal,
    SetTimer,
    SignatureVerifier,
    SimplexCore,
    SlashingProtection,
    Verdict,
    build_certificate,
    verify_evidence,
)

from .harness import (
    CHAIN_ID,
    CONFIG,
    GENESIS,
    GENESIS_HASH,
    KEYS,
    OUTSIDERS,
    Cluster,
    make_proposal,
)


def cluster4() -> Cluster:
    return Cluster([10, 10, 10, 10], set())


def leader_key(cluster: Cluster, slot: int):  # type: ignore[no-untyped-def]
    core = next(iter(cluster.nodes.values()))
    return next(k for k in cluster.keys if k.address == core.leader(slot))


def follower(cluster: Cluster, slot: int) -> SimplexCore:
    core = next(iter(cluster.nodes.values()))
    return next(c for vid, c in cluster.nodes.items() if vid != core.leader(slot))


def test_start_arms_the_timer_and_the_leader_waits_for_its_slot() -> None:
    cluster = Cluster([10, 10, 10, 10], set())
    core = cluster.nodes[leader_key(cluster, 1).address]
    fresh = SimplexCore(
        CONFIG, cluster.sets.values(), GENESIS, core._signer, cluster.verifier, synced=True
    )
    assert fresh.start(500) == [SetTimer(1_000)]  # slot 1 starts at 1,000 ms
    actions = fresh.on_tick(1_000)
    assert BuildBlock(0, 1, GENESIS) in actions
    assert SetTimer(3_000) in actions  # the timeout: slot start + 2,000 ms


def test_a_view_times_out_after_it_is_entered_not_after_its_slot_started() -> None:
    """A node coming back late enters an old view and waits a full timeout in it (review C1):
    it does not nullify every missed slot at once."""
    cluster = cluster4()
    core = follower(cluster, 1)
    fresh = SimplexCore(
        CONFIG, cluster.sets.values(), GENESIS, core._signer, cluster.verifier, synced=True
    )
    assert fresh.start(60_000) == [SetTimer(62_000)]
    assert fresh.on_tick(61_999) == []


def test_proposals_from_non_leaders_or_with_forged_signatures_are_rejected() -> None:
    cluster = cluster4()
    core = follower(cluster, 1)
    not_leader = next(k for k in cluster.keys if k.address != core.leader(1))
    with pytest.raises(InvalidMessage, match="not the leader"):
        core.on_proposal(make_proposal(not_leader, 1, GENESIS_HASH, 1), 1_000)
    real = make_proposal(leader_key(cluster, 1), 1, GENESIS_HASH, 1)
    forged = make_proposal(OUTSIDERS[0], 1, GENESIS_HASH, 1)
    # the outsider's signature on a header that names the real leader as proposer
    header = attrs.evolve(
        forged.header, proposer=real.proposer, proposer_signature=forged.header.proposer_signature
    )
    with pytest.raises(InvalidMessage, match="signature"):
        core.on_proposal(Proposal(Block(header)), 1_000)
    assert core.on_proposal(real, 1_000) == [ExecuteBlock(real)]


def test_votes_from_outsiders_or_forged_are_rejected_and_unknown_epochs_ignored() -> None:
    cluster = cluster4()
    core = next(iter(cluster.nodes.values()))
    outsider = sign_vote(OUTSIDERS[0], CHAIN_ID, GENESIS_HASH, VoteKind.NULLIFY, 0, 1, ZERO_HASH)
    with pytest.raises(InvalidMessage, match="not in the set"):
        core.on_vote(outsider, 0)
    other = sign_vote(KEYS[0], CHAIN_ID + 1, GENESIS_HASH, VoteKind.NULLIFY, 0, 1, ZERO_HASH)
    with pytest.raises(InvalidMessage, match="signature"):
        core.on_vote(other, 0)
    far = sign_vote(KEYS[0], CHAIN_ID, GENESIS_HASH, VoteKind.NULLIFY, 64, 1, ZERO_HASH)
    assert core.on_vote(far, 0) == []  # epoch 64 has no known set
    ahead = sign_vote(KEYS[0], CHAIN_ID, GENESIS_HASH, VoteKind.NULLIFY, 0, 1 + 33, ZERO_HASH)
    assert core.on_vote(ahead, 0) == []  # beyond max_future_slots: no state held


def test_double_proposal_becomes_evidence_and_only_the_first_is_executed() -> None:
    cluster = cluster4()
    core = follower(cluster, 1)
    leader = leader_key(cluster, 1)
    x = make_proposal(leader, 1, GENESIS_HASH, 1, b"x")
    y = make_proposal(leader, 1, GENESIS_HASH, 1, b"y")
    assert core.on_proposal(x, 1_000) == [ExecuteBlock(x)]
    (found,) = core.on_proposal(y, 1_000)
    assert isinstance(found, EvidenceFound)
    assert compute_offence(found.evidence.first, found.evidence.second) is Offence.DOUBLE_PROPOSAL
    assert verify_evidence(found.evidence, CHAIN_ID, GENESIS_HASH) == leader.address
    assert core.on_proposal(y, 1_000) == []  # reported once


def test_equivocation_inside_a_certificate_is_detected() -> None:
    cluster = cluster4()
    core = next(iter(cluster.nodes.values()))
    bad = KEYS[3]
    core.on_vote(sign_vote(bad, CHAIN_ID, GENESIS_HASH, VoteKind.NULLIFY, 0, 1, ZERO_HASH), 0)
    h = make_proposal(leader_key(cluster, 1), 1, GENESIS_HASH, 1).block_hash
    votes = [sign_vote(k, CHAIN_ID, GENESIS_HASH, VoteKind.FINALIZE, 0, 1, h) for k in KEYS[1:4]]
    actions = core.on_certificate(build_certificate(VoteKind.FINALIZE, 0, 1, h, votes), 0)
    evidence = [a.evidence for a in actions if isinstance(a, EvidenceFound)]
    assert [e.first.signer for e in evidence] == [bad.address]
    assert any(isinstance(a, Finalized) for a in actions)


def test_observer_follows_finality_and_prunes() -> None:
    cluster = cluster4()
    rng = random.Random(3)
    observer = SimplexCore(CONFIG, cluster.sets.values(), GENESIS, None, cluster.verifier)
    seen: list[Finalized] = []
    for _ in range(6):
        cluster.advance(1_000)
        cluster.flush(rng)
    # feed the observer only the finalization certificates, newest last: it learns each block
    # but cannot link them (it never saw the proposals), and says so
    node = next(iter(cluster.nodes.values()))
    chain = cluster.finalized[node.validator_id][1:]  # type: ignore[index]
    fetches: list[FetchBlock] = []
    for ref in chain[:3]:
        actions = observer.on_certificate(make_finalization(cluster, ref), cluster.now)
        seen += [a for a in actions if isinstance(a, Finalized)]
        fetches += [a for a in actions if isinstance(a, FetchBlock)]
    assert [f.block for f in seen] == chain[:3]
    assert [f.complete for f in seen] == [False, False, False]
    assert [f.block_hash for f in fetches] == [ref.hash for ref in chain[:3]]  # review M3
    assert observer.finalized == chain[2]
    assert observer.view == chain[2].slot + 1
    assert observer.notarized() == {chain[2].hash: chain[2].slot}
    assert observer.certificate(VoteKind.FINALIZE, chain[2].slot) == []  # pruned


def make_finalization(cluster: Cluster, ref: BlockRef):  # type: ignore[no-untyped-def]
    votes = [
        sign_vote(k, CHAIN_ID, GENESIS_HASH, VoteKind.FINALIZE, 0, ref.slot, ref.hash)
        for k in cluster.keys
    ]
    return build_certificate(VoteKind.FINALIZE, 0, ref.slot, ref.hash, votes)


def test_finalized_lists_known_ancestors_across_nullified_slots() -> None:
    cluster = cluster4()
    rng = random.Random(5)
    for _ in range(8):
        cluster.advance(1_000)
        cluster.flush(rng)
    for refs in cluster.finalized.values():
        slots = [r.slot for r in refs]
        assert slots == sorted(set(slots))
        assert len(refs) >= 8


def test_restarted_validator_resends_its_vote_and_never_votes_twice() -> None:
    """A validator voted for X, crashed and restarted; the leader (byzantine) now shows it Y.
    The restarted core knows from the durable record what it signed (review L3): it sends
    the same NOTARIZE(X) again at start and never asks to execute Y, let alone vote for it."""
    cluster = cluster4()
    core = follower(cluster, 1)
    vid = core.validator_id
    assert vid is not None
    leader = leader_key(cluster, 1)
    x = make_proposal(leader, 1, GENESIS_HASH, 1, b"x")
    core.on_proposal(x, 1_000)
    actions = core.on_verdict(x.block_hash, Verdict.VALID, 1_000)
    (first,) = [a.message for a in actions if isinstance(a, Broadcast)]
    cluster.pending.clear()
    cluster.boot(next(k for k in cluster.keys if k.address == vid))
    resent = [m for to, m, origin in cluster.pending if origin == vid]
    assert first in resent  # the identical signed vote (RFC 6979)
    restarted = cluster.nodes[vid]
    y = make_proposal(leader, 1, GENESIS_HASH, 1, b"y")
    assert restarted.on_proposal(y, 1_000) == []
    assert not cluster.refused


def test_missing_parent_is_fetched_then_voted_on() -> None:
    """Review M3: MISSING is not a final verdict; the core asks for the parent and votes
    once the shell reports VALID."""
    cluster = cluster4()
    core = follower(cluster, 1)
    x = make_proposal(leader_key(cluster, 1), 1, GENESIS_HASH, 1)
    assert core.on_proposal(x, 1_000) == [ExecuteBlock(x)]
    (fetch,) = core.on_verdict(x.block_hash, Verdict.MISSING, 1_000)
    assert fetch == FetchBlock(GENESIS_HASH, "parent of slot 1")
    actions = core.on_verdict(x.block_hash, Verdict.VALID, 1_100)
    votes = [a.message for a in actions if isinstance(a, Broadcast)]
    assert [(v.kind, v.block_hash) for v in votes] == [(VoteKind.NOTARIZE, x.block_hash)]


def test_invalid_block_or_the_leaders_own_nullify_nullifies_at_once() -> None:
    """Review L4: no need to wait for the timeout once the view's block cannot come."""
    cluster = cluster4()
    core = follower(cluster, 1)
    x = make_proposal(leader_key(cluster, 1), 1, GENESIS_HASH, 1)
    core.on_proposal(x, 1_000)
    actions = core.on_verdict(x.block_hash, Verdict.INVALID, 1_000)
    assert [a.message.kind for a in actions if isinstance(a, Broadcast)] == [VoteKind.NULLIFY]
    other = follower(cluster, 1)
    other = next(c for c in cluster.nodes.values() if c is not core and c.view == 1
                 and c.validator_id != core.leader(1))  # fmt: skip
    own = sign_vote(leader_key(cluster, 1), CHAIN_ID, GENESIS_HASH, VoteKind.NULLIFY, 0, 1,
                    ZERO_HASH)  # fmt: skip
    actions = other.on_vote(own, 1_000)
    assert [a.message.kind for a in actions if isinstance(a, Broadcast)] == [VoteKind.NULLIFY]


def test_sign_proposal_needs_a_build_request() -> None:
    cluster = cluster4()
    core = next(iter(cluster.nodes.values()))
    with pytest.raises(ConsensusLocalError, match="no block was requested"):
        core.sign_proposal(99, b"\x01" * 32)


def test_core_refuses_input_after_an_unexpected_error() -> None:
    cluster = cluster4()
    core = next(iter(cluster.nodes.values()))

    class Boom(RuntimeError):
        pass

    class Exploding(SignatureVerifier):
        def is_authentic(self, vote: object) -> bool:
            raise Boom("bug")

    core._verifier = Exploding(CHAIN_ID, GENESIS_HASH)
    vote = sign_vote(KEYS[0], CHAIN_ID, GENESIS_HASH, VoteKind.NULLIFY, 0, 1, ZERO_HASH)
    with pytest.raises(Boom):
        core.on_vote(vote, 0)
    with pytest.raises(CoreFailed, match="Boom"):
        core.on_tick(0)


def test_a_restarted_core_resends_the_stored_finalization_on_its_first_timeout() -> None:
    """Review M1 after a restart: the finalization certificate the shell stored with the head
    block is re-sent from the first timeout on, so a peer that missed it can follow."""
    cluster = cluster4()
    rng = random.Random(9)
    for _ in range(2):
        cluster.advance(1_000)
        cluster.flush(rng)
    node = next(iter(cluster.nodes.values()))
    head = node.finalized
    (cert,) = [c for k, c in cluster.certificates.items() if k[0] == 4 and k[2] == head.slot]
    fresh = SimplexCore(
        CONFIG, cluster.sets.values(), head, node._signer, cluster.verifier,
        finalized_height=cluster.oracle.height[head.hash], synced=True, finalization=cert,
    )  # fmt: skip
    fresh.start(cluster.now)
    deadline = fresh.wake_at(cluster.now)
    assert deadline is not None
    resent = [a.message for a in fresh.on_tick(deadline) if isinstance(a, Broadcast)]
    assert cert in resent


def test_a_wiped_leader_takes_back_its_proposal_from_peers_and_never_builds_another() -> None:
    """The stateful machine's find: a leader proposed X, its data dir was wiped, and it came
    back in the same slot. Its peers' status returns its PROPOSE; from then on its record
    refuses a second block for that slot."""
    cluster = cluster4()
    leader = leader_key(cluster, 1)
    cluster.advance(1_000)  # the leader builds X and broadcasts it
    first = [m for _, m, o in cluster.pending if o == leader.address and isinstance(m, Proposal)]
    assert first
    for vid in sorted(cluster.nodes):
        if vid != leader.address:
            cluster.deliver_to(vid, first[0])
    cluster.pending.clear()
    cluster.stores[leader.address] = MemoryStore()  # wiped
    cluster.next_op = b"leave:3"  # so a block it builds now differs from X
    cluster.boot(leader, final=GENESIS)
    record = SlashingProtection(cluster.stores[leader.address], leader.address).record_of(0, 1)
    assert record.propose == first[0].seal_hash  # learned from the peers' status
    core = cluster.nodes[leader.address]
    cluster.advance(1_000)
    cluster.flush()
    cluster.check_no_honest_equivocation()
    assert core.synced
