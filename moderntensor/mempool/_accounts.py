"""Account facts the pool reads (nonce, balance), and a snapshot read ahead in a worker thread
so that re-validation on the event loop does no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

__all__ = ["AccountReader", "AccountSnapshot", "read_accounts"]


class AccountReader(Protocol):
    """The two account facts the pool reads (``StateDB`` has them)."""

    def get_nonce(self, address: bytes) -> int: ...

    def get_balance(self, address: bytes) -> int: ...


class AccountSnapshot:
    """Accounts read ahead (the node reads them in a worker thread), then ``state`` for the
    rest: what :meth:`Mempool.on_new_head` reads, so re-validation does no I/O of its own."""

    __slots__ = ("accounts", "state")

    def __init__(self, accounts: Mapping[bytes, tuple[int, int]], state: AccountReader) -> None:
        self.accounts = accounts  # address -> (nonce, balance)
        self.state = state

    def get_nonce(self, address: bytes) -> int:
        known = self.accounts.get(address)
        return known[0] if known is not None else self.state.get_nonce(address)

    def get_balance(self, address: bytes) -> int:
        known = self.accounts.get(address)
        return known[1] if known is not None else self.state.get_balance(address)


def read_accounts(state: AccountReader, addresses: Iterable[bytes]) -> dict[bytes, tuple[int, int]]:
    """(nonce, balance) of each address: the read-ahead for an :class:`AccountSnapshot`."""
    return {a: (state.get_nonce(a), state.get_balance(a)) for a in addresses}
