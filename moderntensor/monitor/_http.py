"""One plain HTTP/1.1 request on Trio and h11: the node's ``GET /health`` and webhook POSTs.

JSON-RPC goes through the faucet's pooled :class:`~moderntensor.faucet.RpcClient`; this is
for the two requests that are not JSON-RPC and whose status matters (``/health`` answers 503
with a reason; a webhook may answer 204). One connection per request, closed after it; the
caller bounds the time with a cancel scope; answers are capped at ``MAX_ANSWER`` bytes.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import h11
import trio

__all__ = ["HttpFailed", "http_request", "parse_http_url"]

MAX_ANSWER = 1024 * 1024


class HttpFailed(Exception):
    """No HTTP answer: unreachable, closed early, not HTTP, or too large."""


def parse_http_url(url: str) -> tuple[bool, str, int, str]:
    """(tls, host, port, target) of an http(s) URL.

    Raises:
        ValueError: not an http:// or https:// URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r}: expected http://host:port/... or https://...")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise ValueError(f"{url!r}: bad port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return tls, parts.hostname, port, target


async def http_request(
    method: str, url: str, body: bytes = b"", content_type: str = "application/json"
) -> tuple[int, bytes]:
    """Send one request; answers (status, body).

    Raises:
        HttpFailed: no complete HTTP answer.
        ValueError: a bad URL.
    """
    tls, host, port, target = parse_http_url(url)
    try:
        if tls:
            stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=ssl.create_default_context()
            )
        else:
            stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise HttpFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    try:
        return await _exchange(stream, method, host, port, target, body, content_type)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise HttpFailed(f"{host}:{port}: connection failed: {exc}") from None
    except h11.ProtocolError as exc:
        raise HttpFailed(f"{host}:{port}: not an HTTP answer: {exc}") from None
    finally:
        await trio.aclose_forcefully(stream)


async def _exchange(
    stream: trio.abc.Stream,
    method: str,
    host: str,
    port: int,
    target: str,
    body: bytes,
    content_type: str,
) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    headers = [("host", f"{host}:{port}"), ("connection", "close")]
    if method != "GET":
        headers += [("content-type", content_type), ("content-length", str(len(body)))]
    out = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
    if method != "GET":
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(out)
    status = 0
    chunks: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_ANSWER:
                raise HttpFailed(f"{host}:{port}: the answer is over {MAX_ANSWER} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return status, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise HttpFailed(f"{host}:{port}: closed before the answer ended")
