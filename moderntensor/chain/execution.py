"""The state transition: transactions and blocks applied to a :class:`StateDB`.

Pure and deterministic: inputs are the state, the block environment and the parameters; no
clock, no randomness. Two kinds of failure, as in Ethereum:

* :class:`TransactionRejected` -- the transaction cannot be included at all (bad nonce, chain
  id, funds, fee, gas, unsupported kind). The mempool refuses it; a block containing it is
  invalid. Messages use geth's wording, so wallets show something familiar.
* a failed execution -- the transaction is included, pays for its gas, bumps its nonce, and its
  receipt has status 0 (today: a staking operation that does not apply).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import attrs

from moderntensor.chain.constants import (
    BASE_FEE_MAX_CHANGE_DENOMINATOR,
    ELASTICITY_MULTIPLIER,
    STAKING_ADDRESS,
    STAKING_OP_GAS,
)
from moderntensor.chain.receipts import Receipt
from moderntensor.chain.staking import StakingError, StakingParams, add_total, apply_staking_op
from moderntensor.chain.transactions import Transaction, intrinsic_gas
from moderntensor.state.account import Account
from moderntensor.state.statedb import StateDB

__all__ = [
    "NO_CONTRACT_CALLS",
    "NO_CONTRACT_CREATION",
    "BlockEnv",
    "ChainParams",
    "TransactionRejected",
    "apply_transaction",
    "check_account",
    "check_sender",
    "check_transaction",
    "check_transaction_rules",
    "compute_next_base_fee",
    "execute_transactions",
    "pay_block_reward",
    "required_gas",
]


NO_CONTRACT_CREATION = "contract creation is not supported on this chain"
NO_CONTRACT_CALLS = (
    "contract execution is not supported on this chain: "
    "calls with data are only accepted by the staking address"
)
"""The one wording of this chain's refusals to run contracts, wherever a transaction or call
meets them (the pool, eth_sendRawTransaction, eth_call, eth_estimateGas)."""


@attrs.frozen(slots=True)
class ChainParams:
    """The genesis numbers execution needs (a slice of the genesis config)."""

    chain_id: int
    gas_limit: int
    min_base_fee: int
    block_reward: int
    epoch_length: int
    min_stake: int
    unbonding_epochs: int
    evidence_epochs: int
    slash_fraction_bps: int

    @property
    def staking(self) -> StakingParams:
        return StakingParams(self.min_stake, self.unbonding_epochs)


@attrs.frozen(slots=True)
class BlockEnv:
    """What a transaction sees of the block it is in."""

    number: int
    slot: int
    coinbase: bytes
    base_fee: int
    gas_limit: int
    epoch: int


class TransactionRejected(Exception):
    """A transaction that cannot be included; ``message`` is in Ethereum's wording."""

    def __init__(self, message: str, tx_hash: bytes = b"") -> None:
        super().__init__(message)
        self.message = message
        self.tx_hash = tx_hash


