"""The monitor's pure core fed with made-up observations and a fake clock: each alert raised
and resolved once, status classification, the bounded history, network figures."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from moderntensor.monitor import (
    AlertEvent,
    AlertKind,
    BlockFacts,
    ChainFacts,
    EvidenceFacts,
    Failure,
    MonitorCore,
    Observation,
    SyncFacts,
    Thresholds,
    ValidatorFacts,
)

T0 = 1_800_000_000.0
GENESIS = 1_799_999_000
V1 = ValidatorFacts("0xAAaa", "0x1111", "alice", "active", False)
V2 = ValidatorFacts("0xBBbb", "0x2222", "bob", "active", False)


def obs(**changes: Any) -> Observation:
    base = Observation(
        head=100, head_slot=100, finalized=99, finalized_slot=99, peers=3, slot=100,
        slot_ms=1000, genesis_time=GENESIS, health_ok=True, validators=(V1, V2),
    )  # fmt: skip
    return attrs.evolve(base, **changes)


def kinds(events: list[AlertEvent]) -> list[tuple[str, str, str]]:
    return [(e.event, str(e.alert.kind), e.alert.subject) for e in events]


def core_of(*names: str, **thresholds: Any) -> MonitorCore:
    return MonitorCore([(n, f"http://{n}") for n in names], Thresholds(**thresholds), T0)


def test_node_down_after_the_threshold_then_resolved() -> None:
    core = core_of("a", down_after=5)
    assert core.process_round(T0, {"a": obs()}) == []
    assert core.node_statuses()[0].status == "healthy"
    assert core.process_round(T0 + 1, {"a": Failure("refused")}) == []
    status = core.node_statuses()[0]
    assert (status.status, status.up) == ("degraded", False)  # silent, not yet down
    assert core.process_round(T0 + 5.9, {"a": Failure("refused")}) == []  # 4.9 s silent
    events = core.process_round(T0 + 6, {"a": Failure("refused")})
    assert kinds(events) == [("raise", "node_down", "a")]
    assert "no answer for 5.0 s (refused)" in events[0].alert.message
    assert core.node_statuses()[0].status == "down"
    assert core.process_round(T0 + 7, {"a": Failure("refused")}) == []  # raised once
    events = core.process_round(T0 + 8, {"a": obs(finalized=100)})
    assert kinds(events) == [("resolve", "node_down", "a")]
    assert events[0].to_json()["duration_s"] == 2.0
    assert core.node_statuses()[0].status == "healthy"


def test_unhealthy_carries_the_health_reason() -> None:
    core = core_of("a")
    events = core.process_round(T0, {"a": obs(health_ok=False, health_reason="not finalizing")})
    assert kinds(events) == [("raise", "node_unhealthy", "a")]
    assert "not finalizing" in events[0].alert.message
    status = core.node_statuses()[0]
    assert status.status == "degraded"
    assert status.reasons == ("/health 503: not finalizing",)
    assert kinds(core.process_round(T0 + 1, {"a": obs(finalized=100)})) == [
        ("resolve", "node_unhealthy", "a")
    ]


def test_finality_lag_above_the_limit() -> None:
    core = core_of("a", max_finality_lag=10)
    assert core.process_round(T0, {"a": obs(head=110, finalized=100)}) == []  # lag 10: ok
    events = core.process_round(T0 + 1, {"a": obs(head=111, finalized=100)})
    assert kinds(events) == [("raise", "finality_lag", "a")]
    assert core.node_statuses()[0].reasons == ("finality lag 11 blocks (limit 10)",)
    events = core.process_round(T0 + 2, {"a": obs(head=112, finalized=110)})
    assert kinds(events) == [("resolve", "finality_lag", "a")]


def test_chain_stalled_when_no_node_finalizes() -> None:
    core = core_of("a", "b", stall_after=30, down_after=60)
    core.process_round(T0, {"a": obs(finalized=50), "b": obs(finalized=49)})
    # b moves but stays below the best: no new finalized block in the network
    assert core.process_round(T0 + 29, {"a": obs(finalized=50), "b": obs(finalized=50)}) == []
    events = core.process_round(T0 + 30, {"a": Failure("x"), "b": obs(finalized=50)})
    assert kinds(events) == [("raise", "chain_stalled", "chain")]
    assert core.network_status(T0 + 31).since_finalized_s == 31
    events = core.process_round(T0 + 40, {"a": Failure("x"), "b": obs(finalized=51)})
    assert kinds(events) == [("resolve", "chain_stalled", "chain")]


def test_a_stall_counts_from_the_start_when_no_node_ever_answers() -> None:
    core = core_of("a", stall_after=10, down_after=100)
    assert core.process_round(T0 + 9, {"a": Failure("x")}) == []
    assert kinds(core.process_round(T0 + 10, {"a": Failure("x")})) == [
        ("raise", "chain_stalled", "chain")
    ]


def test_status_classification() -> None:
    core = core_of("a", "b", "c", max_height_lag=5)  # several nodes: min_peers is 1
    events = core.process_round(
        T0,
        {
            "a": obs(head=200, finalized=199),
            "b": obs(head=194, finalized=193, peers=0),
            "c": obs(sync=SyncFacts(0, 150, 200), head=150, finalized=149),
        },
    )
    assert events == []
    by = {s.name: s for s in core.node_statuses()}
    assert (by["a"].status, by["a"].reasons) == ("healthy", ())
    assert by["b"].status == "degraded"
    assert by["b"].reasons == ("0 peers (fewer than 1)", "6 blocks behind the best node")
    assert by["c"].reasons == ("syncing: block 150 of 200", "50 blocks behind the best node")
    alone = core_of("a")  # a single node (a dev chain) has no peers to want
    alone.process_round(T0, {"a": obs(peers=0)})
    assert alone.node_statuses()[0].status == "healthy"
    assert core_of("x").node_statuses()[0].status == "unknown"


def test_history_keeps_the_last_n_events() -> None:
    core = core_of("a", down_after=1, history=3)
    t = T0
    for _ in range(3):  # each cycle: a raise then a resolve
        core.process_round(t, {"a": Failure("x")})
        core.process_round(t + 1, {"a": Failure("x")})
        core.process_round(t + 2, {"a": obs(finalized=int(t))})
        t += 3
    assert len(core.history) == 3
    assert [e.event for e in core.history] == ["resolve", "raise", "resolve"]
    assert core.fired[AlertKind.NODE_DOWN] == 3


def test_cpu_percent_from_cpu_seconds() -> None:
    from moderntensor.monitor import ProcessFacts

    core = core_of("a")
    core.process_round(T0, {"a": obs(process=ProcessFacts(10.0, 1 << 20, 5000, 1 << 30))})
    core.process_round(T0 + 2, {"a": obs(process=ProcessFacts(11.0, 1 << 20, 5000, 1 << 30))})
    assert core.node_statuses()[0].cpu_percent == 50.0


def test_jailed_validator_raised_and_resolved() -> None:
    core = core_of("a")
    jailed = attrs.evolve(V2, jailed=True, status="jailed")
    events = core.process_round(T0, {"a": obs(validators=(V1, jailed))}, reference="a")
    assert kinds(events) == [("raise", "validator_jailed", "0xBBbb")]
    assert "bob" in events[0].alert.message
    assert core.process_round(T0 + 1, {"a": obs(validators=(V1, jailed))}, reference="a") == []
    events = core.process_round(T0 + 2, {"a": obs()}, reference="a")
    assert kinds(events) == [("resolve", "validator_jailed", "0xBBbb")]


def test_slashing_evidence_is_a_notice_once() -> None:
    core = core_of("a")
    old = EvidenceFacts("0xe1", "0xBBbb", 40)
    new = EvidenceFacts("0xe2", "0xAAaa", 98)
    first = ChainFacts(evidence=(old,), slashed_total=10)
    assert core.process_round(T0, {"a": obs()}, first, "a") == []  # seen at start: history
    events = core.process_round(T0 + 1, {"a": obs()}, ChainFacts(evidence=(old, new),
                                slashed_total=20), "a")  # fmt: skip
    assert kinds(events) == [("notice", "slashing", "0xAAaa")]
    assert "block 98" in events[0].alert.message
    events = core.process_round(T0 + 2, {"a": obs()}, ChainFacts(evidence=(old, new),
                                slashed_total=25), "a")  # fmt: skip
    assert kinds(events) == [("notice", "slashing", "chain")]
    assert core.process_round(T0 + 3, {"a": obs()}, ChainFacts(), "a") == []  # not asked
    assert core.fired[AlertKind.SLASHING] == 2


def block(n: int, slot: int, miner: str, txs: int = 0) -> BlockFacts:
    return BlockFacts(n, GENESIS + slot, miner, txs)  # 1 s slots: timestamp = slot start


def test_missed_slots_raised_then_resolved_when_out_of_the_window() -> None:
    core = core_of("a", missed_slots=2, missed_window=10)
    schedule = tuple((s, "0x1111" if s % 2 else "0x2222") for s in range(100, 140))
    # slot 100 (bob) has a block: the first block's second only starts the count
    facts = ChainFacts((block(1, 100, "0xbbbb"),), schedule=schedule)
    assert core.process_round(T0, {"a": obs(finalized_slot=100)}, facts, "a") == []
    # slots 101-106: alice leads the odd ones; she misses 103 and 105
    made = [block(2, 101, "0xaaaa"), block(3, 102, "0xbbbb"), block(4, 104, "0xbbbb"),
            block(5, 106, "0xbbbb")]  # fmt: skip
    events = core.process_round(T0 + 1, {"a": obs(finalized_slot=106)}, ChainFacts(
        tuple(made)), "a")  # fmt: skip
    assert kinds(events) == [("raise", "missed_slots", "0x1111")]
    assert "alice missed 2 of its 3 slots" in events[0].alert.message
    # blocks in every slot up to 115: 103 and 105 leave the 10-slot window
    made = [block(n - 100, n, "0xaaaa" if n % 2 else "0xbbbb") for n in range(107, 116)]
    events = core.process_round(T0 + 2, {"a": obs(finalized_slot=115)}, ChainFacts(
        tuple(made)), "a")  # fmt: skip
    assert kinds(events) == [("resolve", "missed_slots", "0x1111")]


def test_missed_slots_with_several_slots_per_second() -> None:
    core = core_of("a", missed_window=100)
    # 250 ms slots: slots 4k..4k+3 start in second GENESIS + k
    schedule = tuple((s, "0x1111") for s in range(0, 40))
    first = ChainFacts((BlockFacts(1, GENESIS, "0xaaaa", 0),), schedule=schedule)
    ref = obs(slot_ms=250, validators=(V1,))
    core.process_round(T0, {"a": attrs.evolve(ref, finalized_slot=3)}, first, "a")
    # second GENESIS+1 (slots 4-7): 3 blocks; second GENESIS+2 (slots 8-11): 4 blocks
    blocks = [BlockFacts(n, GENESIS + 1, "0xaaaa", 2) for n in range(2, 5)]
    blocks += [BlockFacts(n, GENESIS + 2, "0xaaaa", 2) for n in range(5, 9)]
    events = core.process_round(
        T0 + 1, {"a": attrs.evolve(ref, finalized_slot=11)}, ChainFacts(tuple(blocks)), "a"
    )
    assert kinds(events) == [("raise", "missed_slots", "0x1111")]
    assert "missed 1 of its 8 slots" in events[0].alert.message
    assert core.network_status(T0 + 1).tps == 7.0  # 14 transactions after the first in 2 s


def test_a_gap_in_the_blocks_restarts_the_count() -> None:
    core = core_of("a")
    schedule = tuple((s, "0x1111") for s in range(100, 200))
    core.process_round(T0, {"a": obs(finalized_slot=100)},
                       ChainFacts((block(1, 100, "0xaaaa"),), schedule=schedule), "a")  # fmt: skip
    # blocks 2-49 were skipped: slots 101-149 are not judged (their blocks are unknown)
    facts = ChainFacts((block(50, 150, "0xaaaa"), block(51, 151, "0xaaaa")), gap=True)
    assert core.process_round(T0 + 1, {"a": obs(finalized_slot=151)}, facts, "a") == []
    assert core.slots.misses["0x1111"][-1] == (151, 1, 0)


def test_block_time_from_slots_and_heights() -> None:
    core = core_of("a")
    core.process_round(T0, {"a": obs(finalized=100, finalized_slot=100)}, reference="a")
    core.process_round(
        T0 + 5, {"a": obs(head=106, finalized=104, finalized_slot=110)}, reference="a"
    )
    net = core.network_status(T0 + 5)
    assert net.block_time_s == 2.5  # 10 slots of 1 s for 4 blocks
    assert (net.height, net.finalized, net.finality_lag) == (106, 104, 2)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="own name"):
        core_of("a", "a")
    with pytest.raises(ValueError, match="own name"):
        MonitorCore([], Thresholds(), T0)
    with pytest.raises(ValueError, match="unknown nodes"):
        core_of("a").process_round(T0, {"b": obs()})
    with pytest.raises(ValueError, match="down_after"):
        Thresholds(down_after=0)
