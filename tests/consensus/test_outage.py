"""Outages, crashes and restores that the first version could not survive (review C1, M1, H2).

Each test drives real cores through the harness and states the number of slots it allows
between the end of the fault and the next finalized block.
"""

from __future__ import annotations

import random

from moderntensor.chain.votes import VoteKind
from moderntensor.consensus import MemoryStore

from .harness import EPOCH_LENGTH, Cluster

K_AFTER_HEAL = 4
"""Slots from the end of an outage to the next finalized block with an honest network
(measured: 1 to 3 in these tests)."""


def run(cluster: Cluster, slots: int, rng: random.Random, lose: bool = False) -> None:
    """``slots`` slots of time; every message is delivered within the slot (or lost)."""
    for _ in range(slots):
        cluster.advance(1_000)
        if lose:
            cluster.pending.clear()
        else:
            cluster.flush(rng)


def best_height(cluster: Cluster) -> int:
    return cluster.oracle.height[cluster.best_final().hash]


def slots_to_finality(cluster: Cluster, rng: random.Random, limit: int = 60) -> int:
    """Run slot by slot until a new block is finalized; return how many slots that took."""
    before = best_height(cluster)
    for slot in range(1, limit + 1):
        run(cluster, 1, rng)
        if best_height(cluster) > before:
            return slot
    raise AssertionError("nothing finalized:\n" + cluster.describe())


def test_network_outage_of_three_epochs_then_finality_within_k_slots() -> None:
    """Review C1: with wall-clock epochs, an epoch without a finalized block left the next set
    unknown for ever. Now epochs end at a finalized block, so any outage only delays."""
    cluster = Cluster([10, 20, 30, 40], set())
    rng = random.Random(1)
    run(cluster, 6, rng)
    height = best_height(cluster)
    run(cluster, 3 * EPOCH_LENGTH + 2, rng, lose=True)  # every message lost
    assert best_height(cluster) == height
    assert slots_to_finality(cluster, rng) <= K_AFTER_HEAL
    run(cluster, 4 * EPOCH_LENGTH, rng)  # and it keeps going, through epoch boundaries
    epochs = {core.epoch for core in cluster.nodes.values()}
    assert min(epochs) >= 3, epochs
    cluster.check_all()


def test_whole_network_down_for_ten_epochs_then_finality_within_k_slots() -> None:
    """Every validator stops (memory lost, databases kept) for ten epochs' worth of slots; on
    restart each learns its peers' status, and the chain finalizes again within K slots."""
    cluster = Cluster([10, 10, 10, 10], set())
    rng = random.Random(2)
    run(cluster, 5, rng)
    cluster.nodes.clear()
    cluster.pending.clear()
    cluster.now += 10 * EPOCH_LENGTH * 1_000  # the network is down
    for key in cluster.honest_keys:
        cluster.boot(key)
    assert all(core.synced for core in cluster.nodes.values())
    assert slots_to_finality(cluster, rng) <= K_AFTER_HEAL
    cluster.check_all()


def test_f_crashed_plus_one_lost_burst_still_finalizes() -> None:
    """Review M1: everything to one validator is lost for a slot, then another crashes for
    good. The lagging node must catch up from what the others re-send on their timeouts."""
    cluster = Cluster([10, 10, 10, 10], set())
    rng = random.Random(3)
    c, d = sorted(cluster.nodes)[2:]
    run(cluster, 3, rng)
    cluster.advance(1_000)
    cluster.pending = [p for p in cluster.pending if p[0] != c]
    cluster.flush(rng)
    cluster.pending = [p for p in cluster.pending if p[0] != c]
    del cluster.nodes[d]  # crashed for good: f = 1 of 4
    height = best_height(cluster)
    for _ in range(30):
        cluster.advance(1_000)
        cluster.flush(rng)
        cluster.pending = [p for p in cluster.pending if p[0] != d]
    assert best_height(cluster) >= height + 5, cluster.describe()
    cluster.check_all()


