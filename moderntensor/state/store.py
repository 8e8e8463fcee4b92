"""The node's RocksDB database (rocksdict): one column family per kind of record.

Every block commit is one :class:`WriteBatch` written with :meth:`Database.write`: RocksDB
applies a batch atomically across column families (one write-ahead-log record), so a process
killed at any instant reopens with all of the batch or none of it. The WAL is always on and
recovery is point-in-time (a torn tail record is dropped, never half-applied).

Options, and why:

* ``raw_mode``: keys and values are bytes as given (no pickling), the fastest path.
* NODES holds trie nodes keyed by keccak256: random keys, values already random (hashes), so
  no compression; a 10 bits/key bloom filter (~1% false positives) lets a lookup skip the
  SST files that cannot hold the key; ``optimize_filters_for_hits`` drops the bottom level's
  filters, since the trie only asks for nodes it knows exist. A larger write buffer (64 MiB,
  up to 4) absorbs the many small writes of each block.
* The other columns (headers, bodies, receipts, indexes, consensus, meta) are small or
  append-mostly: LZ4 (cheap) compression and a 16 MiB write buffer.
* One 256 MiB LRU block cache shared by all columns; index and filter blocks live in it so
  memory stays bounded as the database grows.
* Two background jobs (the machines we target have two cores); info logs capped.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import rocksdict

__all__ = ["Column", "Database", "DatabaseError", "DatabaseLocked", "WriteBatch"]

_BLOCK_CACHE_BYTES = 256 << 20
_NODES_WRITE_BUFFER = 64 << 20
_OTHER_WRITE_BUFFER = 16 << 20
_ITERATE_CHUNK = 256


class Column(enum.Enum):
    """A column family; the value is its name on disk (never rename one)."""

    NODES = "nodes"  # trie node hash -> encoded node
    HEADERS = "headers"  # block hash -> header RLP
    BODIES = "bodies"  # block hash -> body RLP
    RECEIPTS = "receipts"  # block hash -> receipts RLP
    CANONICAL = "canonical"  # block number (8 bytes, big-endian) -> block hash
    TX_INDEX = "tx_index"  # tx hash -> location
    CONSENSUS = "consensus"  # certificates, slashing protection
    META = "meta"  # head, finalized, schema version


class DatabaseError(Exception):
    """The database cannot be opened or used: the message names the path and the cause."""


class DatabaseLocked(DatabaseError):
    """Another process (or another open handle in this one) holds the database."""


def _block_options(cache: rocksdict.Cache, bloom: bool) -> rocksdict.BlockBasedOptions:
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    if bloom:
        table.set_bloom_filter(10, False)
    return table


def _options(cache: rocksdict.Cache) -> tuple[rocksdict.Options, dict[str, rocksdict.Options]]:
    """DB-wide options and one Options per column family (see the module docstring)."""
    db_opts = rocksdict.Options(raw_mode=True)
    db_opts.create_if_missing(True)
    db_opts.create_missing_column_families(True)
    db_opts.set_max_background_jobs(2)
    db_opts.set_keep_log_file_num(4)
    db_opts.set_wal_recovery_mode(rocksdict.DBRecoveryMode.point_in_time())
    columns: dict[str, rocksdict.Options] = {}
    for column in Column:
        opts = rocksdict.Options(raw_mode=True)
        if column is Column.NODES:
            opts.set_write_buffer_size(_NODES_WRITE_BUFFER)
            opts.set_max_write_buffer_number(4)
            opts.set_compression_type(rocksdict.DBCompressionType.none())
            opts.set_optimize_filters_for_hits(True)
            opts.set_block_based_table_factory(_block_options(cache, bloom=True))
        else:
            opts.set_write_buffer_size(_OTHER_WRITE_BUFFER)
            opts.set_compression_type(rocksdict.DBCompressionType.lz4())
            opts.set_block_based_table_factory(_block_options(cache, bloom=False))
        opts.set_level_compaction_dynamic_level_bytes(True)
        columns[column.value] = opts
    return db_opts, columns


class WriteBatch:
    """Changes across columns that :meth:`Database.write` applies all at once.

    A batch holds no RocksDB handle, so a forgotten batch never keeps a closed database (and
    its lock) alive; using one after its database closed raises :class:`DatabaseError`.
    """

    __slots__ = ("_batch", "_db")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._batch = rocksdict.WriteBatch(raw_mode=True)

    def put(self, column: Column, key: bytes, value: bytes) -> None:
        self._batch.put(key, value, self._db._handle(column))

    def delete(self, column: Column, key: bytes) -> None:
        self._batch.delete(key, self._db._handle(column))

    def put_many(self, column: Column, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Add ``(key, value)`` pairs to one column (a block's receipts and indexes)."""
        put = self._batch.put
        handle = self._db._handle(column)
        for key, value in items:
            put(key, value, handle)

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        """Add trie nodes (hash -> RLP, as ``HexaryTrie.commit`` returns them)."""
        put = self._batch.put
        handle = self._db._handle(Column.NODES)
        for node_hash, encoded in nodes.items():
            put(node_hash, encoded, handle)

    def __len__(self) -> int:
        return int(self._batch.len())


