"""HTTP/1.1 for the faucet on Trio with h11: one task per connection, keep-alive, bounded.

A faucet serves a few requests per second, so this is the plain h11 loop (the node's RPC
server has a hand-written fast path for its load; the faucet does not need it). Limits: heads
up to 16 KiB (431 beyond), bodies up to ``max_body_bytes`` (413, answered from
``Content-Length`` before reading the body, or once a chunked body passes the limit), a
request must arrive within 30 s and an idle connection closes after 60 s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import h11
import orjson
import trio

from moderntensor.faucet._api import Request, Response

__all__ = ["serve_connection"]

log = logging.getLogger("moderntensor.faucet")

MAX_HEAD = 16 * 1024
REQUEST_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0


class _Done(Exception):
    """Close the connection."""


def _peer_ip(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    try:
        return str(sock.getpeername()[0]) if sock is not None else "127.0.0.1"
    except OSError:
        return "0.0.0.0"


async def _next(stream: trio.abc.Stream, conn: h11.Connection, timeout: float) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_after(timeout):
            conn.receive_data(bytes(await stream.receive_some(65536)))
            continue
        raise _Done


async def _send(stream: trio.abc.Stream, conn: h11.Connection, response: Response) -> None:
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        *response.headers,
    ]
    data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


def _error(status: int, message: str) -> Response:
    return Response(status, orjson.dumps({"error": "http", "message": message}))


async def serve_connection(
    stream: trio.abc.Stream, handle: Callable[[Request], Awaitable[Response]], max_body: int
) -> None:
    """Serve requests on ``stream`` until the client closes, errs or idles."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    peer = _peer_ip(stream)
    try:
        while True:
            try:
                response = await _read_and_handle(stream, conn, handle, max_body, peer)
            except h11.RemoteProtocolError as exc:
                if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                    raise _Done from None
                status = exc.error_status_hint
                response = _error(status, "bad HTTP request" if status != 431 else "head too large")
                await _send(stream, conn, response)
                raise _Done from None
            if response is None:
                raise _Done
            await _send(stream, conn, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                raise _Done  # e.g. a 413 sent before the body was read: do not read it
            conn.start_next_cycle()
    except (_Done, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except h11.LocalProtocolError:
        log.exception("faucet http: local protocol error")
    finally:
        await trio.aclose_forcefully(stream)


async def _read_and_handle(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    handle: Callable[[Request], Awaitable[Response]],
    max_body: int,
    peer: str,
) -> Response | None:
    event = await _next(stream, conn, IDLE_TIMEOUT)
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise _Done
    if len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers) > MAX_HEAD:
        # h11 bounds only a head that arrives in pieces; one that came whole is measured here
        return _error(431, "head too large")
    headers: dict[str, list[str]] = {}
    for name, value in event.headers:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    length = headers.get("content-length")
    if length and int(length[-1]) > max_body:
        return _error(413, f"request body over {max_body} bytes")
    body = bytearray()
    with trio.move_on_after(REQUEST_TIMEOUT) as scope:
        while True:
            part = await _next(stream, conn, REQUEST_TIMEOUT)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > max_body:
                    return _error(413, f"request body over {max_body} bytes")
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise _Done
    if scope.cancelled_caught:
        raise _Done
    request = Request(
        event.method.decode("ascii"),
        event.target.decode("latin-1"),
        headers,
        bytes(body),
        peer,
    )
    try:
        return await handle(request)
    except Exception:  # one bad request must not take the server down
        log.exception("faucet http: handler failed")
        return _error(500, "internal error")
