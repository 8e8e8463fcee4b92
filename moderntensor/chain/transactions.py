"""Ethereum transactions, byte-exact: legacy (with EIP-155), EIP-2930 (type 1), EIP-1559 (type 2).

Byte-exact with Ethereum so that eth-account, web3.py, ethers.js and MetaMask sign for us.
The pieces:

* :class:`LegacyTransaction`, :class:`AccessListTransaction`, :class:`DynamicFeeTransaction`:
  frozen data; ``raw``, ``hash`` and ``sender`` are computed once and cached.
* :func:`decode_transaction`: total and strict; raises only ``DecodeError``. It checks the
  encoding and the signature (a decoded transaction always has a sender).
* :func:`validate_transaction_static`: the stateless rules that need the chain id or are about
  executability (chain id, EIP-2681 nonce, fee ordering and overflow, EIP-3860 initcode size,
  intrinsic gas); raises ``TransactionInvalid``.
* :func:`sign_transaction`, :func:`signing_hash`, :func:`encode_transaction`,
  :func:`intrinsic_gas`.

Example::

    tx = sign_transaction(
        DynamicFeeTransaction(chain_id=1, nonce=0, max_priority_fee_per_gas=1, max_fee_per_gas=2,
                              gas=21_000, to=recipient, value=10**18),
        key,
    )
    assert decode_transaction(tx.raw) == tx
"""

from __future__ import annotations

from moderntensor.chain._tx_decode import decode_transaction
from moderntensor.chain._tx_rules import (
    ACCESS_LIST_ADDRESS_GAS,
    ACCESS_LIST_STORAGE_KEY_GAS,
    CREATE_GAS,
    INITCODE_WORD_GAS,
    MAX_INITCODE_SIZE,
    TX_BASE_GAS,
    TX_DATA_NONZERO_GAS,
    TX_DATA_ZERO_GAS,
    InvalidReason,
    TransactionInvalid,
    intrinsic_gas,
    validate_transaction_static,
)
from moderntensor.chain._tx_types import (
    MAX_TX_SIZE,
    AccessList,
    AccessListTransaction,
    DynamicFeeTransaction,
    LegacyTransaction,
    Transaction,
    encode_transaction,
    sign_transaction,
    signing_hash,
)

__all__ = [
    "ACCESS_LIST_ADDRESS_GAS",
    "ACCESS_LIST_STORAGE_KEY_GAS",
    "CREATE_GAS",
    "INITCODE_WORD_GAS",
    "MAX_INITCODE_SIZE",
    "MAX_TX_SIZE",
    "TX_BASE_GAS",
    "TX_DATA_NONZERO_GAS",
    "TX_DATA_ZERO_GAS",
    "AccessList",
    "AccessListTransaction",
    "DynamicFeeTransaction",
    "InvalidReason",
    "LegacyTransaction",
    "Transaction",
    "TransactionInvalid",
    "decode_transaction",
    "encode_transaction",
    "intrinsic_gas",
    "sign_transaction",
    "signing_hash",
    "validate_transaction_static",
]
