"""The direct encodings the block commit uses agree with the generic RLP encoder, and the
codec's direct Rust calls keep ``rlp``'s behaviour at their edges."""

from __future__ import annotations

import pytest
import rlp

from moderntensor.chain.chaindb import _tx_index_value
from moderntensor.codec import DecodeError, decode_rlp, encode_rlp, encode_uint

HASH = bytes(range(32))


@pytest.mark.parametrize(
    "index", [0, 1, 0x7F, 0x80, 0xFF, 0x100, 65_535, 65_536, 2**32, 2**64 - 1, 2**64, 2**100]
)
def test_tx_index_value_is_the_rlp_of_hash_and_index(index: int) -> None:
    assert _tx_index_value(HASH, index) == encode_rlp([HASH, encode_uint(index)])
    assert decode_rlp(_tx_index_value(HASH, index)) == [HASH, encode_uint(index)]


def test_encode_rlp_converts_a_bytearray_and_refuses_other_values() -> None:
    assert encode_rlp(bytearray(b"ab")) == b"\x82ab"  # type: ignore[arg-type]
    assert encode_rlp((b"a", (b"b",))) == encode_rlp([b"a", [b"b"]])
    with pytest.raises(rlp.EncodingError):
        encode_rlp([b"a", 5])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"\x81\x05", "single byte below 0x80"),
        (b"\xc2\x01", "ends before"),
        (b"\x01\x02", "trailing bytes"),
    ],
)
def test_decode_rlp_still_words_backend_errors(raw: bytes, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        decode_rlp(raw)
