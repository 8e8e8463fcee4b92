"""Consensus numbers, kept in three tables (STYLE rule 7).

* protocol constants (here, module level): never change without a new chain;
* presets (:data:`MAINNET`, :data:`MINIMAL`): timing and sizes, chosen per network family;
* per-network config (:class:`ConsensusConfig`): chain id, genesis hash and time, from genesis.
"""

from __future__ import annotations

import attrs

__all__ = ["GENESIS_SLOT", "MAINNET", "MINIMAL", "ConsensusConfig", "Preset"]

GENESIS_SLOT = 0
"""The genesis block sits at slot 0 and is final by definition; voting starts at slot 1."""


def _positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attr.name} must be a positive integer, got {value!r}")


@attrs.frozen(slots=True)
class Preset:
    """Timing and size parameters of one network family (all times in milliseconds).

    ``timeout_ms`` is how long a validator waits in a slot (after entering it, and no earlier
    than the slot's start) before it votes NULLIFY. ``evidence_window`` is how many slots below
    the finalized slot a validator still remembers votes, to detect late equivocations.
    ``max_future_slots`` bounds how far ahead of its view a validator stores proposals and
    votes, so that no peer can make it hold unbounded state.
    """

    slot_duration_ms: int = attrs.field(validator=_positive)
    epoch_length: int = attrs.field(validator=_positive)
    timeout_ms: int = attrs.field(validator=_positive)
    max_validators: int = attrs.field(validator=_positive)
    evidence_window: int = attrs.field(validator=_positive)
    max_future_slots: int = attrs.field(validator=_positive)


MAINNET = Preset(
    slot_duration_ms=2_000,
    epoch_length=900,
    timeout_ms=4_000,
    max_validators=100,
    evidence_window=1_800,
    max_future_slots=64,
)
MINIMAL = Preset(
    slot_duration_ms=1_000,
    epoch_length=8,
    timeout_ms=2_000,
    max_validators=100,
    evidence_window=64,
    max_future_slots=32,
)


@attrs.frozen(slots=True)
class ConsensusConfig:
    """One network's consensus identity: what every vote digest and every slot time uses."""

    chain_id: int
    genesis_hash: bytes
    genesis_time_ms: int
    preset: Preset = MINIMAL

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.chain_id, int) or self.chain_id < 0:
            raise ValueError(f"chain id must be a non-negative integer, got {self.chain_id!r}")
        if not isinstance(self.genesis_hash, bytes) or len(self.genesis_hash) != 32:
            raise ValueError("genesis hash must be 32 bytes")
        if not isinstance(self.genesis_time_ms, int) or self.genesis_time_ms < 0:
            raise ValueError("genesis time must be a non-negative integer (milliseconds)")
