"""The simulator: real nodes on simulated links in virtual time. Runs are small (4-5
validators, tens of slots) so the suite stays fast; the README has the large ones."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from moderntensor.network.faultrelay import LinkModel
from moderntensor.sim import SimConfig, SimResult, SpecError
from moderntensor.sim._network import link_config
from moderntensor.sim._report import judge
from moderntensor.sim._run import run_simulation
from moderntensor.sim._spec import Crash, CrashMode, Partition, parse_crash, parse_partition

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def run(config: SimConfig, root: Path) -> SimResult:
    return run_simulation(config, root)


def test_specs_parse_and_bad_ones_say_what_is_wrong() -> None:
    assert parse_partition("30-80:0,1,2|3,4") == Partition(
        30, 80, (frozenset({0, 1, 2}), frozenset({3, 4}))
    )
    assert parse_crash("2:40:90:wipe") == Crash(2, 40, 90, CrashMode.WIPE)
    assert parse_crash("1:5") == Crash(1, 5)
    for bad, words in [("30:0|1", "START-END"), ("80-30:0|1", "after the start"),
                       ("1-5:0,1|1,2", "in two groups"), ("1-5:0,1", "two non-empty")]:  # fmt: skip
        with pytest.raises(SpecError, match=words):
            parse_partition(bad)
    for bad, words in [
        ("2:40:30", "after the crash"),
        ("2:40:90:nuke", "not wipe"),
        ("x:1", "node"),
    ]:
        with pytest.raises(SpecError, match=words):
            parse_crash(bad)
    with pytest.raises(SpecError, match="node 9 does not exist"):
        SimConfig(validators=4, crashes=(Crash(9, 1),))


def test_the_link_model_is_a_function_of_its_seed() -> None:
    """The simulator's links are the fault relay's model: ``--latency 50 --jitter 20`` gives
    delays in 30..70 ms, the asked loss and duplication, the same fates for the same seed."""
    config = link_config(50, 20, drop=0.1, duplicate=0.1, reorder=True)

    def fates(seed: int, count: int) -> list[tuple[float, ...]]:
        model = LinkModel(config, seed)
        lane = model.open_lane("0", "1", "0")
        return [model.compute_fate(lane, 0.0).due for _ in range(count)]

    assert fates(7, 3) == fates(7, 3) and fates(7, 50) != fates(8, 50)
    drawn = fates(1, 2000)
    lost = sum(1 for f in drawn if not f) / len(drawn)
    doubled = sum(1 for f in drawn if len(f) == 2) / len(drawn)
    assert 0.07 < lost < 0.13 and 0.06 < doubled < 0.13
    assert all(0.03 <= d <= 0.07 for f in drawn for d in f)


def test_an_honest_run_finalizes_and_repeats_to_the_digest(tmp_path: Path) -> None:
    config = SimConfig(validators=4, slots=12, seed=3, drop=0.02)
    first = run(config, tmp_path / "a")
    second = run(config, tmp_path / "b")
    assert first.violation is None and judge(config, first) == []
    assert first.finalized >= 8  # 1 s slots, 50 +- 20 ms links, 2% loss
    assert first.digest == second.digest and first.finality_by_slot == second.finality_by_slot
    other = run(SimConfig(validators=4, slots=12, seed=4, drop=0.02), tmp_path / "c")
    assert other.digest != first.digest
    assert first.checks > 100 and first.certificates > 10


def test_an_equivocator_is_slashed_exactly_once(tmp_path: Path) -> None:
    config = SimConfig(validators=4, byzantine=1, slots=30, seed=1, epoch_length=8)
    result = run(config, tmp_path)
    assert result.violation is None
    assert result.slashed_by_node == {3: 1}, result.slashed_by_node
    assert result.evidence >= 1
    assert judge(config, result) == []


def test_a_partition_with_no_quorum_side_stops_finality_then_heals(tmp_path: Path) -> None:
    partition = parse_partition("6-16:0,1|2,3")
    config = SimConfig(validators=4, slots=40, seed=2, partitions=(partition,))
    result = run(config, tmp_path)
    by_slot = result.finality_by_slot
    assert result.violation is None
    assert by_slot[6] >= 3  # finalizing before
    assert by_slot[15] <= by_slot[7]  # nothing new final while split (a certificate in flight
    # at the cut may still land in the first slot)
    assert by_slot[39] > by_slot[15] + 5  # finality back after the heal
    assert judge(config, result) == []


def test_a_validator_wiped_and_restarted_is_not_slashed(tmp_path: Path) -> None:
    config = SimConfig(validators=4, slots=40, seed=5, epoch_length=8,
                       crashes=(parse_crash("3:10:20:wipe"),))  # fmt: skip
    result = run(config, tmp_path)
    assert result.violation is None
    assert result.slashed_by_node == {}
    assert result.finality_by_slot[-1] > result.finality_by_slot[20] + 5
    assert judge(config, result) == []


def test_the_command_line_prints_json_and_exits_by_the_verdict(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "moderntensor.sim", "--validators", "4", "--slots", "6",
            "--seed", "1", "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    doc = json.loads(done.stdout)
    assert doc["problems"] == [] and doc["slots"] == 6 and doc["digest"].startswith("0x")
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["digest"] == doc["digest"]
    bad = subprocess.run([*argv[:3], "--partition", "5:0|1"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "START-END" in bad.stderr


def test_a_half_quorum_mutant_is_found_shrunk_and_replayed(tmp_path: Path) -> None:
    """With the core's quorum lowered to 1/2, the Hypothesis-driven search (derandomized:
    the same runs on every machine) finds a violation in its first 5 simulations and shrinks
    it to at most 10 events; the saved replay fails the same way."""
    from moderntensor.consensus._quorum import _override_quorum_for_tests
    from moderntensor.sim._search import run_once, search

    with _override_quorum_for_tests(1, 2):
        found = search(5, validators=5, slots=20)
        assert found is not None
        assert len(found.config.events()) <= 10
        assert "no quorum" in found.problems[0] or "agreement" in found.problems[0]
        replayed = SimConfig.from_json(found.config.to_json())
        assert replayed == found.config
        assert run_once(replayed) == found.problems
    assert run_once(found.config) == []  # the real core passes the same schedule


def test_an_outage_of_three_epochs_then_finality_resumes(tmp_path: Path) -> None:
    """Two of four validators down for 14 slots (epochs of 4 blocks: more than three epochs'
    worth): nothing final meanwhile; after the restart finality resumes within a few slots."""
    crashes = (parse_crash("2:8:22"), parse_crash("3:8:22"))
    config = SimConfig(validators=4, slots=40, seed=1, epoch_length=4, crashes=crashes)
    result = run(config, tmp_path)
    by_slot = result.finality_by_slot
    assert result.violation is None and judge(config, result) == []
    assert by_slot[21] <= by_slot[9]  # no quorum: nothing new final
    assert by_slot[26] > by_slot[21]  # back within 4 slots of the restart (K = 20 is judged)


def test_a_whole_network_crash_and_restart_resumes_finality(tmp_path: Path) -> None:
    crashes = tuple(parse_crash(f"{n}:10:14") for n in range(4))
    config = SimConfig(validators=4, slots=30, seed=1, crashes=crashes)
    result = run(config, tmp_path)
    assert result.violation is None and judge(config, result) == []
    before = result.finality_by_slot[9]
    assert result.finality_by_slot[17] > before  # every node restarted on its data
    assert result.finalized >= before + 10


@pytest.mark.parametrize("behaviour", ["block-withholder", "replayer", "mismatch", "withholder"])
def test_byzantine_behaviours_break_no_invariant_and_finality_goes_on(
    tmp_path: Path, behaviour: str
) -> None:
    config = SimConfig(validators=4, byzantine=1, behaviours=(behaviour,), slots=12, seed=1)
    result = run(config, tmp_path)
    assert result.violation is None and judge(config, result) == []
    assert result.finalized >= 4  # its leader slots may be lost, the rest finalize
