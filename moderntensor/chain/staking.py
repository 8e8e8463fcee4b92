"""Staking state in the storage of the system staking account, and the staking operations.

Layout (storage keys are keccak256 of a tag, so they never collide):

* ``keccak256(b"mt.validator" + owner)`` -> RLP ``[consensus_pubkey, stake, jailed, name,
  unbonding, unbonding_epoch, registered_epoch]``; ``owner`` is the account that registered.
* ``keccak256(b"mt.consensus" + validator_id)`` -> owner; the validator id is the address of
  the consensus key, the name consensus and evidence use.
* ``keccak256(b"mt.validators")`` -> RLP list of owners in registration order (deterministic).
* ``keccak256(b"mt.evidence" + evidence_id)`` -> ``b"\\x01"`` once evidence was applied.
* ``keccak256(b"mt.total." + name)`` for ``minted``, ``burned`` and ``slashed``: the running
  totals the conservation invariant is checked against.

An operation is a transaction to :data:`STAKING_ADDRESS` whose data is RLP
``[op, args...]``: ``[1, consensus_pubkey, name]`` register (value = initial stake),
``[2]`` add stake (value), ``[3, amount]`` begin unstake, ``[4]`` withdraw unbonded stake.

Epochs here are block epochs (``chain.timing``): unstaked stake is released
``unbonding_epochs`` epochs after the epoch of the block that unstaked it, however many slots
pass without blocks. An unstake that would leave no *eligible* validator (not jailed, stake at
least ``min_stake``: :func:`is_eligible_validator`) is refused: a later epoch's set would be
empty, and every node would stop at the same block.
"""

from __future__ import annotations

import enum

import attrs
import coincurve

from moderntensor.chain.constants import STAKING_ADDRESS
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.codec import (
    DecodeError,
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_bytes,
    expect_fixed,
    expect_list,
    expect_uint,
)
from moderntensor.crypto import address_from_public_key, keccak256
from moderntensor.state.statedb import StateDB

__all__ = [
    "StakingError",
    "StakingOp",
    "StakingParams",
    "add_total",
    "apply_staking_op",
    "encode_staking_op",
    "get_total",
    "get_validator",
    "get_validator_by_id",
    "get_validators",
    "is_eligible_validator",
    "is_evidence_used",
    "mark_evidence_used",
    "put_validator",
    "slash_validator",
    "validator_id",
]

MAX_NAME_BYTES = 64


class StakingError(Exception):
    """A staking operation that cannot apply; the transaction fails (status 0) with this reason."""


class StakingOp(enum.IntEnum):
    REGISTER = 1
    ADD_STAKE = 2
    UNSTAKE = 3
    WITHDRAW = 4


@attrs.frozen(slots=True)
class StakingParams:
    min_stake: int
    unbonding_epochs: int


def _key(tag: bytes, suffix: bytes = b"") -> bytes:
    return keccak256(tag + suffix)


_VALIDATORS_KEY = _key(b"mt.validators")


def validator_id(consensus_pubkey: bytes) -> bytes:
    """The 20-byte id of a validator: the address of its consensus key.

    Raises:
        ValueError: not a valid compressed secp256k1 public key.
    """
    try:
        key = coincurve.PublicKey(consensus_pubkey)
    except Exception:
        raise ValueError("consensus_pubkey is not a valid secp256k1 public key") from None
    return address_from_public_key(key)


def _encode_record(record: ValidatorRecord) -> bytes:
    return encode_rlp(
        [
            record.consensus_pubkey,
            encode_uint(record.stake),
            encode_uint(int(record.jailed)),
            record.name.encode("utf-8"),
            encode_uint(record.unbonding),
            encode_uint(record.unbonding_epoch),
            encode_uint(record.registered_epoch),
        ]
    )


def _decode_record(owner: bytes, raw: bytes) -> ValidatorRecord:
    f = expect_list(decode_rlp(raw, "validator record"), "validator record", 7)
    return ValidatorRecord(
        address=owner,
        consensus_pubkey=expect_fixed(f[0], "validator.consensus_pubkey", 33),
        stake=expect_uint(f[1], "validator.stake"),
        jailed=bool(expect_uint(f[2], "validator.jailed")),
        name=expect_bytes(f[3], "validator.name").decode("utf-8", "replace"),
        unbonding=expect_uint(f[4], "validator.unbonding"),
        unbonding_epoch=expect_uint(f[5], "validator.unbonding_epoch"),
        registered_epoch=expect_uint(f[6], "validator.registered_epoch"),
    )


