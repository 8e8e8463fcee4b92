"""Slots, epochs, each epoch's validator set, and the stake-weighted leader of each slot.

Pure functions; time is an argument (integer milliseconds since the Unix epoch). The slot and
epoch arithmetic itself lives in :mod:`moderntensor.chain.timing` (one home for every layer).

Validator-set rule (docs/consensus.md, "Epochs"): epochs count blocks; the set of epoch ``e``
is :func:`compute_validator_set` over the validator records in the state of the *snapshot
block*, the boundary block of epoch ``e - 2`` (height :func:`compute_snapshot_height` ``(e)``
= ``(e - 1) * L``; genesis for ``e <= 1``). A staking transaction in epoch ``e - 2`` takes
effect in epoch ``e`` at the earliest; the set of ``e`` is known as soon as epoch ``e - 1``
starts, since that start is the finalization of the snapshot block. If nobody would be
eligible, the previous epoch's members carry over (:func:`compute_next_validator_set`), so no
staking or slashing outcome can leave an epoch without a set (review L2).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

import attrs
import coincurve

from moderntensor.chain import timing
from moderntensor.chain.timing import (
    compute_block_epoch,
    compute_boundary_height,
    compute_snapshot_height,
)
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.codec import encode_rlp, encode_uint
from moderntensor.crypto import address_from_public_key, keccak256

from ._params import ConsensusConfig

__all__ = [
    "Validator",
    "ValidatorSet",
    "compute_block_epoch",
    "compute_boundary_height",
    "compute_epoch_seed",
    "compute_leader",
    "compute_next_validator_set",
    "compute_slot_at",
    "compute_slot_start_ms",
    "compute_snapshot_height",
    "compute_validator_set",
]

SEED_DOMAIN = b"moderntensor/consensus/epoch-seed/v1"
SET_DOMAIN = b"moderntensor/consensus/validator-set/v1"


def compute_slot_start_ms(config: ConsensusConfig, slot: int) -> int:
    """When ``slot`` starts: ``genesis_time + slot * slot_duration`` (milliseconds)."""
    return timing.compute_slot_start_ms(
        config.genesis_time_ms, config.preset.slot_duration_ms, slot
    )


def compute_slot_at(config: ConsensusConfig, now_ms: int) -> int:
    """The slot that contains the instant ``now_ms`` (0 before genesis)."""
    return timing.compute_slot_at(config.genesis_time_ms, config.preset.slot_duration_ms, now_ms)


def compute_epoch_seed(genesis_hash: bytes, epoch: int, snapshot_block_hash: bytes) -> bytes:
    """The leader-election seed of an epoch: keccak256 of (domain, genesis, epoch, snapshot hash).

    The snapshot block's proposer could grind its block to bias the seed a little; with a
    two-epoch delay that buys it at most a better share of one epoch's slots (DESIGN accepts it).
    """
    return keccak256(
        encode_rlp([SEED_DOMAIN, genesis_hash, encode_uint(epoch), snapshot_block_hash])
    )


@attrs.frozen(slots=True)
class Validator:
    """One member of an epoch's set: validator id (address of the consensus key), key, stake."""

    id: bytes
    pubkey: bytes
    stake: int


def _cumulative(validators: tuple[Validator, ...]) -> tuple[int, ...]:
    total, out = 0, []
    for v in validators:
        total += v.stake
        out.append(total)
    return tuple(out)


