"""The simulated network's nodes: real nodes (driver, producer, pool, chain on RocksDB, the
real network service and range sync) on simulated links and virtual time, and what happens
to them (start, crash, restart on their data, on an empty directory, on an old backup).

A doppelganger validator's key runs on a second node, its *twin* (index ``validators`` and
up): its own data directory, slashing protection and network identity, and a pool that
refuses the simulation's transfers (a tip floor above theirs: a second machine configured
apart). Whenever the validator leads, the two sign different blocks of one slot.

Keys come from the seed, so the genesis, every signature and every block are functions of it.
"""

from __future__ import annotations

import logging
import random
import shutil
from functools import partial
from pathlib import Path

import attrs
import trio

from moderntensor.chain.genesis import Genesis, parse_genesis
from moderntensor.crypto import PrivateKey, checksum_address, keccak256
from moderntensor.mempool import MempoolConfig
from moderntensor.network import make_multiaddr
from moderntensor.node._network import network_config
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.sim._network import SimNetwork, host_of
from moderntensor.sim._spec import CrashMode, SimConfig

__all__ = ["GENESIS_TIME", "P2P_PORT", "Cluster", "SimKeys", "SimNode", "sim_genesis"]

log = logging.getLogger("moderntensor.sim")

GENESIS_TIME = 1_700_000_000
"""Unix seconds of slot 0; virtual time 0 is this moment."""
P2P_PORT = 30303
STAKE = 1_000 * 10**18
USER_BALANCE = 10**24
USERS = 8
TWIN_MIN_TIP = 10**18
"""A doppelganger's twin admits no transfer with a smaller tip (the simulation's pay 1 gwei)."""


def _key(seed: int, role: bytes, i: int) -> PrivateKey:
    return PrivateKey(keccak256(b"moderntensor sim %s %d %d" % (role, seed, i)))


@attrs.frozen(slots=True)
class SimKeys:
    owners: tuple[PrivateKey, ...]
    consensus: tuple[PrivateKey, ...]
    nodes: tuple[PrivateKey, ...]
    users: tuple[PrivateKey, ...]

    @classmethod
    def of(cls, seed: int, validators: int) -> SimKeys:
        return cls(
            tuple(_key(seed, b"owner", i) for i in range(validators)),
            tuple(_key(seed, b"consensus", i) for i in range(validators)),
            tuple(_key(seed, b"node", i) for i in range(validators)),
            tuple(_key(seed, b"user", i) for i in range(USERS)),
        )


