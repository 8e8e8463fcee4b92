"""recover_address's direct libsecp256k1 calls agree with coincurve's PublicKey path, on
valid signatures and on the ones that cannot recover."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.crypto import (
    SECP256K1_HALF_N,
    InvalidSignature,
    PrivateKey,
    Signature,
    address_from_public_key,
    keccak256,
    recover_address,
    recover_public_key,
)


def reference(digest: bytes, sig: Signature) -> bytes | str:
    try:
        return address_from_public_key(recover_public_key(digest, sig))
    except InvalidSignature as exc:
        return str(exc)


def direct(digest: bytes, sig: Signature) -> bytes | str:
    try:
        return recover_address(digest, sig)
    except InvalidSignature as exc:
        return str(exc)


@given(secret=st.integers(1, 2**255), message=st.binary(max_size=64))
def test_recovers_the_signer(secret: int, message: bytes) -> None:
    key = PrivateKey(secret.to_bytes(32, "big"))
    digest = keccak256(message)
    sig = key.sign(digest)
    assert recover_address(digest, sig) == key.address == reference(digest, sig)
    other = Signature(1 - sig.y_parity, sig.r, sig.s)  # the other candidate key, or none
    assert direct(digest, other) == reference(digest, other)
    assert direct(digest, other) != key.address


@given(
    y_parity=st.integers(0, 1),
    r=st.integers(1, 2**256 - 1),
    s=st.integers(1, SECP256K1_HALF_N + 5),
    digest=st.binary(min_size=32, max_size=32),
)
def test_arbitrary_values_give_the_same_address_or_error(
    y_parity: int, r: int, s: int, digest: bytes
) -> None:
    sig = Signature(y_parity, r, s)
    assert direct(digest, sig) == reference(digest, sig)


def test_no_point_with_that_x_is_an_invalid_signature() -> None:
    sig = Signature(0, 5, 1)  # x = 5 is not on secp256k1 (5**3 + 7 = 132 is no square mod p)
    with pytest.raises(InvalidSignature, match="no public key recovers"):
        recover_address(bytes(32), sig)
    assert direct(bytes(32), sig) == reference(bytes(32), sig)


def test_a_short_digest_is_refused() -> None:
    key = PrivateKey(bytes(31) + b"\x07")
    sig = key.sign(bytes(32))
    assert direct(bytes(31), sig) == reference(bytes(31), sig)