@attrs.frozen(slots=True)
class ValidatorSet:
    """The validators of one epoch, sorted by id, with the seed that picks its leaders.

    Build it with :func:`compute_validator_set`; the derived fields are caches.
    """

    epoch: int
    seed: bytes
    validators: tuple[Validator, ...]
    _cumulative: tuple[int, ...] = attrs.field(
        init=False,
        repr=False,
        eq=False,
        default=attrs.Factory(lambda s: _cumulative(s.validators), takes_self=True),
    )
    _by_id: dict[bytes, Validator] = attrs.field(
        init=False,
        repr=False,
        eq=False,
        default=attrs.Factory(lambda s: {v.id: v for v in s.validators}, takes_self=True),
    )

    def __attrs_post_init__(self) -> None:
        ids = [v.id for v in self.validators]
        if not ids:
            raise ValueError("a validator set needs at least one validator")
        if any(a >= b for a, b in itertools.pairwise(ids)):
            raise ValueError("validators must be sorted by id, without duplicates")
        if any(v.stake <= 0 for v in self.validators):
            raise ValueError("every validator in a set must have positive stake")
        if len(self.seed) != 32:
            raise ValueError("seed must be 32 bytes")

    @property
    def total_stake(self) -> int:
        """Sum of the members' stakes."""
        return self._cumulative[-1]

    def get(self, validator_id: bytes) -> Validator | None:
        """The member with this id, or None."""
        return self._by_id.get(validator_id)

    def stake_of(self, validator_id: bytes) -> int:
        """The member's stake, 0 for a non-member."""
        member = self._by_id.get(validator_id)
        return 0 if member is None else member.stake

    def __len__(self) -> int:
        return len(self.validators)

    @property
    def set_hash(self) -> bytes:
        """A commitment to the whole set (epoch, seed, ids, keys, stakes)."""
        return keccak256(
            encode_rlp(
                [
                    SET_DOMAIN,
                    encode_uint(self.epoch),
                    self.seed,
                    [[v.id, v.pubkey, encode_uint(v.stake)] for v in self.validators],
                ]
            )
        )

    def leader_at(self, point: int) -> bytes:
        """The id of the member whose stake interval contains ``point`` (0 <= point < total)."""
        return self.validators[bisect.bisect_right(self._cumulative, point)].id


def compute_validator_set(
    records: Sequence[ValidatorRecord],
    epoch: int,
    seed: bytes,
    max_validators: int,
    min_stake: int = 1,
) -> ValidatorSet:
    """The set of ``epoch`` from the snapshot block's validator records.

    Eligible: not jailed, ``stake >= min_stake`` (``unbonding`` stake never counts). The
    ``max_validators`` largest stakes are kept (ties broken by the smaller validator id).

    Raises:
        ValueError: a malformed consensus key, one key registered twice, or nobody eligible.
    """
    eligible: dict[bytes, Validator] = {}
    for record in records:
        if record.jailed or record.stake < min_stake:
            continue
        try:
            key = coincurve.PublicKey(record.consensus_pubkey)
        except Exception as exc:  # coincurve raises bare Exception/ValueError/TypeError
            raise ValueError(
                f"validator {record.address.hex()}: bad consensus key ({exc})"
            ) from None
        if len(record.consensus_pubkey) != 33:
            raise ValueError(f"validator {record.address.hex()}: consensus key must be compressed")
        vid = address_from_public_key(key)
        if vid in eligible:
            raise ValueError(f"consensus key {record.consensus_pubkey.hex()} registered twice")
        eligible[vid] = Validator(vid, record.consensus_pubkey, record.stake)
    if not eligible:
        raise ValueError(f"epoch {epoch}: no eligible validator")
    chosen = sorted(eligible.values(), key=lambda v: (-v.stake, v.id))[:max_validators]
    return ValidatorSet(epoch, seed, tuple(sorted(chosen, key=lambda v: v.id)))


def compute_next_validator_set(
    records: Sequence[ValidatorRecord],
    epoch: int,
    seed: bytes,
    max_validators: int,
    min_stake: int,
    previous: ValidatorSet | None,
) -> ValidatorSet:
    """:func:`compute_validator_set`, except that when nobody is eligible the members of
    ``previous`` carry over with their stakes (deterministic: every node has the same
    previous set), so the chain never stops at an empty set (review L2).

    Raises:
        ValueError: a malformed key, or nobody eligible and no previous set.
    """
    has_eligible = any(not r.jailed and r.stake >= min_stake for r in records)
    if has_eligible or previous is None:
        return compute_validator_set(records, epoch, seed, max_validators, min_stake)
    return ValidatorSet(epoch, seed, previous.validators)


def compute_leader(validator_set: ValidatorSet, slot: int) -> bytes:
    """The leader of ``slot``: a stake-weighted draw from the set, seeded by keccak256(seed, slot).

    The 256-bit hash reduced modulo the total stake (below 2**128) has a bias under 2**-128.
    """
    draw = keccak256(validator_set.seed + slot.to_bytes(8, "big"))
    return validator_set.leader_at(int.from_bytes(draw, "big") % validator_set.total_stake)
