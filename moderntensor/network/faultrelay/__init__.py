"""A fault-injecting WebSocket relay: latency, jitter, loss, duplication, reordering and
partitions between nodes, without netem (the kernels we test on have none).

Nodes talk over trio-websocket, one binary message per frame, and their handshake is signed
end to end over fresh nonces. So a relay that forwards whole messages unchanged between a
dialer and the real target is transparent: the dialer's bootstrap address names the relay's
port and the *target's* peer id, and the handshake proves that key as usual.

* ``_model``: the pure link model. Each direction of each connection is a *lane* with its own
  seeded random stream; :meth:`LinkModel.compute_fate` says when (if ever, how many times) a
  message is delivered. Partitions are sets of blocked (src, dst) name pairs.
* ``_relay``: :class:`FaultRelay`, the Trio task. One listener per :class:`Route` (listen
  address -> target address, with the dialing and target node's names); bounded queues per
  lane; counters (:meth:`FaultRelay.statistics`); ``partition``, ``block`` and ``heal`` at
  run time.
* ``__main__``: ``python -m moderntensor.network.faultrelay --route ...`` for manual use.

Run it in a nursery::

    relay = FaultRelay(routes, LinkConfig(latency_s=0.02, jitter_s=0.01, loss=0.01), seed=7)
    ports = await nursery.start(relay.run)
    relay.partition([{"a", "b"}, {"c", "d"}])
    relay.heal()

Messages are dropped while partitioned (connections stay open, as after a cable cut; nothing
queued toward the other side is delivered after the cut). Dropping a message in the middle of
a stream is loss at the message level, which a real stream never does; the node's protocol
recovers from it by request timeouts and the consensus re-sends. See docs/network.md, "Fault
injection and multi-host tests".
"""

from __future__ import annotations

from moderntensor.network.faultrelay._model import Fate, Lane, LinkConfig, LinkModel, Verdict
from moderntensor.network.faultrelay._relay import (
    FaultRelay,
    RelayStatistics,
    Route,
    parse_route,
)

__all__ = [
    "Fate",
    "FaultRelay",
    "Lane",
    "LinkConfig",
    "LinkModel",
    "RelayStatistics",
    "Route",
    "Verdict",
    "parse_route",
]
