"""Transaction receipts in Ethereum's encoding (typed receipts carry the type byte prefix)."""

from __future__ import annotations

import attrs

from moderntensor.chain.constants import EMPTY_BLOOM
from moderntensor.codec import (
    DecodeError,
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_fixed,
    expect_list,
    expect_uint,
)

__all__ = ["Receipt", "decode_receipt", "encode_receipt"]


@attrs.frozen(slots=True)
class Receipt:
    """What executing one transaction did.

    ``gas_used`` and ``effective_gas_price`` are not part of Ethereum's consensus encoding (RPC
    derives them); we keep them in the stored form so the node need not re-derive them.
    """

    tx_type: int
    status: int
    cumulative_gas_used: int
    gas_used: int
    effective_gas_price: int
    logs_bloom: bytes = EMPTY_BLOOM
    error: str = ""  # why status is 0 (operator-facing, not consensus)

    def consensus_encoding(self) -> bytes:
        """Ethereum's receipt encoding: the receipts-root leaf."""
        payload = encode_rlp(
            [encode_uint(self.status), encode_uint(self.cumulative_gas_used), self.logs_bloom, []]
        )
        return payload if self.tx_type == 0 else bytes([self.tx_type]) + payload


def encode_receipt(receipt: Receipt) -> bytes:
    """The stored form: consensus fields plus gas used, effective price and error text."""
    items: list[RLPItem] = [
        encode_uint(receipt.tx_type),
        encode_uint(receipt.status),
        encode_uint(receipt.cumulative_gas_used),
        encode_uint(receipt.gas_used),
        encode_uint(receipt.effective_gas_price),
        receipt.logs_bloom,
        receipt.error.encode("utf-8"),
    ]
    return encode_rlp(items)


def decode_receipt(raw: bytes) -> Receipt:
    """Parse the stored form.

    Raises:
        DecodeError: not a stored receipt.
    """
    f = expect_list(decode_rlp(raw, "receipt"), "receipt", 7)
    error = f[6]
    if not isinstance(error, bytes):
        raise DecodeError("receipt.error", "expected bytes")
    return Receipt(
        tx_type=expect_uint(f[0], "receipt.type", 8),
        status=expect_uint(f[1], "receipt.status", 8),
        cumulative_gas_used=expect_uint(f[2], "receipt.cumulative_gas_used", 64),
        gas_used=expect_uint(f[3], "receipt.gas_used", 64),
        effective_gas_price=expect_uint(f[4], "receipt.effective_gas_price"),
        logs_bloom=expect_fixed(f[5], "receipt.logs_bloom", 256),
        error=error.decode("utf-8", "replace"),
    )
