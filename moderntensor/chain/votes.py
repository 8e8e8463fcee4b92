"""Signed consensus messages, their digests, and equivocation evidence.

Lives in the chain layer (not in ``consensus``) because block execution must decode and apply
evidence, and the chain layer may not import consensus. Everything here is a pure function of
its arguments.

A validator is named by its *validator id*: the 20-byte address of its consensus public key
(``crypto.address_from_public_key``). A :class:`SignedVote` carries that id as ``signer``; a
vote is authentic when the signature over :func:`vote_digest` recovers to that id.

Every message names its *round*: the epoch and the slot. Epochs count blocks (see
``chain.timing``), and a new epoch starts its views again just after the previous epoch's
boundary block, so one slot number can occur in two epochs; the epoch in the digest keeps a
vote of one epoch from ever counting in another.

The three slashable offences (DESIGN §4), each proven by two signed messages of one signer for
one round (epoch and slot):

* ``DOUBLE_PROPOSAL`` — two PROPOSE messages with different seal hashes;
* ``DOUBLE_NOTARIZE`` — two NOTARIZE messages with different block hashes;
* ``NULLIFY_AND_FINALIZE`` — a NULLIFY and a FINALIZE.
"""

from __future__ import annotations

import enum

import attrs

from moderntensor.codec import (
    DecodeError,
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_fixed,
    expect_list,
    expect_uint,
)
from moderntensor.crypto import (
    InvalidSignature,
    PrivateKey,
    Signature,
    keccak256,
    recover_address,
)

__all__ = [
    "BPS_DENOMINATOR",
    "MAX_EVIDENCE_SIZE",
    "MAX_VOTE_SIZE",
    "VOTE_DOMAIN",
    "ZERO_HASH",
    "Evidence",
    "InvalidEvidence",
    "Offence",
    "SignedVote",
    "VoteKind",
    "compute_offence",
    "compute_slash_amount",
    "decode_evidence",
    "decode_vote",
    "encode_evidence",
    "encode_vote",
    "evidence_id",
    "recover_vote_signer",
    "sign_vote",
    "verify_evidence",
    "vote_digest",
    "vote_from_rlp",
    "vote_to_rlp",
]

VOTE_DOMAIN = b"moderntensor/consensus/vote/v2"
EVIDENCE_DOMAIN = b"moderntensor/consensus/evidence/v2"
ZERO_HASH = b"\x00" * 32
MAX_SLOT = 2**64 - 1
MAX_EPOCH = 2**64 - 1
BPS_DENOMINATOR = 10_000
# [kind, epoch, slot, hash32, signer20, sig65] is < 150 bytes; evidence is two of them.
MAX_VOTE_SIZE = 256
MAX_EVIDENCE_SIZE = 2 * MAX_VOTE_SIZE


class VoteKind(enum.IntEnum):
    """What a signature commits to. PROPOSE covers a header's seal hash; the rest a block hash."""

    PROPOSE = 1
    NOTARIZE = 2
    NULLIFY = 3
    FINALIZE = 4


class Offence(enum.IntEnum):
    """The three kinds of equivocation, numbered for :func:`evidence_id`."""

    DOUBLE_PROPOSAL = 1
    DOUBLE_NOTARIZE = 2
    NULLIFY_AND_FINALIZE = 3


def _to_kind(kind: int) -> VoteKind:
    try:
        return VoteKind(kind)
    except ValueError:
        raise ValueError(f"unknown vote kind {kind}") from None


def _check_vote_fields(kind: int, epoch: int, slot: int, block_hash: bytes) -> VoteKind:
    try:
        vote_kind = VoteKind(kind)
    except ValueError:
        raise ValueError(f"unknown vote kind {kind}") from None
    if not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"epoch {epoch} out of range")
    if not isinstance(slot, int) or not 0 <= slot <= MAX_SLOT:
        raise ValueError(f"slot {slot} out of range")
    if not isinstance(block_hash, bytes) or len(block_hash) != 32:
        raise ValueError("block hash must be 32 bytes")
    if vote_kind is VoteKind.NULLIFY and block_hash != ZERO_HASH:
        raise ValueError("a NULLIFY vote must carry the zero block hash")
    return vote_kind


