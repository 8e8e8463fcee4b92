"""JSON-RPC over WebSocket (wsproto), with eth_subscribe / eth_unsubscribe.

Each connection runs a reader (requests, answered in order) and one task per subscription that
forwards events from the chain service's bounded channels. Sends share one lock; a client that
stops reading blocks its own tasks only, and the service then drops that subscriber's events
(counted in its statistics) rather than stalling block production. A subscription's first
notification is sent only after the reply carrying its id.

A message is bounded in memory, not just in payload: fragments are joined into one buffer as
they arrive, each costs ``FRAGMENT_OVERHEAD`` bytes of the ``max_message_bytes`` allowance,
and a message may have at most ``MAX_FRAGMENTS`` (close 1009 "too big" past the bytes, 1008
"policy" past the fragments). A protocol error (bad framing, unmasked frames, invalid UTF-8)
gets a Close frame with wsproto's code (1002, or 1007 for bad UTF-8) before the connection is
dropped.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import Any

import orjson
import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from moderntensor.chain.blocks import Header
from moderntensor.service import ChainService

from ._dispatch import Dispatcher
from ._errors import INVALID_REQUEST, RpcError
from ._format import format_header, format_transaction, hex_data
from ._methods import Method, Param

__all__ = ["MAX_SUBSCRIPTIONS", "WebSocketSession"]

log = logging.getLogger("moderntensor.rpc")

MAX_SUBSCRIPTIONS = 64
IDLE_TIMEOUT = 600.0
MAX_FRAGMENTS = 4096
FRAGMENT_OVERHEAD = 64
"""Bytes of bookkeeping charged per received fragment (a frame, or the part of one that a
read delivered)."""
_CHUNK = 65536
_KINDS = ("newHeads", "newPendingTransactions", "logs")


def _parse_kind(value: Any) -> str:
    if value not in _KINDS:
        raise ValueError(f"unsupported subscription {value!r}; use one of {', '.join(_KINDS)}")
    return str(value)


def _parse_subscription_id(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a subscription id string")
    return value


def _parse_options(value: Any) -> Any:
    return value  # newPendingTransactions' fullTx flag or a logs filter; checked per kind


class WebSocketSession:
    """One upgraded connection."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        trailing: bytes,
        service: ChainService,
        dispatcher: Dispatcher,
        max_message_bytes: int,
    ) -> None:
        self.stream = stream
        self.ws = Connection(ConnectionType.SERVER, trailing_data=trailing)
        self.service = service
        self.dispatcher = dispatcher
        self.max_message_bytes = max_message_bytes
        self._send_lock = trio.Lock()
        self._subscriptions: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._waiting: list[trio.Event] = []
        self.methods = {
            "eth_subscribe": Method(
                self.subscribe,
                (Param("kind", _parse_kind), Param("options", _parse_options, required=False)),
            ),
            "eth_unsubscribe": Method(
                self.unsubscribe, (Param("subscription", _parse_subscription_id),)
            ),
        }

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._read_loop()
            finally:
                nursery.cancel_scope.cancel()

    # -- sending --------------------------------------------------------------------------

    async def _send(self, payload: bytes) -> None:
        async with self._send_lock:
            if self.ws.state is not ConnectionState.OPEN:
                return
            data = self.ws.send(TextMessage(data=payload.decode()))
            await self.stream.send_all(data)

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self.ws.state is ConnectionState.OPEN:
                with contextlib.suppress(trio.BrokenResourceError, LocalProtocolError):
                    await self.stream.send_all(
                        self.ws.send(CloseConnection(code=code, reason=reason))
                    )

    # -- reading --------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        message = bytearray()
        charged = fragments = 0
        limit = self.max_message_bytes
        while True:
            with trio.move_on_after(IDLE_TIMEOUT) as scope:
                data = await self.stream.receive_some(_CHUNK)
            if scope.cancelled_caught:
                await self._close(1001, f"idle for {IDLE_TIMEOUT:g} s")
                return
            if not data:
                return
            try:
                self.ws.receive_data(bytes(data))
            except RemoteProtocolError as exc:
                await self._close(1002, f"protocol error: {exc}"[:120])
                return
            for event in self.ws.events():
                if isinstance(event, Ping):
                    async with self._send_lock:
                        if self.ws.state is ConnectionState.OPEN:
                            await self.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    async with self._send_lock:
                        if self.ws.state is ConnectionState.REMOTE_CLOSING:
                            await self.stream.send_all(self.ws.send(event.response()))
                    if self.ws.state is ConnectionState.OPEN:  # wsproto's parse failure
                        await self._close(event.code, (event.reason or "")[:120])
                    return
                elif isinstance(event, (TextMessage, BytesMessage)):
                    chunk = (
                        event.data.encode() if isinstance(event.data, str) else bytes(event.data)
                    )
                    fragments += 1
                    charged += len(chunk) + FRAGMENT_OVERHEAD
                    if charged > limit:
                        await self._close(1009, f"message larger than {limit} bytes")
                        return
                    if fragments > MAX_FRAGMENTS:
                        await self._close(1008, f"message in over {MAX_FRAGMENTS} fragments")
                        return
                    if event.message_finished and not message:
                        body = chunk  # one fragment: no copy
                    else:
                        message += chunk
                        if not event.message_finished:
                            continue
                        body, message = bytes(message), bytearray()
                    charged = fragments = 0
                    await self._answer(body)

    async def _answer(self, body: bytes) -> None:
        reply = await self.dispatcher.answer(body, self.methods)
        waiting, self._waiting = self._waiting, []
        if reply is not None:
            await self._send(reply)
        for event in waiting:
            event.set()

    # -- subscriptions --------------------------------------------------------------------

    def subscribe(self, kind: str, options: Any) -> str:
        if len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
            raise RpcError(INVALID_REQUEST, f"too many subscriptions (at most {MAX_SUBSCRIPTIONS})")
        if self._nursery is None:
            raise RpcError(INVALID_REQUEST, "connection is closing")
        sub_id = "0x" + secrets.token_hex(16)
        scope = trio.CancelScope()
        ready = trio.Event()
        self._waiting.append(ready)
        self._subscriptions[sub_id] = scope
        if kind == "newHeads":
            heads = self.service.subscribe_heads()
            self._nursery.start_soon(self._pump_heads, sub_id, scope, ready, heads)
        elif kind == "newPendingTransactions":
            full = options is True or (isinstance(options, dict) and options.get("fullTx") is True)
            txs = self.service.subscribe_pending_transactions()
            self._nursery.start_soon(self._pump_txs, sub_id, scope, ready, txs, full)
        # "logs": accepted; no contract emits logs on this chain, so nothing is ever sent
        return sub_id

    def unsubscribe(self, sub_id: str) -> bool:
        scope = self._subscriptions.pop(sub_id, None)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _notify(self, sub_id: str, result: Any) -> None:
        await self._send(
            orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "eth_subscription",
                    "params": {"subscription": sub_id, "result": result},
                }
            )
        )

    async def _pump_heads(
        self,
        sub_id: str,
        scope: trio.CancelScope,
        ready: trio.Event,
        channel: trio.MemoryReceiveChannel[Header],
    ) -> None:
        with scope:
            async with channel:
                await ready.wait()
                async for header in channel:
                    await self._notify(sub_id, format_header(header))

    async def _pump_txs(
        self,
        sub_id: str,
        scope: trio.CancelScope,
        ready: trio.Event,
        channel: trio.MemoryReceiveChannel[bytes],
        full: bool,
    ) -> None:
        with scope:
            async with channel:
                await ready.wait()
                async for tx_hash in channel:
                    if full:
                        tx = self.service.pool.get(tx_hash)
                        if tx is None:
                            continue
                        await self._notify(sub_id, format_transaction(tx))
                    else:
                        await self._notify(sub_id, hex_data(tx_hash))
