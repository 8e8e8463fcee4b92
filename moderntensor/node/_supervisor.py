"""The supervisor: one root nursery that opens, wires and runs every component of a node.

Order of life: open the database, the chain and the pool; start the components, each a task
reporting readiness through ``nursery.start`` -- the loop monitor, the mempool service, the
block producer, the block fetcher (when there is a block source), the slot ticker, the
consensus driver (which first restores what its journal holds), then the RPC and metrics
servers; serve
until SIGINT or SIGTERM cancels the root scope or a component fails; close the database last,
after every writer has stopped. A failed component takes the node down with its reason logged
and a non-zero exit code.

Wiring (all channels bounded)::

    ticker ──Tick──▶ ┌────────┐ ──BuildRequest──▶ producer ──BlockBuilt──▶ (driver inbox)
    network ───────▶ │ driver │ ──FetchRequest──▶ fetcher ──BlocksFetched──▶ (driver inbox)
    producer ──────▶ │        │ ──Header (new head)──▶ mempool service
    fetcher ───────▶ └────────┘ ──set_deadline()──▶ ticker

Chain work (building, executing, committing) runs in worker threads one at a time, under one
``CapacityLimiter(1)`` shared by the producer and the driver.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import attrs
import trio

from moderntensor import __version__
from moderntensor.chain.blocks import Header
from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import Genesis
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.consensus import (
    BlockRef,
    DatabaseStore,
    ProtectedSigner,
    SimplexCore,
    SlashingProtection,
    is_quorum,
)
from moderntensor.crypto import PrivateKey
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.node._driver import (
    ConsensusDriver,
    DriverEvent,
    NetworkMessage,
    consensus_config_for,
    wall_clock_ms,
)
from moderntensor.node._fetch import BlockFetcher, BlockFetchService, FetchRequest
from moderntensor.node._journal import ConsensusJournal
from moderntensor.node._logging import event
from moderntensor.node._loop_monitor import LoopMonitor
from moderntensor.node._pool_service import MempoolService
from moderntensor.node._producer import BlockProducer, BuildRequest
from moderntensor.node._status import ConsensusStatus
from moderntensor.node._ticker import Ticker
from moderntensor.rpc import MetricsConfig, RpcApp, RpcConfig, RpcMetrics, serve_metrics, serve_rpc
from moderntensor.service import ChainService
from moderntensor.state.store import Database

__all__ = ["NodeHandle", "NodeSettings", "freeze_startup_objects", "open_node", "run_node"]

log = logging.getLogger("moderntensor.node")

SWITCH_INTERVAL_S = 0.0005
GC_THRESHOLDS = (2_000, 10, 10)
"""Young-generation collections every 2,000 allocations instead of 700, middle-generation ones
every 10 of those. Each collection holds the event loop for as long as it takes, so the aim is
short ones: with ``python scripts/bench_node.py`` the longest measured 2 ms (young) and 10 ms
(middle); 50,000 allocations per young collection measured 17-36 ms, default 700 ran 335 young
and 30 middle collections per run. Full passes skip what :func:`freeze_startup_objects` froze."""


@attrs.frozen(slots=True)
class NodeSettings:
    """Everything a node needs, resolved (the config file or --dev produce one)."""

    data_dir: Path
    genesis: Genesis
    consensus_key: PrivateKey | None
    rpc: RpcConfig | None = attrs.field(factory=RpcConfig)
    mempool: MempoolConfig = attrs.field(factory=MempoolConfig)
    metrics: MetricsConfig | None = None
    """A listener for Prometheus alone (``[metrics]``); the RPC port serves ``/metrics`` too."""


@attrs.define
class NodeHandle:
    """What a running node exposes to its embedder (tests, benchmarks)."""

    chain: Chain
    pool: Mempool
    service: ChainService
    driver: ConsensusDriver
    producer: BlockProducer
    ticker: Ticker
    pool_service: MempoolService
    monitor: LoopMonitor
    rpc_port: int | None
    cancel_scope: trio.CancelScope
    inbound: trio.MemorySendChannel[DriverEvent]
    """Where the network feeds the driver; ``await inbound.send(...)`` waits while the inbox
    is full (back-pressure: the driver is executing or committing a block), never drops."""
    metrics_port: int | None = None
    fetch_service: BlockFetchService | None = None


@attrs.define
class _NodeStatus:
    """The consensus view the RPC reads: the driver's facts plus the node's own."""

    driver: ConsensusDriver
    producer: BlockProducer
    monitor: LoopMonitor

    def status(self) -> ConsensusStatus:
        return attrs.evolve(
            self.driver.status(),
            event_loop_lag_s=self.monitor.recent_max_s,
            blocks_built=self.producer.built,
        )


def freeze_startup_objects() -> None:
    """Collect, then exclude everything alive now from future collections.

    What exists once the node has started (modules, genesis, configuration) lives as long as
    the process; leaving it out of the collector's full passes shortens every later pause (the
    event loop stalls while one runs). Objects created afterwards are collected as usual.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def open_node(
    settings: NodeSettings,
    *,
    clock: Callable[[], int] = wall_clock_ms,
    fetcher: BlockFetcher | None = None,
    outbound: trio.MemorySendChannel[NetworkMessage] | None = None,
    task_status: trio.TaskStatus[NodeHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node until cancelled; reports a :class:`NodeHandle` once it serves.

    ``fetcher`` is where missing blocks come from and ``outbound`` where broadcasts go (the
    network, once it exists; tests pass their own). Without a fetcher a node cannot get a
    block it missed: it logs what it wants and waits.

    Raises:
        moderntensor.state.store.DatabaseError: the data directory cannot be opened.
        moderntensor.chain.chain.ChainMismatch: it holds another chain.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Block building runs in a worker thread; C calls that release the GIL (signature
    # recovery, RocksDB reads) would otherwise wait up to 5 ms each to get it back.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    db = Database.open(settings.data_dir / "chaindb")
    try:
        chain = Chain(db, settings.genesis)
        head = chain.head
        config = consensus_config_for(settings.genesis, chain.genesis_hash)
        pool = Mempool(chain.params, chain.state_at(head), head.base_fee_per_gas, settings.mempool)
        signer = None
        if settings.consensus_key is not None:
            protection = SlashingProtection(DatabaseStore(db), settings.consensus_key.address)
            signer = ProtectedSigner(
                settings.consensus_key, protection, config.chain_id, config.genesis_hash
            )
        service = ChainService(chain, pool, client_version=f"moderntensor/v{__version__}")
        core = SimplexCore(
            config, [], BlockRef(head.slot, head.hash), signer,
            finalized_height=head.number, synced=_own_quorum(service, head.number, signer),
        )  # fmt: skip
        journal = ConsensusJournal(db)
        chain_lock = trio.CapacityLimiter(1)  # chain work: one worker thread at a time
        ticker = Ticker(config, clock)
        # The inbox holds a burst of votes from many validators; the producer has at most one
        # request waiting while it builds; new heads collapse into the newest in the service.
        inbox_send, inbox = trio.open_memory_channel[DriverEvent](256)
        build_send, build_receive = trio.open_memory_channel[BuildRequest](1)
        heads_send, heads_receive = trio.open_memory_channel[Header](4)
        # Fetch requests are sent with send_nowait; one that finds the channel full is asked
        # for again at a later tick.
        fetch_send, fetch_receive = trio.open_memory_channel[FetchRequest](16)
        fetch_service = None
        if fetcher is not None:
            fetch_service = BlockFetchService(chain, journal, chain_lock, fetcher)
        pool_service = MempoolService(chain, pool, service)
        producer = BlockProducer(
            chain, pool, core, chain_lock, pool_service,
            catch_up_s=config.preset.slot_duration_ms / 4000,  # a quarter of a slot at most
        )  # fmt: skip
        monitor = LoopMonitor()
        driver = ConsensusDriver(
            chain, service, core, ticker, chain_lock, journal,
            build_requests=build_send, new_heads=heads_send,
            fetch_requests=fetch_send if fetcher is not None else None, outbound=outbound,
            clock=clock,
        )  # fmt: skip
        service.consensus = _NodeStatus(driver, producer, monitor)
        freeze_startup_objects()
        validator = "0x" + signer.validator_id.hex() if signer else None
        event(log, logging.INFO, "node starting", data_dir=str(settings.data_dir),
              chain_id=config.chain_id, genesis="0x" + chain.genesis_hash.hex()[:16],
              head=head.number, epoch=core.epoch, validator=validator,
              synced=core.synced)  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await nursery.start(pool_service.run, heads_receive)
            await nursery.start(producer.run, build_receive, inbox_send.clone())
            if fetch_service is not None:
                await nursery.start(fetch_service.run, fetch_receive, inbox_send.clone())
            await nursery.start(ticker.run, inbox_send.clone())
            await nursery.start(driver.run, inbox)
            rpc_port = metrics_port = None
            app = None
            if settings.rpc is not None:
                app = RpcApp(service, settings.rpc)
                rpc_port = await nursery.start(partial(serve_rpc, app=app), service, settings.rpc)
                event(log, logging.INFO, "rpc listening", addr=settings.rpc.addr, port=rpc_port,
                      url=f"http://{settings.rpc.addr}:{rpc_port}",
                      websocket=settings.rpc.ws_enabled)  # fmt: skip
            if settings.metrics is not None:
                render = app.metrics.render if app else RpcMetrics(service).render
                metrics_port = await nursery.start(serve_metrics, render, settings.metrics)
                event(log, logging.INFO, "metrics listening", addr=settings.metrics.addr,
                      port=metrics_port, path="/metrics")  # fmt: skip
            task_status.started(
                NodeHandle(
                    chain,
                    pool,
                    service,
                    driver,
                    producer,
                    ticker,
                    pool_service,
                    monitor,
                    rpc_port,
                    nursery.cancel_scope,
                    inbox_send,
                    metrics_port,
                    fetch_service,
                )
            )
    finally:
        db.close()
        event(log, logging.INFO, "database closed", data_dir=str(settings.data_dir))


def _own_quorum(service: ChainService, head_number: int, signer: ProtectedSigner | None) -> bool:
    """Whether this validator's own stake is a quorum of its epoch's set (a one-validator dev
    chain): then it knows where the network is without asking anyone (sync before sign)."""
    epoch = compute_block_epoch(head_number + 1, service.chain.params.epoch_length)
    vset = service.validator_set(epoch)
    if signer is None or vset is None:
        return False
    return is_quorum(vset.stake_of(signer.validator_id), vset.total_stake)


async def run_node(settings: NodeSettings) -> int:
    """The process's main task: a node plus signal handling; returns the exit code."""
    started = time.monotonic()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_watch_signals, nursery.cancel_scope)
            await nursery.start(open_node, settings)
    except Exception as exc:  # a component failed: the nursery already cancelled the rest
        reasons = "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(exc))
        log.error("node stopped by a failure: %s", reasons, exc_info=exc)
        return 1
    event(log, logging.INFO, "node stopped", uptime_s=round(time.monotonic() - started, 1))
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    """The underlying errors of a (nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


async def _watch_signals(
    scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            event(log, logging.INFO, "shutting down", signal=signal.Signals(signum).name)
            scope.cancel()
            return
