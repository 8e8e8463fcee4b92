"""The core's private pieces: per-slot state with its phase table, and the guard that stops a
failed core."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from moderntensor.chain.votes import SignedVote, VoteKind

from ._certificates import Certificate
from ._errors import ConsensusError, ConsensusLocalError
from ._messages import Proposal

__all__ = ["PHASE_MOVES", "CoreFailed", "Phase", "_Slot", "_guarded"]


class _Guardable(Protocol):
    _failed: str | None


S = TypeVar("S", bound=_Guardable)
P = ParamSpec("P")
R = TypeVar("R")


class CoreFailed(ConsensusLocalError):
    """The core raised an unexpected error earlier and refuses further input."""


def _guarded(
    method: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], R]:
    """Refuse input after an unexpected failure (STYLE rule 4); named errors pass through."""

    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._failed is not None:
            raise CoreFailed(f"core failed earlier: {self._failed}")
        try:
            return method(self, *args, **kwargs)
        except ConsensusError:
            raise
        except Exception as exc:
            self._failed = f"{type(exc).__name__}: {exc}"
            raise

    wrapper.__name__ = method.__name__
    wrapper.__qualname__ = method.__qualname__
    wrapper.__doc__ = method.__doc__
    return wrapper


class Phase(enum.Enum):
    """Where the slot's proposal stands (one table of moves: :data:`PHASE_MOVES`)."""

    WAITING = "waiting"  # no proposal from the leader yet
    PROPOSED = "proposed"  # have it; its parent does not check out (yet)
    EXECUTING = "executing"  # the shell is executing it (a MISSING verdict keeps it here)
    VALID = "valid"  # executed, valid: NOTARIZE may be signed
    INVALID = "invalid"  # executed, invalid (or we may not vote for it): never NOTARIZE


PHASE_MOVES: dict[Phase, tuple[Phase, ...]] = {
    Phase.WAITING: (Phase.PROPOSED,),
    Phase.PROPOSED: (Phase.EXECUTING, Phase.INVALID),
    Phase.EXECUTING: (Phase.VALID, Phase.INVALID),
    Phase.VALID: (Phase.INVALID,),  # slashing protection refused our NOTARIZE
    Phase.INVALID: (),
}


class _Slot:
    """Everything one core knows about one slot of its current epoch (mutable, private).

    The proposal's progress is ``phase`` (moves only along :data:`PHASE_MOVES`); the slot's
    outcome is in its certificates (``notarizations``, ``nullification``, ``finalization``),
    and what we said is in ``my_*``.
    """

    __slots__ = (
        "build_requested",
        "deadline",
        "fetch_requested",
        "finalization",
        "finalize_stake",
        "finalize_votes",
        "my_finalize",
        "my_notarize",
        "my_nullify",
        "notarizations",
        "notarize_stake",
        "notarize_votes",
        "nullification",
        "nullify_refused",
        "nullify_stake",
        "nullify_votes",
        "phase",
        "proposal",
    )

    def __init__(self) -> None:
        self.proposal: Proposal | None = None
        self.phase = Phase.WAITING
        self.build_requested = False
        self.fetch_requested = False
        self.deadline: int | None = None
        self.notarize_votes: dict[bytes, dict[bytes, SignedVote]] = {}
        self.notarize_stake: dict[bytes, int] = {}
        self.nullify_votes: dict[bytes, SignedVote] = {}
        self.nullify_stake = 0
        self.nullify_refused = False
        self.finalize_votes: dict[bytes, dict[bytes, SignedVote]] = {}
        self.finalize_stake: dict[bytes, int] = {}
        self.notarizations: dict[bytes, Certificate] = {}
        self.nullification: Certificate | None = None
        self.finalization: Certificate | None = None
        self.my_notarize: SignedVote | None = None
        self.my_nullify: SignedVote | None = None
        self.my_finalize: SignedVote | None = None

    def remember_mine(self, vote: SignedVote) -> None:
        """Keep a vote we signed in this round (to re-send it, and to know what we said)."""
        if vote.kind is VoteKind.NOTARIZE:
            self.my_notarize = vote
        elif vote.kind is VoteKind.NULLIFY:
            self.my_nullify = vote
        elif vote.kind is VoteKind.FINALIZE:
            self.my_finalize = vote

    def move(self, phase: Phase) -> None:
        """Advance the proposal's phase along the table.

        Raises:
            ConsensusLocalError: the move is not in :data:`PHASE_MOVES` (a bug in the core).
        """
        if phase not in PHASE_MOVES[self.phase]:
            raise ConsensusLocalError(f"slot phase {self.phase.name} -> {phase.name}")
        self.phase = phase

    def compact(self) -> None:
        """Forget the vote tallies (a nullified slot far behind the view keeps only its
        certificate: bounded memory while finality stalls, review L6)."""
        self.notarize_votes = {}
        self.finalize_votes = {}
        self.nullify_votes = {}
