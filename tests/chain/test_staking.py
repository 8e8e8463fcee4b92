"""Staking operations on a bare state: an unstake never leaves the chain without a validator."""

from __future__ import annotations

import pytest

from moderntensor.chain.staking import (
    StakingError,
    StakingOp,
    StakingParams,
    apply_staking_op,
    encode_staking_op,
    get_validator,
    put_validator,
)
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.state.statedb import StateDB
from moderntensor.state.trie import MemoryNodeStore
from tests.factories import key

PARAMS = StakingParams(min_stake=100, unbonding_epochs=4)
A, B, C = (key(700 + i).address for i in range(3))
REFUSED = (
    r"unstake: would leave no eligible validator \(one not jailed with stake >= min_stake 100\)"
)


def state_with(*records: ValidatorRecord) -> StateDB:
    state = StateDB(MemoryNodeStore())
    for record in records:
        put_validator(state, record)
    return state


def validator(owner: bytes, stake: int, *, jailed: bool = False) -> ValidatorRecord:
    i = {A: 0, B: 1, C: 2}[owner]
    return ValidatorRecord(owner, key(800 + i).public_key_bytes, stake, jailed=jailed)


def unstake(state: StateDB, owner: bytes, amount: int) -> None:
    data = encode_staking_op(StakingOp.UNSTAKE, amount)
    apply_staking_op(state, owner, 0, data, 3, PARAMS)


def stake_of(state: StateDB, owner: bytes) -> tuple[int, int]:
    record = get_validator(state, owner)
    assert record is not None
    return record.stake, record.unbonding


def test_unstake_that_would_leave_no_eligible_validator_is_refused() -> None:
    state = state_with(validator(A, 1_000), validator(B, 1_000))
    unstake(state, B, 950)  # B falls below min_stake; A is still eligible
    assert stake_of(state, B) == (50, 950)
    with pytest.raises(StakingError, match=REFUSED):
        unstake(state, A, 901)  # A would be left with 99 < 100, and B is not eligible
    assert stake_of(state, A) == (1_000, 0)
    unstake(state, A, 900)  # exactly min_stake stays: still eligible
    assert stake_of(state, A) == (100, 900)
    with pytest.raises(StakingError, match=REFUSED):
        unstake(state, A, 1)
    apply_staking_op(state, B, 50, encode_staking_op(StakingOp.ADD_STAKE), 3, PARAMS)
    unstake(state, A, 100)  # B is eligible again, so A may leave entirely
    assert stake_of(state, A) == (0, 1_000)
    with pytest.raises(StakingError, match=REFUSED):
        unstake(state, B, 100)


def test_jailed_and_small_validators_do_not_count_as_eligible() -> None:
    state = state_with(validator(A, 1_000), validator(B, 5_000, jailed=True), validator(C, 99))
    with pytest.raises(StakingError, match=REFUSED):
        unstake(state, A, 1_000)
    unstake(state, A, 900)
    assert stake_of(state, A) == (100, 900)
    # a jailed validator leaving is fine: it counts for nothing
    unstake(state, B, 5_000)
    assert stake_of(state, B) == (0, 5_000)
