"""Invariants of a simulation, checked by code that shares nothing with the consensus core
but the wire formats and signature recovery: its own stake table (genesis stakes, minus
validators jailed by evidence in finalized blocks, from each epoch's snapshot height on), its
own quorum arithmetic (signed stake * 3 > total * 2), its own record of what every honest
validator signed. Run after every delivery (the wire checks) and every few virtual
milliseconds (the chains); the first violation stops the run.

* **Agreement**: every honest node has the same finalized block at every height.
* **Certificate validity**: a certificate on the wire is signed by distinct members of its
  epoch's set holding a quorum of its stake.
* **No honest equivocation**: an honest validator never signs two NOTARIZE or two FINALIZE
  for different blocks of one round, nor NULLIFY and FINALIZE of one round.
* **Accountability**: a validator whose evidence is in a finalized block is byzantine.
* **Supply**: balances plus bonded and unbonding stake equal the genesis amount plus what
  was minted, minus what was burned and slashed (to the wei).
* **Well-founded NOTARIZE** (``_founded``, on every frame sent): an honest NOTARIZE's parent
  is notarized or final at an earlier slot, and every slot between is nullified.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from moderntensor.chain.blocks import Block
from moderntensor.chain.staking import get_total, get_validators
from moderntensor.chain.votes import SignedVote, VoteKind, decode_evidence, recover_vote_signer
from moderntensor.codec import DecodeError
from moderntensor.consensus import Certificate
from moderntensor.network import MessageType, decode_message
from moderntensor.sim._founded import Foundation
from moderntensor.state.statedb import StateDB

__all__ = ["Checker", "Violation"]


class Violation(Exception):
    """An invariant broke: what, where, and the messages involved."""


@attrs.define
class Checker:
    chain_id: int
    genesis_hash: bytes
    epoch_length: int
    stakes: dict[bytes, int]
    """Validator id -> genesis stake."""
    honest: frozenset[bytes]
    jailed: dict[bytes, int] = attrs.field(factory=dict)
    """Validator id -> height of the finalized block that carried evidence against it."""
    evidence_count: dict[bytes, int] = attrs.field(factory=dict)
    final: dict[int, bytes] = attrs.field(factory=dict)
    signed: dict[tuple[bytes, int, int, int], bytes] = attrs.field(factory=dict)
    seen: set[bytes] = attrs.field(factory=set)
    checks: int = 0
    certificates: int = 0
    foundation: Foundation = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.foundation = Foundation(self.chain_id, self.genesis_hash, self.members, self.honest)

    # -- the wire -------------------------------------------------------------------------

    def on_send(self, at: float, frm: int, to: int, frame: bytes) -> None:
        """A frame leaves node ``frm`` for node ``to`` (checked by ``_founded``)."""
        self.foundation.on_send(at, frm, to, frame)

    def raise_failed(self) -> None:
        """Raise what a check on a frame sent found (it cannot raise in the sender's task)."""
        if self.foundation.failed is not None:
            raise Violation(self.foundation.failed)

    def on_frame(
        self, at: float, to: int, frm: int, frame: bytes, kind: MessageType | None, fid: bytes
    ) -> None:
        """A frame delivered (``kind``: its type if it has one, ``fid``: its keccak256)."""
        self.raise_failed()
        if kind not in (MessageType.VOTE, MessageType.CERTIFICATE):
            return
        if fid in self.seen:
            return
        self.seen.add(fid)
        try:
            message = decode_message(frame)
        except DecodeError:
            return
        self.checks += 1
        where = f"at t={at:.3f}s, node {frm} -> node {to}"
        if isinstance(message, SignedVote):
            self._vote(message, where)
        elif isinstance(message, Certificate):
            self._certificate(message, where)
            for vote in message.votes():
                self._vote(vote, where)

    def _vote(self, vote: SignedVote, where: str) -> None:
        if vote.signer not in self.honest or vote.kind is VoteKind.PROPOSE:
            return
        key = (vote.signer, int(vote.kind), vote.epoch, vote.slot)
        before = self.signed.setdefault(key, vote.block_hash)
        if before != vote.block_hash:
            raise Violation(
                f"honest 0x{vote.signer.hex()[:8]} signed two {vote.kind.name} "
                f"in round ({vote.epoch}, {vote.slot}): 0x{before.hex()[:12]} and "
                f"0x{vote.block_hash.hex()[:12]} {where}"
            )
        pair = VoteKind.FINALIZE if vote.kind is VoteKind.NULLIFY else VoteKind.NULLIFY
        if (
            vote.kind in (VoteKind.NULLIFY, VoteKind.FINALIZE)
            and (vote.signer, int(pair), vote.epoch, vote.slot) in self.signed
        ):
            raise Violation(
                f"honest 0x{vote.signer.hex()[:8]} signed NULLIFY and FINALIZE in "
                f"round ({vote.epoch}, {vote.slot}) {where}"
            )

    def members(self, epoch: int) -> dict[bytes, int]:
        """Our stake table of ``epoch``: genesis stakes, minus the validators jailed at or
        below its snapshot height."""
        snapshot = max(0, (epoch - 1) * self.epoch_length)
        return {v: s for v, s in self.stakes.items() if self.jailed.get(v, snapshot + 1) > snapshot}

    def _certificate(self, cert: Certificate, where: str) -> None:
        self.certificates += 1
        members = self.members(cert.epoch)
        signers: list[bytes] = []
        for vote in cert.votes():
            if recover_vote_signer(vote, self.chain_id, self.genesis_hash) != vote.signer:
                raise Violation(
                    f"certificate {cert.kind.name} ({cert.epoch}, {cert.slot}) "
                    f"carries a signature not by 0x{vote.signer.hex()} {where}"
                )
            if vote.signer not in members:
                raise Violation(
                    f"certificate {cert.kind.name} ({cert.epoch}, {cert.slot}) "
                    f"signed by non-member 0x{vote.signer.hex()} {where}"
                )
            signers.append(vote.signer)
        if len(set(signers)) != len(signers):
            raise Violation(f"certificate ({cert.epoch}, {cert.slot}) repeats a signer {where}")
        signed = sum(members[s] for s in signers)
        if signed * 3 <= sum(members.values()) * 2:
            raise Violation(
                f"certificate {cert.kind.name} ({cert.epoch}, {cert.slot}) holds "
                f"{signed} of {sum(members.values())} stake: no quorum {where}"
            )

    # -- the chains -----------------------------------------------------------------------

    def on_final(self, node: int, height: int, block: Block) -> None:
        """Node ``node`` holds ``block`` as final at ``height`` (agreement, accountability)."""
        self.raise_failed()
        self.checks += 1
        new = height not in self.final
        first = self.final.setdefault(height, block.hash)
        if first != block.hash:
            raise Violation(
                f"agreement: node {node} finalized 0x{block.hash.hex()[:12]} at "
                f"height {height}, another honest node 0x{first.hex()[:12]}"
            )
        if new:  # the first time this height is seen: its evidence counts
            for raw in block.evidence:
                signer = decode_evidence(raw).first.signer
                if signer in self.honest:
                    raise Violation(
                        f"accountability: evidence against honest "
                        f"0x{signer.hex()[:8]} finalized at height {height}"
                    )
                self.jailed.setdefault(signer, height)
                self.evidence_count[signer] = self.evidence_count.get(signer, 0) + 1

    def check_supply(
        self, node: int, state: StateDB, genesis_amount: int, accounts: Iterable[bytes]
    ) -> None:
        """Balances + stake + unbonding == genesis + minted - burned - slashed, to the wei."""
        self.checks += 1
        held = sum(state.get_balance(a) for a in set(accounts))
        held += sum(r.stake + r.unbonding for r in get_validators(state))
        expected = (
            genesis_amount
            + get_total(state, "minted")
            - get_total(state, "burned")
            - get_total(state, "slashed")
        )
        if held != expected:
            raise Violation(
                f"supply at node {node}: {held} wei held, {expected} expected "
                f"(difference {held - expected})"
            )
