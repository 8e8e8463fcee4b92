"""The account history behind the account page: an index of the newest blocks' transactions.

Bounds: the index covers at most ``index_blocks`` consecutive blocks ending at the head and
holds at most ``index_max_transactions`` transactions; past either, the oldest blocks are
dropped. Each transaction is also listed under its sender and recipient (in chain order), so
a lookup costs what it returns (``limit`` entries), whatever the index holds. Memory, measured
with 50,000 transactions in 10,000 blocks: 17 MB among 1,000 addresses, 31 MB among 64,000.

Keeping it (:meth:`AccountIndex.run`): twice a second the explorer walks back from the head
to the newest indexed block whose hash still matches (at most ``SYNC_CHUNK`` blocks per step,
so a reorganisation replaces what it orphaned), then extends the index backwards a chunk at a
time until it covers ``index_blocks``. Blocks are read in the RPC's heavy-read worker thread
(which gives way to chain work); the index itself changes only on the event loop. If the head
ran more than a chunk ahead (a node that was syncing), the index restarts from the head.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
import trio

from moderntensor.chain.blocks import Header
from moderntensor.crypto import checksum_address
from moderntensor.rpc._chainview import ChainView
from moderntensor.rpc._work import ReadWorker
from moderntensor.service import ChainService

__all__ = ["AccountIndex", "BlockDigest", "IndexedTx"]

log = logging.getLogger("moderntensor.explorer")

SYNC_CHUNK = 64
"""Blocks read per trip to the worker thread."""
SYNC_INTERVAL_S = 0.5
RETRY_S = 5.0


@attrs.frozen(slots=True)
class IndexedTx:
    tx_hash: bytes
    sender: bytes
    to: bytes | None
    value: int
    index: int

    def to_json(self, number: int, timestamp: int) -> dict[str, Any]:
        return {
            "hash": "0x" + self.tx_hash.hex(),
            "blockNumber": number,
            "timestamp": timestamp,
            "index": self.index,
            "from": checksum_address(self.sender),
            "to": None if self.to is None else checksum_address(self.to),
            "value": hex(self.value),
        }


def _parties(tx: IndexedTx) -> tuple[bytes, ...]:
    """The addresses a transaction is listed under (once for a transfer to oneself)."""
    return (tx.sender,) if tx.to is None or tx.to == tx.sender else (tx.sender, tx.to)


@attrs.frozen(slots=True)
class BlockDigest:
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    txs: tuple[IndexedTx, ...]


_Entry = tuple[BlockDigest, IndexedTx]


def read_blocks(
    service: ChainService,
    view: ChainView,
    start: Header | None,
    known: Callable[[int, bytes], bool],
    limit: int,
    give_way: Callable[[], None] = lambda: None,
) -> list[BlockDigest]:
    """Digests walking back from ``start`` (newest first): at most ``limit`` blocks, stopping
    before block 0 and before a block ``known`` says is indexed already. Thread-safe reads."""
    out: list[BlockDigest] = []
    header = start
    while header is not None and header.number > 0 and len(out) < limit:
        if known(header.number, header.hash):
            break
        give_way()
        block = view.block(header)
        if block is None:
            break
        txs = tuple(
            IndexedTx(tx.hash, tx.sender, tx.to, tx.value, i)
            for i, tx in enumerate(block.transactions)
        )
        out.append(BlockDigest(header.number, header.hash, header.parent_hash,
                               header.timestamp, txs))  # fmt: skip
        header = service.header_by_hash(header.parent_hash)
    return out


class AccountIndex:
    """Recent transactions by block, newest last, and by address (each address's entries in
    chain order, so a lookup costs what it returns); see the module docstring for the
    bounds."""

    def __init__(self, max_blocks: int, max_transactions: int) -> None:
        self.max_blocks = max_blocks
        self.max_transactions = max_transactions
        self._blocks: OrderedDict[int, BlockDigest] = OrderedDict()  # ascending numbers
        self._by_address: dict[bytes, list[_Entry]] = {}  # lists: a deque costs 600+ bytes
        self._count = 0
        self._filled = False  # the bounds (or a block that cannot be read) stop the backfill
        self.restarts = 0

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def transactions(self) -> int:
        return self._count

    @property
    def addresses(self) -> int:
        return len(self._by_address)

    @property
    def lowest(self) -> BlockDigest | None:
        return next(iter(self._blocks.values()), None)

    @property
    def highest(self) -> BlockDigest | None:
        return next(reversed(self._blocks.values()), None)

    def has(self, number: int, block_hash: bytes) -> bool:
        digest = self._blocks.get(number)
        return digest is not None and digest.hash == block_hash

    # -- the four edits (blocks and the address lists move together) ------------------------

    def _push_newest(self, digest: BlockDigest) -> None:
        self._blocks[digest.number] = digest
        self._count += len(digest.txs)
        for tx in digest.txs:
            for address in _parties(tx):
                self._by_address.setdefault(address, []).append((digest, tx))

    def _push_oldest(self, digests: list[BlockDigest]) -> None:
        """Blocks below the lowest (newest first): each address's new entries are put in
        front of its list at once (one move per list, not one per entry)."""
        ahead: dict[bytes, list[_Entry]] = {}
        for digest in digests:
            self._blocks[digest.number] = digest
            self._blocks.move_to_end(digest.number, last=False)
            self._count += len(digest.txs)
        for digest in reversed(digests):  # chain order
            for tx in digest.txs:
                for address in _parties(tx):
                    ahead.setdefault(address, []).append((digest, tx))
        for address, entries in ahead.items():
            self._by_address.setdefault(address, [])[:0] = entries

    def _pop_newest(self) -> None:
        _, digest = self._blocks.popitem(last=True)
        self._count -= len(digest.txs)
        for tx in reversed(digest.txs):
            for address in _parties(tx):
                entries = self._by_address[address]
                entries.pop()
                if not entries:
                    del self._by_address[address]

    def _pop_oldest(self) -> None:
        _, digest = self._blocks.popitem(last=False)
        self._count -= len(digest.txs)
        for tx in digest.txs:
            for address in _parties(tx):
                entries = self._by_address[address]
                del entries[0]
                if not entries:
                    del self._by_address[address]

    # -- keeping it -----------------------------------------------------------------------

    def add_newer(self, digests: list[BlockDigest]) -> None:
        """Blocks read from the head back (newest first). If the oldest of them does not
        follow an indexed block (the walk gave up), the index starts again from them."""
        if not digests:
            return
        oldest = digests[-1]
        below = self._blocks.get(oldest.number - 1)
        if below is None or below.hash != oldest.parent_hash:
            if self._blocks:
                self.restarts += 1
            self._blocks.clear()
            self._by_address.clear()
            self._count = 0
            self._filled = False
        while self._blocks and next(reversed(self._blocks)) >= oldest.number:
            self._pop_newest()  # orphaned by a reorganisation
        for digest in reversed(digests):
            self._push_newest(digest)
        while len(self._blocks) > 1 and (
            len(self._blocks) > self.max_blocks or self._count > self.max_transactions
        ):
            self._pop_oldest()
            self._filled = True

    def add_older(self, digests: list[BlockDigest]) -> None:
        """Blocks read backwards from below the lowest indexed one (newest first)."""
        lowest = self.lowest
        if not digests or lowest is None or digests[0].hash != lowest.parent_hash:
            self._filled = True  # nothing more to read below (or the walk failed): stop
            return
        room = self.max_blocks - len(self._blocks)
        taken, txs = [], self._count
        for digest in digests[:room]:
            if txs + len(digest.txs) > self.max_transactions:
                break
            taken.append(digest)
            txs += len(digest.txs)
        if len(taken) < len(digests):
            self._filled = True
        self._push_oldest(taken)

    def wants_older(self) -> bool:
        lowest = self.lowest
        return (
            lowest is not None
            and not self._filled
            and lowest.number > 1
            and len(self._blocks) < self.max_blocks
            and self._count < self.max_transactions
        )

    # -- reading --------------------------------------------------------------------------

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` indexed transactions (the home page's list; empty blocks are
        skipped, at most ``max_blocks`` of them)."""
        out: list[dict[str, Any]] = []
        for digest in reversed(self._blocks.values()):
            for tx in reversed(digest.txs):
                out.append(tx.to_json(digest.number, digest.timestamp))
                if len(out) >= limit:
                    return out
        return out

    def lookup(self, address: bytes, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` indexed transactions from or to ``address``."""
        entries = self._by_address.get(address, ())
        return [
            tx.to_json(digest.number, digest.timestamp)
            for digest, tx in itertools.islice(reversed(entries), limit)  # newest first
        ]

    def coverage(self) -> dict[str, Any]:
        low, high = self.lowest, self.highest
        return {
            "fromBlock": None if low is None else low.number,
            "toBlock": None if high is None else high.number,
            "blocks": len(self._blocks),
            "transactions": self._count,
            "addresses": len(self._by_address),
            "maxBlocks": self.max_blocks,
            "maxTransactions": self.max_transactions,
        }

    async def run(
        self,
        service: ChainService,
        view: ChainView,
        worker: ReadWorker,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep the index up to date until cancelled (see the module docstring)."""
        task_status.started()
        while True:
            try:
                more = await self._step(service, view, worker)
            except Exception:  # the explorer's history must never take the node down
                log.exception("explorer index: reading blocks failed; retrying in %g s",
                              RETRY_S)  # fmt: skip
                await trio.sleep(RETRY_S)
                continue
            await (trio.sleep(0) if more else trio.sleep(SYNC_INTERVAL_S))

    async def _step(self, service: ChainService, view: ChainView, worker: ReadWorker) -> bool:
        """Catch up with the head, then backfill one chunk; whether more backfill is due."""
        head = service.head
        if not self.has(head.number, head.hash):
            newer = await worker.run(
                read_blocks, service, view, head, self.has, SYNC_CHUNK, worker.give_way
            )
            self.add_newer(newer)
        if not self.wants_older():
            return False
        lowest = self.lowest
        assert lowest is not None
        start = service.header_by_hash(lowest.parent_hash)
        older = await worker.run(
            read_blocks, service, view, start, lambda _n, _h: False,
            min(SYNC_CHUNK, self.max_blocks - len(self)), worker.give_way,
        )  # fmt: skip
        self.add_older(older)
        return True
