"""Certificates: a quorum of one epoch's validators signing the same (kind, epoch, slot, hash).

Also the signature cache: a vote reaches a node many times (directly, relayed, inside
certificates); recovering its signer costs ~50 µs, looking it up far less.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import attrs

from moderntensor.chain.votes import ZERO_HASH, SignedVote, VoteKind, vote_digest
from moderntensor.codec import (
    DecodeError,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_fixed,
    expect_list,
    expect_uint,
)
from moderntensor.crypto import InvalidSignature, Signature, recover_address

from ._errors import InvalidCertificate
from ._quorum import is_quorum
from ._schedule import ValidatorSet

__all__ = [
    "MAX_CERTIFICATE_SIGNATURES",
    "MAX_CERTIFICATE_SIZE",
    "Certificate",
    "SignatureVerifier",
    "build_certificate",
    "decode_certificate",
    "encode_certificate",
    "verify_certificate",
]

MAX_CERTIFICATE_SIGNATURES = 1024
MAX_CERTIFICATE_SIZE = 128 * MAX_CERTIFICATE_SIGNATURES
_CERT_KINDS = (VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE)


@attrs.frozen(slots=True)
class Certificate:
    """Signatures of distinct validators (strictly ascending ids) on one (kind, epoch, slot,
    hash).

    NOTARIZE and FINALIZE certify a block hash; NULLIFY uses the zero hash.
    """

    kind: VoteKind = attrs.field(converter=VoteKind)
    epoch: int
    slot: int
    block_hash: bytes
    signatures: tuple[tuple[bytes, Signature], ...]

    def __attrs_post_init__(self) -> None:
        if self.kind not in _CERT_KINDS:
            raise ValueError(f"no certificate of kind {self.kind.name}")
        if self.kind is VoteKind.NULLIFY and self.block_hash != ZERO_HASH:
            raise ValueError("a nullification certifies the zero hash")
        if len(self.block_hash) != 32 or not 0 <= self.slot < 2**64:
            raise ValueError("certificate slot or hash out of range")
        if not 0 <= self.epoch < 2**64:
            raise ValueError("certificate epoch out of range")
        ids = [signer for signer, _ in self.signatures]
        if any(len(i) != 20 for i in ids):
            raise ValueError("signer ids must be 20 bytes")
        if any(a >= b for a, b in itertools.pairwise(ids)):
            raise ValueError("signers must be strictly ascending (distinct)")
        if len(ids) > MAX_CERTIFICATE_SIGNATURES:
            raise ValueError(f"more than {MAX_CERTIFICATE_SIGNATURES} signatures")

    def votes(self) -> list[SignedVote]:
        """The signed votes the certificate is made of."""
        return [
            SignedVote(self.kind, self.epoch, self.slot, self.block_hash, signer, sig)
            for signer, sig in self.signatures
        ]


def build_certificate(
    kind: VoteKind, epoch: int, slot: int, block_hash: bytes, votes: Iterable[SignedVote]
) -> Certificate:
    """Assemble a certificate from votes on (kind, epoch, slot, hash); one signature per signer.

    Raises:
        ValueError: a vote on something else.
    """
    by_signer: dict[bytes, Signature] = {}
    want = (kind, epoch, slot, block_hash)
    for vote in votes:
        if (vote.kind, vote.epoch, vote.slot, vote.block_hash) != want:
            raise ValueError("every vote of a certificate must be on its kind, round and hash")
        by_signer.setdefault(vote.signer, vote.signature)
    return Certificate(kind, epoch, slot, block_hash, tuple(sorted(by_signer.items())))


def encode_certificate(cert: Certificate) -> bytes:
    """RLP ``[kind, epoch, slot, hash, [[signer, sig65], ...]]``."""
    return encode_rlp(
        [
            encode_uint(int(cert.kind)),
            encode_uint(cert.epoch),
            encode_uint(cert.slot),
            cert.block_hash,
            [[signer, sig.to_bytes()] for signer, sig in cert.signatures],
        ]
    )


def decode_certificate(raw: bytes) -> Certificate:
    """Decode :func:`encode_certificate` output. Total: a certificate or DecodeError.

    Raises:
        DecodeError: malformed, non-canonical, oversize, unsorted signers, trailing bytes.
    """
    fields = expect_list(decode_rlp(raw, "certificate", MAX_CERTIFICATE_SIZE), "certificate", 5)
    kind = expect_uint(fields[0], "certificate.kind", 8)
    epoch = expect_uint(fields[1], "certificate.epoch", 64)
    slot = expect_uint(fields[2], "certificate.slot", 64)
    block_hash = expect_fixed(fields[3], "certificate.block_hash", 32)
    entries = expect_list(fields[4], "certificate.signatures")
    sigs: list[tuple[bytes, Signature]] = []
    for i, entry in enumerate(entries):
        pair = expect_list(entry, f"certificate.signatures[{i}]", 2)
        signer = expect_fixed(pair[0], f"certificate.signatures[{i}].signer", 20)
        raw_sig = expect_fixed(pair[1], f"certificate.signatures[{i}].signature", 65)
        try:
            sigs.append((signer, Signature.from_bytes(raw_sig)))
        except InvalidSignature as exc:
            raise DecodeError(f"certificate.signatures[{i}].signature", str(exc)) from None
    try:
        return Certificate(kind, epoch, slot, block_hash, tuple(sigs))  # type: ignore[arg-type]
    except ValueError as exc:
        raise DecodeError("certificate", str(exc)) from None


class SignatureVerifier:
    """Recovers vote signers for one chain, caching results (bounded, oldest evicted first).

    Sharing one verifier between cores in one process is safe: the cache is keyed by the
    signed content and the signature, so a hit returns exactly what a recovery would.
    """

    __slots__ = ("_cache", "capacity", "chain_id", "genesis_hash", "recoveries")

    def __init__(self, chain_id: int, genesis_hash: bytes, capacity: int = 1 << 16) -> None:
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.capacity = capacity
        self.recoveries = 0
        self._cache: dict[tuple[int, int, int, bytes, bytes], bytes | None] = {}

    def signer_of(self, vote: SignedVote) -> bytes | None:
        """The id that signed the vote's content, or None if nothing recovers."""
        key = (int(vote.kind), vote.epoch, vote.slot, vote.block_hash, vote.signature.to_bytes())
        try:
            return self._cache[key]
        except KeyError:
            pass
        self.recoveries += 1
        digest = vote_digest(
            self.chain_id, self.genesis_hash, vote.kind, vote.epoch, vote.slot, vote.block_hash
        )
        try:
            signer: bytes | None = recover_address(digest, vote.signature)
        except InvalidSignature:
            signer = None
        if len(self._cache) >= self.capacity:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = signer
        return signer

    def is_authentic(self, vote: SignedVote) -> bool:
        """True when the signature is ``vote.signer``'s on this chain."""
        return self.signer_of(vote) == vote.signer

    def remember(self, vote: SignedVote) -> None:
        """Record a vote we signed ourselves as authentic (no recovery needed)."""
        key = (int(vote.kind), vote.epoch, vote.slot, vote.block_hash, vote.signature.to_bytes())
        if len(self._cache) >= self.capacity:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = vote.signer


