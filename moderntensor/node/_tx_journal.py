"""The local transactions journal: what this node's RPC accepted survives a restart.

geth's ``transactions.rlp`` idea (``--txpool.journal``): every transaction admitted through
``eth_sendRawTransaction`` here is appended to ``<data_dir>/transactions.journal`` at once
(one ``write``: in the kernel's page cache, so a ``kill -9`` loses nothing; a JSON-RPC batch's
together, in one ``write`` when the batch is answered, before its response), the file is
fsynced about once a second (a power cut may lose the last second), and at startup every
record is offered to the pool again, then the file is rewritten with just the ones the pool
took back. Transactions gossiped in are not journaled: their sender's node keeps them.

Format: records of a 4-byte big-endian length and the transaction's network encoding. A torn
last record (a crash mid-write) or anything unreadable ends the journal there
(:func:`decode_records` is total). The file is compacted to what is still pooled when it grows
past ``journal_max_bytes`` (and twice its last compacted size), when it names far more
transactions than the pool holds, and hourly (geth's rejournal interval), so its size and the
hashes kept in memory are bounded by the pool's.

The parsing and the choice of what to keep are pure functions; :class:`TxJournal` is the thin
I/O shell around them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import trio

from moderntensor import offload
from moderntensor._files import write_atomic
from moderntensor.chain.transactions import Transaction
from moderntensor.mempool import Mempool
from moderntensor.node._logging import event
from moderntensor.service import ChainService

__all__ = ["JOURNAL_FILE", "TxJournal", "compute_kept", "decode_records", "encode_records"]

log = logging.getLogger("moderntensor.node")

JOURNAL_FILE = "transactions.journal"
SYNC_INTERVAL_S = 1.0
"""How often appended records are fsynced (batched: one fsync for all of a second's)."""
ROTATE_INTERVAL_S = 3600.0
"""geth's ``--txpool.rejournal``: compact hourly even if the file stays small."""
MAX_RECORD = 1 << 20
"""A record longer than this is not a transaction (the pool's limit is 128 KiB): the rest of
the file is unreadable."""
_LENGTH = 4


def encode_records(raws: Sequence[bytes]) -> bytes:
    """Records for ``raws``, in order."""
    return b"".join(len(raw).to_bytes(_LENGTH, "big") + raw for raw in raws)


def decode_records(data: bytes) -> tuple[list[bytes], int]:
    """The whole records at the start of ``data`` and the length they take; a torn or
    unreadable record ends the journal there."""
    raws: list[bytes] = []
    at = 0
    while at + _LENGTH <= len(data):
        size = int.from_bytes(data[at : at + _LENGTH], "big")
        end = at + _LENGTH + size
        if not 0 < size <= MAX_RECORD or end > len(data):
            break
        raws.append(data[at + _LENGTH : end])
        at = end
    return raws, at


def compute_kept(local: Sequence[bytes], pool: Mempool) -> list[Transaction]:
    """The journaled transactions (hashes, in journal order) the pool still holds."""
    kept = []
    for tx_hash in local:
        tx = pool.get(tx_hash)
        if tx is not None:
            kept.append(tx)
    return kept


def _rewrite(path: Path, data: bytes) -> int:
    """Replace the journal atomically (a crash leaves the old one or the new one); returns
    a file descriptor open for appending to the new one."""
    write_atomic(path, data)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


class TxJournal:
    """Appends this node's RPC transactions; re-admits and compacts at startup."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.size = 0
        self.compacted_size = 0
        self.local: dict[bytes, None] = {}  # hashes journaled since the last compaction
        self.appended = 0
        self.readmitted = 0
        self._fd: int | None = None
        self._dirty = False
        self._parked: list[Transaction] | None = None  # appends while a compaction runs
        self._failed = False

    def append(self, tx: Transaction) -> None:
        """Journal one admitted transaction (on the event loop: one ``write`` call)."""
        self.append_many([tx])

    def append_many(self, txs: Sequence[Transaction]) -> None:
        """Journal admitted transactions, in order (a JSON-RPC batch's: one ``write``)."""
        if self._parked is not None:
            self._parked.extend(txs)
            return
        if self._fd is None:
            return
        record = encode_records([tx.raw for tx in txs])
        try:
            os.write(self._fd, record)
        except OSError as exc:
            if not self._failed:  # the pool has it anyway; say so once, not per transaction
                event(log, logging.WARNING, "transaction journal write failed",
                      path=str(self.path), error=str(exc))  # fmt: skip
            self._failed = True
            return
        for tx in txs:
            self.local[tx.hash] = None
        self.size += len(record)
        self.appended += len(txs)
        self._dirty = True

    def _should_compact(self, pool: Mempool, since: float) -> bool:
        if self.size > max(self.max_bytes, 2 * self.compacted_size):
            return True
        return len(self.local) > 2 * len(pool) + 4096 or since >= ROTATE_INTERVAL_S

    async def compact(self, pool: Mempool) -> None:
        """Rewrite the file with the journaled transactions the pool still holds."""
        kept = compute_kept(list(self.local), pool)
        self._parked = []
        try:
            old, self._fd = self._fd, None
            if old is not None:
                os.close(old)
            self._fd = await offload.run_sync(
                _rewrite, self.path, encode_records([tx.raw for tx in kept])
            )
        finally:
            parked, self._parked = self._parked, None
        self.local = {tx.hash: None for tx in kept}
        self.size = self.compacted_size = sum(_LENGTH + len(tx.raw) for tx in kept)
        self._dirty = False
        still = [tx for tx in parked if tx.hash in pool]
        if still:
            self.append_many(still)

    async def run(
        self,
        service: ChainService,
        pool: Mempool,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Re-admit the journal, compact it, then journal ``service``'s local submissions
        until cancelled (fsync each second, compact as the module docstring says)."""
        data = b""
        if self.path.exists():
            data = await offload.run_sync(self.path.read_bytes)
        raws, valid = decode_records(data)
        results = await service.submit_raw_transactions(raws)
        self.local = {r: None for r in results if isinstance(r, bytes)}
        await self.compact(pool)
        self.readmitted = len(self.local)  # a replaced one is admitted, then replaced again
        torn = len(data) - valid
        event(log, logging.INFO, "transaction journal loaded", path=str(self.path),
              records=len(raws), readmitted=self.readmitted, torn_bytes=torn)  # fmt: skip
        service.on_local_transaction = self.append
        service.on_local_transactions = self.append_many
        task_status.started()
        last_compaction = trio.current_time()
        try:
            while True:
                await trio.sleep(SYNC_INTERVAL_S)
                if self._should_compact(pool, trio.current_time() - last_compaction):
                    await self.compact(pool)
                    last_compaction = trio.current_time()
                elif self._dirty and self._fd is not None:
                    self._dirty = False
                    await offload.run_sync(os.fsync, self._fd)
        finally:
            service.on_local_transaction = None
            service.on_local_transactions = None
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
