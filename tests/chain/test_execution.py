"""Execution: fees, rejections in Ethereum's wording, the base fee rule, and conservation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain.constants import STAKING_ADDRESS, TX_GAS
from moderntensor.chain.execution import (
    BlockEnv,
    TransactionRejected,
    apply_transaction,
    check_transaction,
    compute_next_base_fee,
    execute_transactions,
    pay_block_reward,
)
from moderntensor.chain.genesis import build_genesis
from moderntensor.chain.staking import StakingOp, encode_staking_op, get_total, get_validators
from moderntensor.state.statedb import StateDB
from moderntensor.state.trie import MemoryNodeStore
from tests.factories import (
    CHAIN_ID,
    ETHER,
    GWEI,
    USERS,
    VALIDATOR_OWNER,
    key,
    legacy_transfer,
    make_genesis,
    transfer,
)

GENESIS = make_genesis(users=4)
PARAMS = GENESIS.params
COINBASE = VALIDATOR_OWNER.address


def fresh_state() -> StateDB:
    store = MemoryNodeStore()
    _, commit = build_genesis(GENESIS)
    store.put_nodes(commit.nodes)
    return StateDB(store, commit.root)


def env(base_fee: int = GWEI, epoch: int = 0) -> BlockEnv:
    return BlockEnv(1, 1, COINBASE, base_fee, PARAMS.gas_limit, epoch)


def test_transfer_moves_value_burns_base_fee_and_tips_the_proposer() -> None:
    state = fresh_state()
    a, b = USERS[0].address, USERS[1].address
    before_a, before_b, before_cb = (state.get_balance(x) for x in (a, b, COINBASE))
    tx = transfer(USERS[0], 0, b, 5 * ETHER, tip=2 * GWEI, max_fee=10 * GWEI)
    check_transaction(state, tx, 3 * GWEI, PARAMS)
    receipt = apply_transaction(state, tx, env(base_fee=3 * GWEI), PARAMS, 0)
    assert receipt.status == 1
    assert receipt.gas_used == TX_GAS
    assert receipt.effective_gas_price == 5 * GWEI  # base 3 + tip 2, under the 10 cap
    assert state.get_balance(a) == before_a - 5 * ETHER - TX_GAS * 5 * GWEI
    assert state.get_balance(b) == before_b + 5 * ETHER
    assert state.get_balance(COINBASE) == before_cb + TX_GAS * 2 * GWEI
    assert get_total(state, "burned") == TX_GAS * 3 * GWEI
    assert state.get_nonce(a) == 1


def test_effective_price_is_capped_by_max_fee() -> None:
    state = fresh_state()
    tx = transfer(USERS[0], 0, USERS[1].address, 1, tip=5 * GWEI, max_fee=6 * GWEI)
    receipt = apply_transaction(state, tx, env(base_fee=4 * GWEI), PARAMS, 0)
    assert receipt.effective_gas_price == 6 * GWEI


def test_legacy_transaction_pays_its_gas_price() -> None:
    state = fresh_state()
    before = state.get_balance(COINBASE)
    tx = legacy_transfer(USERS[0], 0, USERS[1].address, 7, gas_price=5 * GWEI)
    check_transaction(state, tx, GWEI, PARAMS)
    receipt = apply_transaction(state, tx, env(), PARAMS, 0)
    assert receipt.effective_gas_price == 5 * GWEI
    assert state.get_balance(COINBASE) == before + TX_GAS * 4 * GWEI


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: transfer(USERS[0], 1, USERS[1].address, 1), "nonce too high"),
        (lambda: transfer(USERS[0], 0, USERS[1].address, 10**40), "insufficient funds"),
        (lambda: transfer(key(99), 0, USERS[1].address, 1), "insufficient funds"),
        (lambda: transfer(USERS[0], 0, USERS[1].address, 1, chain_id=1), "invalid chain id"),
        (lambda: transfer(USERS[0], 0, USERS[1].address, 1, gas=20_999), "intrinsic gas too low"),
        (
            lambda: transfer(USERS[0], 0, USERS[1].address, 1, max_fee=GWEI // 2, tip=1),
            "max fee per gas less than block base fee",
        ),
        (
            lambda: transfer(USERS[0], 0, USERS[1].address, 1, gas=30_000, data=b"\x01"),
            "calls with data",
        ),
        (lambda: transfer(USERS[0], 0, USERS[1].address, 1, gas=31_000_000), "gas limit"),
    ],
)
def test_rejections_use_ethereum_wording(make, message) -> None:  # type: ignore[no-untyped-def]
    state = fresh_state()
    with pytest.raises(TransactionRejected, match=message):
        check_transaction(state, make(), GWEI, PARAMS)


def test_contract_creation_is_rejected() -> None:
    from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction

    tx = sign_transaction(
        DynamicFeeTransaction(
            chain_id=CHAIN_ID,
            nonce=0,
            max_priority_fee_per_gas=1,
            max_fee_per_gas=10 * GWEI,
            gas=100_000,
            to=None,
            value=0,
            data=b"\x60\x00",
        ),
        USERS[0],
    )
    with pytest.raises(TransactionRejected, match="contract creation is not supported"):
        check_transaction(fresh_state(), tx, GWEI, PARAMS)


def test_stale_nonce_is_rejected_after_execution() -> None:
    state = fresh_state()
    tx = transfer(USERS[0], 0, USERS[1].address, 1)
    apply_transaction(state, tx, env(), PARAMS, 0)
    with pytest.raises(TransactionRejected, match="nonce too low"):
        check_transaction(state, tx, GWEI, PARAMS)


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (15_000_000, GWEI * 10),  # at target: unchanged
        (30_000_000, GWEI * 10 + GWEI * 10 // 8),  # full: +12.5%
        (0, GWEI * 10 - GWEI * 10 // 8),  # empty: -12.5%
        (22_500_000, GWEI * 10 + GWEI * 10 // 16),  # halfway above target
    ],
)
def test_base_fee_follows_eip1559(used: int, expected: int) -> None:
    assert compute_next_base_fee(10 * GWEI, used, 30_000_000, 0) == expected


def test_base_fee_never_drops_below_the_floor() -> None:
    fee = GWEI
    for _ in range(50):
        fee = compute_next_base_fee(fee, 0, 30_000_000, GWEI)
    assert fee == GWEI
    assert compute_next_base_fee(7, 30_000_000, 30_000_000, 0) == 8  # +1 minimum step


def test_block_execution_skips_rejected_when_building_and_raises_when_validating() -> None:
    state = fresh_state()
    good = transfer(USERS[0], 0, USERS[1].address, 1)
    stale = transfer(USERS[1], 5, USERS[0].address, 1)
    included, receipts = execute_transactions(
        state, [good, stale], env(), PARAMS, skip_rejected=True
    )
    assert included == [good]
    assert receipts[0].cumulative_gas_used == TX_GAS
    with pytest.raises(TransactionRejected, match="nonce too high"):
        execute_transactions(fresh_state(), [good, stale], env(), PARAMS)


# -- conservation ------------------------------------------------------------------------

ACTORS = [*USERS[:4], key(99)]  # key(99) holds nothing: its transactions fail to apply
STAKING_KEYS = [key(500 + i) for i in range(3)]

op = st.one_of(
    st.tuples(
        st.just("transfer"),
        st.integers(0, len(ACTORS) - 1),
        st.integers(0, len(ACTORS) - 1),
        st.sampled_from([0, 1, ETHER, 400 * ETHER, 2_000 * ETHER]),
        st.integers(1, 8),
    ),
    # Staking from two senders only, so register -> unstake -> withdraw sequences are common.
    st.tuples(
        st.just("stake"),
        st.integers(0, 1),
        st.sampled_from(list(StakingOp)),
        st.sampled_from([50 * ETHER, 200 * ETHER, 0, 10**30]),  # 0 and 10**30 mostly fail
        st.integers(0, 9),  # 0-1: the sender's own consensus key; 2: a key both may claim
    ),
)


def total_holdings(state: StateDB) -> int:
    balances = sum(state.get_balance(k.address) for k in [*ACTORS, VALIDATOR_OWNER])
    stakes = sum(v.stake + v.unbonding for v in get_validators(state))
    return balances + stakes + get_total(state, "burned") + get_total(state, "slashed")


@given(blocks=st.lists(st.lists(op, max_size=8), min_size=1, max_size=6))
def test_execution_conserves_supply_exactly(blocks: list[list[tuple]]) -> None:  # type: ignore[type-arg]
    """balances + stakes + burned + slashed == genesis supply + minted, after every block,
    whatever mix of good, failing and rejected transactions the blocks carry."""
    state = fresh_state()
    assert total_holdings(state) == GENESIS.genesis_supply
    nonces = {k.address: 0 for k in ACTORS}
    base_fee = GWEI
    for number, block in enumerate(blocks, start=1):
        block_env = BlockEnv(number, number, COINBASE, base_fee, PARAMS.gas_limit, number)
        txs = []
        for item in block:
            sender = ACTORS[item[1]]
            nonce = nonces[sender.address]
            if item[0] == "transfer":
                _, _, to, value, tip = item
                tx = transfer(sender, nonce, ACTORS[to].address, value, tip=tip * GWEI // 4)
            else:
                _, sender_index, kind, value, key_choice = item
                key_index = sender_index if key_choice else 2
                args: tuple[bytes | int, ...] = ()
                if kind == StakingOp.REGISTER:
                    args = (STAKING_KEYS[key_index].public_key_bytes, b"node")
                elif kind == StakingOp.UNSTAKE:
                    args = (value or 1,)
                if kind in (StakingOp.UNSTAKE, StakingOp.WITHDRAW):
                    value = 0
                tx = transfer(
                    sender,
                    nonce,
                    STAKING_ADDRESS,
                    value,
                    gas=100_000,
                    data=encode_staking_op(kind, *args),
                )
            nonces[sender.address] += 1
            txs.append(tx)
        included, receipts = execute_transactions(state, txs, block_env, PARAMS, skip_rejected=True)
        for tx in txs:
            if tx not in included:  # rejected: its nonce was not used
                nonces[tx.sender] = min(nonces[tx.sender], tx.nonce)
        pay_block_reward(state, COINBASE, PARAMS)
        root = state.commit().root
        assert root == state.root
        assert total_holdings(state) == GENESIS.genesis_supply + get_total(state, "minted")
        assert get_total(state, "minted") == number * PARAMS.block_reward
        used = receipts[-1].cumulative_gas_used if receipts else 0
        base_fee = compute_next_base_fee(base_fee, used, PARAMS.gas_limit, PARAMS.min_base_fee)