def vote_digest(
    chain_id: int, genesis_hash: bytes, kind: VoteKind, epoch: int, slot: int, block_hash: bytes
) -> bytes:
    """The 32 bytes a validator signs: keccak256 of RLP [domain, chain id, genesis, kind, epoch,
    slot, hash].

    The domain tag and the chain id plus genesis hash keep a vote from being replayed as a
    transaction, on another chain, or on a fork of this one from another genesis; the epoch
    keeps it from counting in another epoch's round of the same slot number.

    Raises:
        ValueError: a field out of range (NULLIFY must use :data:`ZERO_HASH`).
    """
    vote_kind = _check_vote_fields(kind, epoch, slot, block_hash)
    if chain_id < 0 or len(genesis_hash) != 32:
        raise ValueError("chain id must be >= 0 and genesis hash 32 bytes")
    return keccak256(
        encode_rlp(
            [
                VOTE_DOMAIN,
                encode_uint(chain_id),
                genesis_hash,
                encode_uint(int(vote_kind)),
                encode_uint(epoch),
                encode_uint(slot),
                block_hash,
            ]
        )
    )


@attrs.frozen(slots=True)
class SignedVote:
    """A signed consensus message; ``signer`` is the 20-byte validator id.

    For PROPOSE, ``block_hash`` is the header's seal hash; for NULLIFY it is :data:`ZERO_HASH`.
    Construction checks the shape, not the signature (see :func:`recover_vote_signer`).
    """

    kind: VoteKind = attrs.field(converter=_to_kind)
    epoch: int
    slot: int
    block_hash: bytes
    signer: bytes
    signature: Signature

    def __attrs_post_init__(self) -> None:
        _check_vote_fields(self.kind, self.epoch, self.slot, self.block_hash)
        if not isinstance(self.signer, bytes) or len(self.signer) != 20:
            raise ValueError("signer must be a 20-byte validator id")


def sign_vote(
    key: PrivateKey,
    chain_id: int,
    genesis_hash: bytes,
    kind: VoteKind,
    epoch: int,
    slot: int,
    block_hash: bytes,
) -> SignedVote:
    """Sign a vote with a consensus key (no slashing protection: see the consensus package).

    Raises:
        ValueError: as :func:`vote_digest`.
    """
    digest = vote_digest(chain_id, genesis_hash, kind, epoch, slot, block_hash)
    return SignedVote(kind, epoch, slot, block_hash, key.address, key.sign(digest))


def recover_vote_signer(vote: SignedVote, chain_id: int, genesis_hash: bytes) -> bytes:
    """The validator id whose key made ``vote.signature`` (not necessarily ``vote.signer``).

    Raises:
        InvalidSignature: no key recovers from the signature.
    """
    digest = vote_digest(chain_id, genesis_hash, vote.kind, vote.epoch, vote.slot, vote.block_hash)
    return recover_address(digest, vote.signature)


def vote_to_rlp(vote: SignedVote) -> list[RLPItem]:
    """The RLP item ``[kind, epoch, slot, block_hash, signer, signature65]`` (for embedding)."""
    return [
        encode_uint(int(vote.kind)),
        encode_uint(vote.epoch),
        encode_uint(vote.slot),
        vote.block_hash,
        vote.signer,
        vote.signature.to_bytes(),
    ]


def vote_from_rlp(item: RLPItem, what: str = "vote") -> SignedVote:
    """Parse the item made by :func:`vote_to_rlp`.

    Raises:
        DecodeError: any malformed field, naming it.
    """
    fields = expect_list(item, what, 6)
    kind = expect_uint(fields[0], f"{what}.kind", 8)
    epoch = expect_uint(fields[1], f"{what}.epoch", 64)
    slot = expect_uint(fields[2], f"{what}.slot", 64)
    block_hash = expect_fixed(fields[3], f"{what}.block_hash", 32)
    signer = expect_fixed(fields[4], f"{what}.signer", 20)
    raw_sig = expect_fixed(fields[5], f"{what}.signature", 65)
    try:
        signature = Signature.from_bytes(raw_sig)
    except InvalidSignature as exc:
        raise DecodeError(f"{what}.signature", str(exc)) from None
    try:
        return SignedVote(kind, epoch, slot, block_hash, signer, signature)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DecodeError(what, str(exc)) from None


def encode_vote(vote: SignedVote) -> bytes:
    """RLP bytes of a signed vote."""
    return encode_rlp(vote_to_rlp(vote))


def decode_vote(raw: bytes) -> SignedVote:
    """Decode :func:`encode_vote` output. Total: any bytes give a vote or DecodeError.

    Raises:
        DecodeError: malformed, non-canonical, oversize or trailing bytes.
    """
    return vote_from_rlp(decode_rlp(raw, "vote", MAX_VOTE_SIZE))


