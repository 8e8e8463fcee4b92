"""Peer scores, bans and the per-peer frame rate limit: pure, and over the memory transport."""

from __future__ import annotations

import contextlib

import pytest
import trio
from trio.testing import MockClock

from moderntensor.network import (
    ConnectionClosed,
    DisconnectReason,
    GetStatus,
    MemoryNetwork,
    encode_message,
)
from moderntensor.network._score import BAN_THRESHOLD, PeerScores, RateLimit
from tests.network.fakes import running_mesh, wait_until
from tests.network.test_service import handshake, raw_peer, receive_until_disconnect


def test_scores_decay_and_a_ban_ends() -> None:
    scores = PeerScores(half_life_s=10.0, ban_s=60.0)
    assert not scores.charge_for("a", DisconnectReason.BAD_MESSAGE, 0.0)
    assert scores.score("a", 10.0) == pytest.approx(-20.0)  # halved in a half-life
    assert scores.score("b", 10.0) == 0.0
    assert scores.charge("a", -BAN_THRESHOLD, 10.0)  # at the threshold: banned
    assert scores.is_banned("a", 69.0) and scores.bans == 1
    assert not scores.is_banned("a", 70.0)  # the ban is temporary
    assert scores.score("a", 70.0) == 0.0  # and the score starts again
    assert not scores.is_banned("b", 10.0)


def test_the_rate_limit_allows_bursts_then_the_rate() -> None:
    limit = RateLimit(rate=10.0, burst=5.0, now=0.0)
    assert all(limit.take(0.0) for _ in range(5))
    assert not limit.take(0.0)
    assert limit.take(0.1)  # one token back after 1/rate
    assert not limit.take(0.1)


async def test_a_peer_over_the_frame_rate_is_disconnected_and_charged(
    autojump_clock: MockClock,
) -> None:
    net = MemoryNetwork()
    async with (
        running_mesh(1, lambda i: [], net=net, max_frames_per_s=10.0, frame_burst=20.0) as nodes,
        raw_peer(net, 0) as conn,
    ):
        await handshake(conn)
        await wait_until(lambda: len(nodes[0].service.peers) == 1)
        reasons: list[DisconnectReason] = []

        async def read() -> None:
            reasons.append(await receive_until_disconnect(conn))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            with contextlib.suppress(ConnectionClosed):
                for i in range(40):
                    await conn.send(encode_message(GetStatus(i + 1)))
        assert reasons == [DisconnectReason.RATE_LIMITED]
        await wait_until(lambda: len(nodes[0].service.peers) == 0)
        peer_id = next(iter(nodes[0].service.scores._scores))
        assert nodes[0].service.scores.score(peer_id, 0.0) < 0