def verify_certificate(
    cert: Certificate, validator_set: ValidatorSet, verifier: SignatureVerifier
) -> int:
    """Check a certificate against its epoch's set; return the stake that signed it.

    The set must be the one of ``cert.epoch`` (checked); a certificate from another chain,
    another epoch or a foreign set fails on membership, epoch or a signature.

    Raises:
        InvalidCertificate: the set is another epoch's, a signer outside the set, a signature
            that is not its signer's, or signers holding no more than 2/3 of the set's stake.
    """
    if validator_set.epoch != cert.epoch:
        raise InvalidCertificate(
            f"certificate of epoch {cert.epoch} checked against epoch {validator_set.epoch}",
            cert,
        )
    signed = 0
    for vote in cert.votes():
        stake = validator_set.stake_of(vote.signer)
        if stake == 0:
            raise InvalidCertificate(
                f"signer 0x{vote.signer.hex()} is not in the set of epoch {validator_set.epoch}",
                cert,
            )
        if not verifier.is_authentic(vote):
            raise InvalidCertificate(
                f"signature of 0x{vote.signer.hex()} is not its own on this chain", cert
            )
        signed += stake
    if not is_quorum(signed, validator_set.total_stake):
        raise InvalidCertificate(
            f"signers hold {signed} of {validator_set.total_stake} stake: not a quorum", cert
        )
    return signed
