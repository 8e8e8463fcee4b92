"""serve_metrics: Prometheus ``/metrics`` on its own address, the node's ``[metrics]`` section.

The JSON-RPC server also answers ``/metrics``, but operators usually scrape on a port that is
not the public RPC one (geth's 6060), or run a node with RPC off. This is that listener: GET
(or HEAD) ``/metrics`` and nothing else; one h11 state machine per connection, keep-alive,
bounded in connections, request size and time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import h11
import trio

from ._config import MetricsConfig
from ._metrics import CONTENT_TYPE

__all__ = ["serve_metrics"]

log = logging.getLogger("moderntensor.rpc")

MAX_CONNECTIONS = 64
MAX_HEAD_BYTES = 16 * 1024
REQUEST_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


class _MetricsHandler:
    def __init__(self, render: Callable[[], bytes]) -> None:
        self.render = render
        self.connections = 0

    async def __call__(self, stream: trio.SocketStream) -> None:
        if self.connections >= MAX_CONNECTIONS:
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        try:
            await self._serve(stream)
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a client that speaks bad HTTP or goes away: nothing to tell it
        except Exception:
            log.exception("metrics connection failed")
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        while True:
            request = await self._next(stream, conn, IDLE_TIMEOUT)
            if not isinstance(request, h11.Request):
                return
            # Scrapes have no body; a small one is read and ignored, a large or slow one drops
            # the connection.
            size = 0
            while True:
                event = await self._next(stream, conn, REQUEST_TIMEOUT)
                if isinstance(event, h11.EndOfMessage):
                    break
                if not isinstance(event, h11.Data) or size + len(event.data) > MAX_HEAD_BYTES:
                    return
                size += len(event.data)
            path = request.target.split(b"?", 1)[0]
            if request.method not in (b"GET", b"HEAD"):
                status, body, headers = 405, b"use GET /metrics\n", [_TEXT, (b"allow", b"GET")]
            elif path != b"/metrics":
                status, body, headers = 404, b"this port serves GET /metrics only\n", [_TEXT]
            else:
                status, body = 200, self.render()
                headers = [(b"content-type", CONTENT_TYPE.encode())]
            headers.append((b"content-length", str(len(body)).encode()))
            data = conn.send(h11.Response(status_code=status, headers=headers))
            if request.method != b"HEAD":
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    @staticmethod
    async def _next(stream: trio.SocketStream, conn: h11.Connection, timeout: float) -> object:
        """The next h11 event, or ``None`` when the peer is silent for ``timeout`` seconds."""
        with trio.move_on_after(timeout):
            while True:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                conn.receive_data(bytes(await stream.receive_some(65536)))
        return None


async def serve_metrics(
    render: Callable[[], bytes],
    config: MetricsConfig,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``render()`` at ``/metrics`` until cancelled; reports the bound port.

    Raises:
        OSError: the address cannot be bound (in use, not local...), before ``started``.
    """
    listeners = await trio.open_tcp_listeners(config.port, host=config.addr)
    port = listeners[0].socket.getsockname()[1]
    task_status.started(port)
    await trio.serve_listeners(_MetricsHandler(render), listeners)
