"""Fetching: get blocks (and certificates) this node lacks from peers, off the consensus loop
(review M3).

The consensus core asks for a block with :class:`~moderntensor.consensus.FetchBlock` when a
proposal's parent is missing here (a MISSING verdict) or when it finalized a block it never
saw. The driver turns that into a :class:`FetchRequest` on a bounded channel (``send_nowait``:
the driver never waits on this task; a request that finds the channel full is tried again
at a later tick). This task asks a :class:`BlockFetcher` (the network, once it exists) for
the block, walks its parents until one is known here, executes them oldest first in a
worker thread under the chain lock, stores each durably (the journal), and reports back to
the driver's inbox with :class:`BlocksFetched` or :class:`FetchFailed`. The driver then
re-executes the proposals that waited and commits the final blocks that waited.

Certificates go the same way: the core asks with
:class:`~moderntensor.consensus.FetchCertificates` for the nullifications and notarizations
of rounds it lacks (after a restart, or a jump of views); the driver serves them from its
journal if it can, and otherwise sends a :class:`CertificateRequest` here; the answer is a
:class:`CertificatesFetched` (maybe empty) that the driver feeds to the core.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from moderntensor import offload
from moderntensor.chain.blocks import Block
from moderntensor.chain.chain import Chain, InvalidBlock
from moderntensor.consensus import Certificate, Round
from moderntensor.node._journal import ConsensusJournal
from moderntensor.node._logging import event

__all__ = [
    "BlockFetchService",
    "BlockFetcher",
    "BlocksFetched",
    "CertificateRequest",
    "CertificatesFetched",
    "FetchFailed",
    "FetchQueue",
    "FetchRequest",
]

log = logging.getLogger("moderntensor.node")

MAX_FETCH_DEPTH = 256
"""Ancestors fetched one by one for one request; a longer gap is a job for sync."""
FETCH_TIMEOUT_S = 10.0
"""How long one block may take to arrive before the request fails (and is tried again)."""


class BlockFetcher(Protocol):
    """Where missing blocks and certificates come from (the network's request/response; a
    fake in tests). Answers are checked here (blocks) or by the core (certificates)."""

    async def fetch_block(self, block_hash: bytes) -> Block | None:
        """The block with this (header) hash, or None if no peer has it."""

    async def fetch_certificates(self, epoch: int, slot: int) -> list[Certificate]:
        """The certificates peers hold for round (``epoch``, ``slot``) (maybe none)."""


@attrs.frozen(slots=True)
class FetchRequest:
    """Get ``block_hash`` and whatever ancestors are missing; ``reason`` is for the log."""

    block_hash: bytes
    reason: str


@attrs.frozen(slots=True)
class CertificateRequest:
    """Get the certificates of round (``epoch``, ``slot``); ``reason`` is for the log."""

    epoch: int
    slot: int
    reason: str


@attrs.frozen(slots=True)
class CertificatesFetched:
    """What peers sent for round (``epoch``, ``slot``), unverified (the core verifies)."""

    epoch: int
    slot: int
    certificates: tuple[Certificate, ...]


@attrs.frozen(slots=True)
class BlocksFetched:
    """``requested`` and its missing ancestors are executed here now (``executed``, oldest
    first; empty when it was here already)."""

    requested: bytes
    executed: tuple[bytes, ...]


@attrs.frozen(slots=True)
class FetchFailed:
    """No usable block for ``requested`` (``reason`` says why); the driver tries again later."""

    requested: bytes
    reason: str


class BlockFetchService:
    """One node's block fetcher; ``run`` is a long-lived nursery task."""

    def __init__(
        self,
        chain: Chain,
        journal: ConsensusJournal,
        chain_lock: trio.CapacityLimiter,
        fetcher: BlockFetcher,
        *,
        max_depth: int = MAX_FETCH_DEPTH,
        timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self.chain = chain
        self.journal = journal
        self.chain_lock = chain_lock  # one worker thread at a time touches the chain
        self.fetcher = fetcher
        self.max_depth = max_depth
        self.timeout_s = timeout_s
        self.fetched = 0

    async def run(
        self,
        requests: trio.MemoryReceiveChannel[FetchRequest | CertificateRequest],
        results: trio.MemorySendChannel[BlocksFetched | FetchFailed | CertificatesFetched],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer fetch requests until cancelled, one at a time."""
        task_status.started()
        async for request in requests:
            if isinstance(request, CertificateRequest):
                await results.send(await self.fetch_certificates(request))
            else:
                await results.send(await self.fetch(request))

    async def fetch_certificates(self, request: CertificateRequest) -> CertificatesFetched:
        """Ask peers for a round's certificates (none if nobody answers in time)."""
        certificates: list[Certificate] = []
        with trio.move_on_after(self.timeout_s):
            certificates = await self.fetcher.fetch_certificates(request.epoch, request.slot)
        return CertificatesFetched(request.epoch, request.slot, tuple(certificates))

    async def fetch(self, request: FetchRequest) -> BlocksFetched | FetchFailed:
        """Fetch, execute and store ``request.block_hash`` and its missing ancestors."""
        missing: list[Block] = []
        want = request.block_hash
        while self.chain.get_header(want) is None:
            if len(missing) >= self.max_depth:
                return FetchFailed(request.block_hash, f"more than {self.max_depth} missing")
            block: Block | None = None
            with trio.move_on_after(self.timeout_s):
                block = await self.fetcher.fetch_block(want)
            if block is None:  # no peer has it, or none answered in time
                return FetchFailed(request.block_hash, f"no block 0x{want.hex()}")
            if block.hash != want:  # a peer answered with another block
                return FetchFailed(request.block_hash, f"wrong block for 0x{want.hex()}")
            above = block.number - self.chain.top_number()
            if above > self.max_depth - len(missing):  # do not walk (and decode) in vain
                return FetchFailed(request.block_hash, f"block {block.number} is {above} above "
                                   f"the highest here: more than {self.max_depth} missing, "
                                   "a job for range sync")  # fmt: skip
            missing.append(block)
            want = block.header.parent_hash
        executed: list[bytes] = []
        for block in reversed(missing):
            try:
                await offload.run_sync(self._execute, block, limiter=self.chain_lock)
            except InvalidBlock as exc:
                event(log, logging.WARNING, "fetched block invalid", number=block.number,
                      block="0x" + block.hash.hex(), reason=exc.reason)  # fmt: skip
                return FetchFailed(request.block_hash, f"block {block.number}: {exc.reason}")
            executed.append(block.hash)
            self.fetched += 1
        if executed:
            event(log, logging.INFO, "blocks fetched", count=len(executed),
                  block="0x" + request.block_hash.hex(), reason=request.reason)  # fmt: skip
        return BlocksFetched(request.block_hash, tuple(executed))

    def _execute(self, block: Block) -> None:
        """Runs in the worker thread: execute on the known parent, then store durably."""
        if self.chain.get_header(block.hash) is None:
            self.chain.execute_block(block)
        self.journal.store_block(block)


class FetchQueue:
    """The driver's side: what it still wants, what the fetcher was asked for, and the
    channel to it (None: no block source yet, so wants are only logged).

    Requests go out with ``send_nowait`` (the driver never waits on the fetcher); one that
    finds the channel full, or that failed, is asked for again by :meth:`retry` (each tick).
    """

    def __init__(
        self, requests: trio.MemorySendChannel[FetchRequest | CertificateRequest] | None
    ) -> None:
        self.requests = requests
        self.blocks: dict[bytes, str] = {}  # wanted blocks -> why
        self._asked: set[bytes] = set()  # blocks asked for, not answered yet
        self._asked_rounds: set[Round] = set()  # rounds likewise

    def want(self, block_hash: bytes, reason: str) -> None:
        """Keep wanting ``block_hash`` until it is here (:meth:`retry`), and ask for it."""
        self.blocks[block_hash] = reason
        self._ask(block_hash)

    def forget(self, block_hash: bytes) -> None:
        self.blocks.pop(block_hash, None)

    def answered(self, block_hash: bytes) -> None:
        """The fetcher answered (or failed) for ``block_hash``."""
        self._asked.discard(block_hash)

    def retry(self, is_here: Callable[[bytes], bool]) -> None:
        """Forget wanted blocks that arrived; ask again for the others."""
        for block_hash in list(self.blocks):
            if is_here(block_hash):
                del self.blocks[block_hash]
            elif self.requests is not None:
                self._ask(block_hash)

    def _ask(self, block_hash: bytes) -> None:
        if block_hash in self._asked:
            return
        reason = self.blocks.get(block_hash, "")
        if self.requests is None:
            event(log, logging.WARNING, "block wanted, no block source (no network)",
                  block="0x" + block_hash.hex(), reason=reason)  # fmt: skip
            return
        try:
            self.requests.send_nowait(FetchRequest(block_hash, reason))
        except trio.WouldBlock:  # the fetcher is behind: asked again at a later tick
            return
        self._asked.add(block_hash)

    def want_round(self, rnd: Round, reason: str) -> None:
        """Ask peers once for the certificates of ``rnd`` (the core asks again if needed)."""
        if self.requests is None or rnd in self._asked_rounds:
            return
        try:
            self.requests.send_nowait(CertificateRequest(rnd[0], rnd[1], reason))
        except trio.WouldBlock:
            return
        self._asked_rounds.add(rnd)

    def answered_round(self, rnd: Round) -> None:
        self._asked_rounds.discard(rnd)
