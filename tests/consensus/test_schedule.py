"""Slots, epochs, the validator-set rule and the stake-weighted leader schedule."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from moderntensor.chain.validators import ValidatorRecord
from moderntensor.consensus import (
    ConsensusConfig,
    Preset,
    ValidatorSet,
    compute_block_epoch,
    compute_boundary_height,
    compute_epoch_seed,
    compute_leader,
    compute_next_validator_set,
    compute_slot_at,
    compute_slot_start_ms,
    compute_snapshot_height,
    compute_validator_set,
)
from moderntensor.crypto import keccak256

from .harness import KEYS

PRESET = Preset(
    slot_duration_ms=2_000,
    epoch_length=10,
    timeout_ms=4_000,
    max_validators=3,
    evidence_window=5,
    max_future_slots=5,
)
CONFIG = ConsensusConfig(1, keccak256(b"g"), 1_700_000_000_000, PRESET)


def records(stakes: list[int]) -> list[ValidatorRecord]:
    return [
        ValidatorRecord(k.address, k.public_key_bytes, s)
        for k, s in zip(KEYS, stakes, strict=False)
    ]


def test_slot_times_are_pure_functions_of_genesis_time() -> None:
    g = CONFIG.genesis_time_ms
    assert compute_slot_start_ms(CONFIG, 0) == g
    assert compute_slot_start_ms(CONFIG, 7) == g + 14_000
    assert compute_slot_at(CONFIG, g) == 0
    assert compute_slot_at(CONFIG, g + 1_999) == 0
    assert compute_slot_at(CONFIG, g + 2_000) == 1
    assert compute_slot_at(CONFIG, g - 1) == 0  # before genesis: slot 0
    for slot in (0, 1, 99, 12345):
        assert compute_slot_at(CONFIG, compute_slot_start_ms(CONFIG, slot)) == slot


def test_epochs_count_blocks_and_the_snapshot_is_two_boundaries_back() -> None:
    """Epochs count blocks (docs/consensus.md, "Epochs"): heights 1..L are epoch 0, the
    block at (e + 1) * L is epoch e's boundary, and the set of e comes from the boundary of
    e - 2, so a staking change waits at least one whole epoch."""
    n = PRESET.epoch_length
    assert [compute_block_epoch(h, n) for h in (0, 1, 10, 11, 20, 21)] == [0, 0, 0, 1, 1, 2]
    assert [compute_boundary_height(e, n) for e in (0, 1, 5)] == [10, 20, 60]
    assert [compute_snapshot_height(e, n) for e in (0, 1, 2, 3)] == [0, 0, 10, 20]
    for epoch in range(2, 20):
        snapshot = compute_snapshot_height(epoch, n)
        assert compute_block_epoch(snapshot, n) == epoch - 2  # a boundary of epoch e - 2
        assert snapshot == compute_boundary_height(epoch - 2, n)
        first_block = epoch * n + 1
        assert first_block - snapshot > n  # a whole epoch of blocks in between


def test_an_empty_eligible_set_carries_the_previous_members_over() -> None:
    """Review L2: nobody eligible (all jailed or unbonded) must not stop the chain."""
    recs = records([50, 40])
    prev = compute_validator_set(recs, 3, keccak256(b"s3"), 3)
    gone = [ValidatorRecord(r.address, r.consensus_pubkey, r.stake, jailed=True) for r in recs]
    with pytest.raises(ValueError, match="no eligible"):
        compute_validator_set(gone, 4, keccak256(b"s4"), 3)
    carried = compute_next_validator_set(gone, 4, keccak256(b"s4"), 3, 1, prev)
    assert isinstance(carried, ValidatorSet)
    assert (carried.epoch, carried.validators) == (4, prev.validators)
    fresh = compute_next_validator_set(recs[:1], 4, keccak256(b"s4"), 3, 1, prev)
    assert [v.stake for v in fresh.validators] == [50]


def test_validator_set_rule_excludes_jailed_small_and_unbonding() -> None:
    recs = records([50, 40, 30, 20, 10])
    recs[0] = ValidatorRecord(recs[0].address, recs[0].consensus_pubkey, 50, jailed=True)
    recs[4] = ValidatorRecord(recs[4].address, recs[4].consensus_pubkey, 0, unbonding=100)
    vset = compute_validator_set(recs, 3, b"\x01" * 32, max_validators=3, min_stake=15)
    ids = {v.id for v in vset.validators}
    assert ids == {KEYS[1].address, KEYS[2].address, KEYS[3].address}
    assert vset.total_stake == 90
    assert [v.id for v in vset.validators] == sorted(ids)
    capped = compute_validator_set(records([5, 9, 9, 1]), 0, b"\x01" * 32, max_validators=2)
    assert {v.stake for v in capped.validators} == {9}
    order = records([5, 9, 9, 1])
    assert compute_validator_set(order[::-1], 0, b"\x01" * 32, 2) == capped


def test_validator_set_rule_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no eligible"):
        compute_validator_set(records([0, 0]), 0, b"\x01" * 32, 3)
    bad = [ValidatorRecord(KEYS[0].address, b"\x02" + b"\xff" * 32, 5)]
    with pytest.raises(ValueError, match="bad consensus key"):
        compute_validator_set(bad, 0, b"\x01" * 32, 3)
    twice = records([5]) * 2
    with pytest.raises(ValueError, match="registered twice"):
        compute_validator_set(twice, 0, b"\x01" * 32, 3)


def test_jailed_validator_never_leads() -> None:
    recs = records([10, 10, 10, 10])
    recs[2] = ValidatorRecord(recs[2].address, recs[2].consensus_pubkey, 10, jailed=True)
    vset = compute_validator_set(recs, 0, b"\x05" * 32, 10)
    assert all(compute_leader(vset, s) != KEYS[2].address for s in range(2_000))


@pytest.mark.parametrize(
    ("stakes", "seed"),
    [
        ([1, 1, 1, 1], b"a"),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], b"b"),
        ([1000, 1, 1, 50, 7], b"c"),
        ([3] * 16, b"d"),
    ],
)
def test_leader_share_is_stake_proportional(stakes: list[int], seed: bytes) -> None:
    """Over 20,000 slots each validator's count is within 6 standard deviations of
    ``slots * stake / total``. Seeds are fixed, so the result cannot flake; 6 sigma makes the
    bound hold for any seed but with probability ~1e-9."""
    vset = compute_validator_set(records(stakes), 0, keccak256(seed), 100)
    slots = 20_000
    counts: dict[bytes, int] = {}
    for slot in range(slots):
        leader = compute_leader(vset, slot)
        counts[leader] = counts.get(leader, 0) + 1
    total = sum(stakes)
    for key, stake in zip(KEYS, stakes, strict=False):
        p = stake / total
        expected, sigma = slots * p, math.sqrt(slots * p * (1 - p))
        assert abs(counts.get(key.address, 0) - expected) <= 6 * sigma + 1


def test_seed_changes_the_schedule() -> None:
    recs = records([5, 5, 5, 5, 5])
    a = compute_validator_set(recs, 0, compute_epoch_seed(b"\x00" * 32, 0, b"\x01" * 32), 10)
    b = compute_validator_set(recs, 0, compute_epoch_seed(b"\x00" * 32, 1, b"\x01" * 32), 10)
    assert [compute_leader(a, s) for s in range(64)] != [compute_leader(b, s) for s in range(64)]


SCHEDULE_SCRIPT = """
import json
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.consensus import compute_leader, compute_validator_set
from tests.consensus.harness import KEYS
recs = [ValidatorRecord(k.address, k.public_key_bytes, 7 * i + 1) for i, k in enumerate(KEYS)]
vset = compute_validator_set(recs, 4, bytes(range(32)), 100)
print(json.dumps([compute_leader(vset, s).hex() for s in range(1000)]))
"""


def test_schedule_identical_in_two_processes() -> None:
    """Another interpreter, another hash seed: the same 1,000 leaders (DESIGN §5.7)."""
    recs = [ValidatorRecord(k.address, k.public_key_bytes, 7 * i + 1) for i, k in enumerate(KEYS)]
    vset = compute_validator_set(recs, 4, bytes(range(32)), 100)
    here = [compute_leader(vset, s).hex() for s in range(1000)]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=root)
    out = subprocess.run(
        [sys.executable, "-c", SCHEDULE_SCRIPT], capture_output=True, text=True, env=env, cwd=root
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == here
    assert len(set(here)) > 5
