"""Peer upkeep for :class:`~moderntensor.network._service.NetworkService` (a mixin, like
``_relay``): the address book's hooks, score persistence, and what the node shows of its
peers (``mt_peers``, ``net_peerCount``, ``/metrics``).

* **Address book** (``_peerbook``): a completed handshake records the peer's address and
  marks it connected; the end of the session marks when it was last seen.
* **Scores across restarts** (``_persist``): loaded once before the service listens, saved
  every ``scores_save_s`` and once more when the service stops (cancellation: a clean
  shutdown), so a banned peer is still refused after a restart.
* **Scores**: what a peer's faults cost (``_score``): a session-ending error, a frame sent
  twice, a request left to time out; a score at the threshold bans the peer.
* **What it shows**: :meth:`PeerUpkeep.peer_facts` (one :class:`PeerInfo` per connected
  peer) and :meth:`PeerUpkeep.stats` (:class:`NetworkStats`: counts by direction, gossip
  counters, bans, disconnects by reason and side, a score summary). Labels stay bounded: the
  disconnect reasons are the reason codes plus ``CLOSED``, ``CONNECTION_LOST`` and
  ``INTERNAL_ERROR``; no label carries a peer id.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import trio

from moderntensor.chain.votes import SignedVote
from moderntensor.network._config import NetworkConfig
from moderntensor.network._link import ConsensusLink
from moderntensor.network._logging import event
from moderntensor.network._messages import (
    DisconnectReason,
    GetPeers,
    GetStatus,
    GetVotes,
    Peers,
    Status,
    Votes,
)
from moderntensor.network._multiaddr import Multiaddr
from moderntensor.network._peerbook import AddressBook
from moderntensor.network._peers import Direction, Peer, PeerManager
from moderntensor.network._persist import encode_scores, load_scores, write_atomic
from moderntensor.network._score import REPEAT_COST, TIMEOUT_COST, TIMEOUT_FLOOR, PeerScores

__all__ = ["NetworkStats", "PeerInfo", "PeerUpkeep", "compute_disconnect_label"]

log = logging.getLogger("moderntensor.network")

GREET_ATTEMPTS = 3
"""Failed tries at a new peer's status logged one by one (then every tenth)."""
GREET_MAX_WAIT = 16
"""The longest wait for a status answer, in request timeouts (tries wait 1, 2, 4 ... times)."""


@attrs.frozen(slots=True, kw_only=True)
class PeerInfo:
    """One connected peer, for ``mt_peers``."""

    peer_id: str
    address: str | None
    direction: str
    connected_since: float
    """Unix seconds."""
    score: float
    head_number: int
    head_hash: bytes
    finalized_slot: int
    protocol_version: int


@attrs.frozen(slots=True, kw_only=True)
class NetworkStats:
    """The network's counters at one moment, for ``/metrics``."""

    counts: dict[str, float]
    disconnects: dict[tuple[str, str], int]


def compute_disconnect_label(reason: str, kick: DisconnectReason | None) -> tuple[str, str]:
    """``(reason code, "us" or "peer")`` for a session that ended with ``reason`` (the text
    ``_serve_peer`` returns) or was kicked with ``kick``: a bounded set of labels."""
    if kick is not None:
        return kick.name, "us"
    if reason.startswith("peer said "):
        name = reason.removeprefix("peer said ")
        return (name if name in DisconnectReason.__members__ else "UNKNOWN"), "peer"
    head = reason.split(":", 1)[0]
    if head in DisconnectReason.__members__:
        return head, "us"
    if head == "connection lost":
        return "CONNECTION_LOST", "peer"
    if head == "internal error":
        return "INTERNAL_ERROR", "us"
    return "CLOSED", "peer"


