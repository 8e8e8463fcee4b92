"""Block headers and bodies in RLP; the block hash is keccak256 of the RLP header.

The header keeps Ethereum's client-facing fields (parent hash, coinbase, roots, bloom, number,
gas, timestamp, extra data, base fee) and adds the consensus fields: the slot, the proposer's
validator id, the root of the evidence list and the proposer's signature. The signature covers
the *seal hash* (the header RLP without the signature), so the block hash commits to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from moderntensor.chain.constants import EMPTY_BLOOM, MAX_EXTRA_DATA_BYTES, ZERO_ADDRESS
from moderntensor.chain.transactions import Transaction, decode_transaction
from moderntensor.codec import (
    DecodeError,
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_bytes,
    expect_fixed,
    expect_list,
    expect_uint,
)
from moderntensor.crypto import keccak256
from moderntensor.state.account import EMPTY_ROOT
from moderntensor.state.trie import ordered_trie_root

__all__ = [
    "MAX_BLOCK_SIZE",
    "Block",
    "Header",
    "compute_evidence_root",
    "compute_transactions_root",
    "decode_block",
    "decode_header",
    "encode_block",
    "encode_header",
]

MAX_BLOCK_SIZE = 16 * 1024 * 1024
_HEADER_FIELDS = 16


@attrs.frozen(slots=True)
class Header:
    parent_hash: bytes
    coinbase: bytes
    state_root: bytes
    transactions_root: bytes
    receipts_root: bytes
    number: int
    gas_limit: int
    gas_used: int
    timestamp: int
    base_fee_per_gas: int
    slot: int
    proposer: bytes = ZERO_ADDRESS
    evidence_root: bytes = EMPTY_ROOT
    extra_data: bytes = b""
    logs_bloom: bytes = EMPTY_BLOOM
    proposer_signature: bytes = b""
    _hash: bytes | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def _items(self, sealed: bool) -> list[RLPItem]:
        items: list[RLPItem] = [
            self.parent_hash,
            self.coinbase,
            self.state_root,
            self.transactions_root,
            self.receipts_root,
            self.logs_bloom,
            encode_uint(self.number),
            encode_uint(self.gas_limit),
            encode_uint(self.gas_used),
            encode_uint(self.timestamp),
            self.extra_data,
            encode_uint(self.base_fee_per_gas),
            encode_uint(self.slot),
            self.proposer,
            self.evidence_root,
        ]
        if sealed:
            items.append(self.proposer_signature)
        return items

    @property
    def hash(self) -> bytes:
        """keccak256 of the full RLP header (computed once)."""
        cached = self._hash
        if cached is None:
            cached = keccak256(encode_header(self))
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def seal_hash(self) -> bytes:
        """What the proposer signs: keccak256 of the header RLP without the signature."""
        return keccak256(encode_rlp(self._items(sealed=False)))


def encode_header(header: Header) -> bytes:
    return encode_rlp(header._items(sealed=True))


def _header_from_items(item: RLPItem) -> Header:
    f = expect_list(item, "header", _HEADER_FIELDS)
    return Header(
        parent_hash=expect_fixed(f[0], "header.parent_hash", 32),
        coinbase=expect_fixed(f[1], "header.coinbase", 20),
        state_root=expect_fixed(f[2], "header.state_root", 32),
        transactions_root=expect_fixed(f[3], "header.transactions_root", 32),
        receipts_root=expect_fixed(f[4], "header.receipts_root", 32),
        logs_bloom=expect_fixed(f[5], "header.logs_bloom", 256),
        number=expect_uint(f[6], "header.number", 64),
        gas_limit=expect_uint(f[7], "header.gas_limit", 64),
        gas_used=expect_uint(f[8], "header.gas_used", 64),
        timestamp=expect_uint(f[9], "header.timestamp", 64),
        extra_data=expect_bytes(f[10], "header.extra_data", MAX_EXTRA_DATA_BYTES),
        base_fee_per_gas=expect_uint(f[11], "header.base_fee_per_gas"),
        slot=expect_uint(f[12], "header.slot", 64),
        proposer=expect_fixed(f[13], "header.proposer", 20),
        evidence_root=expect_fixed(f[14], "header.evidence_root", 32),
        proposer_signature=_signature_field(f[15]),
    )


def _signature_field(item: RLPItem) -> bytes:
    raw = expect_bytes(item, "header.proposer_signature")
    if len(raw) not in (0, 65):
        raise DecodeError("header.proposer_signature", f"{len(raw)} bytes, expected 65 or 0")
    return raw


def decode_header(raw: bytes) -> Header:
    """Parse an RLP header.

    Raises:
        DecodeError: anything but a canonical 16-field header.
    """
    return _header_from_items(decode_rlp(raw, "header", max_size=4096))


@attrs.frozen(slots=True)
class Block:
    header: Header
    transactions: tuple[Transaction, ...] = ()
    evidence: tuple[bytes, ...] = ()

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def number(self) -> int:
        return self.header.number


def compute_transactions_root(transactions: Sequence[Transaction]) -> bytes:
    return ordered_trie_root([tx.raw for tx in transactions])


def compute_evidence_root(evidence: Sequence[bytes]) -> bytes:
    return ordered_trie_root(list(evidence))


def encode_block(block: Block) -> bytes:
    return encode_rlp(
        [
            block.header._items(sealed=True),
            [tx.raw for tx in block.transactions],
            list[RLPItem](block.evidence),
        ]
    )


def decode_block(raw: bytes) -> Block:
    """Parse an RLP block; transactions are fully decoded (and their signatures checked).

    Raises:
        DecodeError: a malformed block, header, transaction or evidence list.
    """
    f = expect_list(decode_rlp(raw, "block", max_size=MAX_BLOCK_SIZE), "block", 3)
    header = _header_from_items(f[0])
    txs = tuple(
        decode_transaction(expect_bytes(t, "block.transactions[]"))
        for t in expect_list(f[1], "block.transactions")
    )
    evidence = tuple(expect_bytes(e, "block.evidence[]") for e in expect_list(f[2], "evidence"))
    return Block(header, txs, evidence)
