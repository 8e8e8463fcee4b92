"""JSON-RPC 2.0 over bytes: parse, validate, dispatch single and batch requests, encode.

Total like our decoders (STYLE rule 5): any body gives a JSON-RPC answer or, for notifications
only, nothing; a handler that raises something other than :class:`RpcError` is logged and
answered with -32603, and the server carries on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import trio

from ._errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
    invalid_params,
)
from ._methods import Method
from ._params import parse_data

__all__ = ["Dispatcher", "error_response"]

log = logging.getLogger("moderntensor.rpc")

BATCH_SLICE = 64
"""Batch requests answered per event-loop step."""
PREPARE_MIN = 8
"""Fewer raw transactions than this are decoded inline: a worker thread costs more."""

_NO_ID = object()  # a notification: no "id" member at all


def error_response(error: RpcError, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def _raw_transactions(batch: list[Any]) -> list[bytes]:
    """The well-formed raw transactions a batch submits (the rest get their errors later)."""
    raws = []
    for item in batch:
        if isinstance(item, dict) and item.get("method") == "eth_sendRawTransaction":
            params = item.get("params")
            if isinstance(params, list) and params:
                with contextlib.suppress(ValueError):
                    raws.append(parse_data(params[0]))
    return raws


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int | float) and not isinstance(value, bool))
    )


class Dispatcher:
    """Routes requests to :class:`Method` handlers; ``extra`` adds per-connection methods.

    ``prepare`` is given the raw transactions of a batch's ``eth_sendRawTransaction`` calls
    before the batch is answered (the node recovers their senders in a worker thread); the
    function it may return is called once the batch is answered.
    """

    def __init__(
        self,
        methods: Mapping[str, Method],
        max_batch: int,
        prepare: Callable[[list[bytes]], Awaitable[Callable[[], None] | None]] | None = None,
    ) -> None:
        self.methods = dict(methods)
        self.max_batch = max_batch
        self.prepare = prepare
        self.calls = 0
        self.errors = 0

    async def answer(self, body: bytes, extra: Mapping[str, Method] | None = None) -> bytes | None:
        """:meth:`handle_body`, except that a batch is answered a slice at a time, with a
        checkpoint between slices, so that one large batch never holds the event loop."""
        if body.lstrip()[:1] != b"[":
            return self.handle_body(body, extra)
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return orjson.dumps(error_response(RpcError(PARSE_ERROR, f"parse error: {exc}")))
        if not message or len(message) > self.max_batch:
            answer = self.handle_message(message, extra)
            return None if answer is None else orjson.dumps(answer)
        release = None
        if self.prepare is not None:
            raws = _raw_transactions(message)
            if len(raws) >= PREPARE_MIN:
                release = await self.prepare(raws)
        out = []
        try:
            for i, item in enumerate(message):
                if i % BATCH_SLICE == BATCH_SLICE - 1:
                    await trio.sleep(0)
                one = self.handle_request(item, extra)
                if one is not None:
                    out.append(one)
        finally:
            if release is not None:
                release()  # what the batch prepared and did not submit is not kept
        return orjson.dumps(out) if out else None

    def handle_body(self, body: bytes, extra: Mapping[str, Method] | None = None) -> bytes | None:
        """Answer one HTTP body or WebSocket message; None when nothing is to be sent back."""
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return orjson.dumps(error_response(RpcError(PARSE_ERROR, f"parse error: {exc}")))
        answer = (
            self.handle_request(message, extra)
            if isinstance(message, dict)
            else self.handle_message(message, extra)
        )
        return None if answer is None else orjson.dumps(answer)

    def handle_message(
        self, message: Any, extra: Mapping[str, Method] | None = None
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
        if isinstance(message, list):
            if not message:
                return error_response(RpcError(INVALID_REQUEST, "empty batch"))
            if len(message) > self.max_batch:
                return error_response(
                    RpcError(
                        INVALID_REQUEST,
                        f"batch too large: {len(message)} requests, at most {self.max_batch}",
                    )
                )
            answers = [self.handle_request(item, extra) for item in message]
            out = [a for a in answers if a is not None]
            return out or None
        return self.handle_request(message, extra)

    def handle_request(
        self, request: Any, extra: Mapping[str, Method] | None = None
    ) -> dict[str, Any] | None:
        """One request object -> its response (None for a valid notification)."""
        self.calls += 1
        if not isinstance(request, dict):
            self.errors += 1
            return error_response(RpcError(INVALID_REQUEST, "request must be a JSON object"))
        request_id = request.get("id", _NO_ID)
        reply_id = None if request_id is _NO_ID or not _valid_id(request_id) else request_id
        try:
            method = self._validate(request, request_id)
            handler = (extra.get(method) if extra else None) or self.methods.get(method)
            if handler is None:
                raise RpcError(
                    METHOD_NOT_FOUND, f"the method {method} does not exist/is not available"
                )
            result = handler.handler(*self._arguments(handler, request.get("params")))
        except RpcError as exc:
            self.errors += 1
            if request_id is _NO_ID and exc.code != INVALID_REQUEST:
                return None
            return error_response(exc, reply_id)
        except Exception:
            self.errors += 1
            log.exception("rpc method %r failed", request.get("method"))
            if request_id is _NO_ID:
                return None
            return error_response(RpcError(INTERNAL_ERROR, "internal error"), reply_id)
        if request_id is _NO_ID:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    @staticmethod
    def _validate(request: dict[str, Any], request_id: Any) -> str:
        if request.get("jsonrpc") != "2.0":
            raise RpcError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
        if request_id is not _NO_ID and not _valid_id(request_id):
            raise RpcError(
                INVALID_REQUEST, 'invalid request: "id" must be a string, number or null'
            )
        method = request.get("method")
        if not isinstance(method, str):
            raise RpcError(INVALID_REQUEST, 'invalid request: "method" must be a string')
        return method

    @staticmethod
    def _arguments(method: Method, params: Any) -> list[Any]:
        if not method.params and (params is None or params == []):
            return []
        if params is None:
            params = []
        elif isinstance(params, dict):
            raise RpcError(
                INVALID_PARAMS, "invalid params: pass parameters by position (a JSON array)"
            )
        elif not isinstance(params, list):
            raise RpcError(INVALID_PARAMS, "invalid params: must be an array")
        spec = method.params
        if len(params) > len(spec):
            raise RpcError(
                INVALID_PARAMS, f"too many arguments, want at most {len(spec)}, got {len(params)}"
            )
        out = []
        for i, param in enumerate(spec):
            if i >= len(params) or params[i] is None:
                if param.required:
                    raise invalid_params(i, param.name, "missing value for required argument")
                out.append(param.default)
                continue
            try:
                out.append(param.parse(params[i]))
            except ValueError as exc:
                raise invalid_params(i, param.name, str(exc)) from None
        return out
