"""run_monitor: the Trio shell around :class:`MonitorCore`.

Each round (every ``interval`` seconds, or at once when a round overran): every node is asked
concurrently (:class:`NodeClient`, each call under a ``timeout`` cancel scope); the answering
node with the highest finalized block is the reference, asked for the chain facts; the core
takes the round and ``now`` and answers the alert events, which go to the output, to the
webhook queue and to the metrics.

The webhook sender is its own task behind a bounded queue: a slow or dead webhook never holds
up polling (an alert that finds the queue full is dropped, and logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import orjson
import trio

from moderntensor.node._logging import event
from moderntensor.rpc import MetricsConfig, serve_metrics

from ._core import MonitorCore
from ._http import HttpFailed, http_request
from ._metrics import MonitorMetrics
from ._model import AlertEvent, ChainFacts, Failure, Observation, Thresholds
from ._poll import NodeClient

__all__ = ["MonitorSettings", "Output", "run_monitor"]

log = logging.getLogger("moderntensor.monitor")

WEBHOOK_QUEUE = 100  # alerts waiting for a slow webhook; beyond that they are dropped
WEBHOOK_TIMEOUT = 5.0
EVIDENCE_EVERY = 5.0  # seconds between mt_evidence calls (it scans up to 1024 blocks)


@attrs.frozen(slots=True)
class MonitorSettings:
    targets: tuple[tuple[str, str], ...]
    thresholds: Thresholds = attrs.field(factory=Thresholds)
    interval: float = 2.0
    timeout: float = 2.0
    webhook: str | None = None
    metrics_addr: str = "127.0.0.1"
    metrics_port: int | None = None


class Output(Protocol):
    """Where rounds go: alert events as they happen, then the round's status."""

    def alerts(self, core: MonitorCore, events: Sequence[AlertEvent], now: float) -> None: ...

    def round(self, core: MonitorCore, now: float) -> None: ...


async def _send_webhooks(
    url: str, receive: trio.MemoryReceiveChannel[AlertEvent], drained: trio.Event
) -> None:
    async with receive:
        async for alert in receive:
            body = orjson.dumps(alert.to_json())
            problem = None
            with trio.move_on_after(WEBHOOK_TIMEOUT) as scope:
                try:
                    status, _ = await http_request("POST", url, body)
                    if not 200 <= status < 300:
                        problem = f"HTTP {status}"
                except HttpFailed as exc:
                    problem = str(exc)
            if scope.cancelled_caught:
                problem = f"no answer in {WEBHOOK_TIMEOUT:g} s"
            if problem is not None:
                event(log, logging.WARNING, "webhook failed", url=url, error=problem,
                      kind=str(alert.alert.kind), subject=alert.alert.subject)  # fmt: skip
    drained.set()


class _Poller:
    def __init__(self, settings: MonitorSettings) -> None:
        self.clients = {n: NodeClient(n, u, settings.timeout) for n, u in settings.targets}
        self.last_block: int | None = None
        self.reference: str | None = None
        self.evidence_at = -EVIDENCE_EVERY

    async def poll(self) -> dict[str, Observation | Failure]:
        polls: dict[str, Observation | Failure] = {}

        async def one(name: str, client: NodeClient) -> None:
            polls[name] = await client.observe()

        async with trio.open_nursery() as nursery:
            for name, client in self.clients.items():
                nursery.start_soon(one, name, client)
        return polls

    def pick(self, polls: dict[str, Observation | Failure]) -> str | None:
        """The answering node with the highest finalized block (the last one on a tie)."""
        answers = {n: p for n, p in polls.items() if isinstance(p, Observation)}
        if not answers:
            return None
        best = max(o.finalized for o in answers.values())
        if self.reference in answers and answers[self.reference].finalized == best:
            return self.reference
        return next(n for n, o in answers.items() if o.finalized == best)

    async def chain(self, name: str, ref: Observation) -> ChainFacts | None:
        client = self.clients[name]
        evidence = trio.current_time() - self.evidence_at >= EVIDENCE_EVERY
        facts = None
        try:
            facts = await client.chain_facts(ref, self.last_block, evidence)
        except* Exception as group:
            event(log, logging.WARNING, "chain facts failed", node=name,
                  error=repr(group.exceptions[0]))  # fmt: skip
        if facts is None:
            return None
        if evidence:
            self.evidence_at = trio.current_time()
        if facts.blocks:
            self.last_block = facts.blocks[-1].number
        return facts

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


async def run_monitor(
    settings: MonitorSettings,
    output: Output,
    *,
    clock: Callable[[], float] = time.time,
    rounds: int | None = None,
    task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
) -> MonitorCore:
    """Watch the nodes until cancelled (or for ``rounds`` rounds); reports the metrics port
    (None without ``metrics_port``) once listening.

    Raises:
        OSError: the metrics port cannot be bound.
        ValueError: bad settings (no nodes, duplicate names, a bad URL).
    """
    core = MonitorCore(settings.targets, settings.thresholds, clock())
    poller = _Poller(settings)
    metrics = MonitorMetrics()
    send: trio.MemorySendChannel[AlertEvent] | None = None
    drained = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            port = None
            if settings.metrics_port is not None:
                config = MetricsConfig(addr=settings.metrics_addr, port=settings.metrics_port)
                port = await nursery.start(serve_metrics, metrics.render, config)
                event(log, logging.INFO, "monitor metrics listening",
                      addr=settings.metrics_addr, port=port, path="/metrics")  # fmt: skip
            if settings.webhook is not None:
                send, receive = trio.open_memory_channel[AlertEvent](WEBHOOK_QUEUE)
                nursery.start_soon(_send_webhooks, settings.webhook, receive, drained)
            task_status.started(port)
            count = 0
            while rounds is None or count < rounds:
                started = trio.current_time()
                polls = await poller.poll()
                reference = poller.pick(polls)
                chain = None
                ref = None if reference is None else polls[reference]
                if reference is not None and isinstance(ref, Observation):
                    chain = await poller.chain(reference, ref)
                poller.reference = reference
                now = clock()
                events = core.process_round(now, polls, chain, reference)
                metrics.update(core, events, now)
                for e in events:
                    event(log, logging.INFO, f"alert {e.event}", kind=str(e.alert.kind),
                          subject=e.alert.subject, message=e.alert.message)  # fmt: skip
                    if send is not None:
                        try:
                            send.send_nowait(e)
                        except trio.WouldBlock:
                            event(log, logging.WARNING, "webhook queue full: alert dropped",
                                  kind=str(e.alert.kind), subject=e.alert.subject)  # fmt: skip
                output.alerts(core, events, now)
                output.round(core, now)
                count += 1
                if rounds is None or count < rounds:
                    await trio.sleep_until(started + settings.interval)
            if send is not None:  # after --rounds: what is queued gets a last chance
                await send.aclose()
                with trio.move_on_after(WEBHOOK_TIMEOUT):
                    await drained.wait()
            nursery.cancel_scope.cancel()  # the metrics listener, a webhook still sending
    finally:
        with trio.CancelScope(shield=True):
            await poller.aclose()
    return core
