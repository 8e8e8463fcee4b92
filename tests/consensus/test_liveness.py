"""Liveness (DESIGN §5.3): all honest, messages delivered within the timeout, so every slot
with an honest leader finalizes its own block."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from moderntensor.consensus import compute_leader

from .harness import GENESIS, Cluster, epoch_of_height


def run_slots(cluster: Cluster, slots: int, rng: random.Random) -> None:
    for _ in range(slots):
        cluster.advance(1_000)  # the next slot starts: its leader builds
        cluster.flush(rng)  # everything arrives, in a random order, before any timeout


def assert_every_slot_finalized(cluster: Cluster, slots: int) -> None:
    for vid, refs in cluster.finalized.items():
        assert refs[0] == GENESIS
        got = [ref.slot for ref in refs[1:]]
        assert got[: slots - 1] == list(range(1, slots)), f"node 0x{vid.hex()} finalized {got}"
        for older, newer in itertools.pairwise(refs):
            assert cluster.oracle.parent[newer.hash] == (newer.slot, older.hash)
    chains = {tuple(refs[:slots]) for refs in cluster.finalized.values()}
    assert len(chains) == 1


@settings(max_examples=12)
@given(
    stakes=st.lists(st.integers(1, 1_000), min_size=4, max_size=10),
    seed=st.integers(0, 2**32),
)
def test_every_honest_slot_finalizes(stakes: list[int], seed: int) -> None:
    cluster = Cluster(stakes, set())
    run_slots(cluster, 12, random.Random(seed))
    assert_every_slot_finalized(cluster, 12)
    assert all(core.view == 13 for core in cluster.nodes.values())
    assert not cluster.refused and not any(cluster.evidence.values())


def test_in_order_delivery_links_every_finalized_block() -> None:
    """Delivered in send order, every node sees each proposal before its finalization, so
    each Finalized links back to the previous final block."""
    cluster = Cluster([5, 1, 9, 3, 7], set())
    for _ in range(10):
        cluster.advance(1_000)
        cluster.flush()
    assert_every_slot_finalized(cluster, 10)
    assert cluster.incomplete == 0


def test_crashed_leader_slots_are_nullified_then_chain_continues() -> None:
    """A validator below 1/3 of the stake is down: its slots time out and are nullified,
    every other slot still finalizes, and the next block builds across the gap."""
    cluster = Cluster([10, 10, 10, 10], set())
    down = sorted(cluster.nodes)[0]
    del cluster.nodes[down]
    rng = random.Random(7)
    for _ in range(30):
        cluster.advance(1_000)
        cluster.flush(rng)
        cluster.pending = [p for p in cluster.pending if p[0] != down]
    up = next(iter(cluster.nodes.values()))
    refs = cluster.finalized[up.validator_id]  # type: ignore[index]
    assert len(refs) > 15

    def led_by(ref_epoch: int, slot: int) -> bytes:
        return compute_leader(cluster.sets[ref_epoch], slot)

    gaps = 0
    for older, newer in itertools.pairwise(refs):
        epoch = epoch_of_height(cluster.oracle.height[newer.hash])
        assert led_by(epoch, newer.slot) != down
        for gap in range(older.slot + 1, newer.slot):  # nullified: led by the crashed node
            assert led_by(epoch, gap) == down
            gaps += 1
    assert gaps, "the fixed seed gives the crashed validator some slots"
    assert up.epoch >= 5  # crossed several epoch boundaries on the way
    cluster.check_all()
