"""What the network asks before relaying a consensus message: is it valid as far as this
node can tell now (``GossipVerdict``)? Read-only over the core; the signature checks go
through the verifier the core shares, so a message screened here is not recovered twice.

The rules mirror the core's own (``SimplexCore.on_vote`` / ``on_proposal`` /
``on_certificate``), so a message the core would act on is never IGNOREd, and only what is
provably wrong for *every* honest node is REJECTed: sets and leaders are functions of the
committed chain, the same everywhere; what depends on where this node stands (its epoch, its
view, a set not yet known) is IGNOREd instead.
"""

from __future__ import annotations

from moderntensor.chain.votes import Evidence, SignedVote
from moderntensor.consensus import (
    Certificate,
    InvalidCertificate,
    Proposal,
    SignatureVerifier,
    SimplexCore,
    verify_certificate,
)
from moderntensor.crypto import InvalidSignature
from moderntensor.network import ConsensusMessage, GossipVerdict

__all__ = ["screen"]

ACCEPT = (GossipVerdict.ACCEPT, "")


def screen(
    core: SimplexCore, verifier: SignatureVerifier, message: ConsensusMessage
) -> tuple[GossipVerdict, str]:
    """The verdict on ``message`` and, unless ACCEPT, why."""
    if isinstance(message, Evidence):  # rare; the evidence book judges it
        return ACCEPT
    preset = core.config.preset
    if isinstance(message, Proposal):
        epoch, slot = message.epoch(preset.epoch_length), message.slot
    else:
        epoch, slot = message.epoch, message.slot
    if slot < core.finalized.slot - preset.evidence_window:
        return GossipVerdict.IGNORE, f"slot {slot} is too old"
    if not core.epoch - 1 <= epoch <= core.epoch + 1:
        return GossipVerdict.IGNORE, f"epoch {epoch} (this node is in {core.epoch})"
    if epoch == core.epoch and slot > core.view + preset.max_future_slots:
        return GossipVerdict.IGNORE, f"slot {slot} is too far ahead of view {core.view}"
    vset = core.epoch_set(epoch)
    if vset is None:
        return GossipVerdict.IGNORE, f"the set of epoch {epoch} is not known here"
    if isinstance(message, SignedVote):  # its signature was checked by the network
        if vset.stake_of(message.signer) == 0:
            return GossipVerdict.REJECT, f"0x{message.signer.hex()} is not in epoch {epoch}'s set"
        return ACCEPT
    if isinstance(message, Proposal):
        if message.proposer != core.leader(slot, epoch):
            return GossipVerdict.REJECT, f"proposer is not the leader of slot {slot}"
        try:
            authentic = verifier.is_authentic(message.propose_vote(preset.epoch_length))
        except InvalidSignature:
            authentic = False
        if not authentic:
            return GossipVerdict.REJECT, f"proposal for slot {slot} not signed by its leader"
        return ACCEPT
    assert isinstance(message, Certificate)
    try:
        verify_certificate(message, vset, verifier)
    except InvalidCertificate as exc:
        return GossipVerdict.REJECT, f"certificate of slot {slot}: {exc}"
    return ACCEPT
