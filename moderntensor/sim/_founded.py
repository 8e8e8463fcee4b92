"""Review §7.4, checked on every frame *sent*: an honest NOTARIZE is well-founded.

An honest validator may sign NOTARIZE for block ``h`` in round (epoch, slot) only when the
block's parent ``p`` (for a re-proposal: ``h`` itself) is notarized or final at a slot
``ps`` below ``slot``, and every slot strictly between them is nullified in ``epoch``.

What an honest node knows it learned from frames someone sent, so this code watches every
frame as it leaves its sender (after a byzantine actor, before the links lose it): each
proposal (a block's slot and parent) and each vote, alone or inside a certificate, with its
signature recovered here. It tallies the votes with its own quorum arithmetic (signed stake
* 3 > total * 2, over the checker's stake table) into notarized blocks, finalized blocks
and nullified rounds. When an honest validator's NOTARIZE leaves for the first time, every
certificate its node used to decide was sent before it (a node sends its own votes and the
certificates they complete before its next vote), so the rule is checked then.

A violation found while a node sends is kept (``failed``) and raised by the checker at the
next delivery: the sender's task is the node's, and must not see the checker's exception.
"""

from __future__ import annotations

from collections.abc import Callable

from moderntensor.chain.votes import SignedVote, VoteKind, recover_vote_signer
from moderntensor.codec import DecodeError
from moderntensor.consensus import Certificate, Proposal
from moderntensor.crypto import InvalidSignature, keccak256
from moderntensor.network import MessageType, decode_message, peek_type

__all__ = ["Foundation"]

_WATCHED = (MessageType.VOTE, MessageType.CERTIFICATE, MessageType.PROPOSAL)
_RECENT = 8192
"""Frames (by their bytes) remembered as seen without hashing them again: the same frame
goes to every peer of its sender at once."""
Tally = tuple[int, int, int, bytes]
"""(kind, epoch, slot, block hash)."""


class Foundation:
    def __init__(
        self,
        chain_id: int,
        genesis_hash: bytes,
        members: Callable[[int], dict[bytes, int]],
        honest: frozenset[bytes],
    ) -> None:
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.members = members
        self.honest = honest
        self.blocks: dict[bytes, tuple[int, bytes]] = {}
        """Block hash -> (its header's slot, its parent), from every proposal sent."""
        self.notarized: dict[bytes, set[int]] = {genesis_hash: {0}}
        """Block hash -> the slots it is notarized (or final) at."""
        self.nullified: set[tuple[int, int]] = set()
        self.votes: dict[Tally, dict[bytes, int]] = {}
        self.done: set[Tally] = set()
        self.checked: set[Tally] = set()
        self.failed: str | None = None
        self.notarizations = 0
        """Honest NOTARIZE votes checked."""
        self._recent: dict[bytes, None] = {}
        self._seen: set[bytes] = set()
        self._signers: dict[tuple[Tally, bytes], bytes | None] = {}

    def on_send(self, at: float, frm: int, to: int, frame: bytes) -> None:
        if frame in self._recent:
            return
        self._recent[frame] = None
        if len(self._recent) > _RECENT:
            del self._recent[next(iter(self._recent))]
        try:
            if peek_type(frame) not in _WATCHED:
                return
        except DecodeError:
            return
        fid = keccak256(frame)
        if fid in self._seen:
            return
        self._seen.add(fid)
        try:
            message = decode_message(frame)
        except DecodeError:
            return
        if isinstance(message, Proposal):
            header = message.block.header
            self.blocks.setdefault(message.block_hash, (header.slot, header.parent_hash))
        elif isinstance(message, SignedVote):
            self._vote(message, f"at t={at:.3f}s, node {frm} -> node {to}")
        elif isinstance(message, Certificate):
            for vote in message.votes():
                self._vote(vote, None)

    def _signer(self, vote: SignedVote, key: Tally) -> bytes | None:
        cache = (key, vote.signature.to_bytes())
        if cache not in self._signers:
            try:
                self._signers[cache] = recover_vote_signer(vote, self.chain_id, self.genesis_hash)
            except InvalidSignature:
                self._signers[cache] = None
        return self._signers[cache]

    def _vote(self, vote: SignedVote, where: str | None) -> None:
        if vote.kind is VoteKind.PROPOSE:
            return
        key = (int(vote.kind), vote.epoch, vote.slot, vote.block_hash)
        signers = self.votes.setdefault(key, {})
        if vote.signer in signers or self._signer(vote, key) != vote.signer:
            return
        if (
            where is not None
            and vote.kind is VoteKind.NOTARIZE
            and vote.signer in self.honest
            and key not in self.checked
        ):
            self.checked.add(key)
            self._check(vote, where)
        members = self.members(vote.epoch)
        stake = members.get(vote.signer, 0)
        if not stake:
            return
        signers[vote.signer] = stake
        if key not in self.done and sum(signers.values()) * 3 > sum(members.values()) * 2:
            self.done.add(key)
            self._certified(vote)

    def _certified(self, vote: SignedVote) -> None:
        if vote.kind is VoteKind.NULLIFY:
            self.nullified.add((vote.epoch, vote.slot))
            return
        slots = self.notarized.setdefault(vote.block_hash, set())
        slots.add(vote.slot)
        block = self.blocks.get(vote.block_hash)
        if vote.kind is VoteKind.FINALIZE and block is not None:
            slots.add(block[0])  # a final block counts at its header's slot

    def _check(self, vote: SignedVote, where: str) -> None:
        self.notarizations += 1
        block = self.blocks.get(vote.block_hash)
        if block is None or self.failed is not None:
            return  # a block never proposed: nothing an honest node could have executed
        header_slot, parent = block
        if header_slot != vote.slot:  # a re-proposal extends its own block
            parent = vote.block_hash
        slots = sorted(self.notarized.get(parent, ()), reverse=True)
        for ps in slots:
            if ps < vote.slot and all(
                (vote.epoch, t) in self.nullified for t in range(ps + 1, vote.slot)
            ):
                return
        below = [ps for ps in slots if ps < vote.slot]
        if not below:
            why = "not notarized below its slot"
        else:
            gap = next(t for t in range(below[0] + 1, vote.slot)
                       if (vote.epoch, t) not in self.nullified)  # fmt: skip
            why = f"notarized at slot {below[0]}, but slot {gap} between is not nullified"
        self.failed = (
            f"well-founded NOTARIZE: honest 0x{vote.signer.hex()[:8]} notarized "
            f"0x{vote.block_hash.hex()[:12]} in round ({vote.epoch}, {vote.slot}), whose "
            f"parent 0x{parent.hex()[:12]} is {why} {where}"
        )
