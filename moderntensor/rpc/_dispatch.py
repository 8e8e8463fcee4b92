"""JSON-RPC 2.0 over bytes: parse, validate, dispatch single and batch requests, encode.

Total like our decoders (STYLE rule 5): any body gives a JSON-RPC answer or, for notifications
only, nothing; a handler that raises something other than :class:`RpcError` is logged and
answered with -32603, and the server carries on.
"""

from __future__ import annotations

import contextlib
import logging
import time
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
from ._work import HEAVY_METHODS, Budget, ReadWorker, encode_response, exact_ids

__all__ = ["Dispatcher", "error_response"]

log = logging.getLogger("moderntensor.rpc")

BATCH_SLICE = 64
"""Batch requests answered per event-loop step."""
PREPARE_MIN = 8
"""Fewer raw transactions than this are decoded inline: a worker thread costs more."""
HEAVY_RUN = 16
"""Consecutive heavy calls of a batch answered per trip to the worker thread."""

_NO_ID = object()  # a notification: no "id" member at all


def error_response(error: RpcError, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def _raw_transactions(batch: list[Any]) -> list[bytes]:
    """The raw transactions a batch will submit: only well-formed requests (a valid envelope
    and exactly one parameter) are decoded ahead, so nothing is decoded and kept for a
    request that is refused before it reaches ``eth_sendRawTransaction``."""
    raws = []
    for item in batch:
        if (
            isinstance(item, dict)
            and item.get("method") == "eth_sendRawTransaction"
            and item.get("jsonrpc") == "2.0"
            and _valid_id(item.get("id"))
        ):
            params = item.get("params")
            if isinstance(params, list) and len(params) == 1:
                with contextlib.suppress(ValueError):
                    raws.append(parse_data(params[0]))
    return raws


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int | float) and not isinstance(value, bool))
    )


def _shown(method: str) -> str:
    """A method name as echoed in an error (bounded: a client may send a megabyte of it)."""
    return method if len(method) <= 100 else method[:100] + "..."


