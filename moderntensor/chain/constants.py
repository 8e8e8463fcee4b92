"""Protocol constants: fixed by the protocol, the same on every network (STYLE rule 7).

Per-network numbers (chain id, gas limit, rewards, stakes) live in the genesis file; presets
for dev and test chains live in :mod:`moderntensor.chain.presets`.
"""

from __future__ import annotations

__all__ = [
    "BASE_FEE_MAX_CHANGE_DENOMINATOR",
    "ELASTICITY_MULTIPLIER",
    "EMPTY_BLOOM",
    "MAX_BLOCK_EVIDENCE",
    "MAX_EXTRA_DATA_BYTES",
    "STAKING_ADDRESS",
    "STAKING_OP_GAS",
    "TX_GAS",
    "VALIDATOR_SET_DELAY_EPOCHS",
    "ZERO_ADDRESS",
    "ZERO_HASH",
]

TX_GAS = 21_000
"""Gas of a plain value transfer (and the intrinsic base of every transaction)."""

BASE_FEE_MAX_CHANGE_DENOMINATOR = 8
ELASTICITY_MULTIPLIER = 2
"""EIP-1559: the target is gas_limit / 2 and the base fee moves at most 1/8 per block."""

STAKING_ADDRESS = bytes.fromhex("5354414b45000000000000000000000000000000")
"""The system staking account ("STAKE" in ASCII, zero padded). Transactions to it carry a staking
operation in their data; its storage holds the validator records. It never holds a balance:
staked value leaves circulation into validator records (see docs/chain.md)."""

STAKING_OP_GAS = 30_000
"""Gas charged on top of the intrinsic gas for a staking operation."""

VALIDATOR_SET_DELAY_EPOCHS = 2
"""Epochs between a stake change and the validator set it shows in: epoch ``e``'s set is read
at the end of epoch ``e - 2`` (``chain.timing.compute_snapshot_height``), so unstaked stake may
vote for up to this many epochs more. Genesis validation bounds unbonding by it."""

MAX_EXTRA_DATA_BYTES = 32
MAX_BLOCK_EVIDENCE = 64
EMPTY_BLOOM = bytes(256)
ZERO_ADDRESS = bytes(20)
ZERO_HASH = bytes(32)