def get_validator(state: StateDB, owner: bytes) -> ValidatorRecord | None:
    raw = state.get_storage(STAKING_ADDRESS, _key(b"mt.validator", owner))
    return _decode_record(owner, raw) if raw else None


def get_validator_by_id(state: StateDB, vid: bytes) -> ValidatorRecord | None:
    owner = state.get_storage(STAKING_ADDRESS, _key(b"mt.consensus", vid))
    return get_validator(state, owner) if owner else None


def _owners(state: StateDB) -> list[bytes]:
    raw = state.get_storage(STAKING_ADDRESS, _VALIDATORS_KEY)
    if not raw:
        return []
    return [expect_fixed(o, "validators[]", 20) for o in expect_list(decode_rlp(raw), "owners")]


def get_validators(state: StateDB) -> list[ValidatorRecord]:
    """Every registered validator, in registration order."""
    records = []
    for owner in _owners(state):
        record = get_validator(state, owner)
        if record is not None:
            records.append(record)
    return records


def put_validator(state: StateDB, record: ValidatorRecord) -> None:
    """Write a record; a new owner is appended to the registration list and the id index."""
    key = _key(b"mt.validator", record.address)
    if not state.get_storage(STAKING_ADDRESS, key):
        owners = _owners(state)
        owners.append(record.address)
        state.set_storage(STAKING_ADDRESS, _VALIDATORS_KEY, encode_rlp(list[RLPItem](owners)))
        vid = validator_id(record.consensus_pubkey)
        state.set_storage(STAKING_ADDRESS, _key(b"mt.consensus", vid), record.address)
    state.set_storage(STAKING_ADDRESS, key, _encode_record(record))


def get_total(state: StateDB, name: str) -> int:
    """A running total: ``minted``, ``burned`` or ``slashed``."""
    raw = state.get_storage(STAKING_ADDRESS, _key(b"mt.total." + name.encode()))
    return int.from_bytes(raw, "big")


def add_total(state: StateDB, name: str, amount: int) -> None:
    if amount:
        total = get_total(state, name) + amount
        key = _key(b"mt.total." + name.encode())
        state.set_storage(STAKING_ADDRESS, key, encode_uint(total))


def is_evidence_used(state: StateDB, evidence_id: bytes) -> bool:
    return bool(state.get_storage(STAKING_ADDRESS, _key(b"mt.evidence", evidence_id)))


def mark_evidence_used(state: StateDB, evidence_id: bytes) -> None:
    state.set_storage(STAKING_ADDRESS, _key(b"mt.evidence", evidence_id), b"\x01")


def slash_validator(state: StateDB, record: ValidatorRecord, fraction_bps: int) -> int:
    """Burn ``fraction_bps`` / 10,000 of bonded and unbonding stake and jail; returns the amount."""
    cut_stake = record.stake * fraction_bps // 10_000
    cut_unbonding = record.unbonding * fraction_bps // 10_000
    put_validator(
        state,
        attrs.evolve(
            record,
            stake=record.stake - cut_stake,
            unbonding=record.unbonding - cut_unbonding,
            jailed=True,
        ),
    )
    add_total(state, "slashed", cut_stake + cut_unbonding)
    return cut_stake + cut_unbonding


def is_eligible_validator(record: ValidatorRecord, min_stake: int) -> bool:
    """Whether ``record`` can be in a validator set: not jailed and ``stake >= min_stake``
    (unbonding stake never counts), the rule consensus applies to each snapshot."""
    return not record.jailed and record.stake >= min_stake


def _any_other_eligible(state: StateDB, owner: bytes, min_stake: int) -> bool:
    """Whether a validator other than ``owner`` is eligible (stops at the first one)."""
    for other in _owners(state):
        if other == owner:
            continue
        record = get_validator(state, other)
        if record is not None and is_eligible_validator(record, min_stake):
            return True
    return False


