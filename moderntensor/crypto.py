"""Ethereum's cryptography: keccak256, secp256k1 keys, EIP-55 addresses, low-s signatures.

Layer 1 of the package: everything else hashes and signs through here, so the fast backends
(safe-pysha3 for keccak, libsecp256k1 through coincurve) are chosen once, in one place.
"""

from __future__ import annotations

import secrets

import attrs
import coincurve
import sha3

__all__ = [
    "SECP256K1_HALF_N",
    "SECP256K1_N",
    "InvalidSignature",
    "PrivateKey",
    "Signature",
    "address_from_public_key",
    "checksum_address",
    "keccak256",
    "parse_address",
    "recover_address",
    "recover_public_key",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2

_keccak = sha3.keccak_256


def keccak256(data: bytes) -> bytes:
    """Ethereum's keccak256 (the pre-NIST padding), not hashlib's sha3_256."""
    digest: bytes = _keccak(data).digest()
    return digest


class InvalidSignature(ValueError):
    """A signature that cannot be valid: r or s out of range, high s, bad recovery id."""


@attrs.frozen(slots=True)
class Signature:
    """A recoverable secp256k1 signature; ``y_parity`` is the recovery id (0 or 1)."""

    y_parity: int
    r: int
    s: int

    def to_bytes(self) -> bytes:
        """65 bytes ``r || s || y_parity``, libsecp256k1's recoverable format."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([self.y_parity])

    @classmethod
    def from_bytes(cls, raw: bytes) -> Signature:
        """Parse 65 bytes ``r || s || y_parity``.

        Raises:
            InvalidSignature: wrong length or a value out of range.
        """
        if len(raw) != 65:
            raise InvalidSignature(f"signature must be 65 bytes, got {len(raw)}")
        sig = cls(raw[64], int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"))
        check_signature_values(sig.y_parity, sig.r, sig.s)
        return sig


def check_signature_values(y_parity: int, r: int, s: int) -> None:
    """Reject what Ethereum rejects: r, s outside [1, n), s above n/2 (EIP-2), parity not 0/1.

    Raises:
        InvalidSignature: naming the offending value.
    """
    if y_parity not in (0, 1):
        raise InvalidSignature(f"recovery id must be 0 or 1, got {y_parity}")
    if not 0 < r < SECP256K1_N:
        raise InvalidSignature("signature r out of range")
    if not 0 < s < SECP256K1_N:
        raise InvalidSignature("signature s out of range")
    if s > SECP256K1_HALF_N:
        raise InvalidSignature("signature s is high (EIP-2 requires s <= n/2)")


def address_from_public_key(public_key: coincurve.PublicKey) -> bytes:
    """The 20-byte address: the last 20 bytes of keccak256 of the 64-byte uncompressed key."""
    return keccak256(public_key.format(compressed=False)[1:])[12:]


def recover_public_key(digest: bytes, sig: Signature) -> coincurve.PublicKey:
    """Recover the signer's public key of a 32-byte digest.

    Raises:
        InvalidSignature: the values are out of range or no key recovers from them.
    """
    check_signature_values(sig.y_parity, sig.r, sig.s)
    try:
        return coincurve.PublicKey.from_signature_and_message(sig.to_bytes(), digest, hasher=None)
    except Exception as exc:  # coincurve raises a bare Exception on a failed recovery
        raise InvalidSignature(f"no public key recovers from this signature: {exc}") from None


def recover_address(digest: bytes, sig: Signature) -> bytes:
    """Recover the signer's 20-byte address of a 32-byte digest.

    Raises:
        InvalidSignature: as :func:`recover_public_key`.
    """
    return address_from_public_key(recover_public_key(digest, sig))


class PrivateKey:
    """A secp256k1 private key with the derived address cached."""

    __slots__ = ("_key", "address", "public_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError(f"private key must be 32 bytes, got {len(secret)}")
        value = int.from_bytes(secret, "big")
        if not 0 < value < SECP256K1_N:
            raise ValueError("private key out of range for secp256k1")
        self._key = coincurve.PrivateKey(secret)
        self.public_key: coincurve.PublicKey = self._key.public_key
        self.address: bytes = address_from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh key from the operating system's CSPRNG."""
        while True:
            secret = secrets.token_bytes(32)
            if 0 < int.from_bytes(secret, "big") < SECP256K1_N:
                return cls(secret)

    @classmethod
    def from_hex(cls, text: str) -> PrivateKey:
        """Parse ``0x``-prefixed or bare hex.

        Raises:
            ValueError: not 32 bytes of hex, or out of range.
        """
        body = text[2:] if text.startswith(("0x", "0X")) else text
        try:
            raw = bytes.fromhex(body)
        except ValueError:
            raise ValueError("private key is not hex") from None
        return cls(raw)

    @property
    def secret(self) -> bytes:
        return bytes(self._key.secret)

    @property
    def public_key_bytes(self) -> bytes:
        """The 33-byte compressed public key (the form consensus keys are written in)."""
        return bytes(self.public_key.format(compressed=True))

    def sign(self, digest: bytes) -> Signature:
        """Sign a 32-byte digest (RFC 6979 nonces; libsecp256k1 always returns low s)."""
        raw = self._key.sign_recoverable(digest, hasher=None)
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big")
        return Signature(raw[64], r, s)

    def __repr__(self) -> str:
        return f"PrivateKey(address={checksum_address(self.address)})"


def checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte address."""
    lower = address.hex()
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower)
    )


def parse_address(text: str) -> bytes:
    """Parse a 0x-prefixed 20-byte address; mixed case must be a valid EIP-55 checksum.

    Raises:
        ValueError: naming what is wrong with the text.
    """
    if not isinstance(text, str) or not text.startswith(("0x", "0X")):
        raise ValueError(f"address {text!r} must start with 0x")
    body = text[2:]
    if len(body) != 40:
        raise ValueError(f"address {text!r} must be 20 bytes (40 hex digits)")
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise ValueError(f"address {text!r} is not hex") from None
    if body != body.lower() and body != body.upper() and checksum_address(raw) != "0x" + body:
        raise ValueError(f"address {text!r} has a bad EIP-55 checksum")
    return raw
