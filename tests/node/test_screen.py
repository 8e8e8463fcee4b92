"""What the network relays: the node's screen over a real core (real signatures, real sets).
Only what is wrong for every honest node is REJECTed; what depends on where this node
stands is IGNOREd; what the core would use is ACCEPTed."""

from __future__ import annotations

from moderntensor.chain.votes import SignedVote, VoteKind, sign_vote
from moderntensor.consensus import SignatureVerifier, SimplexCore, build_certificate
from moderntensor.crypto import PrivateKey
from moderntensor.network import GossipVerdict
from moderntensor.node._screen import screen
from tests.consensus.harness import (
    CHAIN_ID,
    GENESIS_HASH,
    KEYS,
    OUTSIDERS,
    Cluster,
    make_proposal,
)

BLOCK = b"\x44" * 32


def signed(key: PrivateKey, epoch: int, slot: int) -> SignedVote:
    return sign_vote(key, CHAIN_ID, GENESIS_HASH, VoteKind.NOTARIZE, epoch, slot, BLOCK)


def setup() -> tuple[SimplexCore, SignatureVerifier]:
    cluster = Cluster([10, 10, 10, 10], set())
    core = cluster.nodes[KEYS[0].address]
    return core, cluster.verifier


def test_proposals_from_the_slots_leader_only() -> None:
    core, verifier = setup()
    slot = core.view
    leader = next(k for k in KEYS[:4] if k.address == core.leader(slot, 0))
    other = next(k for k in KEYS[:4] if k is not leader)
    good = make_proposal(leader, slot, GENESIS_HASH, 1)
    assert screen(core, verifier, good) == (GossipVerdict.ACCEPT, "")
    verdict, why = screen(core, verifier, make_proposal(other, slot, GENESIS_HASH, 1))
    assert verdict is GossipVerdict.REJECT and "not the leader" in why
    outsider = make_proposal(OUTSIDERS[0], slot, GENESIS_HASH, 1)
    assert screen(core, verifier, outsider)[0] is GossipVerdict.REJECT


def test_votes_of_members_accepted_of_outsiders_rejected_of_far_rounds_ignored() -> None:
    core, verifier = setup()
    assert screen(core, verifier, signed(KEYS[1], 0, core.view))[0] is GossipVerdict.ACCEPT
    verdict, why = screen(core, verifier, signed(OUTSIDERS[1], 0, core.view))
    assert verdict is GossipVerdict.REJECT and "not in epoch 0's set" in why
    far = core.view + core.config.preset.max_future_slots + 1
    verdict, why = screen(core, verifier, signed(KEYS[1], 0, far))
    assert verdict is GossipVerdict.IGNORE and "too far ahead" in why
    verdict, why = screen(core, verifier, signed(KEYS[1], 3, core.view))
    assert verdict is GossipVerdict.IGNORE and "epoch 3" in why


def test_certificates_must_verify_against_the_set() -> None:
    core, verifier = setup()
    slot = core.view
    genuine = build_certificate(VoteKind.NOTARIZE, 0, slot, BLOCK,
                                [signed(k, 0, slot) for k in KEYS[:3]])  # fmt: skip
    assert screen(core, verifier, genuine)[0] is GossipVerdict.ACCEPT
    forged = build_certificate(VoteKind.NOTARIZE, 0, slot, BLOCK,
                               [signed(k, 0, slot) for k in OUTSIDERS[:4]])  # fmt: skip
    verdict, why = screen(core, verifier, forged)
    assert verdict is GossipVerdict.REJECT and f"slot {slot}" in why
