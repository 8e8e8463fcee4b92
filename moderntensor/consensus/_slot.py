"""The core's private pieces: per-slot state, and the guard that stops a failed core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from moderntensor.chain.votes import SignedVote

from ._certificates import Certificate
from ._errors import ConsensusError, ConsensusLocalError
from ._messages import Proposal

__all__ = ["CoreFailed", "_Slot", "_guarded"]


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


class _Slot:
    """Everything one core knows about one slot (mutable, private)."""

    __slots__ = (
        "build_requested",
        "deadline",
        "executing",
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
        "nullify_stake",
        "nullify_votes",
        "proposal",
        "verdict",
    )

    def __init__(self) -> None:
        self.proposal: Proposal | None = None
        self.executing = False
        self.verdict: bool | None = None
        self.build_requested = False
        self.deadline: int | None = None
        self.notarize_votes: dict[bytes, dict[bytes, SignedVote]] = {}
        self.notarize_stake: dict[bytes, int] = {}
        self.nullify_votes: dict[bytes, SignedVote] = {}
        self.nullify_stake = 0
        self.finalize_votes: dict[bytes, dict[bytes, SignedVote]] = {}
        self.finalize_stake: dict[bytes, int] = {}
        self.notarizations: dict[bytes, Certificate] = {}
        self.nullification: Certificate | None = None
        self.finalization: Certificate | None = None
        self.my_notarize: SignedVote | None = None
        self.my_nullify: SignedVote | None = None
        self.my_finalize: SignedVote | None = None
