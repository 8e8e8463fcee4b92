"""The notarized blocks above the committed head: what ``latest`` means with several validators.

A block is committed (written to the database) only once it is final. Between its
notarization and its finalization (a vote round on a healthy network; as long as finality is
stalled otherwise) the node has executed it and holds it in memory. Ethereum's ``latest`` is
the newest such block: ``eth_blockNumber``, ``eth_getBalance(.., "latest")`` and the lookups of
its transactions and receipts see it at once, while ``safe`` and ``finalized`` stay at the
committed head (a notarized block can still be abandoned when its slot is also nullified, so
nothing short of final is called safe).

A :class:`NotarizedChain` is immutable: the driver replaces the service's reference in one
attribute write, so RPC worker threads read a consistent snapshot without a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.chain import ExecutedBlock
from moderntensor.chain.receipts import Receipt
from moderntensor.state.trie import NodeReader

__all__ = ["NotarizedChain", "notarized_path"]


class NotarizedChain:
    """Executed blocks, each the parent of the next, the first a child of a committed block."""

    __slots__ = ("_by_hash", "_nodes", "_txs", "blocks")

    def __init__(self, blocks: Sequence[ExecutedBlock] = ()) -> None:
        self.blocks: tuple[ExecutedBlock, ...] = tuple(blocks)
        self._by_hash = {e.block.hash: e for e in self.blocks}
        self._txs: dict[bytes, tuple[ExecutedBlock, int]] | None = None  # built on first use
        self._nodes: tuple[Mapping[bytes, bytes], ...] = tuple(
            e.state.nodes for e in reversed(self.blocks)
        )

    def __len__(self) -> int:
        return len(self.blocks)

    def above(self, head: Header) -> NotarizedChain:
        """The part that extends ``head`` (the committed head moves before the driver replaces
        this snapshot; blocks at or below it, or on another branch, are not shown)."""
        for i, executed in enumerate(self.blocks):
            block = executed.block
            if block.number == head.number + 1 and block.header.parent_hash == head.hash:
                return self if i == 0 else NotarizedChain(self.blocks[i:])
        return _EMPTY

    @property
    def tip(self) -> Header | None:
        return self.blocks[-1].block.header if self.blocks else None

    def by_number(self, number: int) -> Header | None:
        if not self.blocks:
            return None
        i = number - self.blocks[0].block.number
        return self.blocks[i].block.header if 0 <= i < len(self.blocks) else None

    def header(self, block_hash: bytes) -> Header | None:
        executed = self._by_hash.get(block_hash)
        return executed.block.header if executed is not None else None

    def block(self, block_hash: bytes) -> Block | None:
        executed = self._by_hash.get(block_hash)
        return executed.block if executed is not None else None

    def receipts(self, block_hash: bytes) -> list[Receipt] | None:
        executed = self._by_hash.get(block_hash)
        return list(executed.receipts) if executed is not None else None

    def transaction(self, tx_hash: bytes) -> tuple[Block, int] | None:
        """Indexed on the first lookup, not when the driver replaces the snapshot (which it
        does once per notarization, for a chain that may be long while finality stalls)."""
        if self._txs is None:
            self._txs = {
                tx.hash: (e, i) for e in self.blocks for i, tx in enumerate(e.block.transactions)
            }
        found = self._txs.get(tx_hash)
        return (found[0].block, found[1]) if found is not None else None

    def reader(self, db: NodeReader) -> NodeReader:
        """Trie nodes of these blocks (newest first), then the database's."""
        return _OverlayReader(self._nodes, db) if self._nodes else db


_EMPTY = NotarizedChain()


class _OverlayReader:
    __slots__ = ("_db", "_layers")

    def __init__(self, layers: tuple[Mapping[bytes, bytes], ...], db: NodeReader) -> None:
        self._layers, self._db = layers, db

    def get_node(self, node_hash: bytes) -> bytes | None:
        for layer in self._layers:
            node = layer.get(node_hash)
            if node is not None:
                return node
        return self._db.get_node(node_hash)


def notarized_path(
    notarized: Mapping[bytes, int],
    get_pending: Callable[[bytes], ExecutedBlock | None],
    head: Header,
) -> list[ExecutedBlock]:
    """The longest run of executed blocks from a child of ``head`` up to a notarized block.

    ``notarized`` maps notarized block hashes to slots (the core's view); ``get_pending``
    finds an executed, uncommitted block by hash. A tip is usable only if every block between it and
    the committed head is executed here (its ancestors were notarized before it, by the parent
    rule, even if this node has not seen their certificates). Ties (two notarized forks of one
    height, possible only across a nullified slot) go to the higher slot, then the lower hash,
    so the choice is deterministic.
    """
    candidates = []
    for block_hash in notarized:
        executed = get_pending(block_hash)
        if executed is not None and executed.block.number > head.number:
            header = executed.block.header
            candidates.append((header.number, header.slot, _inverse(block_hash), executed))
    candidates.sort(key=lambda c: c[:3], reverse=True)
    for *_, executed in candidates:  # the best first; usually the first is complete
        path = [executed]
        cursor = executed.block.header.parent_hash
        while cursor != head.hash:
            parent = get_pending(cursor)
            if parent is None or parent.block.number <= head.number:
                break
            path.append(parent)
            cursor = parent.block.header.parent_hash
        else:
            path.reverse()
            return path
    return []


def _inverse(block_hash: bytes) -> bytes:
    """Sorts the lower hash first in a descending sort."""
    return bytes(255 - b for b in block_hash)
