"""The supervisor: one root nursery that opens, wires and runs every component of a node.

Order of life: open the database, the chain and the pool; start the components, each a task
reporting readiness through ``nursery.start`` -- the loop monitor, the mempool service, the
block producer, the block fetcher (when there is a block source), the slot ticker, the
consensus driver (which first restores what its journal holds), the network (with
``[p2p]``: it is the block source and carries the driver's broadcasts), then the RPC,
explorer and metrics servers; serve
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

import errno
import gc
import logging
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import attrs
import trio

from moderntensor.chain.chain import Chain, ChainMismatch
from moderntensor.chain.genesis import Genesis
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.crypto import PrivateKey
from moderntensor.explorer import ExplorerApp, ExplorerConfig, serve_explorer
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.network import (
    ChainIdentity,
    NetworkConfig,
    NetworkService,
    PeerManager,
    Transport,
)
from moderntensor.node._assemble import assemble_node
from moderntensor.node._driver import ConsensusDriver
from moderntensor.node._events import DriverEvent, NetworkMessage, wall_clock_ms
from moderntensor.node._fetch import BlockFetcher, BlockFetchService
from moderntensor.node._logging import event
from moderntensor.node._loop_monitor import LoopMonitor
from moderntensor.node._network import NodeLink, node_key_for
from moderntensor.node._pool_service import MempoolService
from moderntensor.node._preflight import Listener, StartupError, bind_error, format_http_url
from moderntensor.node._producer import BlockProducer
from moderntensor.node._status import ConsensusStatus
from moderntensor.node._sync import RangeSync
from moderntensor.node._ticker import Ticker, log_genesis_countdown
from moderntensor.node._tx_journal import JOURNAL_FILE, TxJournal
from moderntensor.rpc import MetricsConfig, RpcApp, RpcConfig, RpcMetrics, serve_metrics, serve_rpc
from moderntensor.service import ChainService
from moderntensor.state.store import Database, DatabaseLocked

__all__ = ["NodeHandle", "NodeSettings", "freeze_startup_objects", "open_node", "run_node"]

log = logging.getLogger("moderntensor.node")

SWITCH_INTERVAL_S = 0.0005
PEER_SCORES_FILE = "peers.json"
"""Peer scores and bans in the data directory (``network._persist``)."""
OUTBOUND_SIZE = 1024
"""The driver's broadcasts waiting for the network task (which only copies each into the
peers' queues, so it keeps up unless the loop is starved); the driver drops one that finds
the channel full, with a warning, and consensus re-sends on its timeouts."""
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
    p2p: NetworkConfig | None = None
    """The peer-to-peer network (``[p2p]``); None: no network (a dev chain, tests)."""
    node_key: PrivateKey | None = None
    """The network identity; None: ``<data_dir>/node.key``, created on first start."""
    explorer: ExplorerConfig | None = None
    """The block explorer's listener (``[explorer]``); None: no explorer."""


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
    network: NetworkService | None = None
    p2p_port: int | None = None
    range_sync: RangeSync | None = None
    explorer_port: int | None = None


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
    transport: Transport | None = None,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[NodeHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node until cancelled; reports a :class:`NodeHandle` once it serves.

    ``transport`` and ``rng`` replace the network's WebSocket transport and its randomness
    (dial jitter, peer lists): the simulator's links and seed.

    ``fetcher`` is where missing blocks come from and ``outbound`` where broadcasts go: the
    network when ``settings.p2p`` is set, else whatever the caller passes (tests). Without a
    fetcher a node cannot get a block it missed: it logs what it wants and waits.

    Raises:
        StartupError: an operator's mistake, in one line: the database is held by another
            process or holds another chain; the RPC, metrics or p2p port cannot be bound.
        moderntensor.state.store.DatabaseError: the data directory cannot be opened.
        moderntensor.keys.KeyFileError: the node key does not load or cannot be created.
    """
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"data dir {settings.data_dir}: cannot create: {exc.strerror}") from None
    peers = outbound_receive = node_key = None
    if settings.p2p is not None and settings.p2p.scores_file is None:  # kept across restarts
        p2p = attrs.evolve(settings.p2p, scores_file=str(settings.data_dir / PEER_SCORES_FILE))
        settings = attrs.evolve(settings, p2p=p2p)
    if settings.p2p is not None:
        node_key = settings.node_key or node_key_for(settings.data_dir, None)
        peers = PeerManager(node_key.public_key_bytes.hex(), settings.p2p)
        outbound, outbound_receive = trio.open_memory_channel[NetworkMessage](OUTBOUND_SIZE)
        fetcher = peers
    # Block building runs in a worker thread; C calls that release the GIL (signature
    # recovery, RocksDB reads) would otherwise wait up to 5 ms each to get it back.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        db = Database.open(settings.data_dir / "chaindb")
    except DatabaseLocked:
        raise StartupError(
            f"data dir {settings.data_dir}: its database is in use by another process "
            "(is another node running on this data dir?)"
        ) from None
    announced = False
    try:
        try:
            parts = assemble_node(
                db, settings.genesis, settings.consensus_key, mempool=settings.mempool,
                clock=clock, fetcher=fetcher, outbound=outbound,
            )  # fmt: skip
        except ChainMismatch as exc:
            raise StartupError(f"data dir {settings.data_dir}: {exc}") from None
        chain, service, core, driver = parts.chain, parts.service, parts.core, parts.driver
        monitor = LoopMonitor()
        service.consensus = _NodeStatus(driver, parts.producer, monitor)
        freeze_startup_objects()
        validator = None if core.validator_id is None else "0x" + core.validator_id.hex()
        event(log, logging.INFO, "node starting", data_dir=str(settings.data_dir),
              chain_id=parts.config.chain_id, genesis="0x" + chain.genesis_hash.hex()[:16],
              head=chain.head.number, epoch=core.epoch, validator=validator,
              synced=core.synced)  # fmt: skip
        announced = True
        _warn_if_not_a_validator(service, chain.head.number, core.validator_id)
        async with trio.open_nursery() as nursery:
            if parts.config.genesis_time_ms > clock():
                nursery.start_soon(log_genesis_countdown, parts.config.genesis_time_ms, clock)
            await nursery.start(monitor.run)
            await nursery.start(parts.pool_service.run, parts.heads_receive)
            if settings.mempool.journal:  # re-admits what this node's RPC took before a restart
                tx_journal = TxJournal(settings.data_dir / JOURNAL_FILE,
                                       settings.mempool.journal_max_bytes)  # fmt: skip
                await nursery.start(tx_journal.run, service, parts.pool)
            await nursery.start(parts.producer.run, parts.build_receive, parts.built_send)
            if parts.fetch_service is not None:
                await nursery.start(
                    parts.fetch_service.run, parts.fetch_receive, parts.fetched_send
                )
            await nursery.start(parts.ticker.run, parts.inbox_send.clone())
            await nursery.start(driver.run, parts.inbox)
            network = p2p_port = range_sync = None
            if settings.p2p is not None:
                assert node_key is not None and peers is not None
                assert outbound_receive is not None
                identity = ChainIdentity(node_key, parts.config.chain_id, chain.genesis_hash)
                network = NetworkService(
                    settings.p2p, identity, service, NodeLink(parts, parts.inbox_send.clone()),
                    peers=peers, verifier=parts.verifier, transport=transport, rng=rng,
                )  # fmt: skip
                service.peer_count = peers.__len__
                service.network = network
                where = Listener("p2p port", settings.p2p.listen_addr or "", settings.p2p.port)
                p2p_port = await _bind(where, nursery.start(network.run, outbound_receive))
                # Behind by more than half the core's look-ahead: its certificates can no
                # longer carry it forward (the core ignores rounds that far ahead of its view).
                behind = min(
                    2 * chain.params.epoch_length, parts.config.preset.max_future_slots // 2
                )
                range_sync = RangeSync(chain, service, parts.chain_lock, parts.verifier, peers,
                                       parts.inbox_send.clone(), threshold=behind)  # fmt: skip
                await nursery.start(range_sync.run)
            rpc_port = metrics_port = None
            app = None
            if settings.rpc is not None:
                chain_lock = parts.chain_lock  # heavy RPC reads give way to chain work
                app = RpcApp(service, settings.rpc,
                             chain_busy=lambda: chain_lock.borrowed_tokens > 0)  # fmt: skip
                where = Listener("rpc port", settings.rpc.addr, settings.rpc.port)
                rpc_port = await _bind(
                    where, nursery.start(partial(serve_rpc, app=app), service, settings.rpc)
                )
                event(log, logging.INFO, "rpc listening", addr=settings.rpc.addr, port=rpc_port,
                      url=format_http_url(settings.rpc.addr, rpc_port),
                      websocket=settings.rpc.ws_enabled)  # fmt: skip
            explorer_port = None
            if settings.explorer is not None:
                if app is None:  # the explorer answers with the RPC's handlers, served or not
                    chain_lock = parts.chain_lock
                    app = RpcApp(service, RpcConfig(),
                                 chain_busy=lambda: chain_lock.borrowed_tokens > 0)  # fmt: skip
                explorer = ExplorerApp(app, settings.explorer)
                where = Listener("explorer port", settings.explorer.addr, settings.explorer.port)
                explorer_port = await _bind(where, nursery.start(serve_explorer, explorer))
            if settings.metrics is not None:
                render = app.metrics.render if app else RpcMetrics(service).render
                where = Listener("metrics port", settings.metrics.addr, settings.metrics.port)
                metrics_port = await _bind(
                    where, nursery.start(serve_metrics, render, settings.metrics)
                )
                event(log, logging.INFO, "metrics listening", addr=settings.metrics.addr,
                      port=metrics_port, path="/metrics")  # fmt: skip
            task_status.started(
                NodeHandle(
                    chain,
                    parts.pool,
                    service,
                    driver,
                    parts.producer,
                    parts.ticker,
                    parts.pool_service,
                    monitor,
                    rpc_port,
                    nursery.cancel_scope,
                    parts.inbox_send,
                    metrics_port,
                    parts.fetch_service,
                    network,
                    p2p_port,
                    range_sync,
                    explorer_port,
                )
            )
    finally:
        db.close()
        if announced:
            event(log, logging.INFO, "database closed", data_dir=str(settings.data_dir))


async def _bind(where: Listener, starting: Awaitable[int]) -> int:
    """The port a listener task reports once started; a bind failure becomes one line.

    Raises:
        StartupError: the address cannot be bound (port taken, address not on this host).
    """
    try:
        return await starting
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise bind_error(where, exc) from None
        raise


def _warn_if_not_a_validator(
    service: ChainService, head_number: int, validator_id: bytes | None
) -> None:
    """A validator key outside the validator set signs nothing: say so once, at start, rather
    than leave the operator watching a node that never produces a block."""
    if validator_id is None:
        return
    epoch = compute_block_epoch(head_number + 1, service.chain.params.epoch_length)
    vset = service.validator_set(epoch)
    if vset is not None and vset.stake_of(validator_id) == 0:
        event(log, logging.WARNING,
              "validator key is not in the validator set: this node will sign nothing until "
              "the key is staked (is validator.key_file the key the genesis lists?)",
              validator="0x" + validator_id.hex(), epoch=epoch)  # fmt: skip


async def run_node(settings: NodeSettings) -> int:
    """The process's main task: a node plus signal handling; returns the exit code.

    Raises:
        StartupError: an operator's mistake found while starting (see :func:`open_node`).
    """
    started = time.monotonic()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_watch_signals, nursery.cancel_scope)
            await nursery.start(open_node, settings)
    except Exception as exc:  # a component failed: the nursery already cancelled the rest
        mistakes = [e for e in _leaves(exc) if isinstance(e, StartupError)]
        if mistakes and len(mistakes) == len(_leaves(exc)):
            raise mistakes[0] from None  # the operator's to fix: main prints it as one line
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