class Dispatcher:
    """Routes requests to :class:`Method` handlers; ``extra`` adds per-connection methods.

    ``prepare`` is given the raw transactions of a batch's ``eth_sendRawTransaction`` calls
    before the batch is answered (the node recovers their senders in a worker thread); the
    function it may return is called once the batch is answered. ``worker`` runs
    :data:`HEAVY_METHODS` off the event loop (without one, everything runs inline); every body
    is answered within ``max_response_bytes`` and a batch within ``batch_cpu_budget_s`` (see
    ``_work.py``).
    """

    def __init__(
        self,
        methods: Mapping[str, Method],
        max_batch: int,
        prepare: Callable[[list[bytes]], Awaitable[Callable[[], None] | None]] | None = None,
        *,
        worker: ReadWorker | None = None,
        max_response_bytes: int = 25_000_000,
        batch_cpu_budget_s: float = 5.0,
    ) -> None:
        self.methods = dict(methods)
        self.max_batch = max_batch
        self.prepare = prepare
        self.worker = worker
        self.max_response_bytes = max_response_bytes
        self.batch_cpu_budget_s = batch_cpu_budget_s
        self.calls = 0
        self.errors = 0
        self.over_budget = 0

    async def answer(
        self,
        body: bytes,
        extra: Mapping[str, Method] | None = None,
        *,
        before_wait: Callable[[], None] | None = None,
    ) -> bytes | None:
        """:meth:`handle_body` within the budgets, heavy calls in the worker, and a batch's
        light calls a slice at a time with a checkpoint between slices, so that no request
        holds the event loop.

        A light single request is answered without a checkpoint; otherwise ``before_wait``
        is called before the first one (the HTTP loop lifts its connection timer then: a
        request once received is answered, never cut off by a timer that fired meanwhile).
        """
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return orjson.dumps(error_response(RpcError(PARSE_ERROR, f"parse error: {exc}")))
        if (  # the common case, kept lean
            type(message) is dict
            and (self.worker is None or not self._heavy(message, extra))
            and type(message.get("id")) is not float
        ):
            response, failed = self._respond(message, extra)
            self.calls += 1
            self.errors += failed
            if response is None:
                return None
            encoded = orjson.dumps(response)
            if len(encoded) <= self.max_response_bytes:
                return encoded
            budget = Budget(self.max_response_bytes, self.batch_cpu_budget_s)
            budget.spend(encoded, 0.0)
            assert budget.exhausted is not None
            self.errors += 1 - failed
            self.over_budget += 1
            return orjson.dumps(error_response(budget.exhausted, response["id"]))
        raw_ids = exact_ids(body, message)
        budget = Budget(self.max_response_bytes, self.batch_cpu_budget_s)
        if not isinstance(message, list):
            items, ids = [message], raw_ids or [None]
            if self._heavy(message, extra):
                assert self.worker is not None
                if before_wait is not None:
                    before_wait()
                out = await self.worker.run(self._run, items, ids, extra, budget, True)
                return out[0] if out else None
            out = self._run(items, ids, extra, budget, False)
            return out[0] if out else None
        if not message or len(message) > self.max_batch:
            answer = self.handle_message(message, extra)
            return None if answer is None else orjson.dumps(answer)
        if before_wait is not None:
            before_wait()
        release = None
        if self.prepare is not None:
            raws = _raw_transactions(message)
            if len(raws) >= PREPARE_MIN:
                release = await self.prepare(raws)
        ids = raw_ids or [None] * len(message)
        parts: list[bytes] = []
        i, count = 0, len(message)
        try:
            while i < count:
                if self._heavy(message[i], extra):
                    assert self.worker is not None
                    j = i + 1
                    while j < count and j - i < HEAVY_RUN and self._heavy(message[j], extra):
                        j += 1
                    parts += await self.worker.run(
                        self._run, message[i:j], ids[i:j], extra, budget, True
                    )
                    i = j
                    continue
                if i % BATCH_SLICE == BATCH_SLICE - 1:
                    await trio.sleep(0)
                parts += self._run(message[i : i + 1], ids[i : i + 1], extra, budget, False)
                i += 1
        finally:
            if release is not None:
                release()  # what the batch prepared and did not submit is not kept
        return b"[" + b",".join(parts) + b"]" if parts else None

    def _heavy(self, request: Any, extra: Mapping[str, Method] | None) -> bool:
        if self.worker is None or not isinstance(request, dict):
            return False
        method = request.get("method")
        if not isinstance(method, str) or method not in HEAVY_METHODS:
            return False
        return not (extra and method in extra)

    def _run(
        self,
        items: list[Any],
        raw_ids: list[bytes | None],
        extra: Mapping[str, Method] | None,
        budget: Budget,
        in_worker: bool,
    ) -> list[bytes]:
        """Answer ``items`` in order within ``budget`` (in a worker thread when
        ``in_worker``: then it gives way to chain work before each call)."""
        out = []
        calls = errors = over = 0
        for item, raw_id in zip(items, raw_ids, strict=True):
            calls += 1
            if budget.exhausted is None:
                if in_worker and self.worker is not None:
                    self.worker.give_way()
                started = time.thread_time()
                response, failed = self._respond(item, extra)
                encoded = None if response is None else encode_response(response, raw_id)
                errors += failed
                encoded = budget.spend(encoded, time.thread_time() - started)
                if encoded is not None:
                    out.append(encoded)
                    continue
                if response is None:
                    continue  # a notification
                errors -= failed  # counted below, as over budget
            assert budget.exhausted is not None
            errors += 1
            over += 1
            request_id = item.get("id", _NO_ID) if isinstance(item, dict) else None
            if request_id is not _NO_ID:
                reply_id = request_id if _valid_id(request_id) else None
                out.append(encode_response(error_response(budget.exhausted, reply_id), raw_id))
        if in_worker:  # counted back on the event loop (+= from two threads could lose counts)
            trio.from_thread.run_sync(self._count, calls, errors, over)
        else:
            self._count(calls, errors, over)
        return out

    def _count(self, calls: int, errors: int, over: int) -> None:
        self.calls += calls
        self.errors += errors
        self.over_budget += over

    def handle_body(self, body: bytes, extra: Mapping[str, Method] | None = None) -> bytes | None:
        """Answer one HTTP body or WebSocket message; None when nothing is to be sent back
        (inline, without budgets: :meth:`answer` is what the server uses)."""
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
        response, failed = self._respond(request, extra)
        self._count(1, failed, 0)
        return response

    def _respond(
        self, request: Any, extra: Mapping[str, Method] | None
    ) -> tuple[dict[str, Any] | None, bool]:
        """One request -> its response and whether it failed (counts nothing: it may run in
        a worker thread)."""
        if not isinstance(request, dict):
            return error_response(RpcError(INVALID_REQUEST, "request must be a JSON object")), True
        request_id = request.get("id", _NO_ID)
        reply_id = None if request_id is _NO_ID or not _valid_id(request_id) else request_id
        try:
            method = self._validate(request, request_id)
            handler = (extra.get(method) if extra else None) or self.methods.get(method)
            if handler is None:
                raise RpcError(
                    METHOD_NOT_FOUND,
                    f"the method {_shown(method)} does not exist/is not available",
                )
            result = handler.handler(*self._arguments(handler, request.get("params")))
        except RpcError as exc:
            if request_id is _NO_ID and exc.code != INVALID_REQUEST:
                return None, True
            return error_response(exc, reply_id), True
        except Exception:
            log.exception("rpc method %r failed", _shown(str(request.get("method"))))
            if request_id is _NO_ID:
                return None, True
            return error_response(RpcError(INTERNAL_ERROR, "internal error"), reply_id), True
        if request_id is _NO_ID:
            return None, False
        return {"jsonrpc": "2.0", "id": request_id, "result": result}, False

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
