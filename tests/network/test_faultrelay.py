"""The fault-injecting relay on 127.0.0.1: its pure link model, the relay between two real
trio-websocket endpoints, and four whole validator nodes whose every connection goes through it.

The link model's tests are exact (seeded). The relay tests compare what arrives with a replay
of the same seeded model, so each knows exactly which messages must arrive; they use the real
clock (real sockets), and only lower bounds on time (delivered no sooner than the latency).
The network test asserts finality under latency, jitter and loss, no new finalized block
while the relay splits the validators 2|2 (neither half is a quorum), and finality again
after it heals.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio_websocket

from moderntensor.chain.genesis import parse_genesis
from moderntensor.network import make_multiaddr
from moderntensor.network.faultrelay import (
    FaultRelay,
    LinkConfig,
    LinkModel,
    Route,
    Verdict,
    parse_route,
)
from moderntensor.node._network import network_config
from moderntensor.node._supervisor import NodeHandle, NodeSettings
from tests.factories import genesis_doc
from tests.network.helpers import NODE_KEYS
from tests.network.test_four_validators import assert_same_chain, poll, run_node
from tests.node.cluster import VALIDATOR_KEYS
from tests.ports import free_port_run

# -- the link model --------------------------------------------------------------------------


def fates(model: LinkModel, count: int, key: str = "k", step: float = 1.0) -> list[Any]:
    lane = model.open_lane("a", "b", key)
    return [model.compute_fate(lane, i * step) for i in range(count)]


@pytest.mark.parametrize(
    "changes",
    [
        {"latency_s": -1.0},
        {"jitter_s": math.nan},
        {"loss": 1.5},
        {"duplicate": -0.1},
        {"reorder": 2.0},
    ],
)
def test_link_config_rejects_impossible_values(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LinkConfig(**changes)


def test_delays_are_the_latency_plus_at_most_the_jitter() -> None:
    model = LinkModel(LinkConfig(latency_s=0.05, jitter_s=0.02), seed=1)
    delays = [f.delay_s for f in fates(model, 2000)]  # 1 s apart: no queueing behind others
    assert all(0.05 <= d <= 0.07 for d in delays)
    assert max(delays) - min(delays) > 0.018  # the jitter is used, not just allowed


def test_a_lane_is_fifo_unless_reordering_is_asked_for() -> None:
    config = LinkConfig(latency_s=0.01, jitter_s=0.1)
    due = [f.due[0] for f in fates(LinkModel(config, seed=2), 2000, step=0.001)]
    assert due == sorted(due)
    assert due[0] >= 0.01
    mixed = LinkModel(attrs.evolve(config, reorder=0.5), seed=2)
    due = [f.due[0] for f in fates(mixed, 2000, step=0.001)]
    assert due != sorted(due)


def test_the_same_seed_gives_the_same_fates_whatever_the_interleaving() -> None:
    config = LinkConfig(latency_s=0.01, jitter_s=0.01, loss=0.2, duplicate=0.1)
    alone = fates(LinkModel(config, seed=9), 500)
    model = LinkModel(config, seed=9)
    lane, other = model.open_lane("a", "b", "k"), model.open_lane("b", "a", "k2")
    mixed = []
    for i in range(500):
        for _ in range(i % 3):  # another lane's messages in between
            model.compute_fate(other, float(i))
        mixed.append(model.compute_fate(lane, float(i)))
    assert mixed == alone
    assert fates(LinkModel(config, seed=10), 500) != alone
    assert fates(LinkModel(config, seed=9), 500, key="another") != alone


def test_loss_and_duplication_rates_are_near_their_probabilities() -> None:
    n = 10_000
    model = LinkModel(LinkConfig(loss=0.1, duplicate=0.05), seed=3)
    verdicts = [f.verdict for f in fates(model, n)]
    lost, twice = verdicts.count(Verdict.LOSS), verdicts.count(Verdict.DUPLICATE)
    assert abs(lost - 0.1 * n) < 4 * math.sqrt(n * 0.1 * 0.9)  # 4 sigma
    assert abs(twice - 0.9 * 0.05 * n) < 4 * math.sqrt(n * 0.045)
    duplicated = next(f for f in fates(model, n, key="d") if f.verdict is Verdict.DUPLICATE)
    assert len(duplicated.due) == 2 and duplicated.due[0] == duplicated.due[1]


def test_partitions_cut_across_groups_both_ways_and_heal() -> None:
    model = LinkModel(LinkConfig(), seed=4)
    model.partition([{"a", "b"}, {"c", "d"}])
    assert model.is_blocked("a", "c") and model.is_blocked("d", "b")
    assert not model.is_blocked("a", "b") and not model.is_blocked("c", "d")
    assert not model.is_blocked("a", "e")  # in no group: not cut off
    lane = model.open_lane("a", "c", "x")
    assert model.compute_fate(lane, 0.0).verdict is Verdict.PARTITION
    model.heal()
    assert model.compute_fate(lane, 0.0).verdict is Verdict.DELIVER
    model.block("a", "c")
    assert model.is_blocked("a", "c") and not model.is_blocked("c", "a")
    with pytest.raises(ValueError, match="two groups"):
        model.partition([{"a", "b"}, {"b", "c"}])


def test_partitioned_messages_keep_the_lane_s_random_stream_aligned() -> None:
    config = LinkConfig(loss=0.3)
    free = [f.verdict for f in fates(LinkModel(config, seed=5), 100)]
    model = LinkModel(config, seed=5)
    lane = model.open_lane("a", "b", "k")
    cut = []
    for i in range(100):
        model.partition([{"a"}, {"b"}]) if 40 <= i < 60 else model.heal()
        cut.append(model.compute_fate(lane, float(i)).verdict)
    assert cut[:40] == free[:40] and cut[60:] == free[60:]
    assert set(cut[40:60]) == {Verdict.PARTITION}


def test_routes_parse_with_and_without_names() -> None:
    route = parse_route("a@127.0.0.1:9001=b@10.0.0.2:30303")
    assert route == Route("127.0.0.1", 9001, "10.0.0.2", 30303, "a", "b")
    plain = parse_route("127.0.0.1:0=localhost:30303")
    assert (plain.src, plain.dst) == ("127.0.0.1:0", "localhost:30303")
    for bad in ["127.0.0.1:9001", "127.0.0.1=127.0.0.1:1", "h:1=h:x", "h:1=h:0", "h:70000=h:1"]:
        with pytest.raises(ValueError):
            parse_route(bad)


# -- the relay between two real endpoints -----------------------------------------------------


class Target:
    """A WebSocket server that records what it receives, with arrival times, and echoes it."""

    def __init__(self, *, echo: bool = True, read: bool = True) -> None:
        self.received: list[tuple[bytes, float]] = []
        self.echo = echo
        self.read = read

    async def handle(self, request: Any) -> None:
        ws = await request.accept()
        if not self.read:
            await trio.sleep_forever()
        try:
            while True:
                message = await ws.get_message()
                self.received.append((message, trio.current_time()))
                if self.echo:
                    await ws.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass


@asynccontextmanager
async def relayed(
    target: Target, config: LinkConfig, seed: int = 11, **kwargs: Any
) -> AsyncIterator[tuple[FaultRelay, Any]]:
    """A target server, a relay to it, and a client connected through the relay."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, target.handle, "127.0.0.1", 0, None
        )
        relay = FaultRelay([Route("127.0.0.1", 0, "127.0.0.1", server.port, "a", "b")], config,
                           seed=seed, **kwargs)  # fmt: skip
        (port,) = await nursery.start(relay.run)
        try:
            async with trio_websocket.open_websocket(
                "127.0.0.1", port, "/", use_ssl=False, disconnect_timeout=1
            ) as ws:
                yield relay, ws
        except trio_websocket.DisconnectionTimeout:
            pass  # a client whose sends are backed up cannot say goodbye; nor need it
        nursery.cancel_scope.cancel()


