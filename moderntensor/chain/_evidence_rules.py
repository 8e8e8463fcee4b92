"""The rules for equivocation evidence in a block: which items a block may include, and what
including them does (record the offence, slash once per jail).

Pure functions over a state view; :class:`~moderntensor.chain.chain.Chain` calls them when it
builds (``select_evidence``) and executes (``apply_evidence``) a block.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from moderntensor.chain.constants import MAX_BLOCK_EVIDENCE
from moderntensor.chain.staking import (
    get_validator_by_id,
    is_evidence_used,
    mark_evidence_used,
    slash_validator,
)
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.chain.votes import (
    Evidence,
    InvalidEvidence,
    decode_evidence,
    evidence_id,
    verify_evidence,
)
from moderntensor.codec import DecodeError
from moderntensor.state.statedb import StateDB

__all__ = ["EvidenceRules", "UnusableEvidence", "apply_evidence", "select_evidence"]

log = logging.getLogger("moderntensor.chain")


class UnusableEvidence(Exception):
    """One evidence item a block cannot include; the message names why."""


@attrs.frozen(slots=True)
class EvidenceRules:
    """What judging evidence for one block needs: the chain's identity, the block's epoch,
    the age limit and the slash fraction."""

    chain_id: int
    genesis_hash: bytes
    block_epoch: int
    evidence_epochs: int
    slash_fraction_bps: int


def _decode(raw: bytes) -> tuple[Evidence, bytes]:
    """The evidence in ``raw`` and the id of the offence it claims (signatures unchecked).

    Raises:
        UnusableEvidence: malformed, or the two messages do not conflict.
    """
    try:
        item = decode_evidence(raw)
        return item, evidence_id(item)
    except (DecodeError, InvalidEvidence) as exc:
        raise UnusableEvidence(str(exc)) from None


def is_too_old(item: Evidence, rules: EvidenceRules) -> bool:
    """The offence's epoch must be at least ``block_epoch - evidence_epochs``. Genesis keeps
    ``unbonding_epochs`` above the age limit plus the set delay, so an offender's stake is
    still bonded while evidence against it is accepted, and a lost database is a bounded
    liability (review H2, M5)."""
    return item.first.epoch < rules.block_epoch - rules.evidence_epochs


def check_item(state: StateDB, item: Evidence, eid: bytes, rules: EvidenceRules) -> ValidatorRecord:
    """The offender's record, if a block on ``state`` may include ``item`` (id ``eid``).

    Raises:
        UnusableEvidence: naming the rule it breaks.
    """
    if is_evidence_used(state, eid):
        raise UnusableEvidence("this offence was already slashed on this fork")
    try:
        offender = verify_evidence(item, rules.chain_id, rules.genesis_hash)
    except InvalidEvidence as exc:
        raise UnusableEvidence(str(exc)) from None
    record = get_validator_by_id(state, offender)
    if record is None:
        raise UnusableEvidence("offender is not a registered validator")
    if is_too_old(item, rules):
        raise UnusableEvidence(
            f"older than evidence_epochs {rules.evidence_epochs} allow in epoch {rules.block_epoch}"
        )
    return record


def select_evidence(
    state: StateDB, items: Sequence[bytes], limit: int, rules: EvidenceRules
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """See :meth:`moderntensor.chain.chain.Chain.select_evidence`.

    Raises:
        ValueError: ``limit`` is not in 0..MAX_BLOCK_EVIDENCE.
    """
    if not 0 <= limit <= MAX_BLOCK_EVIDENCE:
        raise ValueError(f"limit {limit} is not in 0..{MAX_BLOCK_EVIDENCE}")
    usable: list[bytes] = []
    dropped: list[bytes] = []
    chosen: set[bytes] = set()
    for raw in items:
        if len(usable) == limit:
            break
        if raw in usable:
            continue
        try:
            item, eid = _decode(raw)
            if eid in chosen:
                raise UnusableEvidence("proves an offence already selected")
            check_item(state, item, eid, rules)
        except UnusableEvidence:
            dropped.append(raw)
            continue
        chosen.add(eid)
        usable.append(raw)
    return tuple(usable), tuple(dropped)


def apply_evidence(state: StateDB, evidence: Sequence[bytes], rules: EvidenceRules) -> None:
    """Record each offence as used and slash its offender, once per jail.

    A validator already jailed is not slashed again: the offence is only recorded (its id
    marked used), so a doppelganger's burst of offences, or several proofs arriving in one
    block, costs one slash fraction, not one per offence (Cosmos' tombstone).

    Raises:
        UnusableEvidence: too many items, or an item ``select_evidence`` would drop (the
            message names the item).
    """
    if len(evidence) > MAX_BLOCK_EVIDENCE:
        raise UnusableEvidence(f"more than {MAX_BLOCK_EVIDENCE} evidence items")
    for i, raw in enumerate(evidence):
        try:
            item, eid = _decode(raw)
            record = check_item(state, item, eid, rules)
        except UnusableEvidence as exc:
            raise UnusableEvidence(f"evidence[{i}]: {exc}") from None
        mark_evidence_used(state, eid)
        offender = item.first.signer
        if record.jailed:
            log.info(
                "evidence against a jailed validator recorded, not slashed again "
                "validator=0x%s evidence=0x%s",
                offender.hex(), eid.hex()[:16],
            )  # fmt: skip
            continue
        amount = slash_validator(state, record, rules.slash_fraction_bps)
        log.warning(
            "slashed validator=0x%s amount=%d evidence=0x%s",
            offender.hex(), amount, eid.hex()[:16],
        )  # fmt: skip
