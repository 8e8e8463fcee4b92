"""The explorer server: static pages, ``POST /rpc``, ``GET /ws`` and the account history.

Routes:

* ``GET /``, ``/static/*``: the page (``static/``; hash routes such as ``#/block/12``).
* ``POST /rpc``: JSON-RPC, answered in process by the node's handlers behind the read-only
  allowlist (``_methods.py``); ``application/json`` only (415 otherwise).
* ``GET /ws``: JSON-RPC over WebSocket with ``eth_subscribe`` (``newHeads`` for the live home
  page), the RPC's own WebSocket session over the same allowlist.
* ``GET /api/account/<address>``: the address's newest transactions in the explorer's index
  of recent blocks (``_index.py``), with the index's coverage.
* ``GET /api/transactions``: the newest transactions in the index (at most
  ``account_transactions``; the home page's list).
* ``GET /api/index``: the index's coverage.

Everything else is a JSON 404 (405 for a known path with the wrong method).
"""

from __future__ import annotations

import logging
import re

import orjson
import trio

from moderntensor.crypto import checksum_address
from moderntensor.node._logging import event
from moderntensor.rpc import RpcApp
from moderntensor.rpc._chainview import ChainView
from moderntensor.rpc._limits import ConnectionLimits, ConnectionRefused, send_refusal
from moderntensor.rpc._ws import WebSocketSession

from ._config import ExplorerConfig
from ._http import HttpRequest, HttpResponse, json_error, serve_connection
from ._index import AccountIndex
from ._methods import explorer_dispatcher
from ._static import load_static

__all__ = ["ExplorerApp", "serve_explorer"]

log = logging.getLogger("moderntensor.explorer")

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class ExplorerApp:
    """One explorer over a node's :class:`RpcApp` (its service, handlers and worker)."""

    def __init__(self, rpc: RpcApp, config: ExplorerConfig) -> None:
        self.rpc = rpc
        self.service = rpc.service
        self.config = config
        self.dispatcher = explorer_dispatcher(rpc.dispatcher, config)
        self.view = ChainView(rpc.service)
        self.index = AccountIndex(config.index_blocks, config.index_max_transactions)
        self.limits = ConnectionLimits(
            config.max_connections,
            config.max_http_connections_per_ip,
            config.max_ws_connections_per_ip,
        )
        self.static = load_static()

    # -- requests -------------------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpResponse:
        path, method = request.path, request.method
        if path == "/rpc":
            if method != "POST":
                return json_error(405, "POST JSON-RPC requests to /rpc")
            return await self._rpc(request)
        if method not in ("GET", "HEAD"):
            return json_error(405, f"{method} is not served here (GET pages, POST /rpc)")
        page = self.static.get(path)
        if page is not None:
            headers: tuple[tuple[str, str], ...] = (
                ("etag", page.etag),
                ("cache-control", page.cache_control),
            )
            if page.content_type.startswith("text/html"):
                headers += (("content-security-policy", CSP), ("referrer-policy", "no-referrer"))
            if request.headers.get("if-none-match") == page.etag:
                return HttpResponse(304, b"", page.content_type, headers)
            return HttpResponse(200, page.body, page.content_type, headers)
        if path.startswith("/api/account/"):
            return self._account(path.removeprefix("/api/account/"))
        if path == "/api/transactions":
            doc = {
                "transactions": self.index.recent(self.config.account_transactions),
                "index": self.index.coverage(),
            }
            return HttpResponse(200, orjson.dumps(doc))
        if path == "/api/index":
            return HttpResponse(200, orjson.dumps(self.index.coverage()))
        if path == "/ws":
            return json_error(426, "/ws is a WebSocket endpoint (JSON-RPC, eth_subscribe)")
        return json_error(404, f"not found: {path[:200]}")

    async def _rpc(self, request: HttpRequest) -> HttpResponse:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            return json_error(415, "send JSON-RPC as content-type: application/json")
        answer = await self.dispatcher.answer(request.body)
        if answer is None:
            return HttpResponse(204, b"")
        return HttpResponse(200, answer)

    def _account(self, text: str) -> HttpResponse:
        if not _ADDRESS.fullmatch(text):
            return json_error(400, "expected an address: 0x and 40 hex digits")
        address = bytes.fromhex(text[2:])
        doc = {
            "address": checksum_address(address),
            "transactions": self.index.lookup(address, self.config.account_transactions),
            "limit": self.config.account_transactions,
            "index": self.index.coverage(),
        }
        return HttpResponse(200, orjson.dumps(doc))

    async def websocket(self, stream: trio.abc.Stream, trailing: bytes) -> None:
        session = WebSocketSession(
            stream, trailing, self.service, self.dispatcher, self.config.max_body_bytes
        )
        await session.run()

    # -- connections ----------------------------------------------------------------------

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        try:
            ip = str(stream.socket.getpeername()[0])
        except (OSError, AttributeError):
            ip = "?"
        with trio.CancelScope() as scope:
            try:
                slot = self.limits.admit(ip, scope.cancel)
            except ConnectionRefused as exc:
                await _refuse(stream, exc.reason.replace("rpc.", "explorer."))
                return
            try:
                await serve_connection(
                    stream, slot, self.limits, self.config, self.handle, self.websocket
                )
            finally:
                self.limits.release(slot)


async def _refuse(stream: trio.SocketStream, reason: str) -> None:
    await send_refusal(stream, orjson.dumps({"error": reason}))


async def serve_explorer(
    app: ExplorerApp,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the explorer until cancelled; reports the bound port once listening.

    Raises:
        OSError: the address cannot be bound, before ``started``.
    """
    config = app.config
    listeners = await trio.open_tcp_listeners(config.port, host=config.addr)
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(app.index.run, app.service, app.view, app.rpc.worker)
        await nursery.start(trio.serve_listeners, app.handle_connection, listeners)
        host = f"[{config.addr}]" if ":" in config.addr else config.addr
        event(log, logging.INFO, "explorer listening", addr=config.addr, port=port,
              url=f"http://{host}:{port}/")  # fmt: skip
        task_status.started(port)
