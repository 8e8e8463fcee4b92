"""The simulator's invalid-parent proposer and doppelganger, and the parent-rule mutant that
the Hypothesis-driven search must find (real nodes on simulated links, virtual time)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from moderntensor.chain.blocks import Block
from moderntensor.chain.votes import SignedVote, VoteKind
from moderntensor.consensus import Proposal, SimplexCore
from moderntensor.crypto import PrivateKey
from moderntensor.sim import SimConfig
from moderntensor.sim.__main__ import _load
from moderntensor.sim._byzantine import _Signer
from moderntensor.sim._checks import Checker
from moderntensor.sim._cluster import SimKeys
from moderntensor.sim._founded import Foundation
from moderntensor.sim._report import judge
from moderntensor.sim._run import run_simulation

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def test_an_invalid_parent_proposer_is_never_notarized_and_finality_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each time it leads, node 3 shows a block built on its grandparent (skipping the
    notarized slot before, which nothing nullifies). Spies on the actor and the checker
    (both called through) show the blocks were made, no honest node notarized one, none
    became final, and the other slots went on finalizing."""
    skipping: set[bytes] = set()
    honest_notarized: set[bytes] = set()
    final: set[bytes] = set()
    build, check, on_final = _Signer.skipping_block, Foundation._check, Checker.on_final

    def spy_build(self: _Signer, proposal: Proposal, chain: object) -> Proposal | None:
        made = build(self, proposal, chain)  # type: ignore[arg-type]
        if made is not None:
            assert made.parent_hash != proposal.parent_hash and made.slot == proposal.slot
            skipping.add(made.block_hash)
        return made

    def spy_check(self: Foundation, vote: SignedVote, where: str) -> None:
        honest_notarized.add(vote.block_hash)
        check(self, vote, where)

    def spy_final(self: Checker, node: int, height: int, block: Block) -> None:
        final.add(block.hash)
        on_final(self, node, height, block)

    monkeypatch.setattr(_Signer, "skipping_block", spy_build)
    monkeypatch.setattr(Foundation, "_check", spy_check)
    monkeypatch.setattr(Checker, "on_final", spy_final)
    config = SimConfig(validators=4, byzantine=1, behaviours=("invalid-parent",), slots=16,
                       seed=1)  # fmt: skip
    result = run_simulation(config, tmp_path / "a")
    assert result.violation is None and judge(config, result) == []
    assert result.notarizations > 0
    assert run_simulation(config, tmp_path / "b").digest == result.digest  # deterministic
    assert len(skipping) >= 2  # it led and built such a block at least twice
    assert honest_notarized and not skipping & honest_notarized
    assert not skipping & final
    assert result.finalized >= 8  # its own slots are nullified, the rest finalize


def test_a_doppelganger_is_slashed_exactly_once_and_no_honest_validator(tmp_path: Path) -> None:
    """Validator 3's key runs on node 3 and on a twin (node 4: own data directory, slashing
    protection and pool). When it leads, the two sign different blocks of one slot; honest
    nodes report it, and it loses exactly one slash fraction; nobody else loses any."""
    config = SimConfig(validators=4, byzantine=1, behaviours=("doppelganger",), slots=30,
                       seed=1, epoch_length=8)  # fmt: skip
    result = run_simulation(config, tmp_path / "a")
    assert result.violation is None and judge(config, result) == []
    assert result.slashed_by_node == {3: 1}, result.slashed_by_node
    assert run_simulation(config, tmp_path / "b").digest == result.digest  # deterministic
    doppelganger = "0x" + SimKeys.of(1, 4).consensus[3].address.hex()
    assert set(result.evidence_against) == {doppelganger} and result.evidence >= 1
    assert result.finalized >= 20  # finality goes on (it is jailed from the next epoch)


def any_parent(self: SimplexCore, proposal: Proposal) -> bool:
    """The mutant: the parent rule switched off (the chain still needs the parent to execute
    the block, so any parent the node has is accepted)."""
    return True


def test_a_parent_rule_mutant_is_found_shrunk_and_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``SimplexCore._extends_notarized`` replaced by :func:`any_parent`, the search
    over schedules whose byzantine validators are invalid-parent proposers (derandomized: the
    same runs on every machine) finds a violation among its first 5 drawn schedules, within
    10 simulations shrinking included, and shrinks it to at most 10 events (2 today); the
    saved replay fails the same way, and the real core passes it."""
    from moderntensor.sim._search import run_once, search

    monkeypatch.setattr(SimplexCore, "_extends_notarized", any_parent)
    found = search(5, validators=5, slots=12, budget=10, behaviours=("invalid-parent",))
    assert found is not None and found.runs <= 10
    assert len(found.config.events()) <= 10
    assert "invalid-parent" in "".join(found.config.events())
    assert "well-founded NOTARIZE" in found.problems[0]
    saved = tmp_path / "failure.json"  # as --save writes it, read back as --replay does
    saved.write_text(json.dumps(found.config.to_json(), indent=1) + "\n")
    replayed = _load(saved)
    assert replayed == found.config
    assert run_once(replayed) == found.problems
    monkeypatch.undo()
    assert run_once(found.config) == []  # the real core passes the same schedule


def test_the_foundation_tallies_quorums_and_judges_honest_notarize_votes() -> None:
    """Its own arithmetic: 3 of 4 equal stakes nullify a round, outsiders count for nothing,
    a FINALIZE quorum makes a block count at its header's slot too. An honest NOTARIZE
    whose parent skips a slot that no quorum nullified is a violation; one whose skipped
    slot is nullified is not."""
    from moderntensor.chain.votes import sign_vote

    keys = SimKeys.of(0, 4).consensus
    genesis, zero = b"\x01" * 32, b"\x00" * 32
    stakes = {k.address: 10 for k in keys}

    def foundation() -> Foundation:
        return Foundation(5150, genesis, lambda epoch: stakes, frozenset(stakes))

    def vote(
        f: Foundation, signers: tuple[PrivateKey, ...], kind: VoteKind, slot: int, h: bytes
    ) -> None:
        for k in signers:
            f._vote(sign_vote(k, 5150, genesis, kind, 0, slot, h), "on the wire")

    f = foundation()
    b1, x, y = b"\x02" * 32, b"\x03" * 32, b"\x04" * 32
    f.blocks.update({b1: (1, genesis), x: (3, genesis), y: (3, b1)})
    vote(f, keys[:3], VoteKind.FINALIZE, 1, b1)  # b1 final at slot 1
    vote(f, keys[:3], VoteKind.NULLIFY, 2, zero)
    assert (0, 2) in f.nullified and f.notarized[b1] == {1}
    vote(f, SimKeys.of(1, 3).consensus, VoteKind.NULLIFY, 1, zero)  # outsiders
    assert (0, 1) not in f.nullified
    vote(f, keys[:1], VoteKind.NOTARIZE, 3, y)  # parent b1 at 1, slot 2 nullified: fine
    assert f.failed is None and f.notarizations == 1
    vote(f, keys[1:2], VoteKind.NOTARIZE, 3, x)  # parent genesis at 0: slot 1 skipped
    assert f.failed is not None and "slot 1 between is not nullified" in f.failed


def test_the_command_line_searches_a_chosen_pool_within_a_budget() -> None:
    argv = [sys.executable, "-m", "moderntensor.sim", "--search", "1", "--budget", "1",
            "--behaviour", "invalid-parent", "--validators", "4", "--slots", "4"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "no failure in 1 simulations" in done.stdout and "run 1:" in done.stderr
