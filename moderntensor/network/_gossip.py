"""Gossip bookkeeping, pure (time is an argument, STYLE rule 8).

* :func:`compute_message_id`: ``keccak256`` of the frame. Frames are canonical RLP and the
  objects in them have one encoding each, so one message has one id.
* :class:`SeenCache`: ids seen in the last ``ttl`` seconds, at most ``capacity`` of them. A
  frame whose id is in it is neither delivered to the node again nor relayed again.
* Votes are also deduplicated by :func:`compute_vote_key` ``(signer, kind, epoch, slot,
  hash)`` -- a vote re-signed with another nonce has another id but the same key -- after
  its signature was checked, so a forged vote under a member's id cannot shadow the real one.

Why the window is short (about a slot, not minutes): the consensus core re-sends its votes
and certificates on every timeout, to recover from loss. Those re-sends are byte-identical,
so a long window would swallow exactly the copies a node that missed (or could not yet use)
the first one needs. A relay storm dies within milliseconds, so a slot-long window is enough
to stop loops.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from moderntensor.chain.votes import SignedVote
from moderntensor.crypto import keccak256
from moderntensor.network._messages import MAX_TX_BATCH, Transactions
from moderntensor.network._wire import encode_message

__all__ = [
    "TX_FRAME_BYTES",
    "BoundedSet",
    "MessageCache",
    "SeenCache",
    "build_tx_frames",
    "compute_message_id",
    "compute_vote_key",
]

TX_FRAME_BYTES = 1024 * 1024
"""Raw transaction bytes per gossip frame (a batch is split beyond it)."""


def compute_message_id(frame: bytes) -> bytes:
    """The gossip id of a frame."""
    return keccak256(frame)


def compute_vote_key(vote: SignedVote) -> tuple[bytes, int, int, int, bytes]:
    """What makes two votes the same vote, whatever their signature bytes."""
    return (vote.signer, int(vote.kind), vote.epoch, vote.slot, vote.block_hash)


class SeenCache:
    """Keys seen within the last ``ttl_s`` seconds (oldest dropped beyond ``capacity``)."""

    def __init__(self, ttl_s: float, capacity: int = 65_536) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._expiry: OrderedDict[Hashable, float] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def is_fresh(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` is unseen (or its entry expired) at ``now``; records nothing."""
        expiry = self._expiry.get(key)
        return expiry is None or expiry <= now

    def add(self, key: Hashable, now: float) -> bool:
        """Record ``key`` as seen at ``now``; True if it was fresh (deliver and relay it)."""
        self.expire(now)
        if key in self._expiry:
            return False
        self._expiry[key] = now + self.ttl_s
        if len(self._expiry) > self.capacity:
            self._expiry.popitem(last=False)
        return True

    def expire(self, now: float) -> None:
        """Drop entries whose window ended (they were added in time order)."""
        while self._expiry:
            key, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                return
            del self._expiry[key]


class BoundedSet:
    """The newest ``capacity`` keys added (e.g. transaction hashes a peer knows)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Hashable) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


class MessageCache:
    """Recently relayed frames by id, to answer ``Want`` for what a ``Have`` announced:
    kept ``ttl_s`` seconds, at most ``max_bytes`` of frames (oldest dropped first)."""

    def __init__(self, ttl_s: float, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.size = 0
        self._frames: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, message_id: bytes, frame: bytes, now: float) -> None:
        self.expire(now)
        if message_id in self._frames or len(frame) > self.max_bytes:
            return
        self._frames[message_id] = (frame, now + self.ttl_s)
        self.size += len(frame)
        while self.size > self.max_bytes:
            _, (old, _) = self._frames.popitem(last=False)
            self.size -= len(old)

    def get(self, message_id: bytes, now: float) -> bytes | None:
        entry = self._frames.get(message_id)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def expire(self, now: float) -> None:
        while self._frames:
            key, (frame, expiry) = next(iter(self._frames.items()))
            if expiry > now:
                return
            del self._frames[key]
            self.size -= len(frame)


def build_tx_frames(raws: list[bytes]) -> list[bytes]:
    """Transactions frames of at most TX_FRAME_BYTES and MAX_TX_BATCH transactions each."""
    frames: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for raw in raws:
        if batch and (size + len(raw) > TX_FRAME_BYTES or len(batch) == MAX_TX_BATCH):
            frames.append(encode_message(Transactions(tuple(batch))))
            batch, size = [], 0
        batch.append(raw)
        size += len(raw)
    if batch:
        frames.append(encode_message(Transactions(tuple(batch))))
    return frames
