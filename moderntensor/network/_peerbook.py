"""The known-address book: where peers can be dialed and when each was last seen (pure: time
is an argument, STYLE rule 8).

Every node keeps one; a *bootnode* (``[p2p] bootnode = true``) exists to serve it. An address
enters the book when a peer connects (the address we dialed, or its host and announced listen
port), from the bootstrap list, or from peer exchange (``Peers``). Its *last seen* time is
refreshed whenever a peer with that id is connected: a connected peer counts as seen now and
its last-seen becomes the moment it disconnected. An address learned second-hand keeps the
time it was first learned and is not refreshed by hearing it again, so addresses of nodes that
went away cannot circulate between books forever: nodes that never connect to it forget it
after ``stale_after_s``, whatever their peers say.

What the book serves (``GetPeers``) is the connected peers and the addresses seen within
``stale_after_s``; older ones are forgotten (``prune``). Bootstrap addresses are pinned: never
forgotten (the node keeps dialing them), but served only while fresh like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from moderntensor.network._multiaddr import Multiaddr

__all__ = ["MAX_KNOWN_ADDRS", "AddressBook"]

MAX_KNOWN_ADDRS = 1024
"""Addresses remembered from bootstrap, peers and peer exchange (no more are added)."""


@attrs.define(slots=True)
class _Entry:
    addr: Multiaddr
    last_seen: float | None
    """When a peer with this id was last connected (or the address first learned); None: a
    bootstrap address not seen yet."""


class AddressBook:
    """Known addresses by peer id, with when each was last seen.

    Args:
        stale_after_s: an address not seen for this long is forgotten.
        capacity: addresses kept; a new one finding the book full (after dropping stale ones)
            is not added.
        pinned: the bootstrap addresses, never forgotten.
    """

    def __init__(
        self, stale_after_s: float, capacity: int, pinned: Iterable[Multiaddr] = ()
    ) -> None:
        self.stale_after_s = stale_after_s
        self.capacity = capacity
        self._entries: dict[str, _Entry] = {a.peer_id: _Entry(a, None) for a in pinned}
        self._pinned = set(self._entries)
        self._live: dict[str, int] = {}  # connected ids -> sessions (a reconnect overlaps)
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._entries

    def get(self, peer_id: str) -> Multiaddr | None:
        entry = self._entries.get(peer_id)
        return None if entry is None else entry.addr

    def last_seen(self, peer_id: str) -> float | None:
        entry = self._entries.get(peer_id)
        return None if entry is None else entry.last_seen

    def connected(self, peer_id: str, addr: Multiaddr | None, now: float) -> None:
        """A peer with this id completed its handshake (``addr``: where it can be dialed, if
        known). While connected it counts as seen now and is never forgotten."""
        self._live[peer_id] = self._live.get(peer_id, 0) + 1
        entry = self._entries.get(peer_id)
        if entry is not None:
            entry.last_seen = now
            if addr is not None:
                entry.addr = addr
        elif addr is not None and self._room(now):
            self._entries[peer_id] = _Entry(addr, now)

    def disconnected(self, peer_id: str, now: float) -> None:
        """A session with this id ended: it was last seen ``now``."""
        left = self._live.get(peer_id, 0) - 1
        if left > 0:
            self._live[peer_id] = left
        else:
            self._live.pop(peer_id, None)
        entry = self._entries.get(peer_id)
        if entry is not None:
            entry.last_seen = now

    def learn(self, addr: Multiaddr, now: float) -> bool:
        """An address heard second-hand; True if it is new (its clock starts now)."""
        if addr.peer_id in self._entries or not self._room(now):
            return False
        self._entries[addr.peer_id] = _Entry(addr, now)
        return True

    def is_fresh(self, peer_id: str, now: float) -> bool:
        entry = self._entries.get(peer_id)
        return entry is not None and self._fresh(peer_id, entry, now)

    def fresh(self, now: float, *, exclude: str = "") -> list[Multiaddr]:
        """What to serve: the connected peers' addresses and those seen within
        ``stale_after_s`` (the stale ones are forgotten first), but ``exclude`` (the asker)."""
        self.prune(now)
        return [
            e.addr
            for pid, e in self._entries.items()
            if pid != exclude and self._fresh(pid, e, now)
        ]

    def prune(self, now: float) -> int:
        """Forget the addresses not seen for ``stale_after_s`` (never a pinned or connected
        one); returns how many."""
        stale = [
            pid
            for pid, e in self._entries.items()
            if pid not in self._pinned and not self._fresh(pid, e, now)
        ]
        for pid in stale:
            del self._entries[pid]
        self.forgotten += len(stale)
        return len(stale)

    def _fresh(self, peer_id: str, entry: _Entry, now: float) -> bool:
        if peer_id in self._live:
            return True
        return entry.last_seen is not None and now - entry.last_seen < self.stale_after_s

    def _room(self, now: float) -> bool:
        if len(self._entries) < self.capacity:
            return True
        return self.prune(now) > 0
