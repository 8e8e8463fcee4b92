"""A reproducible multi-node simulation: real nodes on simulated links and virtual time.

``python -m moderntensor.sim`` (see ``__main__``) runs N real nodes -- driver, producer, pool,
chain on RocksDB, the network service with its gossip, requests and range sync -- in one Trio
process, swapping only the transport (``_network``: latency, jitter, loss, duplication,
reordering, partitions) and the clock (Trio's ``MockClock``; work the node takes off its event
loop runs inline: ``moderntensor.offload``). Byzantine validators are real nodes whose frames
pass through an actor (``_byzantine``); invariants are checked by independent code
(``_checks``) after every delivery. The same arguments give the same digest of every frame
delivered, every run.
"""

from moderntensor.sim._run import SimResult, simulate
from moderntensor.sim._spec import Crash, CrashMode, Partition, SimConfig, SpecError

__all__ = ["Crash", "CrashMode", "Partition", "SimConfig", "SimResult", "SpecError", "simulate"]
