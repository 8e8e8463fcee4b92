"""Blocks, transactions and receipts in the shapes of the Ethereum execution API spec.

Quantities are minimal hex, data is lowercase hex, addresses are EIP-55 checksummed. Fields
with no meaning on this chain get the values post-merge Ethereum uses: difficulty 0, an
all-zero nonce and mix hash, the empty-uncles hash and no uncles.
"""

from __future__ import annotations

from typing import Any

from moderntensor.chain.blocks import Block, Header, encode_block
from moderntensor.chain.receipts import Receipt
from moderntensor.chain.transactions import Transaction
from moderntensor.codec import encode_rlp
from moderntensor.crypto import checksum_address, keccak256

__all__ = [
    "EMPTY_UNCLES_HASH",
    "block_size",
    "effective_gas_price",
    "format_block",
    "format_header",
    "format_receipt",
    "format_transaction",
    "hex_data",
    "hex_quantity",
]

EMPTY_UNCLES_HASH = "0x" + keccak256(encode_rlp([])).hex()
_ZERO_HASH = "0x" + "00" * 32
_ZERO_NONCE = "0x" + "00" * 8

hex_quantity = hex


def hex_data(raw: bytes) -> str:
    return "0x" + raw.hex()


def effective_gas_price(tx: Transaction, base_fee: int) -> int:
    """What the sender pays per gas in a block with ``base_fee`` (EIP-1559 rule)."""
    return min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)


def format_header(header: Header) -> dict[str, Any]:
    """The header fields of a block object (what ``newHeads`` notifications carry)."""
    return {
        "hash": hex_data(header.hash),
        "parentHash": hex_data(header.parent_hash),
        "sha3Uncles": EMPTY_UNCLES_HASH,
        "miner": checksum_address(header.coinbase),
        "stateRoot": hex_data(header.state_root),
        "transactionsRoot": hex_data(header.transactions_root),
        "receiptsRoot": hex_data(header.receipts_root),
        "logsBloom": hex_data(header.logs_bloom),
        "difficulty": "0x0",
        "number": hex(header.number),
        "gasLimit": hex(header.gas_limit),
        "gasUsed": hex(header.gas_used),
        "timestamp": hex(header.timestamp),
        "extraData": hex_data(header.extra_data),
        "mixHash": _ZERO_HASH,
        "nonce": _ZERO_NONCE,
        "baseFeePerGas": hex(header.base_fee_per_gas),
    }


def block_size(block: Block) -> int:
    """Bytes of the block's RLP (header, transactions, evidence), as gossip carries it."""
    return len(encode_block(block))


def format_transaction(
    tx: Transaction,
    block_hash: bytes | None = None,
    block_number: int | None = None,
    index: int | None = None,
    header: Header | None = None,
) -> dict[str, Any]:
    """A transaction object; block fields are null while it is pending."""
    out: dict[str, Any] = {
        "blockHash": None if block_hash is None else hex_data(block_hash),
        "blockNumber": None if block_number is None else hex(block_number),
        "blockTimestamp": None if header is None else hex(header.timestamp),
        "from": checksum_address(tx.sender),
        "hash": hex_data(tx.hash),
        "transactionIndex": None if index is None else hex(index),
        "type": hex(tx.type),
        "nonce": hex(tx.nonce),
        "to": None if tx.to is None else checksum_address(tx.to),
        "gas": hex(tx.gas),
        "value": hex(tx.value),
        "input": hex_data(tx.data),
    }
    if tx.chain_id is not None:
        out["chainId"] = hex(tx.chain_id)
    if tx.type == 2:
        price = (
            tx.max_fee_per_gas
            if header is None
            else effective_gas_price(tx, header.base_fee_per_gas)
        )
        out["maxFeePerGas"] = hex(tx.max_fee_per_gas)
        out["maxPriorityFeePerGas"] = hex(tx.max_priority_fee_per_gas)
        out["gasPrice"] = hex(price)
    else:
        out["gasPrice"] = hex(tx.max_fee_per_gas)
    if tx.type != 0:
        out["accessList"] = [
            {"address": checksum_address(a), "storageKeys": [hex_data(k) for k in keys]}
            for a, keys in tx.access_list
        ]
        out["yParity"] = hex(tx.y_parity)
    out["v"] = hex(tx.v)
    out["r"] = hex(tx.r)
    out["s"] = hex(tx.s)
    return out


def format_block(block: Block, full: bool) -> dict[str, Any]:
    """A block object with transaction hashes, or full transaction objects if ``full``."""
    out = format_header(block.header)
    out["size"] = hex(block_size(block))
    h = block.hash
    if full:
        out["transactions"] = [
            format_transaction(tx, h, block.number, i, block.header)
            for i, tx in enumerate(block.transactions)
        ]
    else:
        out["transactions"] = [hex_data(tx.hash) for tx in block.transactions]
    out["uncles"] = []
    return out


def format_receipt(receipt: Receipt, tx: Transaction, header: Header, index: int) -> dict[str, Any]:
    """A receipt object (``ReceiptInfo``: no field beyond the spec's)."""
    return {
        "type": hex(receipt.tx_type),
        "transactionHash": hex_data(tx.hash),
        "transactionIndex": hex(index),
        "blockHash": hex_data(header.hash),
        "blockNumber": hex(header.number),
        "from": checksum_address(tx.sender),
        "to": None if tx.to is None else checksum_address(tx.to),
        "cumulativeGasUsed": hex(receipt.cumulative_gas_used),
        "gasUsed": hex(receipt.gas_used),
        "contractAddress": None,
        "logs": [],
        "logsBloom": hex_data(receipt.logs_bloom),
        "status": hex(receipt.status),
        "effectiveGasPrice": hex(receipt.effective_gas_price),
    }