class PeerUpkeep:
    """The upkeep half of :class:`NetworkService` (a mixin: the attributes are its)."""

    def _charge_repeat(self, peer: Peer, now: float) -> None:
        """A peer sent a frame a third time within the window (an honest one relays each once)."""
        if self.scores.charge(peer.peer_id, REPEAT_COST, now):
            peer.kick(DisconnectReason.BANNED)

    def _charge_timeout(self, peer: Peer) -> None:
        """A connected peer let a request time out (the caller asks another peer)."""
        self.scores.charge(peer.peer_id, TIMEOUT_COST, trio.current_time(), floor=TIMEOUT_FLOOR)

    def _charge(self, peer: Peer, reason: DisconnectReason) -> None:
        """Score a remote error against the peer (maybe banning it; see ``_score``)."""
        if self.scores.charge_for(peer.peer_id, reason, trio.current_time()):
            event(log, logging.WARNING, "peer banned", peer=peer.label, reason=reason.name,
                  ban_s=self.config.ban_s)  # fmt: skip

    config: NetworkConfig
    link: ConsensusLink
    _learn: Callable[[Sequence[Multiaddr]], None]
    peers: PeerManager
    scores: PeerScores
    book: AddressBook
    delivered: int
    relayed: int
    duplicates: int
    ignored: int
    rejected: int
    wants_served: int
    known_txs_skipped: int
    txs_shed: int
    served: int
    received: int
    disconnects: collections.Counter[tuple[str, str]]

    # -- hooks --------------------------------------------------------------------------

    def _on_connected(self, peer: Peer) -> None:
        self.book.connected(peer.peer_id, peer.addr, trio.current_time())

    def _on_ended(self, peer: Peer, label: tuple[str, str]) -> None:
        self.book.disconnected(peer.peer_id, trio.current_time())
        self.disconnects[label] += 1

    def _on_refused(self, peer: Peer, reason: DisconnectReason) -> str | None:
        """We refuse ``peer`` right after its handshake: counted; returns the limit it hit
        (its config key) if refused as ``TOO_MANY_PEERS``."""
        self.disconnects[reason.name, "us"] += 1
        return self.peers.limit_hit(peer) if reason is DisconnectReason.TOO_MANY_PEERS else None

    # -- scores on disk -------------------------------------------------------------------

    @property
    def _scores_path(self) -> Path | None:
        return Path(self.config.scores_file) if self.config.scores_file else None

    def _load_scores(self) -> None:
        path = self._scores_path
        if path is not None:
            count = load_scores(path, self.scores, trio.current_time(), time.time())
            now = trio.current_time()
            event(log, logging.INFO, "peer scores loaded", path=str(path), peers=count,
                  banned=self.scores.banned_count(now))  # fmt: skip

    async def _keep_scores(self) -> None:
        """Save the scores every ``scores_save_s`` and when cancelled (the node stops)."""
        path = self._scores_path
        if path is None:
            return
        try:
            while True:
                await trio.sleep(self.config.scores_save_s)
                data = encode_scores(self.scores, trio.current_time(), time.time())
                try:
                    await trio.to_thread.run_sync(write_atomic, path, data)
                except OSError as exc:
                    event(log, logging.WARNING, "peer scores not saved", path=str(path),
                          reason=str(exc))  # fmt: skip
        finally:  # no await here: runs under cancellation too
            self._save_scores_now(path)

    def _save_scores_now(self, path: Path) -> None:
        try:
            write_atomic(path, encode_scores(self.scores, trio.current_time(), time.time()))
        except OSError as exc:
            event(log, logging.WARNING, "peer scores not saved", path=str(path),
                  reason=str(exc))  # fmt: skip

    # -- what the node shows ----------------------------------------------------------------

    def peer_facts(self) -> list[PeerInfo]:
        """Each connected peer, oldest connection first."""
        now, wall = trio.current_time(), time.time()
        out = []
        for peer in sorted(self.peers.peers.values(), key=lambda p: p.connected_at):
            hello, status = peer.hello, peer.status
            source = status if status is not None else hello
            out.append(
                PeerInfo(
                    peer_id=peer.peer_id,
                    address=None if peer.addr is None else str(peer.addr),
                    direction=peer.direction.value,
                    connected_since=wall - (now - peer.connected_at),
                    score=self.scores.score(peer.peer_id, now),
                    head_number=source.head_number,
                    head_hash=source.head_hash,
                    finalized_slot=source.finalized_slot,
                    protocol_version=hello.version,
                )
            )
        return out

    def stats(self) -> NetworkStats:
        now = trio.current_time()
        scores = [self.scores.score(pid, now) for pid in self.peers.peers]
        counts: dict[str, float] = {
            "inbound": self.peers.count(Direction.INBOUND),
            "outbound": self.peers.count(Direction.OUTBOUND),
            "max_inbound": self.config.max_inbound,
            "max_outbound": self.config.max_outbound,
            "known_addresses": len(self.book),
            "forgotten_addresses": self.book.forgotten,
            "received": self.received,
            "delivered": self.delivered,
            "relayed": self.relayed,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "rejected": self.rejected,
            "wants_served": self.wants_served,
            "txs_already_known": self.known_txs_skipped,
            "txs_shed": self.txs_shed,
            "served": self.served,
            "bans": self.scores.bans,
            "banned": self.scores.banned_count(now),
            "score_min": min(scores, default=0.0),
            "score_max": max(scores, default=0.0),
            "score_mean": sum(scores) / len(scores) if scores else 0.0,
        }
        return NetworkStats(counts=counts, disconnects=dict(self.disconnects))

    # -- the greeting -----------------------------------------------------------------------

    async def _greet(self, peer: Peer) -> None:
        """Ask a new peer where it stands and what it holds of our votes (the driver gets a
        ``PeerStatus``), then its peers. A validator signs nothing before it has statuses,
        so this never gives up while the peer is connected: each try waits longer for the
        answer (a slow or far peer), up to ``GREET_MAX_WAIT`` request timeouts."""
        attempt = 0
        while True:
            attempt += 1
            wait = self.config.request_timeout_s * min(2 ** (attempt - 1), GREET_MAX_WAIT)
            if await self._exchange_status(peer, wait):
                break
            if attempt <= GREET_ATTEMPTS or attempt % 10 == 0:
                event(log, logging.WARNING, "peer status not received", peer=peer.label,
                      attempt=attempt, waited_s=wait)  # fmt: skip
            await trio.sleep(min(attempt, GREET_MAX_WAIT) * self.config.request_timeout_s / 2)
        peers = await self.peers.request(peer, GetPeers, timeout_s=wait)
        if isinstance(peers, Peers):
            self._learn(peers.addrs)

    async def _exchange_status(self, peer: Peer, wait: float) -> bool:
        """One status and votes round with ``peer``; True if the driver got its status."""
        status = await self.peers.request(peer, GetStatus, timeout_s=wait)
        if not isinstance(status, Status):
            return False
        own: tuple[SignedVote, ...] = ()
        me = self.link.validator_id
        if me is not None:
            reply = await self.peers.request(peer, lambda rid: GetVotes(rid, me), timeout_s=wait)
            if not isinstance(reply, Votes):  # without them no status: we may not sign yet
                return False
            own = tuple(v for v in reply.votes if v.signer == me)
        await self.link.peer_status(status.certified, own)
        event(log, logging.DEBUG, "peer status", peer=peer.label, head=status.head_number,
              certified=status.certified, own_votes=len(own))  # fmt: skip
        return True