def _accused(cluster: Cluster, vid: bytes) -> list[object]:
    return [
        e for found in cluster.evidence.values() for e in found if e.evidence.first.signer == vid
    ]


def test_restored_and_wiped_validators_sign_nothing_usable_as_evidence() -> None:
    """Review H2: a validator restored from a backup of its database, and one restarted on
    an empty data dir, rejoin (after syncing the chain) without signing anything that an
    honest peer could turn into evidence, and then vote again."""
    for variant in ("backup", "wipe"):
        cluster = Cluster([10, 10, 10, 10], set())
        rng = random.Random(4)
        victim = sorted(cluster.nodes)[1]
        key = next(k for k in cluster.honest_keys if k.address == victim)
        run(cluster, 3, rng)
        backup = dict(cluster.stores[victim].data)
        run(cluster, 7, rng)
        # The operator's mistake, mid-slot: votes of the victim are in flight to its peers.
        cluster.advance(1_000)
        for _ in range(12):
            if cluster.pending:
                cluster.deliver(0)
        store = MemoryStore()
        store.data = backup if variant == "backup" else {}
        cluster.stores[victim] = store
        cluster.pending = [p for p in cluster.pending if p[0] != victim]
        cluster.boot(key, final=cluster.best_final())
        restarted_in = cluster.nodes[victim].round
        run(cluster, 4 * EPOCH_LENGTH, rng)
        cluster.check_no_honest_equivocation()
        assert not _accused(cluster, victim), variant
        later = [
            (e, s) for (signer, e, s) in cluster.oracle.honest_votes
            if signer == victim and (e, s) > restarted_in
        ]  # fmt: skip
        assert len(later) >= 4, f"{variant}: the restored validator did not vote again"
        cluster.check_all()


def test_a_wiped_validator_never_nullifies_the_slot_it_finalized() -> None:
    """The review's H2 reproduction: the validator signed FINALIZE(s), one peer kept that
    vote, and its database was lost before s was final. Back on an empty data dir it sits in
    view s and misses what peers re-send for two slots; signing NULLIFY(s) on its timeout
    would be evidence against it. It first learns from its peers' status that s is certified,
    so it waits for that certificate instead, and then votes again."""
    cluster = Cluster([10, 10, 10, 30], set())  # the 30 is in every quorum
    rng = random.Random(5)
    victim = next(
        vid for vid, core in cluster.nodes.items() if core.epoch_set(0).stake_of(vid) == 30
    )  # type: ignore[union-attr]
    key = next(k for k in cluster.honest_keys if k.address == victim)
    keeper = min(vid for vid in cluster.nodes if vid != victim)
    run(cluster, 3, rng)
    cluster.advance(1_000)
    held = cluster.flush_holding(
        lambda dest, message: getattr(message, "kind", None) is VoteKind.FINALIZE
    )
    slot = cluster.nodes[victim].view - 1
    mine = [p for p in held if p[2] == victim and p[0] == keeper]
    assert mine and mine[0][1].slot == slot  # the victim's FINALIZE(s), kept by one peer
    cluster.deliver_to(keeper, mine[0][1])
    cluster.stores[victim] = MemoryStore()  # the data dir is lost
    del cluster.nodes[victim]
    cluster.pending.clear()
    cluster.boot(key, final=cluster.finalized[victim][-1])
    assert cluster.nodes[victim].view == slot
    for _ in range(2):  # what peers re-send in these two slots does not arrive
        cluster.advance(1_000)
        cluster.pending = [p for p in cluster.pending if p[0] != victim]
        cluster.flush(rng)
    run(cluster, 3 * EPOCH_LENGTH, rng)
    assert not _accused(cluster, victim), "the wiped validator was caught equivocating"
    cluster.check_no_honest_equivocation()
    assert cluster.nodes[victim].view > slot + 2
    assert best_height(cluster) > slot