def compute_next_base_fee(
    parent_base_fee: int, parent_gas_used: int, parent_gas_limit: int, min_base_fee: int
) -> int:
    """EIP-1559's base fee update, floored at the network's minimum (our one deviation)."""
    target = parent_gas_limit // ELASTICITY_MULTIPLIER
    if target == 0 or parent_gas_used == target:
        fee = parent_base_fee
    elif parent_gas_used > target:
        delta = parent_base_fee * (parent_gas_used - target) // target
        fee = parent_base_fee + max(delta // BASE_FEE_MAX_CHANGE_DENOMINATOR, 1)
    else:
        delta = parent_base_fee * (target - parent_gas_used) // target
        fee = parent_base_fee - delta // BASE_FEE_MAX_CHANGE_DENOMINATOR
    return max(fee, min_base_fee)


def required_gas(tx: Transaction) -> int:
    """The gas a transaction uses: intrinsic gas, plus the staking surcharge if it stakes."""
    gas = intrinsic_gas(tx)
    if tx.to == STAKING_ADDRESS:
        gas += STAKING_OP_GAS
    return gas


def check_transaction(state: StateDB, tx: Transaction, base_fee: int, params: ChainParams) -> None:
    """Every rule that decides whether ``tx`` can be included now.

    Raises:
        TransactionRejected: the first rule broken, in Ethereum's wording.
    """
    check_transaction_rules(tx, base_fee, params)
    check_account(state.get_account(tx.sender), tx)


def check_transaction_rules(tx: Transaction, base_fee: int, params: ChainParams) -> None:
    """The rules that need no account: chain id, kind, gas, fees.

    Raises:
        TransactionRejected: the first rule broken.
    """
    if tx.chain_id is None:
        raise TransactionRejected(
            "only replay-protected (EIP-155) transactions allowed over RPC", tx.hash
        )
    if tx.chain_id != params.chain_id:
        raise TransactionRejected(
            f"invalid chain id: have {tx.chain_id}, want {params.chain_id}", tx.hash
        )
    if tx.to is None:
        raise TransactionRejected(NO_CONTRACT_CREATION, tx.hash)
    if tx.data and tx.to != STAKING_ADDRESS:
        raise TransactionRejected(NO_CONTRACT_CALLS, tx.hash)
    if tx.gas > params.gas_limit:
        raise TransactionRejected("exceeds block gas limit", tx.hash)
    if tx.gas < required_gas(tx):
        raise TransactionRejected(
            f"intrinsic gas too low: have {tx.gas}, want {required_gas(tx)}", tx.hash
        )
    if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
        raise TransactionRejected("max priority fee per gas higher than max fee per gas", tx.hash)
    if tx.max_fee_per_gas < base_fee:
        raise TransactionRejected(
            f"max fee per gas less than block base fee: maxFeePerGas: {tx.max_fee_per_gas}, "
            f"baseFee: {base_fee}",
            tx.hash,
        )


def check_account(account: Account, tx: Transaction) -> None:
    """The sender's side: its next nonce and funds for ``gas * max_fee + value``.

    Raises:
        TransactionRejected: nonce too low or too high, or insufficient funds.
    """
    check_sender(account.nonce, account.balance, tx)


def check_sender(nonce: int, balance: int, tx: Transaction) -> None:
    """:func:`check_account` given the account's nonce and balance (the pool has no
    :class:`Account` at hand).

    Raises:
        TransactionRejected: nonce too low or too high, or insufficient funds.
    """
    if tx.nonce < nonce:
        raise TransactionRejected(
            f"nonce too low: next nonce {nonce}, tx nonce {tx.nonce}", tx.hash
        )
    if tx.nonce > nonce:
        raise TransactionRejected(
            f"nonce too high: next nonce {nonce}, tx nonce {tx.nonce}", tx.hash
        )
    cost = tx.gas * tx.max_fee_per_gas + tx.value
    if balance < cost:
        raise TransactionRejected(
            f"insufficient funds for gas * price + value: balance {balance}, tx cost {cost}",
            tx.hash,
        )


def apply_transaction(
    state: StateDB, tx: Transaction, env: BlockEnv, params: ChainParams, cumulative_gas: int
) -> Receipt:
    """Execute a transaction that passed :func:`check_transaction`; returns its receipt.

    The sender pays ``gas_used * effective_gas_price``: the base-fee part is burned, the tip
    goes to the block's coinbase. A staking operation that fails is undone (value included);
    its gas is still paid and the nonce still advances.
    """
    sender = tx.sender
    price = min(tx.max_fee_per_gas, env.base_fee + tx.max_priority_fee_per_gas)
    gas_used = required_gas(tx)
    account = state.get_account(sender)
    state.set_account(
        sender,
        Account(
            account.nonce + 1,
            account.balance - gas_used * price,
            account.storage_root,
            account.code_hash,
        ),
    )
    status, error = 1, ""
    to = tx.to
    if to == STAKING_ADDRESS:
        mark = state.snapshot()
        try:
            state.sub_balance(sender, tx.value)
            apply_staking_op(state, sender, tx.value, tx.data, env.epoch, params.staking)
        except StakingError as exc:
            state.revert(mark)
            status, error = 0, str(exc)
    elif to is not None and tx.value:
        state.sub_balance(sender, tx.value)
        state.add_balance(to, tx.value)
    add_total(state, "burned", gas_used * env.base_fee)
    tip = gas_used * (price - env.base_fee)
    if tip:
        state.add_balance(env.coinbase, tip)
    return Receipt(
        tx_type=tx.type,
        status=status,
        cumulative_gas_used=cumulative_gas + gas_used,
        gas_used=gas_used,
        effective_gas_price=price,
        error=error,
    )


def execute_transactions(
    state: StateDB,
    transactions: Iterable[Transaction],
    env: BlockEnv,
    params: ChainParams,
    *,
    skip_rejected: bool = False,
) -> tuple[list[Transaction], list[Receipt]]:
    """Check and apply transactions in order within the block gas limit.

    With ``skip_rejected`` (block building) a transaction that cannot be included is left out;
    without it (block validation) the first one raises.

    A plain transfer (anything not sent to the staking address; the rules refuse the rest)
    takes a fused path with the effect of :func:`apply_transaction`: the sender's account
    is read once, for the check and the debit, and written once. Its burned base fee and
    its tip are summed and added to the ``burned`` total and the coinbase once, before the
    first transaction that could read them (one from the coinbase, or a staking operation)
    and at the end. Additions commute and nothing else reads those two values, so the
    state, the receipts and every rejection are what one transaction at a time gives. If a
    transaction is rejected without ``skip_rejected``, the sums are not added: the caller
    discards that state.

    Raises:
        TransactionRejected: only when ``skip_rejected`` is false.
    """
    included: list[Transaction] = []
    receipts: list[Receipt] = []
    cumulative = 0
    base_fee = env.base_fee
    gas_limit = env.gas_limit
    coinbase = env.coinbase
    burned = 0  # base fees of plain transfers not yet added to the total
    tips = 0  # tips of plain transfers not yet paid to the coinbase
    for tx in transactions:
        sender = tx.sender
        to = tx.to
        plain = to != STAKING_ADDRESS
        if (sender == coinbase or not plain) and (burned or tips):
            _settle(state, coinbase, burned, tips)
            burned = tips = 0
        try:
            if cumulative + tx.gas > gas_limit:
                raise TransactionRejected("gas limit reached", tx.hash)
            check_transaction_rules(tx, base_fee, params)
            account = state.get_account(sender)
            check_account(account, tx)
        except TransactionRejected:
            if skip_rejected:
                continue
            raise
        if plain:
            price = min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)
            gas_used = required_gas(tx)
            value = tx.value if to is not None else 0
            # check_account left balance >= gas * max_fee + value >= gas_used * price + value
            state.set_account(
                sender,
                Account(
                    account.nonce + 1,
                    account.balance - gas_used * price - value,
                    account.storage_root,
                    account.code_hash,
                ),
            )
            if value:
                state.add_balance(cast(bytes, to), value)
            burned += gas_used * base_fee
            tips += gas_used * (price - base_fee)
            cumulative += gas_used
            receipt = Receipt(tx.type, 1, cumulative, gas_used, price)
        else:
            receipt = apply_transaction(state, tx, env, params, cumulative)
            cumulative = receipt.cumulative_gas_used
        included.append(tx)
        receipts.append(receipt)
    _settle(state, coinbase, burned, tips)
    return included, receipts


def _settle(state: StateDB, coinbase: bytes, burned: int, tips: int) -> None:
    """Add summed base fees to the ``burned`` total and pay summed tips to ``coinbase``."""
    add_total(state, "burned", burned)
    if tips:
        state.add_balance(coinbase, tips)


def pay_block_reward(state: StateDB, coinbase: bytes, params: ChainParams) -> None:
    """Mint the per-block reward to the proposer's coinbase (counted in the ``minted`` total)."""
    if params.block_reward:
        state.add_balance(coinbase, params.block_reward)
        add_total(state, "minted", params.block_reward)
