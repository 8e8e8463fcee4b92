"""Block execution's fused transfer path against the one-transaction-at-a-time reference.

``execute_transactions`` reads and writes a transfer's sender once and adds the block's burned
base fees and tips once (before anything could read them); the reference checks and applies
each transaction on its own (``check_transaction`` + ``apply_transaction``). Both must give
the same included transactions, receipts and state root, whatever the mix: transfers from and
to the coinbase (which spends its tips within the block), self-transfers, staking operations
between transfers, and transactions that are rejected.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain.constants import STAKING_ADDRESS
from moderntensor.chain.execution import (
    BlockEnv,
    TransactionRejected,
    apply_transaction,
    check_transaction,
    execute_transactions,
)
from moderntensor.chain.genesis import build_genesis
from moderntensor.chain.receipts import Receipt
from moderntensor.chain.staking import StakingOp, encode_staking_op, get_total
from moderntensor.chain.transactions import Transaction
from moderntensor.state.statedb import StateDB
from moderntensor.state.trie import MemoryNodeStore
from tests.factories import ETHER, GWEI, USERS, VALIDATOR_OWNER, key, make_genesis, transfer

GENESIS = make_genesis(users=3)
PARAMS = GENESIS.params
COINBASE = VALIDATOR_OWNER.address
ACTORS = [*USERS[:3], VALIDATOR_OWNER, key(99)]  # the coinbase sends; key(99) holds nothing


def fresh_state() -> StateDB:
    store = MemoryNodeStore()
    _, commit = build_genesis(GENESIS)
    store.put_nodes(commit.nodes)
    return StateDB(store, commit.root)


def reference(
    state: StateDB, txs: list[Transaction], env: BlockEnv, skip: bool
) -> tuple[list[Transaction], list[Receipt]]:
    included: list[Transaction] = []
    receipts: list[Receipt] = []
    cumulative = 0
    for tx in txs:
        try:
            if cumulative + tx.gas > env.gas_limit:
                raise TransactionRejected("gas limit reached", tx.hash)
            check_transaction(state, tx, env.base_fee, PARAMS)
        except TransactionRejected:
            if skip:
                continue
            raise
        receipt = apply_transaction(state, tx, env, PARAMS, cumulative)
        cumulative = receipt.cumulative_gas_used
        included.append(tx)
        receipts.append(receipt)
    return included, receipts


op = st.one_of(
    st.tuples(
        st.just("transfer"),
        st.integers(0, len(ACTORS) - 1),
        st.integers(0, len(ACTORS) - 1),
        st.sampled_from([0, 1, ETHER, 10**6 * ETHER]),  # the last one is unaffordable
        st.integers(0, 8),
        st.integers(0, 2),  # 2: a nonce gap, rejected
    ),
    st.tuples(
        st.just("stake"),
        st.integers(0, 1),
        st.integers(0, 1),  # register or unstake
        st.sampled_from([0, 50 * ETHER, 200 * ETHER]),
        st.just(0),
        st.just(0),
    ),
)


Item = tuple[str, int, int, int, int, int]


def build(items: list[Item]) -> list[Transaction]:
    nonces = {k.address: 0 for k in ACTORS}
    txs: list[Transaction] = []
    for kind, sender_index, target, value, tip, gap in items:
        sender = ACTORS[sender_index]
        nonce = nonces[sender.address] + (5 if gap == 2 else 0)
        if kind == "transfer":
            tx = transfer(sender, nonce, ACTORS[target].address, value, tip=tip * GWEI // 4)
        else:
            data = (
                encode_staking_op(
                    StakingOp.REGISTER, key(700 + sender_index).public_key_bytes, b"node"
                )
                if target == 0
                else encode_staking_op(StakingOp.UNSTAKE, ETHER)
            )
            tx = transfer(sender, nonce, STAKING_ADDRESS, value, gas=100_000, data=data)
        if gap != 2:
            nonces[sender.address] += 1
        txs.append(tx)
    return txs


@given(items=st.lists(op, max_size=14), base_fee=st.sampled_from([GWEI, 3 * GWEI]))
def test_fused_block_execution_equals_one_transaction_at_a_time(
    items: list[Item], base_fee: int
) -> None:
    txs = build(items)
    env = BlockEnv(1, 1, COINBASE, base_fee, PARAMS.gas_limit, 1)
    fused_state, ref_state = fresh_state(), fresh_state()
    fused = execute_transactions(fused_state, txs, env, PARAMS, skip_rejected=True)
    expected = reference(ref_state, txs, env, skip=True)
    assert fused == expected
    assert get_total(fused_state, "burned") == get_total(ref_state, "burned")
    assert fused_state.get_balance(COINBASE) == ref_state.get_balance(COINBASE)
    assert fused_state.commit().root == ref_state.commit().root
    # Validation mode (nothing skipped) agrees on the valid prefix and the first rejection.
    valid = expected[0]
    state_a, state_b = fresh_state(), fresh_state()
    assert execute_transactions(state_a, valid, env, PARAMS) == reference(
        state_b, valid, env, skip=False
    )
    assert state_a.commit().root == state_b.commit().root
    if len(valid) < len(txs):
        with pytest.raises(TransactionRejected) as fused_error:
            execute_transactions(fresh_state(), txs, env, PARAMS)
        with pytest.raises(TransactionRejected) as ref_error:
            reference(fresh_state(), txs, env, skip=False)
        assert fused_error.value.message == ref_error.value.message


def test_the_coinbase_spends_tips_earned_earlier_in_the_block() -> None:
    """The coinbase's transaction is affordable only with the tip of the one before it."""
    state = fresh_state()
    tip, max_fee = 4 * GWEI, 10 * GWEI
    earned = 21_000 * tip
    needed = 21_000 * max_fee + 1 - state.get_balance(COINBASE)  # its transfer's worst case
    paying = transfer(USERS[0], 0, COINBASE, needed - earned, tip=tip, max_fee=max_fee)
    spending = transfer(VALIDATOR_OWNER, 0, USERS[2].address, 1, tip=tip, max_fee=max_fee)
    env = BlockEnv(1, 1, COINBASE, GWEI, PARAMS.gas_limit, 1)
    ref_state = fresh_state()
    expected = reference(ref_state, [paying, spending], env, skip=False)
    assert len(expected[0]) == 2
    assert execute_transactions(state, [paying, spending], env, PARAMS) == expected
    assert state.commit().root == ref_state.commit().root
    short = transfer(USERS[0], 0, COINBASE, needed - earned - 1, tip=tip, max_fee=max_fee)
    with pytest.raises(TransactionRejected, match="insufficient funds"):
        execute_transactions(fresh_state(), [short, spending], env, PARAMS)
