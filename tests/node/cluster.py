"""Several nodes in one process, stepped by hand: real RocksDB files, real chains, real
signatures and slashing protection, the node's own wiring (``assemble_node``).

What is not real: the network is in-order delivery of each node's outbound messages to every
other live node (a test may drop some), the block source is :class:`DatabaseFetcher`
(blocks from the other nodes' databases), and the clock is a number the cluster moves from
one deadline or slot start to the next. Ticks, build requests and fetch requests are carried
out by the cluster itself, so a test decides when each happens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from moderntensor.chain.blocks import Block
from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import Genesis
from moderntensor.consensus import Certificate, Round, compute_slot_at, compute_slot_start_ms
from moderntensor.crypto import PrivateKey
from moderntensor.node._assemble import NodeParts, assemble_node
from moderntensor.node._driver import ConsensusDriver
from moderntensor.node._events import NetworkMessage, PeerStatus
from moderntensor.node._fetch import CertificateRequest
from moderntensor.node._ticker import Tick
from moderntensor.state.store import Database
from tests.factories import VALIDATOR_CONSENSUS, key

VALIDATOR_KEYS = [VALIDATOR_CONSENSUS, key(3000), key(3001), key(3002)]
"""The consensus keys of ``tests.factories.genesis_doc`` (v0, then ``extra_validators``)."""


class ManualClock:
    """Milliseconds that move only when the cluster moves them."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class DatabaseFetcher:
    """The fake block source: a block from any other live node, committed or executed."""

    def __init__(self, cluster: Cluster, me: int) -> None:
        self.cluster = cluster
        self.me = me
        self.served: list[bytes] = []
        self.rounds_served: list[Round] = []

    async def fetch_block(self, block_hash: bytes) -> Block | None:
        for member in self.cluster.members:
            if member.index == self.me or member.down:
                continue
            block = member.chain.chaindb.get_block(block_hash)
            pending = member.chain.get_pending(block_hash)
            if block is None and pending is not None:
                block = pending.block
            if block is not None:
                self.served.append(block_hash)
                return block
        return None

    async def fetch_certificates(self, epoch: int, slot: int) -> list[Certificate]:
        for member in self.cluster.members:
            if member.index != self.me and not member.down:
                certificates = member.parts.journal.certificates_of((epoch, slot))
                if certificates:
                    self.rounds_served.append((epoch, slot))
                    return certificates
        return []


@attrs.define
class Member:
    index: int
    key: PrivateKey
    db: Database
    parts: NodeParts
    outbound: trio.MemoryReceiveChannel[NetworkMessage]
    fetcher: DatabaseFetcher
    scope: trio.CancelScope
    stopped: trio.Event
    down: bool = False
    hold_builds: bool = False  # leave build requests in the channel (the test takes them)
    hold_fetches: bool = False  # leave fetch requests in the channel

    @property
    def driver(self) -> ConsensusDriver:
        return self.parts.driver

    @property
    def chain(self) -> Chain:
        return self.parts.chain


