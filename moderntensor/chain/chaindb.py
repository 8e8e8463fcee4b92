"""Blocks, receipts and indexes in RocksDB, each block committed in one atomic WriteBatch.

Keys: HEADERS and BODIES and RECEIPTS by block hash; CANONICAL by 8-byte big-endian number;
TX_INDEX by transaction hash -> RLP [block hash, index]; META holds ``head``, ``finalized`` and
``genesis`` hashes. A block's trie nodes, its data, its indexes and the head pointer go in one
batch, so a crash at any instant leaves the database at the previous block or the new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from moderntensor.chain._tx_decode import decode_stored_transaction
from moderntensor.chain.blocks import Block, Header, decode_header, encode_header
from moderntensor.chain.receipts import Receipt, decode_receipt, encode_receipt
from moderntensor.chain.transactions import Transaction
from moderntensor.codec import (
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_bytes,
    expect_fixed,
    expect_list,
    expect_uint,
)
from moderntensor.state.account import EMPTY_ROOT
from moderntensor.state.store import Column, Database
from moderntensor.state.trie import MissingTrieNode

__all__ = ["ChainDB", "TxLocation"]

HEAD_KEY = b"head"
FINALIZED_KEY = b"finalized"
GENESIS_KEY = b"genesis"

TxLocation = tuple[bytes, int]  # (block hash, index in block)


def _number_key(number: int) -> bytes:
    return number.to_bytes(8, "big")


def _tx_index_value(block_hash: bytes, index: int) -> bytes:
    """``encode_rlp([block_hash, encode_uint(index)])`` for a 32-byte hash, built directly:
    a short list (payload under 56 bytes) of the hash and the index's RLP."""
    if index < 0x80:
        item = bytes((index,)) if index else b"\x80"
    elif index < 1 << 64:
        raw = encode_uint(index)
        item = bytes((0x80 + len(raw),)) + raw
    else:
        return encode_rlp([block_hash, encode_uint(index)])
    return bytes((0xC0 + 33 + len(item),)) + b"\xa0" + block_hash + item


class ChainDB:
    """Typed reads and atomic block commits over a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writes ---------------------------------------------------------------------------

    def commit_block(
        self,
        block: Block,
        receipts: Sequence[Receipt],
        nodes: dict[bytes, bytes],
        *,
        canonical: bool = True,
        finalized: bool = False,
        genesis: bool = False,
        extra: Sequence[tuple[Column, bytes, bytes | None]] = (),
    ) -> None:
        """Write a block with its state nodes, receipts and indexes in one atomic batch.

        ``extra`` are more writes for the same batch, ``(column, key, value)``; a None value
        deletes the key (the node puts the block's finalization certificate here, and drops
        the durable copy it kept of the block before it was final).
        """
        h = block.hash
        batch = self.db.batch()
        batch.put_nodes(nodes)
        batch.put(Column.HEADERS, h, encode_header(block.header))
        batch.put(
            Column.BODIES,
            h,
            encode_rlp([[tx.raw for tx in block.transactions], list[RLPItem](block.evidence)]),
        )
        batch.put(
            Column.RECEIPTS, h, encode_rlp(list[RLPItem](encode_receipt(r) for r in receipts))
        )
        if canonical:
            batch.put(Column.CANONICAL, _number_key(block.number), h)
            batch.put_many(
                Column.TX_INDEX,
                ((tx.hash, _tx_index_value(h, i)) for i, tx in enumerate(block.transactions)),
            )
            batch.put(Column.META, HEAD_KEY, h)
        if finalized:
            batch.put(Column.META, FINALIZED_KEY, h)
        if genesis:
            batch.put(Column.META, GENESIS_KEY, h)
        for column, key, value in extra:
            if value is None:
                batch.delete(column, key)
            else:
                batch.put(column, key, value)
        self.db.write(batch)

    # -- reads ----------------------------------------------------------------------------

    def _meta_hash(self, key: bytes) -> bytes | None:
        return self.db.get(Column.META, key)

    def head_hash(self) -> bytes | None:
        return self._meta_hash(HEAD_KEY)

    def finalized_hash(self) -> bytes | None:
        return self._meta_hash(FINALIZED_KEY)

    def genesis_hash(self) -> bytes | None:
        return self._meta_hash(GENESIS_KEY)

    def get_header(self, block_hash: bytes) -> Header | None:
        raw = self.db.get(Column.HEADERS, block_hash)
        return decode_header(raw) if raw else None

    def get_canonical_hash(self, number: int) -> bytes | None:
        return self.db.get(Column.CANONICAL, _number_key(number))

    def get_header_by_number(self, number: int) -> Header | None:
        h = self.get_canonical_hash(number)
        return self.get_header(h) if h else None

    def get_block(self, block_hash: bytes) -> Block | None:
        header = self.get_header(block_hash)
        raw = self.db.get(Column.BODIES, block_hash)
        if header is None or raw is None:
            return None
        body = expect_list(decode_rlp(raw, "body"), "body", 2)
        txs: tuple[Transaction, ...] = tuple(  # senders recovered when first asked for
            decode_stored_transaction(expect_bytes(t, "body.tx"))
            for t in expect_list(body[0], "body.txs")
        )
        evidence = tuple(expect_bytes(e, "body.evidence") for e in expect_list(body[1], "ev"))
        return Block(header, txs, evidence)

    def get_receipts(self, block_hash: bytes) -> list[Receipt]:
        raw = self.db.get(Column.RECEIPTS, block_hash)
        if raw is None:
            return []
        return [
            decode_receipt(expect_bytes(r, "receipt"))
            for r in expect_list(decode_rlp(raw, "receipts"), "receipts")
        ]

    def get_tx_location(self, tx_hash: bytes) -> TxLocation | None:
        raw = self.db.get(Column.TX_INDEX, tx_hash)
        if raw is None:
            return None
        f = expect_list(decode_rlp(raw, "tx index"), "tx index", 2)
        return expect_fixed(f[0], "tx index block", 32), expect_uint(f[1], "tx index i")

    def has_state(self, state_root: bytes) -> bool:
        """Whether the root node of a state is stored (every committed block's is)."""
        return state_root == EMPTY_ROOT or self.db.get_node(state_root) is not None

    def check_state(self, header: Header) -> None:
        """Raise MissingTrieNode unless the header's state root is stored."""
        if not self.has_state(header.state_root):
            raise MissingTrieNode(header.state_root)
