"""Stateless validity rules: intrinsic gas and the checks a well-formed transaction can still fail.

Decoding (``_tx_decode``) accepts any transaction that is a faithful, signed encoding. The rules
here need the chain's id or are about whether the transaction could ever execute, so the mempool
and the block executor call :func:`validate_transaction_static` after decoding, before looking
at state (balance, nonce order, base fee).
"""

from __future__ import annotations

import enum

from moderntensor.chain._tx_types import UINT64_MAX, UINT256_MAX, Transaction

__all__ = [
    "ACCESS_LIST_ADDRESS_GAS",
    "ACCESS_LIST_STORAGE_KEY_GAS",
    "CREATE_GAS",
    "INITCODE_WORD_GAS",
    "MAX_INITCODE_SIZE",
    "TX_BASE_GAS",
    "TX_DATA_NONZERO_GAS",
    "TX_DATA_ZERO_GAS",
    "InvalidReason",
    "TransactionInvalid",
    "intrinsic_gas",
    "validate_transaction_static",
]

TX_BASE_GAS = 21_000
TX_DATA_ZERO_GAS = 4
TX_DATA_NONZERO_GAS = 16  # EIP-2028
CREATE_GAS = 32_000  # EIP-2: creation costs 53,000 in all
ACCESS_LIST_ADDRESS_GAS = 2_400  # EIP-2930
ACCESS_LIST_STORAGE_KEY_GAS = 1_900
INITCODE_WORD_GAS = 2  # EIP-3860, per 32-byte word of initcode
MAX_INITCODE_SIZE = 2 * 24_576  # EIP-3860: twice the EIP-170 code size limit


class InvalidReason(enum.StrEnum):
    """Why a decodable transaction is still invalid (RPC errors and tests match on these)."""

    WRONG_CHAIN_ID = "wrong_chain_id"
    UNPROTECTED = "unprotected"
    NONCE_TOO_BIG = "nonce_too_big"
    PRIORITY_FEE_ABOVE_MAX_FEE = "priority_fee_above_max_fee"
    FEE_PRODUCT_OVERFLOW = "fee_product_overflow"
    INITCODE_TOO_LARGE = "initcode_too_large"
    INTRINSIC_GAS_TOO_LOW = "intrinsic_gas_too_low"


class TransactionInvalid(ValueError):
    """A well-formed, signed transaction that no block may include (the sender's fault)."""

    def __init__(self, reason: InvalidReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


def intrinsic_gas(tx: Transaction) -> int:
    """Gas charged before execution: 21,000 + calldata (4 per zero byte, 16 per other byte)
    + access list (2,400 per address, 1,900 per storage key) + creation (32,000 and 2 per
    initcode word, EIP-3860)."""
    data = tx.data
    if not data and tx.to is not None and not tx.access_list:
        return TX_BASE_GAS  # a plain transfer
    zeros = data.count(0)
    gas = TX_BASE_GAS + zeros * TX_DATA_ZERO_GAS + (len(data) - zeros) * TX_DATA_NONZERO_GAS
    if tx.to is None:
        gas += CREATE_GAS + INITCODE_WORD_GAS * ((len(data) + 31) // 32)
    for _address, keys in tx.access_list:
        gas += ACCESS_LIST_ADDRESS_GAS + ACCESS_LIST_STORAGE_KEY_GAS * len(keys)
    return gas


def validate_transaction_static(
    tx: Transaction, *, chain_id: int, allow_unprotected: bool = False
) -> None:
    """Check the rules that need no state, in a fixed order (first failure wins).

    Args:
        tx: a decoded (or signed) transaction.
        chain_id: this chain's id; the transaction must carry it (EIP-155 replay protection).
        allow_unprotected: accept pre-EIP-155 legacy transactions (no chain id). Off by
            default: DESIGN §5 invariant 6 wants every transaction bound to one chain.

    Raises:
        TransactionInvalid: with ``reason`` one of :class:`InvalidReason`:
            ``UNPROTECTED`` / ``WRONG_CHAIN_ID``; ``NONCE_TOO_BIG`` (EIP-2681: nonce must be
            below 2**64 - 1); ``PRIORITY_FEE_ABOVE_MAX_FEE`` (EIP-1559);
            ``FEE_PRODUCT_OVERFLOW`` (gas * max fee per gas above 2**256 - 1);
            ``INITCODE_TOO_LARGE`` (EIP-3860); ``INTRINSIC_GAS_TOO_LOW``.
    """
    if tx.chain_id is None:
        if not allow_unprotected:
            raise TransactionInvalid(
                InvalidReason.UNPROTECTED, "pre-EIP-155 transaction has no chain id"
            )
    elif tx.chain_id != chain_id:
        raise TransactionInvalid(
            InvalidReason.WRONG_CHAIN_ID, f"chain id {tx.chain_id}, this chain is {chain_id}"
        )
    if tx.nonce >= UINT64_MAX:
        raise TransactionInvalid(
            InvalidReason.NONCE_TOO_BIG, f"nonce {tx.nonce} must be below 2**64 - 1 (EIP-2681)"
        )
    if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
        raise TransactionInvalid(
            InvalidReason.PRIORITY_FEE_ABOVE_MAX_FEE,
            f"max_priority_fee_per_gas {tx.max_priority_fee_per_gas} > "
            f"max_fee_per_gas {tx.max_fee_per_gas}",
        )
    if tx.gas * tx.max_fee_per_gas > UINT256_MAX:
        raise TransactionInvalid(
            InvalidReason.FEE_PRODUCT_OVERFLOW, "gas * max fee per gas overflows 256 bits"
        )
    if tx.to is None and len(tx.data) > MAX_INITCODE_SIZE:
        raise TransactionInvalid(
            InvalidReason.INITCODE_TOO_LARGE,
            f"initcode is {len(tx.data)} bytes > limit {MAX_INITCODE_SIZE} (EIP-3860)",
        )
    needed = intrinsic_gas(tx)
    if tx.gas < needed:
        raise TransactionInvalid(
            InvalidReason.INTRINSIC_GAS_TOO_LOW, f"gas {tx.gas} < intrinsic gas {needed}"
        )