class Database:
    """The node's database; open with :meth:`open`, close with :meth:`close` (or ``with``)."""

    __slots__ = ("_columns", "_handles", "_nodes", "_nosync", "_rdict", "_sync", "path")

    def __init__(self, path: str, rdict: rocksdict.Rdict) -> None:
        self.path = path
        self._rdict: rocksdict.Rdict | None = rdict
        self._columns = {c: rdict.get_column_family(c.value) for c in Column}
        self._handles = {c: rdict.get_column_family_handle(c.value) for c in Column}
        # The trie's reads skip the enum-keyed lookup (Enum.__hash__ is a Python call).
        self._nodes: rocksdict.Rdict | None = self._columns[Column.NODES]
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True
        self._nosync = rocksdict.WriteOptions()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Database:
        """Open (creating if needed) the database at ``path``.

        Raises:
            DatabaseLocked: another open handle or process holds the database.
            DatabaseError: the path is unusable, or its files are corrupt.
        """
        text = os.fspath(path)
        try:
            os.makedirs(text, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create database directory {text}: {exc}") from None
        db_opts, columns = _options(rocksdict.Cache(_BLOCK_CACHE_BYTES))
        try:
            rdict = rocksdict.Rdict(text, db_opts, column_families=columns)
        except Exception as exc:  # rocksdict raises bare Exception for every RocksDB status
            message = str(exc)
            if "lock" in message.lower():
                raise DatabaseLocked(
                    f"database {text} is in use (locked by another process or handle): {message}"
                ) from None
            raise DatabaseError(f"cannot open database {text}: {message}") from None
        return cls(text, rdict)

    def _handle(self, column: Column) -> Any:
        handle = self._handles.get(column)
        if handle is None:
            raise DatabaseError(f"database {self.path} is closed")
        return handle

    def _live(self) -> rocksdict.Rdict:
        rdict = self._rdict
        if rdict is None:
            raise DatabaseError(f"database {self.path} is closed")
        return rdict

    def get(self, column: Column, key: bytes) -> bytes | None:
        """The value under ``key`` in ``column``, or None.

        Raises:
            DatabaseError: the database is closed.
        """
        self._live()
        value: bytes | None = self._columns[column].get(key)
        return value

    def get_node(self, node_hash: bytes) -> bytes | None:
        """A trie node by hash (makes the database a trie ``NodeReader``)."""
        nodes = self._nodes
        if nodes is None:
            raise DatabaseError(f"database {self.path} is closed")
        value: bytes | None = nodes.get(node_hash)
        return value

    def batch(self) -> WriteBatch:
        """An empty batch for :meth:`write`."""
        self._live()
        return WriteBatch(self)

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        """Apply ``batch`` atomically; with ``sync`` the call returns after an fsync.

        Raises:
            DatabaseError: the database is closed, the batch belongs to another database or
                was already written, or RocksDB failed (e.g. disk full).
        """
        rdict = self._live()
        if batch._db is not self:
            raise DatabaseError(f"batch was made by another database, not {self.path}")
        try:
            rdict.write(batch._batch, self._sync if sync else self._nosync)
        except Exception as exc:  # rocksdict raises bare Exception for RocksDB errors
            raise DatabaseError(f"write to database {self.path} failed: {exc}") from None

    def iterate(self, column: Column, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` pairs of ``column`` whose key starts with ``prefix``, by key.

        Reads in chunks and holds no RocksDB iterator between them, so an abandoned
        iteration never keeps the database open; writes made meanwhile may be seen.

        Raises:
            DatabaseError: the database is closed (when iteration starts or continues).
        """
        self._live()
        return self._iterate(column, prefix)

    def _iterate(self, column: Column, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        start = prefix
        after_start = False
        while True:
            self._live()
            chunk: list[tuple[bytes, bytes]] = []
            it = self._columns[column].iter()
            it.seek(start)
            if after_start and it.valid() and it.key() == start:
                it.next()
            while it.valid() and len(chunk) < _ITERATE_CHUNK:
                key: bytes = it.key()
                if not key.startswith(prefix):
                    break
                chunk.append((key, it.value()))
                it.next()
            del it
            yield from chunk
            if len(chunk) < _ITERATE_CHUNK:
                return
            start = chunk[-1][0]
            after_start = True

    def close(self) -> None:
        """Flush and release the database (and its lock); closing twice is harmless."""
        rdict = self._rdict
        if rdict is None:
            return
        self._rdict = None
        self._nodes = None
        for cf in self._columns.values():
            cf.close()
        self._columns = {}
        self._handles = {}
        rdict.close()
        del rdict

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
