"""Asking one node: ``mt_status``, ``eth_syncing`` and ``GET /health`` at once, and from the
reference node the new finalized blocks, the leader schedule and the evidence.

Each node gets a :class:`NodeClient` (the faucet's pooled :class:`RpcClient` plus one-shot
``/health`` requests); every call runs under a cancel scope of ``timeout`` seconds, so a
stopped node (SIGSTOP, a dropped network) costs a round at most that long. Answers are parsed
into the core's frozen facts here; an answer of the wrong shape is the node's failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import trio

from moderntensor.faucet import NodeError, NodeUnavailable, RpcClient

from ._http import HttpFailed, http_request
from ._model import (
    BlockFacts,
    ChainFacts,
    EvidenceFacts,
    Failure,
    Observation,
    ProcessFacts,
    SyncFacts,
    ValidatorFacts,
)

__all__ = ["MAX_BLOCKS_PER_ROUND", "NodeClient", "parse_status"]

MAX_BLOCKS_PER_ROUND = 64
SCHEDULE_SLOTS = 256
T = TypeVar("T")


def _int(value: Any) -> int:
    """A JSON-RPC quantity (0x hex string) or a plain JSON integer."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise TypeError(f"not a number: {value!r}")


def parse_status(status: Any, syncing: Any, health: tuple[int, Any] | str) -> Observation:
    """An :class:`Observation` from the answers of ``mt_status``, ``eth_syncing`` and
    ``/health`` ((status code, JSON body), or why it failed).

    Raises:
        KeyError, TypeError, ValueError: an answer of another shape.
    """
    fin, epoch = status["finality"], status["epoch"]
    sync = None
    if isinstance(syncing, dict):
        sync = SyncFacts(
            _int(syncing["startingBlock"]),
            _int(syncing["currentBlock"]),
            _int(syncing["highestBlock"]),
        )
    process = None
    p = status.get("process")
    if isinstance(p, dict):
        process = ProcessFacts(
            float(p["cpuSeconds"]),
            _int(p["rssBytes"]),
            None if p.get("dataDirBytes") is None else _int(p["dataDirBytes"]),
            None if p.get("diskFreeBytes") is None else _int(p["diskFreeBytes"]),
        )
    validators = tuple(
        ValidatorFacts(
            str(v["address"]),
            str(v["validatorId"]),
            str(v.get("name", "")),
            str(v.get("status", "")),
            bool(v.get("jailed", False)),
        )
        for v in status.get("validators", [])
    )
    if isinstance(health, str):
        health_ok, reason = False, f"no /health answer: {health}"
    else:
        code, doc = health
        health_ok = code == 200
        reason = (
            ""
            if health_ok
            else str(doc.get("reason", f"HTTP {code}") if isinstance(doc, dict) else f"HTTP {code}")
        )
    return Observation(
        head=_int(fin["headNumber"]),
        head_slot=_int(fin["headSlot"]),
        finalized=_int(fin["finalizedNumber"]),
        finalized_slot=_int(fin["finalizedSlot"]),
        peers=_int(status["peers"]["count"]),
        slot=_int(epoch["slot"]),
        slot_ms=_int(epoch["slotDurationMs"]),
        genesis_time=_int(epoch["genesisTime"]),
        health_ok=health_ok,
        health_reason=reason,
        sync=sync,
        process=process,
        validators=validators,
    )


def _health_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/health", "", ""))


class NodeClient:
    """The calls the monitor makes to one node, each bounded by ``timeout`` seconds."""

    def __init__(self, name: str, url: str, timeout: float) -> None:
        self.name = name
        self.url = url
        self.timeout = timeout
        self.rpc = RpcClient(url, timeout=timeout, max_connections=4)
        self.health_url = _health_url(url)

    async def aclose(self) -> None:
        await self.rpc.aclose()

    async def _bounded(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        with trio.move_on_after(self.timeout):
            return await call()
        raise NodeUnavailable(f"{what}: no answer in {self.timeout:g} s")

    async def _health(self) -> tuple[int, Any] | str:
        try:
            code, body = await self._bounded(
                "/health", lambda: http_request("GET", self.health_url)
            )
        except (HttpFailed, NodeUnavailable) as exc:
            return str(exc)
        try:
            return code, orjson.loads(body)
        except orjson.JSONDecodeError:
            return code, None

    async def observe(self) -> Observation | Failure:
        """This round's :class:`Observation`, or the :class:`Failure` saying why not."""
        answers: dict[str, Any] = {}

        async def ask(key: str, call: Callable[[], Awaitable[Any]]) -> None:
            answers[key] = await call()

        failed: list[str] = []
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask, "status", lambda: self.call("mt_status"))
                nursery.start_soon(ask, "syncing", lambda: self.call("eth_syncing"))
                nursery.start_soon(ask, "health", self._health)
        except* (NodeUnavailable, NodeError) as group:
            failed.append(str(group.exceptions[0]))
        if failed:
            return Failure(failed[0])
        try:
            return parse_status(answers["status"], answers["syncing"], answers["health"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return Failure(f"mt_status: an answer of another shape: {exc!r}")

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        """One JSON-RPC call within the timeout.

        Raises:
            NodeUnavailable: no answer in time.
            NodeError: an error answer.
        """
        return await self._bounded(method, lambda: self.rpc.call(method, params))

    async def chain_facts(
        self, ref: Observation, last_block: int | None, evidence: bool
    ) -> ChainFacts:
        """Finalized blocks after ``last_block`` (at most ``MAX_BLOCKS_PER_ROUND``, the
        newest; ``gap`` when older ones were skipped), the leader schedule, and with
        ``evidence`` the evidence and slashed total.

        Raises:
            NodeUnavailable, NodeError: a call failed.
            KeyError, TypeError, ValueError: an answer of another shape.
        """
        first = ref.finalized - MAX_BLOCKS_PER_ROUND + 1
        if last_block is not None:
            first = max(first, last_block + 1)
        first = max(first, 1)
        gap = last_block is not None and first > last_block + 1
        numbers = list(range(first, ref.finalized + 1))
        found: dict[int, BlockFacts] = {}
        answers: dict[str, Any] = {}

        async def block(n: int) -> None:
            doc = await self.call("eth_getBlockByNumber", [hex(n), False])
            if doc is None:
                raise ValueError(f"block {n} is missing")
            found[n] = BlockFacts(
                _int(doc["number"]), _int(doc["timestamp"]), str(doc["miner"]),
                len(doc["transactions"]),
            )  # fmt: skip

        async def ask(key: str, method: str, params: list[Any]) -> None:
            answers[key] = await self.call(method, params)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "schedule", "mt_leaderSchedule", [hex(SCHEDULE_SLOTS)])
            if evidence:
                nursery.start_soon(ask, "evidence", "mt_evidence", [])
            for n in numbers:
                nursery.start_soon(block, n)
        schedule = tuple((_int(e["slot"]), str(e["leader"])) for e in answers["schedule"])
        items = None
        total = None
        if evidence:
            doc = answers["evidence"]
            total = _int(doc["slashedTotal"])
            items = tuple(
                EvidenceFacts(str(e["evidenceId"]), str(e["offender"]), _int(e["blockNumber"]))
                for e in doc["evidence"]
                if "evidenceId" in e
            )
        blocks = tuple(found[n] for n in numbers)
        return ChainFacts(blocks, gap, schedule, items, total)