def replay(config: LinkConfig, seed: int, key: str, count: int) -> list[Verdict]:
    """The verdicts the relay's model gives the first ``count`` messages of lane ``key``."""
    model = LinkModel(config, seed)
    lane = model.open_lane("x", "y", key)
    return [model.compute_fate(lane, 0.0).verdict for _ in range(count)]


async def test_messages_arrive_in_order_no_sooner_than_the_latency_less_the_lost() -> None:
    n, seed = 200, 11
    config = LinkConfig(latency_s=0.03, jitter_s=0.02, loss=0.2)
    forward = replay(config, seed, "0/0/out", n)
    kept = [i for i, v in enumerate(forward) if v is Verdict.DELIVER]
    back = replay(config, seed, "0/0/back", len(kept))
    echoed = [i for i, v in zip(kept, back, strict=True) if v is Verdict.DELIVER]
    assert 0.1 * n < n - len(kept) < 0.3 * n  # the seeded run's loss is near 20%
    target = Target()
    sent: dict[int, float] = {}
    with trio.fail_after(30):
        async with relayed(target, config, seed) as (relay, ws):
            for i in range(n):
                sent[i] = trio.current_time()
                await ws.send_message(i.to_bytes(4, "big"))
            got = []
            while len(got) < len(echoed):
                message = await ws.get_message()
                got.append((int.from_bytes(message, "big"), trio.current_time()))
            stats = relay.statistics()
    arrived = [int.from_bytes(m, "big") for m, _ in target.received]
    assert arrived == kept  # in order, exactly the ones the model kept
    assert [i for i, _ in got] == echoed
    assert all(t - sent[int.from_bytes(m, "big")] >= 0.03 for m, t in target.received)
    assert all(t - sent[i] >= 0.06 for i, t in got)  # there and back
    assert stats.lost == n - len(echoed)
    assert stats.forwarded == len(kept) + len(echoed) == stats.delayed
    assert stats.connections == 1 and stats.partitioned == stats.duplicated == 0