class Cluster:
    """Validators ``keys`` of ``genesis``, each with its database under ``root``."""

    def __init__(self, root: Path, genesis: Genesis, keys: list[PrivateKey]) -> None:
        self.root = root
        self.genesis = genesis
        self.keys = keys
        self.clock = ManualClock(genesis.genesis_time * 1000)
        self.members: list[Member] = []
        self.drop: Callable[[Member, Member, NetworkMessage], bool] = lambda a, b, m: False
        self.delivered = 0
        self._nursery: trio.Nursery | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Cluster]:
        """Open every node (its mempool service runs as a task); close them all after."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                for i in range(len(self.keys)):
                    self.members.append(await self._open(i))
                for member in self.members:
                    await member.driver.start()
                yield self
            finally:
                with trio.CancelScope(shield=True):
                    for member in self.members:
                        await self.crash(member)
                nursery.cancel_scope.cancel()

    async def _open(self, i: int) -> Member:
        assert self._nursery is not None
        db = Database.open(self.root / f"node{i}")
        send, outbound = trio.open_memory_channel[NetworkMessage](100_000)
        fetcher = DatabaseFetcher(self, i)
        parts = assemble_node(
            db, self.genesis, self.keys[i], clock=self.clock, fetcher=fetcher, outbound=send
        )
        parts.producer.catch_up_s = 1.0  # the mempool service runs: wait for it, briefly
        scope, stopped = trio.CancelScope(), trio.Event()

        async def serve_pool() -> None:
            try:
                with scope:
                    await parts.pool_service.run(parts.heads_receive)
            finally:
                stopped.set()

        self._nursery.start_soon(serve_pool)
        return Member(i, self.keys[i], db, parts, outbound, fetcher, scope, stopped)

    async def crash(self, member: Member) -> None:
        """The process dies: nothing more is delivered; its database closes once its
        mempool service (which may be reading in a worker thread) has stopped."""
        if member.down:
            return
        member.down = True
        member.scope.cancel()
        await member.stopped.wait()
        member.db.close()

    async def restart(self, member: Member) -> Member:
        """A new process on the same data directory (restores its journal, starts)."""
        await self.crash(member)
        fresh = await self._open(member.index)
        self.members[member.index] = fresh
        await fresh.driver.start()
        return fresh

    def live(self) -> list[Member]:
        return [m for m in self.members if not m.down]

    # -- stepping --------------------------------------------------------------------------

    async def settle(self) -> None:
        """Carry out builds, deliveries and fetches until nothing is left to do."""
        busy = True
        while busy:
            busy = False
            for member in self.live():
                if not member.hold_builds:
                    busy |= await self._builds(member)
                busy |= await self._deliveries(member)
                if not member.hold_fetches:
                    busy |= await self._fetches(member)

    async def _builds(self, member: Member) -> bool:
        done = False
        while True:
            try:
                request = member.parts.build_receive.receive_nowait()
            except trio.WouldBlock:
                return done
            await member.driver.handle(await member.parts.producer.build(request))
            done = True

    async def _deliveries(self, member: Member) -> bool:
        done = False
        while not member.down:
            try:
                message = member.outbound.receive_nowait()
            except trio.WouldBlock:
                return done
            done = True
            for other in self.live():
                if other is not member and not self.drop(member, other, message):
                    self.delivered += 1
                    await other.driver.handle(message)
        return done

    async def _fetches(self, member: Member) -> bool:
        service = member.parts.fetch_service
        assert service is not None
        done = False
        while True:
            try:
                request = member.parts.fetch_receive.receive_nowait()
            except trio.WouldBlock:
                return done
            if isinstance(request, CertificateRequest):
                await member.driver.handle(await service.fetch_certificates(request))
            else:
                await member.driver.handle(await service.fetch(request))
            done = True

    def next_wake(self) -> int:
        """The next instant a live node's ticker would wake: a deadline or a slot start."""
        config = self.live()[0].parts.config
        now = self.clock.ms
        wake = compute_slot_start_ms(config, compute_slot_at(config, now) + 1)
        for member in self.live():
            deadline = member.parts.ticker.deadline_ms
            if deadline is not None:
                wake = min(wake, max(deadline, now))
        return wake

    async def step(self) -> None:
        """Settle, move the clock to the next wake-up, tick every live node, settle."""
        await self.settle()
        self.clock.ms = self.next_wake()
        config = self.live()[0].parts.config
        tick = Tick(self.clock.ms, compute_slot_at(config, self.clock.ms))
        for member in self.live():
            ticker = member.parts.ticker
            if ticker.deadline_ms is not None and ticker.deadline_ms <= tick.now_ms:
                ticker.deadline_ms = None  # fired, as the real ticker does
            await member.driver.handle(tick)
        await self.settle()

    async def run_until(self, done: Callable[[], bool], *, slots: int = 60) -> None:
        """Step until ``done()``; fail after ``slots`` slots of (virtual) time."""
        config = self.live()[0].parts.config
        limit = self.clock.ms + slots * config.preset.slot_duration_ms
        await self.settle()
        while not done():
            assert self.clock.ms <= limit, f"not done after {slots} slots"
            await self.step()

    async def exchange_status(self) -> None:
        """Every live node tells every other where it is (what the network's handshake will
        do): the highest certified round it has seen and the votes of the other's it holds."""
        statuses: list[tuple[Member, Round | None]] = []
        for member in self.live():
            protection = member.parts.protection
            certified = None if protection is None else protection.certified_mark
            statuses.append((member, certified))
        for member in self.live():
            me = member.parts.core.validator_id
            for other, certified in statuses:
                if other is not member:
                    held = () if me is None else tuple(other.parts.core.votes_of(me))
                    await member.driver.handle(PeerStatus(certified, held))
        await self.settle()

    def heights(self) -> list[int]:
        return [m.chain.head.number for m in self.live()]
