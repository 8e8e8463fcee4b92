"""Slot and epoch arithmetic: the one home of every rule that maps time, slots, heights and
epochs onto each other (consensus, execution, the ticker and the RPC all call these).

* Slot ``s`` starts at ``genesis_time + s * slot_duration`` (integer milliseconds). Slots
  measure time; a slot may hold no block.
* Epochs count *blocks*, not time (docs/consensus.md, "Epochs"): epoch ``e`` holds the blocks
  of heights ``e * L + 1 .. (e + 1) * L``; the block of height ``(e + 1) * L`` is the epoch's
  *boundary block*. Epoch ``e + 1`` begins when that block is finalized, however long that
  takes, so no outage can leave an epoch without a known validator set.
* The set of epoch ``e`` is read from the state of the *snapshot block*: the boundary block of
  epoch ``e - 2``, height ``(e - 1) * L`` (the genesis block for ``e <= 1``).

Pure functions of their arguments; time is always an argument.
"""

from __future__ import annotations

__all__ = [
    "compute_block_epoch",
    "compute_boundary_height",
    "compute_slot_at",
    "compute_slot_start_ms",
    "compute_snapshot_height",
]


def compute_slot_start_ms(genesis_time_ms: int, slot_duration_ms: int, slot: int) -> int:
    """When ``slot`` starts: ``genesis_time + slot * slot_duration`` (milliseconds)."""
    return genesis_time_ms + slot * slot_duration_ms


def compute_slot_at(genesis_time_ms: int, slot_duration_ms: int, now_ms: int) -> int:
    """The slot that contains the instant ``now_ms`` (0 before genesis)."""
    return max(0, now_ms - genesis_time_ms) // slot_duration_ms


def compute_block_epoch(height: int, epoch_length: int) -> int:
    """The epoch of the block at ``height`` (genesis, height 0, counts as epoch 0)."""
    return max(0, height - 1) // epoch_length


def compute_boundary_height(epoch: int, epoch_length: int) -> int:
    """The height of epoch ``epoch``'s boundary (last) block: ``(epoch + 1) * L``."""
    return (epoch + 1) * epoch_length


def compute_snapshot_height(epoch: int, epoch_length: int) -> int:
    """The height whose state fixes epoch ``epoch``'s validator set (0 = genesis)."""
    return max(0, (epoch - 1) * epoch_length)