def sim_genesis(config: SimConfig, keys: SimKeys) -> Genesis:
    """N validators of equal stake, a few funded users, the simulation's slots and epochs."""
    validators = [
        {
            "address": checksum_address(owner.address),
            "consensus_pubkey": "0x" + cons.public_key_bytes.hex(),
            "stake": str(STAKE),
            "name": f"v{i}",
        }
        for i, (owner, cons) in enumerate(zip(keys.owners, keys.consensus, strict=True))
    ]
    doc = {
        "chain_id": 5150,
        "network_name": "moderntensor-sim",
        "genesis_time": GENESIS_TIME,
        "consensus": {
            "slot_duration": str(config.slot_ms / 1000),
            "epoch_length": config.epoch_length,
            "min_stake": str(STAKE // 10),
            "max_validators": max(10, config.validators),
            "evidence_epochs": 1,
            "unbonding_epochs": 4,
            "slash_fraction": "0.05",
            "block_reward": str(10**18),
        },
        "block": {"gas_limit": 30_000_000, "base_fee": 10**9, "min_gas_price": 10**9},
        "total_supply": str(10**30),
        "decimals": 18,
        "validators": validators,
        "alloc": {checksum_address(u.address): {"balance": str(USER_BALANCE)} for u in keys.users},
    }
    return parse_genesis(doc, source="simulation genesis")


@attrs.define(eq=False)
class SimNode:
    index: int
    honest: bool
    settings: NodeSettings
    handle: NodeHandle | None = None
    scope: trio.CancelScope | None = None
    stopped: trio.Event = attrs.field(factory=trio.Event)
    starts: int = 0


class Cluster:
    """Every node of one simulation, started in ``nursery`` on ``net``."""

    def __init__(
        self, config: SimConfig, root: Path, net: SimNetwork, nursery: trio.Nursery
    ) -> None:
        self.config = config
        self.root = root
        self.net = net
        self.nursery = nursery
        self.keys = SimKeys.of(config.seed, config.validators)
        self.genesis = sim_genesis(config, self.keys)
        byzantine = set(range(config.validators - config.byzantine, config.validators))
        addrs = [
            make_multiaddr(host_of(i), P2P_PORT, k.public_key_bytes.hex())
            for i, k in enumerate(self.keys.nodes)
        ]
        self.nodes: list[SimNode] = []
        for i in range(config.validators):
            p2p = network_config(self.genesis, listen_addr=host_of(i), port=P2P_PORT,
                                 bootstrap=[a for j, a in enumerate(addrs) if j != i])  # fmt: skip
            p2p = attrs.evolve(p2p, scores_file="", discover=False)
            settings = NodeSettings(root / f"node{i}", self.genesis, self.keys.consensus[i],
                                    rpc=None, p2p=p2p, node_key=self.keys.nodes[i])  # fmt: skip
            self.nodes.append(SimNode(i, i not in byzantine, settings))
        self.twin_of: dict[int, int] = {}
        """Twin node index -> the doppelganger validator whose key it runs."""
        for v in config.doppelgangers():
            i = len(self.nodes)
            p2p = network_config(self.genesis, listen_addr=host_of(i), port=P2P_PORT,
                                 bootstrap=addrs)  # fmt: skip
            p2p = attrs.evolve(p2p, scores_file="", discover=False)
            settings = NodeSettings(root / f"node{i}", self.genesis, self.keys.consensus[v],
                                    rpc=None, p2p=p2p, node_key=_key(config.seed, b"twin", v),
                                    mempool=MempoolConfig(min_tip=TWIN_MIN_TIP))  # fmt: skip
            self.nodes.append(SimNode(i, False, settings))
            self.twin_of[i] = v

    def clock_ms(self) -> int:
        return GENESIS_TIME * 1000 + int(trio.current_time() * 1000)

    @property
    def honest(self) -> list[SimNode]:
        return [n for n in self.nodes if n.honest]

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes if n.handle is not None]

    async def start(self, node: SimNode) -> None:
        node.stopped = trio.Event()
        node.scope = trio.CancelScope()
        node.starts += 1
        rng = random.Random(self.config.seed * 1_000_003 + node.index * 1_009 + node.starts)
        run = partial(open_node, node.settings, clock=self.clock_ms,
                      transport=self.net.transport(node.index), rng=rng)  # fmt: skip

        async def serve(*, task_status: trio.TaskStatus[NodeHandle]) -> None:
            assert node.scope is not None
            try:
                with node.scope:
                    await run(task_status=task_status)
            finally:
                node.handle = None
                node.stopped.set()

        node.handle = await self.nursery.start(serve)

    async def crash(self, node: SimNode) -> None:
        """Stop it at once (as a kill: nothing more is sent) and wait until it is gone."""
        if node.scope is not None:
            node.scope.cancel()
        await node.stopped.wait()

    def backup(self, node: SimNode) -> Path:
        """Copy its data directory now (for a later restore-backup restart)."""
        target = self.root / f"backup{node.index}-{node.starts}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(node.settings.data_dir, target)
        return target

    async def restart(self, node: SimNode, mode: CrashMode, backup: Path | None) -> None:
        data = node.settings.data_dir
        if mode is CrashMode.WIPE:
            shutil.rmtree(data, ignore_errors=True)
        elif mode is CrashMode.RESTORE_BACKUP and backup is not None:
            shutil.rmtree(data, ignore_errors=True)
            shutil.copytree(backup, data)
        await self.start(node)