def encode_staking_op(op: StakingOp, *args: bytes | int) -> bytes:
    """Transaction data for a staking operation (integers are encoded canonically)."""
    items: list[RLPItem] = [encode_uint(int(op))]
    items.extend(encode_uint(a) if isinstance(a, int) else a for a in args)
    return encode_rlp(items)


def apply_staking_op(
    state: StateDB, sender: bytes, value: int, data: bytes, epoch: int, params: StakingParams
) -> None:
    """Carry out one staking operation; ``value`` has already left the sender's balance.

    Raises:
        StakingError: the operation is malformed or not allowed now; the caller reverts.
    """
    try:
        fields = expect_list(decode_rlp(data, "staking op"), "staking op")
        if not fields:
            raise StakingError("staking op: empty operation")
        op = expect_uint(fields[0], "staking op code", 8)
    except DecodeError as exc:
        raise StakingError(str(exc)) from None
    record = get_validator(state, sender)
    try:
        if op == StakingOp.REGISTER:
            _register(state, sender, value, fields, epoch, params, record)
        elif op == StakingOp.ADD_STAKE:
            expect_list(fields, "add stake", 1)
            if record is None:
                raise StakingError("add stake: sender is not a registered validator")
            if value == 0:
                raise StakingError("add stake: value must be positive")
            put_validator(state, attrs.evolve(record, stake=record.stake + value))
        elif op == StakingOp.UNSTAKE:
            amount = expect_uint(expect_list(fields, "unstake", 2)[1], "unstake amount")
            _check_no_value(value, "unstake")
            if record is None:
                raise StakingError("unstake: sender is not a registered validator")
            if amount == 0 or amount > record.stake:
                raise StakingError(f"unstake: amount {amount} not in 1..{record.stake}")
            after = attrs.evolve(
                record,
                stake=record.stake - amount,
                unbonding=record.unbonding + amount,
                unbonding_epoch=epoch + params.unbonding_epochs,
            )
            if not is_eligible_validator(after, params.min_stake) and not _any_other_eligible(
                state, sender, params.min_stake
            ):
                raise StakingError(
                    f"unstake: would leave no eligible validator (one not jailed with stake >= "
                    f"min_stake {params.min_stake}); the chain would have no validator set"
                )
            put_validator(state, after)
        elif op == StakingOp.WITHDRAW:
            expect_list(fields, "withdraw", 1)
            _check_no_value(value, "withdraw")
            if record is None or record.unbonding == 0:
                raise StakingError("withdraw: nothing is unbonding")
            if epoch < record.unbonding_epoch:
                raise StakingError(
                    f"withdraw: stake unbonds at epoch {record.unbonding_epoch}, now {epoch}"
                )
            put_validator(state, attrs.evolve(record, unbonding=0, unbonding_epoch=0))
            state.add_balance(sender, record.unbonding)
        else:
            raise StakingError(f"staking op: unknown operation {op}")
    except DecodeError as exc:
        raise StakingError(str(exc)) from None


def _check_no_value(value: int, what: str) -> None:
    if value:
        raise StakingError(f"{what}: must not carry value")


def _register(
    state: StateDB,
    sender: bytes,
    value: int,
    fields: list[RLPItem],
    epoch: int,
    params: StakingParams,
    record: ValidatorRecord | None,
) -> None:
    expect_list(fields, "register", 3)
    pubkey = expect_fixed(fields[1], "register consensus_pubkey", 33)
    name_raw = expect_bytes(fields[2], "register name", MAX_NAME_BYTES)
    if record is not None:
        raise StakingError("register: sender is already a registered validator")
    if value < params.min_stake:
        raise StakingError(f"register: stake {value} is below the minimum {params.min_stake}")
    try:
        vid = validator_id(pubkey)
    except ValueError as exc:
        raise StakingError(f"register: {exc}") from None
    if get_validator_by_id(state, vid) is not None:
        raise StakingError("register: consensus key is already registered")
    try:
        name = name_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise StakingError("register: name is not UTF-8") from None
    put_validator(
        state,
        ValidatorRecord(
            address=sender,
            consensus_pubkey=pubkey,
            stake=value,
            name=name,
            registered_epoch=epoch,
        ),
    )
