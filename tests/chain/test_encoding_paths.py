"""The direct encodings the block commit uses agree with the generic RLP encoder, and the
codec's direct Rust calls keep ``rlp``'s behaviour at their edges."""

from __future__ import annotations

import pytest
import rlp

from moderntensor.chain.chaindb import _tx_index_value
from moderntensor.chain.transactions import decode_transaction
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


@pytest.mark.parametrize("raw", ["c301be00", "c201b9", "c301b901", "c4c301b901"])
def test_decode_rlp_refuses_a_list_ending_in_an_overrunning_string(raw: str) -> None:
    """rusty-rlp alone drops such a string and returns the items before it."""
    with pytest.raises(DecodeError, match="not a sequence of items"):
        decode_rlp(bytes.fromhex(raw))


def test_a_transaction_with_bytes_hidden_after_its_fields_is_refused() -> None:
    """A mutated legacy transaction hypothesis found: 124 payload bytes, of which the nine
    fields span 121 and a string header (0xbe) that overruns the list hides the rest."""
    raw = bytes.fromhex(
        "f87c808a018fc4cd1aac5f9ffffe8252099400000000000000000000000000000000000100008a018fc4"
        "cd1aac5f9fffff8400003000849927d16a96a09c94e1887eca8539e89d1c6a5fc08ce02e69d4212749be"
        "79823400de441a92dfa0166da62535d8a72708885d561688efd44892e4b1da936ee0f886356870b622da"
    )
    with pytest.raises(DecodeError, match="not a sequence of items"):
        decode_transaction(raw)
