"""Reads the RPC needs over the chain service, with small caches of decoded blocks.

Decoding a stored block recovers every transaction's sender (~75 µs each), so a receipt lookup
in a 2,000-transaction block would cost 150 ms without the cache; wallets poll receipts, so
the last few blocks stay decoded. Committed blocks never change, so caching by hash is safe.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.receipts import Receipt
from moderntensor.chain.transactions import Transaction
from moderntensor.service import BlockTagError, ChainService

from ._errors import SERVER_ERROR, UNKNOWN_BLOCK, RpcError
from ._params import BlockRef

__all__ = ["ChainView", "TxLocation"]

_CACHED_BLOCKS = 32
_V = TypeVar("_V")

TxLocation = tuple[Transaction, Header, int]


class ChainView:
    """Block, receipt and transaction lookups for one :class:`ChainService`."""

    def __init__(self, service: ChainService) -> None:
        self.service = service
        self._blocks: OrderedDict[bytes, Block] = OrderedDict()
        self._receipts: OrderedDict[bytes, list[Receipt]] = OrderedDict()

    # -- headers --------------------------------------------------------------------------

    def header(self, block_id: str | int) -> Header | None:
        """A header by tag or number; None past the head (lookups answer null for that)."""
        try:
            return self.service.resolve_tag(block_id)
        except BlockTagError as exc:  # parsers already checked the form; defensive
            raise RpcError(SERVER_ERROR, str(exc)) from None

    def require_header(self, block_id: str | int) -> Header:
        """A header for state reads; an unknown one is an error, as in geth."""
        header = self.header(block_id)
        if header is None:
            if isinstance(block_id, str):
                raise RpcError(UNKNOWN_BLOCK, f"Unknown block: no {block_id} block")
            raise RpcError(SERVER_ERROR, "header not found")
        return header

    def header_for_ref(self, ref: BlockRef) -> Header:
        if ref.hash is None:
            return self.require_header("latest" if ref.id is None else ref.id)
        header = self.service.header_by_hash(ref.hash)
        if header is None:
            raise RpcError(SERVER_ERROR, f"header for hash 0x{ref.hash.hex()} not found")
        if ref.require_canonical and not self.is_canonical(header):
            raise RpcError(SERVER_ERROR, f"hash 0x{ref.hash.hex()} is not currently canonical")
        return header

    def is_canonical(self, header: Header) -> bool:
        return self.service.is_canonical(header)

    # -- blocks and receipts ---------------------------------------------------------------

    def block(self, header: Header) -> Block | None:
        h = header.hash
        block = self._blocks.get(h)
        if block is None:
            block = self.service.block_by_header(header)
            if block is None:
                return None
            self._remember(self._blocks, h, block)
        return block

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        header = self.service.header_by_hash(block_hash)
        return None if header is None else self.block(header)

    def receipts(self, header: Header) -> list[Receipt]:
        h = header.hash
        receipts = self._receipts.get(h)
        if receipts is None:
            receipts = self.service.receipts(h)
            self._remember(self._receipts, h, receipts)
        return receipts

    @staticmethod
    def _remember(cache: OrderedDict[bytes, _V], key: bytes, value: _V) -> None:
        cache[key] = value
        if len(cache) > _CACHED_BLOCKS:
            cache.popitem(last=False)

    # -- transactions ---------------------------------------------------------------------

    def committed_transaction(self, tx_hash: bytes) -> TxLocation | None:
        """A transaction on the canonical chain (committed or notarized, see
        :meth:`ChainService.head`) with its block header and index."""
        location = self.service.chain.chaindb.get_tx_location(tx_hash)
        if location is None:
            found = self.service.notarized().transaction(tx_hash)
            if found is None:
                return None
            notarized, index = found
            return notarized.transactions[index], notarized.header, index
        block_hash, index = location
        block = self.block_by_hash(block_hash)
        if block is None or index >= len(block.transactions):
            return None
        if not self.is_canonical(block.header):
            return None
        return block.transactions[index], block.header, index

    def pending_transaction(self, tx_hash: bytes) -> Transaction | None:
        return self.service.pool.get(tx_hash)