async def test_duplicates_follow_their_original() -> None:
    n, seed = 100, 12
    config = LinkConfig(duplicate=0.3)
    forward = replay(config, seed, "0/0/out", n)
    expected = [i for i, v in enumerate(forward) for _ in range(2 if v is Verdict.DUPLICATE else 1)]
    target = Target(echo=False)
    with trio.fail_after(30):
        async with relayed(target, config, seed) as (relay, ws):
            for i in range(n):
                await ws.send_message(i.to_bytes(4, "big"))
            await poll(lambda: len(target.received) >= len(expected), 20, "every copy")
            stats = relay.statistics()
    assert [int.from_bytes(m, "big") for m, _ in target.received] == expected
    assert stats.duplicated == len(expected) - n > 0


async def test_a_partition_drops_everything_even_in_flight_until_healed() -> None:
    target = Target(echo=False)
    with trio.fail_after(30):
        async with relayed(target, LinkConfig(latency_s=0.3)) as (relay, ws):
            await ws.send_message(b"in flight")
            await poll(lambda: relay.statistics().delayed == 1, 5, "queued")
            relay.partition([{"a"}, {"b"}])  # before it is due: it must not arrive
            for i in range(20):
                await ws.send_message(b"cut %d" % i)
            await poll(lambda: relay.statistics().partitioned == 21, 10, "all 21 dropped")
            relay.heal()
            await ws.send_message(b"after")
            await poll(lambda: len(target.received) >= 1, 10, "the message after healing")
            assert [m for m, _ in target.received] == [b"after"]
            relay.block("b", "a")  # one way: a still reaches b
            await ws.send_message(b"one way")
            await poll(lambda: len(target.received) >= 2, 10, "a message the block allows")


async def test_an_unreachable_target_is_a_refused_dial() -> None:
    closed = free_port_run(1)  # nothing listens there
    relay = FaultRelay([Route("127.0.0.1", 0, "127.0.0.1", closed)], connect_timeout_s=2)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            (port,) = await nursery.start(relay.run)
            with pytest.raises(trio_websocket.HandshakeError):
                async with trio_websocket.open_websocket("127.0.0.1", port, "/", use_ssl=False):
                    pass
            nursery.cancel_scope.cancel()
    assert relay.statistics().refused == 1