@attrs.frozen(slots=True)
class Evidence:
    """Two signed messages that together prove an equivocation (see :func:`verify_evidence`)."""

    first: SignedVote
    second: SignedVote


def compute_offence(a: SignedVote, b: SignedVote) -> Offence | None:
    """Which offence the two messages prove, if any, ignoring signatures.

    Same signer, same round (epoch and slot), and one of: two proposals with different seal
    hashes, two notarizations of different blocks, or a nullify and a finalize (either order).
    """
    if a.signer != b.signer or a.slot != b.slot or a.epoch != b.epoch:
        return None
    kinds = {a.kind, b.kind}
    if kinds == {VoteKind.NULLIFY, VoteKind.FINALIZE}:
        return Offence.NULLIFY_AND_FINALIZE
    if a.kind == b.kind and a.block_hash != b.block_hash:
        if a.kind is VoteKind.PROPOSE:
            return Offence.DOUBLE_PROPOSAL
        if a.kind is VoteKind.NOTARIZE:
            return Offence.DOUBLE_NOTARIZE
    return None


class InvalidEvidence(ValueError):
    """Evidence that proves nothing: names the reason (no conflict, bad signature, ...)."""


def verify_evidence(evidence: Evidence, chain_id: int, genesis_hash: bytes) -> bytes:
    """Check that the evidence proves an equivocation on this chain; return the offender's id.

    The caller still checks that the offender is a known validator and that
    :func:`evidence_id` was not used before.

    Raises:
        InvalidEvidence: the messages do not conflict, or a signature is not the signer's.
    """
    offence = compute_offence(evidence.first, evidence.second)
    if offence is None:
        raise InvalidEvidence(
            "the two messages do not conflict (need one signer and round, and two proposals or "
            "two notarizations of different hashes, or a nullify and a finalize)"
        )
    for name, vote in (("first", evidence.first), ("second", evidence.second)):
        try:
            signer = recover_vote_signer(vote, chain_id, genesis_hash)
        except InvalidSignature as exc:
            raise InvalidEvidence(f"{name} message: bad signature ({exc})") from None
        if signer != vote.signer:
            raise InvalidEvidence(
                f"{name} message is not signed by its signer on this chain "
                f"(recovered 0x{signer.hex()}, claimed 0x{vote.signer.hex()})"
            )
    return evidence.first.signer


def evidence_id(evidence: Evidence) -> bytes:
    """A 32-byte id of the *offence*: keccak256 of (domain, signer, offence, epoch, slot).

    Independent of the order of the two messages, of which conflicting pair proves it and of
    the signatures' bytes, so one offence slashes at most once however many proofs of it exist.

    Raises:
        InvalidEvidence: the messages do not conflict.
    """
    offence = compute_offence(evidence.first, evidence.second)
    if offence is None:
        raise InvalidEvidence("the two messages do not conflict")
    return keccak256(
        encode_rlp(
            [
                EVIDENCE_DOMAIN,
                evidence.first.signer,
                encode_uint(int(offence)),
                encode_uint(evidence.first.epoch),
                encode_uint(evidence.first.slot),
            ]
        )
    )


def encode_evidence(evidence: Evidence) -> bytes:
    """RLP ``[vote, vote]``."""
    return encode_rlp([vote_to_rlp(evidence.first), vote_to_rlp(evidence.second)])


def decode_evidence(raw: bytes) -> Evidence:
    """Decode :func:`encode_evidence` output. Total: any bytes give evidence or DecodeError.

    Only the format is checked here; :func:`verify_evidence` checks what it proves.

    Raises:
        DecodeError: malformed, non-canonical, oversize or trailing bytes.
    """
    fields = expect_list(decode_rlp(raw, "evidence", MAX_EVIDENCE_SIZE), "evidence", 2)
    return Evidence(
        vote_from_rlp(fields[0], "evidence.first"), vote_from_rlp(fields[1], "evidence.second")
    )


def compute_slash_amount(stake: int, slash_fraction_bps: int) -> int:
    """``floor(stake * bps / 10000)``: the stake a proven offence burns, integer math.

    Raises:
        ValueError: negative stake, or a fraction outside [0, 10000] basis points.
    """
    if stake < 0:
        raise ValueError(f"stake must be >= 0, got {stake}")
    if not 0 <= slash_fraction_bps <= BPS_DENOMINATOR:
        raise ValueError(f"slash fraction must be in [0, 10000] bps, got {slash_fraction_bps}")
    return stake * slash_fraction_bps // BPS_DENOMINATOR
