"""The network's settings (node.toml's ``[p2p]`` resolved, plus timing knobs tests shorten)."""

from __future__ import annotations

from typing import Any

import attrs

from moderntensor.network._multiaddr import Multiaddr

__all__ = ["NetworkConfig"]


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be positive, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class NetworkConfig:
    listen_addr: str | None = "0.0.0.0"
    """Where to accept connections; None: accept none (dial out only)."""
    port: int = attrs.field(default=30303, validator=attrs.validators.in_(range(65536)))
    """0: any free port (tests)."""
    bootstrap: tuple[Multiaddr, ...] = ()
    """Peers to dial at start and to keep dialing (with backoff) while not connected."""
    max_peers: int = attrs.field(default=50, validator=_positive)
    """Connected peers in all, either direction (``TOO_MANY_PEERS`` beyond it)."""
    max_inbound: int = attrs.field(default=40, validator=_positive)
    """Peers that dialed us; more are refused right after the handshake (``TOO_MANY_PEERS``)."""
    max_outbound: int = attrs.field(default=10, validator=_positive)
    """Connections we dial (bootstrap and discovery) at once, counted from the dial on: no
    dial starts while this many are open or opening."""
    max_inbound_per_ip: int = attrs.field(default=4, validator=_positive)
    """Inbound peers from one IP address, so one host cannot take every inbound slot.
    Loopback addresses are exempt: a localnet runs every node on 127.0.0.1."""
    bootnode: bool = False
    """This node's main job is to tell others about peers (``_peerbook``): it serves the
    addresses it saw recently and does not dial the addresses it learns."""
    stale_after_s: float = attrs.field(default=600.0, validator=_positive)
    """A known address not seen (connected) for this long is forgotten and no longer served."""
    scores_file: str | None = None
    """Where peer scores and bans are kept across restarts (``_persist``); None: the node
    sets ``<data_dir>/peers.json``; empty: memory only (the simulator, whose time is virtual)."""
    scores_save_s: float = attrs.field(default=60.0, validator=_positive)
    """How often the scores are saved while running (and once at a clean shutdown)."""
    handshake_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    request_timeout_s: float = attrs.field(default=2.0, validator=_positive)
    """One request to one peer; then the next peer is asked."""
    relay_window_s: float = attrs.field(default=120.0, validator=_positive)
    """A gossip frame is relayed at most once in this window (``_relay``: no echo loops)."""
    seen_ttl_s: float = attrs.field(default=1.0, validator=_positive)
    """The gossip dedupe window (see ``_gossip``: about a slot; the node passes its slot)."""
    peer_queue: int = attrs.field(default=1024, validator=_positive)
    """Frames queued to one peer before further ones are dropped for it."""
    dial_backoff_s: float = attrs.field(default=0.5, validator=_positive)
    """The first wait before dialing an unreachable bootstrap peer again; doubled per
    failure up to ``dial_backoff_max_s``, each wait jittered by +-20%."""
    dial_backoff_max_s: float = attrs.field(default=30.0, validator=_positive)
    discover: bool = True
    """Dial addresses learned by peer exchange (else only the bootstrap peers and inbound)."""
    max_discovery_dials: int = attrs.field(default=8, validator=_positive)
    """Addresses learned by peer exchange dialed at once (while below ``max_peers``)."""
    max_frames_per_s: float = attrs.field(default=2000.0, validator=_positive)
    """Frames one peer may send per second on average (``frame_burst`` at once); beyond it
    the peer is disconnected with ``RATE_LIMITED`` (``_score.RateLimit``)."""
    frame_burst: float = attrs.field(default=4000.0, validator=_positive)
    score_half_life_s: float = attrs.field(default=300.0, validator=_positive)
    """Peer scores decay toward 0, halved in this time (``_score.PeerScores``)."""
    ban_s: float = attrs.field(default=600.0, validator=_positive)
    """How long a peer whose score fell to the threshold is refused."""
    mesh_degree: int = attrs.field(default=8, validator=_positive)
    """Peers a relayed gossip frame is sent to in full (gossipsub's D); the other peers get
    its id in a ``Have`` and ask for it with ``Want`` if they lack it. The node's own
    messages go to every peer (flood publish)."""
    have_interval_s: float = attrs.field(default=0.1, validator=_positive)
    """How often the ids gathered for ``Have`` are sent."""
    message_cache_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=_positive)
    """Frames kept to answer ``Want`` (for ``seen_ttl_s`` plus a second)."""
    max_future_slots: int = attrs.field(default=64, validator=_positive)
    """Votes for slots further ahead of our view are ignored (never recovered or relayed)."""
