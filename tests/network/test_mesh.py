"""The bounded gossip mesh (memory transport, virtual time): a relay sends a frame in full
to ``mesh_degree`` peers and only its id to the others, who ask for it with ``Want``; each
node still gets every message exactly once. Screening: an IGNOREd message is neither
delivered nor relayed and costs the sender nothing; a REJECTed one disconnects it."""

from __future__ import annotations

import trio
import trio.testing
from trio.testing import MockClock

from moderntensor.chain.votes import VoteKind
from moderntensor.consensus import build_certificate
from moderntensor.network import GossipVerdict, MessageCache, Want
from tests.network.fakes import FakeLink, running_mesh, wait_until
from tests.network.helpers import vote

LEAVES = 6


def star(i: int) -> list[int]:
    """0 - 1, and 1 - each of 2..7: every leaf hears node 0 only through node 1's relay."""
    return [] if i == 0 else [0] if i == 1 else [1]


async def test_a_relay_sends_d_full_copies_and_the_rest_is_pulled_with_have_want(
    autojump_clock: MockClock,
) -> None:
    async with running_mesh(2 + LEAVES, star, discover=False, mesh_degree=2) as nodes:
        hub = nodes[1]
        await wait_until(lambda: len(hub.connected()) == 1 + LEAVES)
        messages = [vote(slot=s) for s in range(5, 9)]
        for message in messages:
            await nodes[0].outbound.send(message)
        await wait_until(lambda: all(len(n.link.delivered) == 4 for n in nodes[2:]))
        await trio.sleep(1.0)  # anything late would have arrived
        for leaf in nodes[2:]:
            assert leaf.link.delivered == messages  # every one, once, in order of arrival
        assert hub.service.relayed == 2 * len(messages)  # D full copies per message
        assert hub.service.wants_served == (LEAVES - 2) * len(messages)
        assert sum(n.service.wants_sent for n in nodes[2:]) >= LEAVES - 2
        assert hub.service.haves_sent >= LEAVES - 2


async def test_an_ignored_message_is_not_relayed_and_costs_nothing(
    autojump_clock: MockClock,
) -> None:
    links = [FakeLink() for _ in range(3)]
    links[1].verdicts["SignedVote"] = (GossipVerdict.IGNORE, "epoch 9 (this node is in 1)")
    async with running_mesh(3, lambda i: [i - 1] if i else [], discover=False,
                            links=links) as nodes:  # fmt: skip
        await wait_until(lambda: nodes[1].connected() == {0, 2})
        await nodes[0].outbound.send(vote())
        await wait_until(lambda: nodes[1].service.ignored == 1)
        await trio.sleep(1.0)
        assert links[1].delivered == [] and links[2].delivered == []
        assert nodes[1].connected() == {0, 2}  # the sender is still a peer
        assert nodes[1].service.scores.score(nodes[0].service.identity.peer_id,
                                             trio.current_time()) == 0  # fmt: skip


async def test_a_rejected_message_disconnects_its_sender_and_goes_no_further(
    autojump_clock: MockClock,
) -> None:
    links = [FakeLink() for _ in range(3)]
    links[1].verdicts["Certificate"] = (GossipVerdict.REJECT, "certificate of slot 5: forged")
    async with running_mesh(3, lambda i: [i - 1] if i else [], discover=False,
                            links=links) as nodes:  # fmt: skip
        await wait_until(lambda: nodes[1].connected() == {0, 2})
        cert = build_certificate(VoteKind.NOTARIZE, 1, 5, b"\x33" * 32, [vote()])
        await nodes[0].outbound.send(cert)
        await wait_until(lambda: nodes[1].service.rejected == 1)
        await wait_until(lambda: 0 not in nodes[1].connected())
        await trio.testing.wait_all_tasks_blocked()
        assert links[1].delivered == [] and links[2].delivered == []
        assert nodes[1].service.scores.score(nodes[0].service.identity.peer_id,
                                             trio.current_time()) < 0  # fmt: skip


def test_the_message_cache_is_bounded_in_time_and_bytes() -> None:
    cache = MessageCache(ttl_s=2.0, max_bytes=250)
    for i in range(3):
        cache.put(bytes([i]) * 32, b"x" * 100, now=float(i))
    assert cache.get(b"\x00" * 32, 2.5) is None  # evicted: 300 bytes > 250
    assert cache.get(b"\x01" * 32, 2.5) == b"x" * 100
    assert cache.size == 200
    assert cache.get(b"\x01" * 32, 3.0) is None  # its 2 s are over
    cache.put(b"\x09" * 32, b"y" * 10, now=4.5)  # expires the old ones on the way
    assert len(cache) == 1 and cache.size == 10


async def test_a_frame_is_served_once_per_peer_however_often_it_is_wanted(
    autojump_clock: MockClock,
) -> None:
    async with running_mesh(2, lambda i: [0] if i else [], discover=False) as nodes:
        await wait_until(lambda: nodes[0].connected() == {1})
        await nodes[0].outbound.send(vote())  # cached at node 0 as it is broadcast
        await wait_until(lambda: len(nodes[1].link.delivered) == 1)
        relay, peer = nodes[0].service, next(iter(nodes[0].service.peers.peers.values()))
        message_id = next(iter(relay.cache._frames))
        for _ in range(3):
            relay._on_want(peer, Want((message_id,) * 5))
        assert relay.wants_served == 1
