"""JSON views of transactions, in Ethereum JSON-RPC conventions.

Quantities are ``0x``-prefixed minimal hex (``"0x0"`` for zero), byte strings are ``0x``-hex,
addresses are EIP-55 checksummed. Keys are snake_case (this is our CLI's shape, not an RPC
result object; the RPC layer renames to camelCase where the spec wants it).
"""

from __future__ import annotations

from typing import Any

from moderntensor.chain._tx_types import AccessList, Transaction
from moderntensor.crypto import checksum_address

__all__ = ["access_list_to_json", "data_hex", "quantity", "transaction_to_json"]


def quantity(value: int) -> str:
    """JSON-RPC QUANTITY: minimal hex, ``0x0`` for zero."""
    return hex(value)


def data_hex(raw: bytes) -> str:
    """JSON-RPC DATA: ``0x`` followed by two hex digits per byte."""
    return "0x" + raw.hex()


def access_list_to_json(access_list: AccessList) -> list[dict[str, Any]]:
    return [
        {"address": checksum_address(address), "storage_keys": [data_hex(k) for k in keys]}
        for address, keys in access_list
    ]


def transaction_to_json(tx: Transaction) -> dict[str, Any]:
    """Every field of ``tx`` plus its hash and sender.

    Legacy and EIP-2930 transactions show ``gas_price``; EIP-1559 ones show
    ``max_fee_per_gas`` and ``max_priority_fee_per_gas``. ``chain_id`` is null for a
    pre-EIP-155 legacy transaction.

    Raises:
        InvalidSignature: ``tx`` was built in code with no valid signature (decoded ones always
            have a sender).
    """
    out: dict[str, Any] = {
        "type": quantity(tx.type),
        "hash": data_hex(tx.hash),
        "sender": checksum_address(tx.sender),
        "chain_id": None if tx.chain_id is None else quantity(tx.chain_id),
        "nonce": quantity(tx.nonce),
        "to": None if tx.to is None else checksum_address(tx.to),
        "value": quantity(tx.value),
        "gas": quantity(tx.gas),
    }
    if tx.type == 2:
        out["max_fee_per_gas"] = quantity(tx.max_fee_per_gas)
        out["max_priority_fee_per_gas"] = quantity(tx.max_priority_fee_per_gas)
    else:
        out["gas_price"] = quantity(tx.max_fee_per_gas)
    out["data"] = data_hex(tx.data)
    out["access_list"] = access_list_to_json(tx.access_list)
    out["v"] = quantity(tx.v)
    out["y_parity"] = quantity(tx.y_parity)
    out["r"] = quantity(tx.r)
    out["s"] = quantity(tx.s)
    return out
