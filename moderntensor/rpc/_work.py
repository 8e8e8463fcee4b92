"""Heavy reads off the event loop, budgets per request and batch, and ids echoed exactly.

Why: formatting a full block of 1,000 transactions, its receipts, or ``eth_feeHistory`` over
1,024 blocks with percentiles costs tens to hundreds of milliseconds of Python; done on the
event loop for 30 clients at once it starved block building and voting (the RPC attack
review, C1 and H4). Those methods (:data:`HEAVY_METHODS`) therefore run in worker threads of
their own (:class:`ReadWorker`, a ``CapacityLimiter`` that is not the chain's, so chain work
is never queued behind RPC), and a worker gives way between calls while the chain lock is
held (:meth:`ReadWorker.give_way`): the producer and the executor run with the GIL mostly to
themselves. Everything else (``eth_blockNumber``, ``eth_sendRawTransaction``, balances,
subscriptions) stays inline: a thread hop would cost more than the call, and the pool is only
ever touched from the event loop.

Reads from a worker thread are as safe as the reads the event loop already made while a block
executed in the chain's worker thread: committed blocks, receipts and state are immutable
once written, ``Chain.head`` and ``ChainService.finalized`` are replaced (one attribute
store), never mutated, and ``ChainView``'s caches are ``OrderedDict`` operations each atomic
under the GIL. Heavy handlers read nothing of the pool but ``pool.get`` (a dict lookup).

Budgets (:class:`Budget`): a response, single or batch, is at most ``max_bytes`` of JSON
(each call's part is encoded as soon as it is computed, so memory follows the limit, not the
request); a batch may use ``cpu_s`` of CPU time. The call that crosses a limit, and every call
after it, is answered -32005 naming the ``[rpc]`` key, as geth answers past
``--rpc.batch-response-max-size``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import orjson
import trio

from ._errors import LIMIT_EXCEEDED, RpcError

__all__ = ["HEAVY_METHODS", "Budget", "ReadWorker", "encode_response", "exact_ids"]

HEAVY_METHODS = frozenset(
    {
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockReceipts",
        "eth_getBlockTransactionCountByNumber",
        "eth_getBlockTransactionCountByHash",
        "eth_getTransactionByHash",
        "eth_getTransactionByBlockNumberAndIndex",
        "eth_getTransactionByBlockHashAndIndex",
        "eth_getTransactionReceipt",
        "eth_feeHistory",
        "eth_getProof",
        "eth_getLogs",
        "mt_evidence",
        "mt_slots",
    }
)
"""Methods that may decode or format whole blocks, walk many blocks or build proofs."""

GIVE_WAY_MAX_S = 0.02
"""A worker waits at most this long per call for chain work to finish, so RPC is delayed,
never starved, by a node that is busy for long (range sync)."""
_GIVE_WAY_STEP_S = 0.002

_T = TypeVar("_T")


class ReadWorker:
    """Worker threads for heavy reads; ``chain_busy`` says whether chain work (building,
    executing, committing) is running, so a worker lets it go first."""

    def __init__(
        self,
        threads: int,
        chain_busy: Callable[[], bool] | None = None,
        give_way_max_s: float = GIVE_WAY_MAX_S,
    ) -> None:
        self.limiter = trio.CapacityLimiter(threads)
        self.chain_busy = chain_busy
        self.give_way_max_s = give_way_max_s
        self.gave_way_s = 0.0

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in one of the worker threads (waits for a free one)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    def give_way(self) -> None:
        """In a worker thread: sleep (GIL released) while the chain lock is held, up to
        ``give_way_max_s``."""
        busy = self.chain_busy
        if busy is None or not busy():
            return
        started = time.monotonic()
        deadline = started + self.give_way_max_s
        while busy() and time.monotonic() < deadline:
            time.sleep(_GIVE_WAY_STEP_S)
        self.gave_way_s += time.monotonic() - started

    def statistics(self) -> dict[str, float]:
        return {
            "threads_busy": self.limiter.borrowed_tokens,
            "waiting": self.limiter.statistics().tasks_waiting,
            "gave_way_s": round(self.gave_way_s, 3),
        }


@attrs.define(slots=True)
class Budget:
    """What one HTTP body or WebSocket message may still use (see the module docstring)."""

    max_bytes: int
    cpu_s: float
    used_bytes: int = 0
    used_cpu_s: float = 0.0
    exhausted: RpcError | None = None

    def spend(self, encoded: bytes | None, cpu_s: float) -> bytes | None:
        """Account for one call's answer; the answer, or the limit error that replaces it
        (when it is the call that crossed a limit)."""
        self.used_cpu_s += cpu_s
        if encoded is not None:
            self.used_bytes += len(encoded) + 1
            if self.used_bytes > self.max_bytes and self.exhausted is None:
                self.exhausted = RpcError(
                    LIMIT_EXCEEDED,
                    f"limit exceeded: response larger than {self.max_bytes} bytes "
                    "(rpc.batch_response_max_bytes)",
                )
                return None
        if self.used_cpu_s > self.cpu_s and self.exhausted is None:
            self.exhausted = RpcError(
                LIMIT_EXCEEDED,
                f"limit exceeded: batch used over {self.cpu_s:g} s of CPU time "
                "(rpc.batch_cpu_budget_s)",
            )
        return encoded


def encode_response(response: dict[str, Any], raw_id: bytes | None = None) -> bytes:
    """The JSON of one response; ``raw_id`` is the request's id as sent when orjson could not
    keep it exactly (an integer beyond 64 bits comes back from orjson as a float)."""
    data = orjson.dumps(response)
    if raw_id is not None:
        data = data.replace(b'"id":' + orjson.dumps(response["id"]), b'"id":' + raw_id, 1)
    return data


class _Number(str):
    """A JSON number kept as its text."""


def exact_ids(body: bytes, message: Any) -> list[bytes | None] | None:
    """The ids of ``message`` (a request or a batch) as sent, where orjson turned them into
    floats (integers over 64 bits, or written with a fraction or an exponent); None when no
    id needs it. Per request of a batch, or a one-element list for a single request."""
    items = message if isinstance(message, list) else [message]
    if not any(isinstance(item, dict) and isinstance(item.get("id"), float) for item in items):
        return None
    try:
        exact = json.loads(body, parse_int=_Number, parse_float=_Number)
    except (ValueError, RecursionError):
        return None
    exact_items = exact if isinstance(exact, list) else [exact]
    out: list[bytes | None] = []
    for item, original in zip(items, exact_items, strict=False):
        raw = original.get("id") if isinstance(original, dict) else None
        float_id = isinstance(item, dict) and isinstance(item.get("id"), float)
        out.append(raw.encode() if float_id and isinstance(raw, _Number) else None)
    return out
