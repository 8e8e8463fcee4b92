"""Certificates: encoding (total decoder), quorum, membership, chain binding."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain.votes import ZERO_HASH, VoteKind, sign_vote
from moderntensor.codec import DecodeError, encode_rlp
from moderntensor.consensus import (
    Certificate,
    InvalidCertificate,
    SignatureVerifier,
    build_certificate,
    decode_certificate,
    encode_certificate,
    is_quorum,
    verify_certificate,
)
from moderntensor.crypto import keccak256

from .harness import CHAIN_ID, GENESIS_HASH, KEYS, OUTSIDERS, to_set

H = keccak256(b"block")
SET = to_set({k.address: 10 * (i + 1) for i, k in enumerate(KEYS[:4])}, 0, KEYS)
# total 100: a quorum needs > 66.67


def cert_by(indices: list[int], kind: VoteKind = VoteKind.NOTARIZE, slot: int = 1) -> Certificate:
    h = ZERO_HASH if kind is VoteKind.NULLIFY else H
    votes = [sign_vote(KEYS[i], CHAIN_ID, GENESIS_HASH, kind, 0, slot, h) for i in indices]
    return build_certificate(kind, 0, slot, h, votes)


def test_quorum_is_strictly_more_than_two_thirds() -> None:
    assert not is_quorum(2, 3)
    assert is_quorum(3, 4)
    assert not is_quorum(66, 100)
    assert is_quorum(67, 100)
    assert not is_quorum(0, 0)


@pytest.mark.parametrize(
    ("signers", "ok"),
    [([3, 2], True), ([3, 1, 0], True), ([3, 1], False), ([2, 1, 0], False), ([0, 1, 2, 3], True)],
)
def test_quorum_by_stake_not_by_count(signers: list[int], ok: bool) -> None:
    verifier = SignatureVerifier(CHAIN_ID, GENESIS_HASH)
    cert = cert_by(signers)
    if ok:
        assert verify_certificate(cert, SET, verifier) == sum(10 * (i + 1) for i in signers)
    else:
        with pytest.raises(InvalidCertificate, match="not a quorum"):
            verify_certificate(cert, SET, verifier)


def test_foreign_chain_or_signers_are_rejected() -> None:
    verifier = SignatureVerifier(CHAIN_ID, GENESIS_HASH)
    other_chain = SignatureVerifier(CHAIN_ID + 1, GENESIS_HASH)
    with pytest.raises(InvalidCertificate, match="not its own"):
        verify_certificate(cert_by([0, 1, 2, 3]), SET, other_chain)
    votes = [
        sign_vote(k, CHAIN_ID, GENESIS_HASH, VoteKind.FINALIZE, 0, 1, H) for k in OUTSIDERS[:4]
    ]
    with pytest.raises(InvalidCertificate, match="not in the set"):
        verify_certificate(build_certificate(VoteKind.FINALIZE, 0, 1, H, votes), SET, verifier)


def test_a_certificate_counts_only_in_its_own_epoch() -> None:
    """The epoch is in every vote digest: a quorum of epoch 0 is no certificate of epoch 1,
    even with the very same members, and checking it against another epoch's set fails."""
    verifier = SignatureVerifier(CHAIN_ID, GENESIS_HASH)
    cert = cert_by([0, 1, 2, 3])
    moved = Certificate(cert.kind, 1, cert.slot, cert.block_hash, cert.signatures)
    set1 = to_set({k.address: 10 * (i + 1) for i, k in enumerate(KEYS[:4])}, 1, KEYS)
    with pytest.raises(InvalidCertificate, match="not its own"):
        verify_certificate(moved, set1, verifier)
    with pytest.raises(InvalidCertificate, match="checked against epoch 1"):
        verify_certificate(cert, set1, verifier)


def test_signature_moved_to_another_signer_is_rejected() -> None:
    cert = cert_by([2, 3])
    (a, sig_a), (b, sig_b) = cert.signatures
    swapped = Certificate(cert.kind, 0, cert.slot, cert.block_hash, ((a, sig_b), (b, sig_a)))
    with pytest.raises(InvalidCertificate, match="not its own"):
        verify_certificate(swapped, SET, SignatureVerifier(CHAIN_ID, GENESIS_HASH))


def test_shape_rules() -> None:
    cert = cert_by([0, 1, 2])
    with pytest.raises(ValueError, match="ascending"):
        Certificate(cert.kind, 0, 1, H, cert.signatures[::-1])
    with pytest.raises(ValueError, match="ascending"):
        Certificate(cert.kind, 0, 1, H, (cert.signatures[0], cert.signatures[0]))
    with pytest.raises(ValueError, match="PROPOSE"):
        Certificate(VoteKind.PROPOSE, 0, 1, H, cert.signatures)
    with pytest.raises(ValueError, match="zero hash"):
        Certificate(VoteKind.NULLIFY, 0, 1, H, ())
    with pytest.raises(ValueError, match="every vote"):
        build_certificate(VoteKind.FINALIZE, 0, 1, H, cert.votes())


@pytest.mark.parametrize("kind", [VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE])
def test_round_trip(kind: VoteKind) -> None:
    cert = cert_by([0, 2, 3], kind, slot=2**40)
    assert decode_certificate(encode_certificate(cert)) == cert


def test_decoder_rejects_unsorted_and_trailing() -> None:
    cert = cert_by([0, 1, 2])
    raw = encode_certificate(cert)
    with pytest.raises(DecodeError):
        decode_certificate(raw + b"\x80")
    entries = [[s, sig.to_bytes()] for s, sig in cert.signatures[::-1]]
    with pytest.raises(DecodeError, match="ascending"):
        decode_certificate(encode_rlp([b"\x02", b"", b"\x01", H, entries]))


@given(st.binary(max_size=400))
def test_decode_certificate_is_total(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_certificate(raw)


def test_verifier_cache_is_bounded_and_counts_recoveries() -> None:
    verifier = SignatureVerifier(CHAIN_ID, GENESIS_HASH, capacity=2)
    votes = cert_by([0, 1, 2]).votes()
    for v in votes:
        assert verifier.is_authentic(v)
    assert verifier.recoveries == 3
    assert verifier.is_authentic(votes[2])
    assert verifier.recoveries == 3  # cached
    assert verifier.is_authentic(votes[0])
    assert verifier.recoveries == 4  # evicted, recovered again
