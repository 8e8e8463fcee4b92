"""serve_rpc: the RPC server as one long-lived Trio task (STYLE rule 11)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import trio

from moderntensor.service import ChainService

from ._chainview import ChainView
from ._config import RpcConfig
from ._dispatch import Dispatcher, error_response
from ._errors import INVALID_REQUEST, RpcError
from ._eth import EthApi
from ._http import HttpHandler
from ._limits import ConnectionLimits, ConnectionRefused, send_refusal
from ._metrics import CONTENT_TYPE, RpcMetrics
from ._mt import MtApi
from ._work import ReadWorker
from ._ws import WebSocketSession

__all__ = ["RpcApp", "serve_rpc"]

log = logging.getLogger("moderntensor.rpc")


class RpcApp:
    """Everything one server needs: dispatcher (eth/net/web3/mt), health, metrics, WebSocket,
    connection limits and the heavy-read worker.

    ``chain_busy`` says whether chain work (building, executing, committing a block) is
    running; the node passes ``lambda: chain_lock.borrowed_tokens > 0`` so heavy reads give
    way to it (see ``_work.py``).
    """

    def __init__(
        self,
        service: ChainService,
        config: RpcConfig,
        *,
        chain_busy: Callable[[], bool] | None = None,
    ) -> None:
        self.service = service
        self.config = config
        view = ChainView(service)
        methods = {**EthApi(service, view).methods(), **MtApi(service, view).methods()}
        self.worker = ReadWorker(config.read_threads, chain_busy)
        self.dispatcher = Dispatcher(
            methods, config.max_batch, service.predecode, worker=self.worker,
            max_response_bytes=config.batch_response_max_bytes,
            batch_cpu_budget_s=config.batch_cpu_budget_s,
        )  # fmt: skip
        self.metrics = RpcMetrics(service, self.dispatcher)
        self.limits = ConnectionLimits(
            config.max_connections,
            config.max_http_connections_per_ip,
            config.max_ws_connections_per_ip,
        )
        self.http = HttpHandler(
            config,
            self.dispatcher,
            self.health,
            lambda: (self.metrics.render(), CONTENT_TYPE),
            self.websocket if config.ws_enabled else None,
            self.limits,
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        """200 when ready to serve current data; 503 with the reasons while syncing or when
        nothing was finalized for more than ``health_max_unfinalized_slots`` slots."""
        service = self.service
        progress = service.sync_progress
        reasons = []
        doc: dict[str, Any] = {
            "ready": True,
            "head": service.head.number,
            "headSlot": service.head.slot,
            "headHash": "0x" + service.head.hash.hex(),
            "finalized": service.finalized.number,
            "peers": service.peer_count(),
            "syncing": service.syncing,
        }
        if progress is not None:
            reasons.append(f"syncing: block {progress.current} of {progress.highest}")
            doc["sync"] = {
                "startingBlock": progress.starting,
                "currentBlock": progress.current,
                "highestBlock": progress.highest,
                "blocksPerSecond": round(progress.blocks_per_s, 1),
                "etaSeconds": None if progress.eta_s is None else round(progress.eta_s, 1),
            }
        status = service.consensus.status() if service.consensus is not None else None
        if status is not None:
            behind = max(0, status.slot - status.finalized_slot)
            doc["unfinalizedSlots"] = behind
            limit = self.config.health_max_unfinalized_slots
            if behind > limit and progress is None:
                reasons.append(
                    f"not finalizing: nothing finalized for {behind} slots (the newest final "
                    f"block is at slot {status.finalized_slot}, now slot {status.slot}; limit "
                    f"rpc.health_max_unfinalized_slots = {limit})"
                )
        if reasons:
            doc["ready"] = False
            doc["reason"] = "; ".join(reasons)
        return (503 if reasons else 200), doc

    async def websocket(self, stream: trio.abc.Stream, trailing: bytes) -> None:
        session = WebSocketSession(
            stream, trailing, self.service, self.dispatcher, self.config.max_body_bytes
        )
        await session.run()

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        """One accepted connection: admitted within the limits (else a 503 and close), then
        served until it closes, idles out or is evicted to make room."""
        try:
            ip = str(stream.socket.getpeername()[0])
        except (OSError, AttributeError):
            ip = "?"
        with trio.CancelScope() as scope:
            try:
                slot = self.limits.admit(ip, scope.cancel)
            except ConnectionRefused as exc:
                await self._refuse(stream, exc.reason)
                return
            try:
                await self.http(stream, slot)
            finally:
                self.limits.release(slot)  # (the handler closed the stream)

    @staticmethod
    async def _refuse(stream: trio.SocketStream, reason: str) -> None:
        """Tell a refused client why (a JSON-RPC error in a 503), then close."""
        await send_refusal(stream, orjson.dumps(error_response(RpcError(INVALID_REQUEST, reason))))


async def serve_rpc(
    service: ChainService,
    config: RpcConfig,
    *,
    app: RpcApp | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve JSON-RPC over HTTP and WebSocket until cancelled.

    Start it with ``port = await nursery.start(serve_rpc, service, config)``: it reports the
    bound port (useful with ``port=0``) once it is listening. Pass ``app`` to share its
    counters (e.g. with :func:`serve_metrics`).

    Raises:
        OSError: the address cannot be bound (in use, not local...), before ``started``.
    """
    if app is None:
        app = RpcApp(service, config)
    listeners = await trio.open_tcp_listeners(config.port, host=config.addr)
    port = listeners[0].socket.getsockname()[1]
    task_status.started(port)
    await trio.serve_listeners(app.handle_connection, listeners)