async def test_a_receiver_that_does_not_read_backs_up_its_sender() -> None:
    target = Target(read=False)
    chunk = b"x" * 65_536
    total = 2000  # 128 MiB: far more than the socket buffers and the relay's 8 messages
    sent = 0

    async def flood(ws: Any) -> None:
        nonlocal sent
        for _ in range(total):
            await ws.send_message(chunk)
            sent += 1

    with trio.fail_after(40):
        async with (
            relayed(target, LinkConfig(), queue_messages=8) as (relay, ws),
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(flood, ws)
            await poll(lambda: relay.statistics().stalled >= 1, 30, "the relay's queue full")
            for _ in range(20):  # the relay reads no more: the sender gets stuck
                held = sent
                await trio.sleep(0.5)
                if sent == held:
                    break
            assert sent == held < total
            nursery.cancel_scope.cancel()
    assert relay.statistics().forwarded < total


# -- four validators through the relay --------------------------------------------------------

SLOT_S = 1.0
"""Not shorter: four whole nodes share this process (and two cores with other work)."""
NAMES = [f"n{i}" for i in range(4)]


def relay_routes(base: int) -> tuple[list[Route], dict[tuple[int, int], int]]:
    """One route per pair i > j (node i dials node j through it) on ports after the nodes'."""
    routes, ports = [], {}
    for i in range(4):
        for j in range(i):
            ports[(i, j)] = base + 4 + len(routes)
            routes.append(Route("127.0.0.1", ports[(i, j)], "127.0.0.1", base + j,
                                NAMES[i], NAMES[j]))  # fmt: skip
    return routes, ports


@pytest.mark.slow
async def test_four_validators_through_the_relay_finalize_stall_when_split_and_resume(
    tmp_path: Path,
) -> None:
    doc = genesis_doc(extra_validators=3, epoch_length=64)
    doc["genesis_time"] = int(time.time())
    doc["consensus"]["slot_duration"] = SLOT_S
    genesis = parse_genesis(doc)
    base = free_port_run(4 + 6)
    routes, ports = relay_routes(base)
    relay = FaultRelay(routes, LinkConfig(latency_s=0.02, jitter_s=0.02, loss=0.02), seed=21)
    peer_ids = [k.public_key_bytes.hex() for k in NODE_KEYS[:4]]
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            await nursery.start(relay.run)
            handles: list[NodeHandle] = []
            for i in range(4):
                bootstrap = [make_multiaddr("127.0.0.1", ports[(i, j)], peer_ids[j])
                             for j in range(i)]  # fmt: skip
                p2p = network_config(genesis, listen_addr="127.0.0.1", port=base + i,
                                     bootstrap=bootstrap, discover=False)  # fmt: skip
                p2p = attrs.evolve(p2p, handshake_timeout_s=2.0, dial_backoff_max_s=2.0)
                settings = NodeSettings(tmp_path / NAMES[i], genesis, VALIDATOR_KEYS[i],
                                        rpc=None, p2p=p2p, node_key=NODE_KEYS[i])  # fmt: skip
                handles.append(await nursery.start(run_node, settings))

            def heights() -> list[int]:
                return [h.chain.head.number for h in handles]

            await poll(lambda: min(heights()) >= 4, 60, "height 4 through the relay")
            assert assert_same_chain(handles) >= 4
            assert relay.statistics().lost > 0 and relay.statistics().connections >= 6

            relay.partition([NAMES[:2], NAMES[2:]])
            await trio.sleep(3 * SLOT_S)  # what was decided before the cut lands
            top = max(heights())
            before = relay.statistics().partitioned
            await trio.sleep(6 * SLOT_S)  # a bounded window in which nothing may finalize
            assert max(heights()) == top, f"a block finalized across a 2|2 split: {heights()}"
            assert relay.statistics().partitioned > before  # they kept trying

            relay.heal()
            await poll(lambda: min(heights()) >= top + 3, 60, "finality again after healing")
            assert assert_same_chain(handles) >= top + 3
            nursery.cancel_scope.cancel()
