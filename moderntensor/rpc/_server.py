"""serve_rpc: the RPC server as one long-lived Trio task (STYLE rule 11)."""

from __future__ import annotations

from typing import Any

import trio

from moderntensor.service import ChainService

from ._chainview import ChainView
from ._config import RpcConfig
from ._dispatch import Dispatcher
from ._eth import EthApi
from ._http import HttpHandler
from ._metrics import CONTENT_TYPE, RpcMetrics
from ._mt import MtApi
from ._ws import WebSocketSession

__all__ = ["MAX_CONNECTIONS", "RpcApp", "serve_rpc"]

MAX_CONNECTIONS = 512


class RpcApp:
    """Everything one server needs: dispatcher (eth/net/web3/mt), health, metrics, WebSocket."""

    def __init__(self, service: ChainService, config: RpcConfig) -> None:
        self.service = service
        self.config = config
        view = ChainView(service)
        methods = {**EthApi(service, view).methods(), **MtApi(service, view).methods()}
        self.dispatcher = Dispatcher(methods, config.max_batch, service.predecode)
        self.metrics = RpcMetrics(service, self.dispatcher)
        self.http = HttpHandler(
            config,
            self.dispatcher,
            self.health,
            lambda: (self.metrics.render(), CONTENT_TYPE),
            self.websocket if config.ws_enabled else None,
        )
        self._connections = 0

    def health(self) -> tuple[int, dict[str, Any]]:
        """200 when ready to serve current data, 503 while syncing (with how far it is)."""
        service = self.service
        progress = service.sync_progress
        ready = progress is None
        doc: dict[str, Any] = {
            "ready": ready,
            "head": service.head.number,
            "headSlot": service.head.slot,
            "headHash": "0x" + service.head.hash.hex(),
            "finalized": service.finalized.number,
            "peers": service.peer_count(),
            "syncing": service.syncing,
        }
        if progress is not None:
            doc["reason"] = f"syncing: block {progress.current} of {progress.highest}"
            doc["sync"] = {
                "startingBlock": progress.starting,
                "currentBlock": progress.current,
                "highestBlock": progress.highest,
                "blocksPerSecond": round(progress.blocks_per_s, 1),
                "etaSeconds": None if progress.eta_s is None else round(progress.eta_s, 1),
            }
        return (200 if ready else 503), doc

    async def websocket(self, stream: trio.abc.Stream, trailing: bytes) -> None:
        session = WebSocketSession(
            stream, trailing, self.service, self.dispatcher, self.config.max_body_bytes
        )
        await session.run()

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        if self._connections >= MAX_CONNECTIONS:
            await trio.aclose_forcefully(stream)
            return
        self._connections += 1
        try:
            await self.http(stream)
        finally:
            self._connections -= 1


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
