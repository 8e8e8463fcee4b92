"""Mutation tests: each deliberate bug in the core must be caught (proof the tests can fail).

Every mutant is caught by a deterministic scenario (a budget of one run, independent of any
seed), and the quorum mutants also by the stateful machine within a derandomized budget.
Times on the development machine are in docs/consensus.md ("Tests").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, run_state_machine_as_test

from moderntensor.chain.votes import ZERO_HASH, VoteKind, sign_vote
from moderntensor.consensus import Certificate, Proposal, SimplexCore, ValidatorSet
from moderntensor.consensus._quorum import _override_quorum_for_tests

from .harness import (
    CHAIN_ID,
    EPOCH_LENGTH,
    GENESIS_HASH,
    KEYS,
    OUTSIDERS,
    Cluster,
)
from .test_stateful import MUTANT_SETTINGS, ConsensusMachine


@contextmanager
def mutant(name: str, replacement: Callable[..., object]) -> Iterator[None]:
    original = getattr(SimplexCore, name)
    setattr(SimplexCore, name, replacement)
    try:
        yield
    finally:
        setattr(SimplexCore, name, original)


def parent_rule_true(self: SimplexCore, proposal: Proposal) -> bool:
    return True


def parent_rule_without_nullifications(self: SimplexCore, proposal: Proposal) -> bool:
    parent_slot = self._notarized.get(proposal.parent_hash)
    return parent_slot is not None and self.finalized.slot <= parent_slot < proposal.slot


def no_membership_check(self: SimplexCore, vset: ValidatorSet, vote: object) -> None:
    return None


def set_of_previous_epoch(self: SimplexCore, epoch: int) -> ValidatorSet | None:
    return self._sets.get(epoch - 1)


def set_of_next_epoch(self: SimplexCore, epoch: int) -> ValidatorSet | None:
    return self._sets.get(epoch + 1)


# ----------------------------------------------------------------------- scenarios


def skip_a_notarized_slot() -> None:
    """Review M6: a byzantine leader skips a notarized, not yet final block whose FINALIZE
    votes are still in flight. One honest node finalizes that block; the others must refuse
    the skipping block (its slot in between is not nullified), or two blocks finalize at one
    height."""
    stakes = [10, 10, 10, 10]
    cluster = Cluster(stakes, set())
    core = next(iter(cluster.nodes.values()))
    leaders = [core.leader(s) for s in (1, 2, 3)]
    byz = next(i for i, k in enumerate(KEYS[:4]) if k.address == leaders[2])
    assert byz not in [i for i, k in enumerate(KEYS[:4]) if k.address in leaders[:2]]
    cluster = Cluster(stakes, {byz})
    honest = sorted(cluster.nodes)
    cluster.advance(1_000)
    cluster.flush()  # slot 1: built, notarized, finalized everywhere
    cluster.advance(1_000)  # slot 2: its leader builds B2

    def in_flight(dest: bytes, message: object) -> bool:  # FINALIZE reaches one node only
        return getattr(message, "kind", None) is VoteKind.FINALIZE and dest != honest[0]

    held = [p for p in cluster.flush_holding(in_flight) if not isinstance(p[1], Certificate)]
    assert [c.view for c in cluster.nodes.values()] == [3, 3, 3]
    b1 = cluster.finalized[honest[1]][-1]
    z = cluster.byzantine_proposal(cluster.byzantine[0], 3, b1.hash, b"z", honest[1:])
    for kind in (VoteKind.NOTARIZE, VoteKind.FINALIZE):
        cluster.byzantine_vote(cluster.byzantine[0], kind, 0, 3, z.block_hash, honest)
    cluster.flush()
    cluster.pending.extend(held)
    cluster.flush()
    cluster.check_agreement()


def outsider_vote_counts() -> None:
    """A key outside the set signs FINALIZE for the block everyone is about to finalize; it
    must never end up in a certificate (every Finalized carries a real quorum)."""
    cluster = Cluster([10, 10, 10, 10], set())
    cluster.advance(1_000)
    while cluster.pending or cluster.verdicts:
        if cluster.verdicts:
            cluster.run_verdict(0)
            continue
        message = cluster.pending[0][1]
        if getattr(message, "kind", None) is VoteKind.FINALIZE:
            break
        cluster.deliver(0)
    block = next(iter(cluster.nodes.values())).notarized()
    h = next(h for h, s in block.items() if s == 1)
    vote = sign_vote(OUTSIDERS[0], CHAIN_ID, GENESIS_HASH, VoteKind.FINALIZE, 0, 1, h)
    cluster.oracle.note_signed(vote, honest=False)
    for vid in sorted(cluster.nodes):
        cluster.pending.insert(0, (vid, vote, None))
    cluster.flush()
    assert all(len(refs) == 2 for refs in cluster.finalized.values())


def sets_change_across_epochs() -> None:
    """Validators leave and join at epoch boundaries; six epochs finalize, and every
    certificate is a real quorum of its own epoch's set (the oracle's own table)."""
    cluster = Cluster([10, 10, 10, 10, 10, 10], set(), members=range(4))
    ops = [b"leave:0", b"join:4", b"leave:1", b"join:5", b"", b""]
    for _ in range(80):
        core = next(iter(cluster.nodes.values()))
        if core.epoch >= 6:
            break
        cluster.next_op = ops[min(core.epoch, len(ops) - 1)]
        cluster.advance(1_000)
        cluster.flush()
    assert all(c.epoch >= 6 for c in cluster.nodes.values()), "the chain stopped"
    tables = [set(cluster.oracle.stakes[e]) for e in range(6)]
    assert len({frozenset(t) for t in tables}) >= 3  # the set really changed
    cluster.check_all()


SCENARIOS = {
    "skip a notarized slot": skip_a_notarized_slot,
    "outsider vote": outsider_vote_counts,
    "sets change": sets_change_across_epochs,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenarios_pass_on_the_real_core(scenario: str) -> None:
    SCENARIOS[scenario]()


@pytest.mark.parametrize(
    ("name", "replacement", "scenario"),
    [
        ("_extends_notarized", parent_rule_true, "skip a notarized slot"),
        ("_extends_notarized", parent_rule_without_nullifications, "skip a notarized slot"),
        ("_check_member", no_membership_check, "outsider vote"),
        ("epoch_set", set_of_previous_epoch, "sets change"),
        ("epoch_set", set_of_next_epoch, "sets change"),
    ],
    ids=["parent-rule-true", "no-nullification-check", "no-membership", "set-e-1", "set-e+1"],
)
def test_mutant_is_caught(name: str, replacement: Callable[..., object], scenario: str) -> None:
    with mutant(name, replacement), pytest.raises(AssertionError):
        SCENARIOS[scenario]()


def test_mutant_half_quorum_is_caught() -> None:
    """With the quorum lowered to 1/2 the stateful machine must find a violation.
    Derandomized, so the search is the same on every run."""
    with _override_quorum_for_tests(1, 2), pytest.raises(AssertionError):
        run_state_machine_as_test(ConsensusMachine, settings=MUTANT_SETTINGS)


class AgreementOnlyMachine(ConsensusMachine):
    """The machine without the direct quorum checks (finality oracle, forged certificates,
    the certificate-conflict invariant): only agreement, evidence and equivocation remain."""

    @initialize(data=st.data())
    def setup(self, data: st.DataObject) -> None:
        super().setup(data)
        self.cluster.check_finality_quorum = False

    def _forge(self, *args: object) -> None:  # type: ignore[override]
        return None

    def certificates_never_conflict(self) -> None:  # type: ignore[override]
        return None


def test_mutant_half_quorum_breaks_agreement() -> None:
    """The 1/2-quorum mutant lets a byzantine leader split honest validators into two
    finalized forks: the agreement invariant alone catches it."""
    with (
        _override_quorum_for_tests(1, 2),
        pytest.raises(AssertionError, match=r"finalized at height|forks from|equivocat"),
    ):
        run_state_machine_as_test(AgreementOnlyMachine, settings=MUTANT_SETTINGS)


assert EPOCH_LENGTH == 4 and ZERO_HASH  # the scenarios assume the harness's epoch of 4
