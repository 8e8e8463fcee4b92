"""The parent rule over a core's slot states: which block a leader builds on, whether a
proposal's parent checks out, and which certificates are missing to decide either.

Pure functions of the slot states (``slots``: slot -> state of the core's current epoch), the
notarized blocks and the finalized block; the core calls them and turns what is missing into
requests to peers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ._messages import BlockRef, Proposal
from ._slot import _Slot

__all__ = [
    "choose_parent",
    "extends_notarized",
    "lacking_for",
    "missing_slots",
    "newest_notarized_after",
]


def choose_parent(slots: Mapping[int, _Slot], finalized: BlockRef, slot: int) -> BlockRef | None:
    """The latest notarized block such that every slot after it (before ``slot``) is
    nullified; the finalized block if there is none; None while a certificate in between is
    missing."""
    for t in range(slot - 1, finalized.slot, -1):
        state = slots.get(t)
        if state is not None and state.notarizations:
            return BlockRef(t, min(state.notarizations))
        if state is None or state.nullification is None:
            return None
    return finalized


def extends_notarized(
    slots: Mapping[int, _Slot],
    notarized: Mapping[bytes, int],
    finalized: BlockRef,
    parent_hash: bytes,
    slot: int,
) -> bool:
    """The parent is notarized (or final), older than ``slot``, and every slot between them
    is nullified."""
    parent_slot = notarized.get(parent_hash)
    if parent_slot is None or not finalized.slot <= parent_slot < slot:
        return False
    for t in range(parent_slot + 1, slot):
        state = slots.get(t)
        if state is None or state.nullification is None:
            return False
    return True


def missing_slots(
    slots: Mapping[int, _Slot], first: int, slot: int, need: Callable[[_Slot], bool]
) -> list[int]:
    """The slots in ``[first, slot)``, newest first, where ``need`` says a certificate is
    missing (no state at all counts as missing)."""
    return [t for t in range(slot - 1, first - 1, -1) if t not in slots or need(slots[t])]


def newest_notarized_after(slots: Mapping[int, _Slot], finalized: BlockRef, slot: int) -> int:
    """The first slot after the newest notarized one below ``slot`` (or after the finalized
    block): where the certificates a leader needs begin."""
    for t in range(slot - 1, finalized.slot, -1):
        state = slots.get(t)
        if state is not None and state.notarizations:
            return t + 1
    return finalized.slot + 1


def lacking_for(
    slots: Mapping[int, _Slot],
    notarized: Mapping[bytes, int],
    blocks: Mapping[bytes, tuple[int, bytes]],
    proposal: Proposal,
) -> bytes | tuple[list[int], str]:
    """What a proposal lacks to check out: its parent's hash, if we never saw the parent;
    else the slots whose certificates are missing (the parent's notarization, or the
    nullifications between), with what they are for."""
    if proposal.parent_hash not in notarized:
        parent = blocks.get(proposal.parent_hash)
        if parent is None:
            return proposal.parent_hash
        return missing_slots(
            slots, parent[0], parent[0] + 1, lambda st: not st.notarizations
        ), "parent"
    parent_slot = notarized[proposal.parent_hash]
    gaps = missing_slots(slots, parent_slot + 1, proposal.slot, lambda st: st.nullification is None)
    return gaps, "proposal"
