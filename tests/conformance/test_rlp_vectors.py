"""ethereum/tests RLP vectors and the well-known constants, through moderntensor.codec."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moderntensor.codec import (
    MAX_RLP_DEPTH,
    DecodeError,
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
)
from moderntensor.crypto import keccak256
from tests.conftest import VECTORS

RLP = VECTORS / "rlp"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RLP / name).read_text())
    return data


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith(("0x", "0X")) else text)


def _to_item(value: Any) -> RLPItem:
    """The README's ``in`` convention: "#123" is a big integer, other strings are one byte per
    character, JSON ints are unsigned integers, lists are RLP lists."""
    if isinstance(value, list):
        return [_to_item(v) for v in value]
    if isinstance(value, int):
        return encode_uint(value)
    if value.startswith("#"):
        return encode_uint(int(value[1:]))
    return value.encode("latin-1")


VALID = _load("rlptest.json")
INVALID = _load("invalidRLPTest.json")
RANDOM = _load("RandomRLPTests_example.json")


def test_vector_counts() -> None:
    assert (len(VALID), len(INVALID), len(RANDOM)) == (28, 26, 1)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_vector_encodes_and_decodes(name: str) -> None:
    case = VALID[name]
    item = _to_item(case["in"])
    out = _unhex(case["out"])
    assert encode_rlp(item) == out
    assert decode_rlp(out) == item


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_vector_is_rejected(name: str) -> None:
    assert INVALID[name]["in"] == "INVALID"
    with pytest.raises(DecodeError):
        decode_rlp(_unhex(INVALID[name]["out"]), "vector")


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_vector_round_trips(name: str) -> None:
    out = _unhex(RANDOM[name]["out"])
    assert encode_rlp(decode_rlp(out)) == out


def test_invalid_vector_errors_name_the_object() -> None:
    with pytest.raises(DecodeError) as info:
        decode_rlp(_unhex(INVALID["bytesShouldBeSingleByte00"]["out"]), "header")
    assert info.value.what == "header"


def test_constants() -> None:
    constants = json.loads((VECTORS / "constants" / "constants.json").read_text())
    assert keccak256(encode_rlp(b"")).hex() == constants["EMPTY_TRIE_ROOT"]["value"][2:]
    assert keccak256(encode_rlp([])).hex() == constants["EMPTY_LIST_RLP_HASH"]["value"][2:]
    assert keccak256(b"").hex() == constants["EMPTY_CODE_HASH"]["value"][2:]
    assert encode_rlp(b"") == _unhex(constants["RLP_EMPTY_STRING"]["value"])
    assert encode_rlp([]) == _unhex(constants["RLP_EMPTY_LIST"]["value"])


def _nest(levels: int) -> bytes:
    """``levels`` lists, each the only item of the one outside it."""
    item = b"\xc0"
    for _ in range(levels - 1):
        n = len(item)
        if n < 56:
            item = bytes([0xC0 + n]) + item
        else:
            width = (n.bit_length() + 7) // 8
            item = bytes([0xF7 + width]) + n.to_bytes(width, "big") + item
    return item


def test_nesting_up_to_the_limit_decodes() -> None:
    item = decode_rlp(_nest(MAX_RLP_DEPTH))
    depth = 0
    while isinstance(item, list) and item:
        item, depth = item[0], depth + 1
    assert depth == MAX_RLP_DEPTH - 1 and item == []


@pytest.mark.parametrize("levels", [MAX_RLP_DEPTH + 1, 30_000, 100_000])
def test_deep_nesting_is_a_decode_error_not_a_crash(levels: int) -> None:
    """rusty-rlp recurses natively: ~30,000 levels (98 KB) used to kill the process (SIGSEGV)."""
    with pytest.raises(DecodeError, match="nested deeper"):
        decode_rlp(_nest(levels), "deep")


def test_depth_check_ignores_list_bytes_inside_strings() -> None:
    """Many 0xc0+ bytes inside a byte string are payload, not nesting."""
    blob = b"\xc1" * 5000
    assert decode_rlp(encode_rlp([blob, [blob]])) == [blob, [blob]]
