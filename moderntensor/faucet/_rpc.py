"""A small JSON-RPC client for the node, on Trio with h11 (no extra HTTP dependency).

Keep-alive connections are pooled (at most ``max_connections`` open at once, each used by one
call at a time); a connection the node closed is reopened once per call. Errors split by
blame: :class:`NodeUnavailable` (the node cannot be reached or answered garbage: retry later)
and :class:`NodeError` (the node answered with a JSON-RPC error: its code and message, e.g.
``nonce too low``).
"""

from __future__ import annotations

import itertools
import ssl
from typing import Any
from urllib.parse import urlsplit

import h11
import orjson
import trio

__all__ = ["NodeError", "NodeUnavailable", "RpcClient"]

_MAX_RESPONSE = 16 * 1024 * 1024


class NodeUnavailable(Exception):
    """The node could not be reached, timed out or sent something that is not JSON-RPC."""


class NodeError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Conn:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)


class RpcClient:
    """JSON-RPC over HTTP(S) to ``url``; use from one Trio run."""

    def __init__(self, url: str, timeout: float = 10.0, max_connections: int = 8) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"rpc url {url!r}: expected http://host:port or https://...")
        self.url = url
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self._idle: list[_Conn] = []
        self._limit = trio.CapacityLimiter(max_connections)
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        """The call's ``result``.

        Raises:
            NodeError: the node answered with an error.
            NodeUnavailable: no answer (unreachable, timeout, not JSON-RPC).
        """
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        )
        async with self._limit:
            answer = await self._post(body)
        try:
            doc = orjson.loads(answer)
        except orjson.JSONDecodeError:
            raise NodeUnavailable(f"{method}: the node's answer is not JSON") from None
        if not isinstance(doc, dict):
            raise NodeUnavailable(f"{method}: the node's answer is not a JSON-RPC object")
        error = doc.get("error")
        if isinstance(error, dict):
            raise NodeError(int(error.get("code", 0)), str(error.get("message", "")))
        if "result" not in doc:
            raise NodeUnavailable(f"{method}: the answer has neither result nor error")
        return doc["result"]

    async def aclose(self) -> None:
        for conn in self._idle:
            await trio.aclose_forcefully(conn.stream)
        self._idle.clear()

    async def _open(self) -> _Conn:
        if self.tls:
            stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
                self.host, self.port, ssl_context=ssl.create_default_context()
            )
        else:
            stream = await trio.open_tcp_stream(self.host, self.port)
        return _Conn(stream)

    async def _post(self, body: bytes) -> bytes:
        for attempt in range(2):
            reused = bool(self._idle)
            try:
                with trio.fail_after(self.timeout):
                    conn = self._idle.pop() if reused else await self._open()
                    answered = False
                    try:
                        data, keep = await self._exchange(conn, body)
                        answered = True
                    finally:
                        if not answered:  # a half-used connection is never reused
                            await trio.aclose_forcefully(conn.stream)
                if keep:
                    self._idle.append(conn)
                else:
                    await trio.aclose_forcefully(conn.stream)
                return data
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
                if reused and attempt == 0:
                    continue  # the node closed an idle keep-alive connection: reconnect once
                raise NodeUnavailable(f"cannot reach the node at {self.url}") from None
            except trio.TooSlowError:
                raise NodeUnavailable(f"the node at {self.url} did not answer in time") from None
        raise NodeUnavailable(f"cannot reach the node at {self.url}")

    async def _exchange(self, conn: _Conn, body: bytes) -> tuple[bytes, bool]:
        headers = [
            ("host", f"{self.host}:{self.port}"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ]
        request = h11.Request(method="POST", target=self.target, headers=headers)
        out = b"".join(
            conn.h11.send(event) or b""
            for event in (request, h11.Data(data=body), h11.EndOfMessage())
        )
        await conn.stream.send_all(out)
        status = 0
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.h11.next_event()
            if event is h11.NEED_DATA:
                data = await conn.stream.receive_some(65536)
                conn.h11.receive_data(bytes(data))
                if not data and conn.h11.their_state is h11.SEND_RESPONSE:
                    raise trio.BrokenResourceError("closed before the response")
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > _MAX_RESPONSE:
                    raise NodeUnavailable("the node's answer is too large")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("closed before the response")
        if status != 200:
            raise NodeUnavailable(f"the node answered HTTP {status}")
        keep = conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
        if keep:
            conn.h11.start_next_cycle()
        return b"".join(chunks), keep
