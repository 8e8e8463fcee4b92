"""The node's side of the network: what :class:`~moderntensor.network.NetworkService` reads
from and hands to the consensus driver (:class:`NodeLink`), and how a node gets its key.

The network never imports the node (layering, DESIGN.md §2); it sees the node through
:class:`~moderntensor.network.ConsensusLink`, which this class implements over the assembled
parts: messages and peer status go into the driver's inbox with an awaited ``send`` (the
inbox is bounded: a full one makes the peer's reader wait, never drops), status and votes
are read from the core, certificates from the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import trio

from moderntensor.chain.genesis import Genesis
from moderntensor.chain.timing import compute_slot_at
from moderntensor.chain.votes import SignedVote
from moderntensor.consensus import Certificate, Round
from moderntensor.crypto import PrivateKey
from moderntensor.keys import load_or_create_node_key
from moderntensor.network import (
    ConsensusMessage,
    GossipVerdict,
    LocalStatus,
    Multiaddr,
    NetworkConfig,
)
from moderntensor.node._assemble import NodeParts
from moderntensor.node._events import DriverEvent, PeerStatus
from moderntensor.node._logging import event
from moderntensor.node._screen import screen

__all__ = ["NodeLink", "network_config", "node_key_for"]

log = logging.getLogger("moderntensor.node")


class NodeLink:
    """:class:`~moderntensor.network.ConsensusLink` over one node's parts."""

    def __init__(self, parts: NodeParts, inbox: trio.MemorySendChannel[DriverEvent]) -> None:
        self.parts = parts
        self.inbox = inbox

    @property
    def validator_id(self) -> bytes | None:
        return self.parts.core.validator_id

    def local_status(self) -> LocalStatus:
        core, head = self.parts.core, self.parts.chain.head
        protection = self.parts.protection
        # The highest certificate round seen: slashing protection keeps it (a node that does
        # not validate reports none; it signs nothing, and peers' gates need only validators').
        certified = None if protection is None else protection.certified_mark
        return LocalStatus(
            head.number, head.hash, core.finalized.slot, core.epoch, core.view, certified
        )

    def clock_slot(self) -> int:
        config = self.parts.config
        now_ms = self.parts.driver.clock()
        return compute_slot_at(config.genesis_time_ms, config.preset.slot_duration_ms, now_ms)

    def votes_of(self, validator_id: bytes) -> Sequence[SignedVote]:
        return self.parts.core.votes_of(validator_id)

    def certificates_of(self, epoch: int, slot: int) -> Sequence[Certificate]:
        return self.parts.journal.certificates_of((epoch, slot))

    def finalization(self, number: int) -> Certificate | None:
        return self.parts.journal.finalization(number)

    def screen(self, message: ConsensusMessage) -> tuple[GossipVerdict, str]:
        return screen(self.parts.core, self.parts.verifier, message)

    async def deliver(self, message: ConsensusMessage) -> None:
        await self.inbox.send(message)

    async def peer_status(self, certified: Round | None, own_votes: tuple[SignedVote, ...]) -> None:
        await self.inbox.send(PeerStatus(certified, own_votes))


def node_key_for(data_dir: Path, key_file: Path | None) -> PrivateKey:
    """The node's network key: ``key_file`` if configured, else ``<data_dir>/node.key``
    (created, mode 0600, on first start).

    Raises:
        moderntensor.keys.KeyFileError: the file does not load or cannot be written.
    """
    path = key_file or data_dir / "node.key"
    node_key, created = load_or_create_node_key(path)
    if created:
        event(log, logging.INFO, "node key created", path=str(path), peer_id=node_key.peer_id)
    return node_key.key


def network_config(
    genesis: Genesis,
    *,
    listen_addr: str | None = "0.0.0.0",
    port: int = 30303,
    bootstrap: Sequence[Multiaddr] = (),
    max_peers: int = 50,
    max_inbound: int = 40,
    max_outbound: int = 10,
    max_inbound_per_ip: int = 4,
    bootnode: bool = False,
    stale_after_s: float = 600.0,
    discover: bool = True,
) -> NetworkConfig:
    """``[p2p]`` for a network of ``genesis``: the gossip dedupe window is one slot (at least
    half a second), shorter than the core's re-send period, so re-sends get through. A
    bootnode dials no address it learns (``_peerbook``: it learns who connects to it)."""
    slot_s = genesis.consensus.slot_duration_ms / 1000
    return NetworkConfig(
        listen_addr=listen_addr, port=port, bootstrap=tuple(bootstrap), max_peers=max_peers,
        max_inbound=max_inbound, max_outbound=max_outbound,
        max_inbound_per_ip=max_inbound_per_ip, bootnode=bootnode,
        discover=discover and not bootnode, stale_after_s=stale_after_s,
        seen_ttl_s=max(0.5, slot_s),
    )  # fmt: skip
