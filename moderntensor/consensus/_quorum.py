"""The quorum rule, in one place: strictly more than 2/3 of the epoch's stake.

The fraction is a module variable only so that a test can lower it (the mutation test that
proves the safety tests can fail). Production code never changes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["is_quorum"]

_QUORUM = (2, 3)  # (numerator, denominator): signed * den > total * num


def is_quorum(signed_stake: int, total_stake: int) -> bool:
    """True when ``signed_stake`` is strictly more than 2/3 of ``total_stake`` (integer math)."""
    num, den = _QUORUM
    return signed_stake * den > total_stake * num


@contextlib.contextmanager
def _override_quorum_for_tests(numerator: int, denominator: int) -> Iterator[None]:
    """Test-only switch: run a block with another quorum fraction (a deliberate mutant)."""
    global _QUORUM
    saved = _QUORUM
    _QUORUM = (numerator, denominator)
    try:
        yield
    finally:
        _QUORUM = saved
