"""Gossip relay for :class:`~moderntensor.network._service.NetworkService`: what a reader does
with a gossip frame (dedupe, vote checks, relay, hand to the node), and what the node sends
(the driver's broadcasts, the admitted transactions). See ``_service`` for the whole story.
"""

from __future__ import annotations

import trio

from moderntensor.chain.votes import Evidence, SignedVote
from moderntensor.consensus import Certificate, Proposal, SignatureVerifier
from moderntensor.crypto import keccak256
from moderntensor.network._config import NetworkConfig
from moderntensor.network._errors import NetworkRemoteError
from moderntensor.network._gossip import (
    SeenCache,
    build_tx_frames,
    compute_message_id,
    compute_vote_key,
)
from moderntensor.network._link import ConsensusLink, ConsensusMessage
from moderntensor.network._messages import (
    MAX_TX_BATCH,
    DisconnectReason,
    Transactions,
    WireMessage,
)
from moderntensor.network._peers import Peer, PeerManager
from moderntensor.network._score import FUTURE_VOTE_COST, PeerScores
from moderntensor.network._wire import encode_message
from moderntensor.service import ChainService

__all__ = ["GossipRelay"]


class GossipRelay:
    """The gossip half of :class:`NetworkService` (a mixin: the attributes are its)."""

    config: NetworkConfig
    service: ChainService
    link: ConsensusLink
    peers: PeerManager
    verifier: SignatureVerifier
    seen: SeenCache
    vote_keys: SeenCache
    scores: PeerScores
    delivered: int
    relayed: int
    duplicates: int
    ignored: int

    async def _on_gossip(
        self, peer: Peer, message: WireMessage, frame: bytes, message_id: bytes
    ) -> None:
        now = trio.current_time()
        if isinstance(message, SignedVote):
            key = compute_vote_key(message)
            if not self.vote_keys.is_fresh(key, now):
                self.duplicates += 1
                return
            if self._too_far_ahead(message):  # ignored: never recovered, never relayed
                self.ignored += 1
                if self.scores.charge(peer.peer_id, FUTURE_VOTE_COST, now):
                    peer.kick(DisconnectReason.BANNED)
                return
            if not self.verifier.is_authentic(message):
                raise NetworkRemoteError(DisconnectReason.BAD_SIGNATURE,
                                         f"a {message.kind.name} vote not signed by "
                                         f"0x{message.signer.hex()}")  # fmt: skip
            self.vote_keys.add(key, now)
        if not self.seen.add(message_id, now):  # another peer's copy came first
            self.duplicates += 1
            return
        if isinstance(message, Transactions):
            for raw in message.txs:
                peer.known_txs.add(keccak256(raw))
            await self.service.submit_raw_transactions(list(message.txs))
            return
        assert isinstance(message, SignedVote | Certificate | Proposal | Evidence)
        self.relayed += self.peers.broadcast(frame, exclude=peer)
        self.delivered += 1
        await self.link.deliver(message)

    def _too_far_ahead(self, vote: SignedVote) -> bool:
        return vote.slot > self.link.local_status().view + self.config.max_future_slots

    # -- what the node sends ----------------------------------------------------------------

    async def _broadcast_outbound(
        self, outbound: trio.MemoryReceiveChannel[ConsensusMessage]
    ) -> None:
        """Forward the driver's broadcasts to every peer (marked seen, so peers' echoes are
        not delivered back to it)."""
        async for message in outbound:
            frame = encode_message(message)
            now = trio.current_time()
            self.seen.add(compute_message_id(frame), now)
            if isinstance(message, SignedVote):
                self.vote_keys.add(compute_vote_key(message), now)
            self.peers.broadcast(frame)

    async def _gossip_transactions(self, pending: trio.MemoryReceiveChannel[bytes]) -> None:
        """Gossip admitted transactions in batches, to each peer the ones it lacks."""
        async for first in pending:
            hashes = [first]
            while len(hashes) < MAX_TX_BATCH:
                try:
                    hashes.append(pending.receive_nowait())
                except trio.WouldBlock:
                    break
            txs = []
            for tx_hash in hashes:
                tx = self.service.pool.get(tx_hash)
                if tx is not None:
                    txs.append((tx_hash, tx.raw))
            for peer in list(self.peers.peers.values()):
                batch = [(h, raw) for h, raw in txs if h not in peer.known_txs]
                for tx_hash, _ in batch:
                    peer.known_txs.add(tx_hash)
                for frame in build_tx_frames([raw for _, raw in batch]):
                    peer.send_nowait(frame)
