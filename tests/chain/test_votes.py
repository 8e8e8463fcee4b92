"""Signed consensus messages, digests, evidence and the slash amount (chain/votes.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain.votes import (
    ZERO_HASH,
    Evidence,
    InvalidEvidence,
    Offence,
    SignedVote,
    VoteKind,
    compute_offence,
    compute_slash_amount,
    decode_evidence,
    decode_vote,
    encode_evidence,
    encode_vote,
    evidence_id,
    recover_vote_signer,
    sign_vote,
    verify_evidence,
    vote_digest,
)
from moderntensor.codec import DecodeError, encode_rlp
from moderntensor.crypto import SECP256K1_N, PrivateKey, Signature, keccak256

KEY = PrivateKey(keccak256(b"consensus test key 0"))
OTHER = PrivateKey(keccak256(b"consensus test key 1"))
CHAIN, GEN = 1, b"\x11" * 32
H1, H2 = b"\x22" * 32, b"\x33" * 32


def vote(
    kind: VoteKind, slot: int = 5, h: bytes = H1, key: PrivateKey = KEY, epoch: int = 3
) -> SignedVote:
    h = ZERO_HASH if kind is VoteKind.NULLIFY else h
    return sign_vote(key, CHAIN, GEN, kind, epoch, slot, h)


def test_format_is_pinned() -> None:
    """Format fixtures: changing the digest or the encoding needs a review (STYLE rule 17).

    v2 (this version) added the epoch to the digest and to the vote's RLP; the digest was
    checked against pyrlp + pysha3 computing keccak256(rlp([domain, 1, GEN, 2, 3, 5, H1])).
    """
    assert vote_digest(1, GEN, VoteKind.NOTARIZE, 3, 5, H1).hex() == (
        "aa0a4f02ea3fe0c19c53232c33888fac5c88b81230843bdbdfaaa1235a0082fe"
    )
    assert encode_vote(vote(VoteKind.FINALIZE)).hex() == (
        "f87c040305a02222222222222222222222222222222222222222222222222222222222222222"
        "9438ef01769967ca0ef4570ab3562e8c166c341631b841ed9fcfa05c436f9572233c5f58d75b"
        "8e313d9a0b7be5952fd03d3f7aeb086c2d7e957ff8eda774af189f60d15e02786c85e558a6f3"
        "85b6e69ddce9da3d9389b700"
    )


def test_digest_separates_every_field() -> None:
    base = (1, GEN, VoteKind.NOTARIZE, 3, 5, H1)
    variants = [
        (2, GEN, VoteKind.NOTARIZE, 3, 5, H1),
        (1, b"\x12" * 32, VoteKind.NOTARIZE, 3, 5, H1),
        (1, GEN, VoteKind.FINALIZE, 3, 5, H1),
        (1, GEN, VoteKind.PROPOSE, 3, 5, H1),
        (1, GEN, VoteKind.NOTARIZE, 4, 5, H1),
        (1, GEN, VoteKind.NOTARIZE, 3, 6, H1),
        (1, GEN, VoteKind.NOTARIZE, 3, 5, H2),
    ]
    digests = {vote_digest(*v) for v in [base, *variants]}
    assert len(digests) == 8


def test_shape_checks() -> None:
    with pytest.raises(ValueError, match="zero block hash"):
        vote_digest(1, GEN, VoteKind.NULLIFY, 0, 1, H1)
    with pytest.raises(ValueError, match="32 bytes"):
        vote_digest(1, GEN, VoteKind.NOTARIZE, 0, 1, b"\x01")
    with pytest.raises(ValueError, match="unknown vote kind"):
        vote_digest(1, GEN, 9, 0, 1, H1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epoch"):
        vote_digest(1, GEN, VoteKind.NOTARIZE, -1, 1, H1)
    with pytest.raises(ValueError, match="20-byte"):
        SignedVote(VoteKind.NOTARIZE, 0, 1, H1, b"\x01" * 19, vote(VoteKind.NOTARIZE).signature)


def test_signer_recovery_binds_chain_and_content() -> None:
    v = vote(VoteKind.NOTARIZE)
    assert recover_vote_signer(v, CHAIN, GEN) == KEY.address
    assert recover_vote_signer(v, CHAIN + 1, GEN) != KEY.address
    moved = SignedVote(v.kind, v.epoch, v.slot + 1, v.block_hash, v.signer, v.signature)
    assert recover_vote_signer(moved, CHAIN, GEN) != KEY.address
    other_epoch = SignedVote(v.kind, v.epoch + 1, v.slot, v.block_hash, v.signer, v.signature)
    assert recover_vote_signer(other_epoch, CHAIN, GEN) != KEY.address


@given(
    kind=st.sampled_from(list(VoteKind)),
    slot=st.integers(0, 2**64 - 1),
    h=st.binary(min_size=32, max_size=32),
)
def test_vote_round_trip(kind: VoteKind, slot: int, h: bytes) -> None:
    v = vote(kind, slot, h)
    assert decode_vote(encode_vote(v)) == v


@given(st.binary(max_size=300))
def test_decode_vote_is_total(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_vote(raw)


@given(st.binary(max_size=600))
def test_decode_evidence_is_total(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_evidence(raw)


def test_decode_rejects_trailing_bytes_unknown_kind_and_high_s() -> None:
    raw = encode_vote(vote(VoteKind.NOTARIZE))
    with pytest.raises(DecodeError):
        decode_vote(raw + b"\x00")
    v = vote(VoteKind.NOTARIZE)
    sig = v.signature
    high = Signature(sig.y_parity ^ 1, sig.r, SECP256K1_N - sig.s).to_bytes()
    fields = [b"\x02", b"\x03", b"\x05", H1, KEY.address, high]
    with pytest.raises(DecodeError, match="high"):
        decode_vote(encode_rlp(fields))
    fields = [b"\x09", b"\x03", b"\x05", H1, KEY.address, sig.to_bytes()]
    with pytest.raises(DecodeError, match="unknown vote kind"):
        decode_vote(encode_rlp(fields))
    fields = [b"\x03", b"\x03", b"\x05", H1, KEY.address, sig.to_bytes()]
    with pytest.raises(DecodeError, match="zero block hash"):
        decode_vote(encode_rlp(fields))


CONFLICTS = [
    (vote(VoteKind.PROPOSE, h=H1), vote(VoteKind.PROPOSE, h=H2), Offence.DOUBLE_PROPOSAL),
    (vote(VoteKind.NOTARIZE, h=H1), vote(VoteKind.NOTARIZE, h=H2), Offence.DOUBLE_NOTARIZE),
    (vote(VoteKind.NULLIFY), vote(VoteKind.FINALIZE), Offence.NULLIFY_AND_FINALIZE),
]


@pytest.mark.parametrize(("a", "b", "offence"), CONFLICTS)
def test_each_equivocation_is_evidence(a: SignedVote, b: SignedVote, offence: Offence) -> None:
    for first, second in ((a, b), (b, a)):
        ev = Evidence(first, second)
        assert compute_offence(first, second) is offence
        assert verify_evidence(ev, CHAIN, GEN) == KEY.address
        assert decode_evidence(encode_evidence(ev)) == ev
    assert evidence_id(Evidence(a, b)) == evidence_id(Evidence(b, a))


def test_evidence_id_names_the_offence_not_the_proof() -> None:
    h3 = b"\x44" * 32
    a, b, c = (vote(VoteKind.NOTARIZE, h=h) for h in (H1, H2, h3))
    assert evidence_id(Evidence(a, b)) == evidence_id(Evidence(a, c)) == evidence_id(Evidence(c, b))
    other_slot = Evidence(vote(VoteKind.NOTARIZE, 6, H1), vote(VoteKind.NOTARIZE, 6, H2))
    other_epoch = Evidence(vote(VoteKind.NOTARIZE, epoch=4), vote(VoteKind.NOTARIZE, h=H2, epoch=4))
    other_kind = Evidence(vote(VoteKind.NULLIFY), vote(VoteKind.FINALIZE))
    other_key = Evidence(
        vote(VoteKind.NOTARIZE, key=OTHER), vote(VoteKind.NOTARIZE, h=H2, key=OTHER)
    )
    proofs = (Evidence(a, b), other_slot, other_epoch, other_kind, other_key)
    assert len({evidence_id(e) for e in proofs}) == 5


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        (vote(VoteKind.NOTARIZE), vote(VoteKind.NOTARIZE), "do not conflict"),
        (vote(VoteKind.NULLIFY, epoch=3), vote(VoteKind.FINALIZE, epoch=4), "do not conflict"),
        (vote(VoteKind.NOTARIZE, h=H1), vote(VoteKind.FINALIZE, h=H2), "do not conflict"),
        (vote(VoteKind.NOTARIZE, 5, H1), vote(VoteKind.NOTARIZE, 6, H2), "do not conflict"),
        (vote(VoteKind.NULLIFY), vote(VoteKind.FINALIZE, key=OTHER), "do not conflict"),
        (vote(VoteKind.FINALIZE, h=H1), vote(VoteKind.FINALIZE, h=H2), "do not conflict"),
        (vote(VoteKind.PROPOSE, h=H1), vote(VoteKind.NOTARIZE, h=H2), "do not conflict"),
    ],
)
def test_non_conflicting_pairs_are_not_evidence(a: SignedVote, b: SignedVote, why: str) -> None:
    with pytest.raises(InvalidEvidence, match=why):
        verify_evidence(Evidence(a, b), CHAIN, GEN)


def test_evidence_with_forged_or_foreign_signatures_is_rejected() -> None:
    a, b = vote(VoteKind.NOTARIZE, h=H1), vote(VoteKind.NOTARIZE, h=H2)
    with pytest.raises(InvalidEvidence, match="not signed by its signer"):
        verify_evidence(Evidence(a, b), CHAIN + 1, GEN)
    # OTHER's signature relabelled as KEY's: an honest validator cannot be framed.
    framed = vote(VoteKind.NOTARIZE, h=H2, key=OTHER)
    framed = SignedVote(
        framed.kind, framed.epoch, framed.slot, framed.block_hash, KEY.address, framed.signature
    )
    with pytest.raises(InvalidEvidence, match="second message"):
        verify_evidence(Evidence(a, framed), CHAIN, GEN)


def test_slash_amount() -> None:
    assert compute_slash_amount(1_000, 500) == 50
    assert compute_slash_amount(999, 1) == 0
    assert compute_slash_amount(10**30, 10_000) == 10**30
    assert compute_slash_amount(7, 0) == 0
    assert compute_slash_amount(3 * 10**21 + 7, 3_333) == (3 * 10**21 + 7) * 3_333 // 10_000
    for bad in ((-1, 5), (5, -1), (5, 10_001)):
        with pytest.raises(ValueError):
            compute_slash_amount(*bad)


@given(st.integers(0, 2**128), st.integers(0, 10_000))
def test_slash_amount_never_exceeds_stake(stake: int, bps: int) -> None:
    amount = compute_slash_amount(stake, bps)
    assert 0 <= amount <= stake
    assert amount * 10_000 <= stake * bps < (amount + 1) * 10_000
