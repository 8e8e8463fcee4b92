"""Shared pieces for the mempool tests: keys, params, a dict-backed account reader, signing."""

from __future__ import annotations

import functools

from moderntensor.chain.execution import ChainParams
from moderntensor.chain.transactions import (
    DynamicFeeTransaction,
    LegacyTransaction,
    Transaction,
    sign_transaction,
)
from moderntensor.crypto import PrivateKey

CHAIN_ID = 1337
MIN_BASE_FEE = 10
PARAMS = ChainParams(
    chain_id=CHAIN_ID,
    gas_limit=1_000_000,
    min_base_fee=MIN_BASE_FEE,
    block_reward=0,
    epoch_length=32,
    min_stake=1,
    unbonding_epochs=4,
    evidence_epochs=1,
    slash_fraction_bps=500,
)
KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(8)]
TO = bytes.fromhex("3535353535353535353535353535353535353535")


class Accounts:
    """A plain dict account reader: what the pool sees of the head state."""

    def __init__(self, balance: int = 10**18) -> None:
        self.nonces: dict[bytes, int] = {}
        self.balances: dict[bytes, int] = {}
        self.default_balance = balance

    def get_nonce(self, address: bytes) -> int:
        return self.nonces.get(address, 0)

    def get_balance(self, address: bytes) -> int:
        return self.balances.get(address, self.default_balance)


@functools.lru_cache(maxsize=100_000)
def make_tx(
    sender: int,
    nonce: int,
    max_fee: int = 20,
    tip: int = 2,
    *,
    value: int = 0,
    gas: int = 21_000,
    chain_id: int = CHAIN_ID,
    data: bytes = b"",
    to: bytes | None = TO,
) -> Transaction:
    """A signed EIP-1559 transfer from ``KEYS[sender]`` (cached: signing is the slow part)."""
    tx = DynamicFeeTransaction(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=max_fee,
        gas=gas,
        to=to,
        value=value,
        data=data,
    )
    return sign_transaction(tx, KEYS[sender])


def make_legacy(
    sender: int, nonce: int, gas_price: int, chain_id: int | None = CHAIN_ID
) -> Transaction:
    tx = LegacyTransaction(chain_id=chain_id, nonce=nonce, gas_price=gas_price, gas=21_000, to=TO)
    return sign_transaction(tx, KEYS[sender])


def addr(sender: int) -> bytes:
    return KEYS[sender].address
