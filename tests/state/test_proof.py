"""Merkle proofs: members verify to their value, non-members to None, anything else fails."""

from __future__ import annotations

import rlp
from hypothesis import assume, given
from hypothesis import strategies as st

from moderntensor.crypto import keccak256
from moderntensor.state.proof import InvalidProof, verify_proof
from moderntensor.state.trie import EMPTY_ROOT, HexaryTrie, MemoryNodeStore, SecureTrie
from tests.state.test_trie_model import keys, values

items = st.dictionaries(keys, values, min_size=1, max_size=30)


def _trie(model: dict[bytes, bytes]) -> HexaryTrie:
    trie = HexaryTrie(MemoryNodeStore())
    for key, value in model.items():
        trie.set(key, value)
    return trie


def _rejects(root: bytes, key: bytes, proof: list[bytes]) -> str:
    try:
        verify_proof(root, key, proof)
    except InvalidProof as exc:
        return str(exc)
    raise AssertionError("the proof was accepted")


@given(items)
def test_member_proofs_give_the_value(model: dict[bytes, bytes]) -> None:
    trie = _trie(model)
    root = trie.root_hash
    for key, value in model.items():
        proof = trie.prove(key)
        assert proof[0] and keccak256(proof[0]) == root
        assert verify_proof(root, key, proof) == value


@given(items, keys)
def test_absence_proofs_give_none(model: dict[bytes, bytes], key: bytes) -> None:
    model.pop(key, None)
    assume(model)
    trie = _trie(model)
    assert verify_proof(trie.root_hash, key, trie.prove(key)) is None


@given(items, st.data())
def test_tampered_proofs_are_rejected(model: dict[bytes, bytes], data: st.DataObject) -> None:
    trie = _trie(model)
    root = trie.root_hash
    key = data.draw(st.sampled_from(sorted(model)))
    proof = trie.prove(key)
    index = data.draw(st.integers(0, len(proof) - 1))
    node = bytearray(proof[index])
    position = data.draw(st.integers(0, len(node) - 1))
    node[position] ^= data.draw(st.integers(1, 255))
    tampered = [*proof[:index], bytes(node), *proof[index + 1 :]]
    assert "hash" in _rejects(root, key, tampered)
    if len(proof) > 1:
        assert _rejects(root, key, proof[:-1])  # truncated
    assert "left over" in _rejects(root, key, [*proof, proof[-1]])  # extra item
    assert _rejects(keccak256(root), key, proof)  # another root


@given(items)
def test_a_proof_for_one_key_does_not_prove_another(model: dict[bytes, bytes]) -> None:
    trie = _trie(model)
    root = trie.root_hash
    for key in model:
        for other in model:
            if other == key:
                continue
            try:
                result = verify_proof(root, other, trie.prove(key))
            except InvalidProof:
                continue
            # Only possible when the two paths share every node: then the answer is right.
            assert result == model[other]


def test_empty_trie_proofs() -> None:
    assert verify_proof(EMPTY_ROOT, b"k", []) is None
    assert verify_proof(EMPTY_ROOT, b"k", [b"\x80"]) is None
    assert "empty proof" in _rejects(keccak256(b"x"), b"k", [])
    assert "left over" in _rejects(EMPTY_ROOT, b"k", [b"\x80", b"\x80"])


def test_secure_trie_proofs_use_the_hashed_key() -> None:
    trie = SecureTrie(MemoryNodeStore())
    for i in range(100):
        trie.set(b"addr%d" % i, b"account %d" % i)
    root = trie.root_hash
    assert verify_proof(root, keccak256(b"addr7"), trie.prove(b"addr7")) == b"account 7"
    assert verify_proof(root, keccak256(b"nope"), trie.prove(b"nope")) is None


def test_proof_items_are_checked_for_shape() -> None:
    """Items that hash correctly but are no trie node are rejected with a reason."""
    cases = [
        rlp.encode(b"just a string"),
        rlp.encode([b"a", b"b", b"c"]),
        rlp.encode([b"\x20"] * 18),
        rlp.encode([b"\x20", b""]),  # leaf with an empty value
        rlp.encode([b"\x00", b"\x01" * 32]),  # extension with an empty path
        rlp.encode([b"\x11", [b"\x31", b"x"]]),  # extension pointing at a leaf
        rlp.encode([b"\x20", [b"x" * 40]]),  # inlined node of 32+ bytes
        rlp.encode([b"\x00" * 3] * 16 + [b""]),  # child reference of 3 bytes
        b"\xc3\x80\x80",  # list length disagrees with its content
    ]
    for raw in cases:
        assert _rejects(keccak256(raw), b"\x01", [raw])


def test_deep_nesting_is_rejected_without_recursing() -> None:
    """100,000 nested lists (which crash the native decoder) are refused up front."""
    headers = []
    size = 1  # the innermost empty list, 0xc0
    for _ in range(100_000):
        if size < 56:
            header = bytes((0xC0 + size,))
        else:
            width = (size.bit_length() + 7) // 8
            header = bytes((0xF7 + width,)) + size.to_bytes(width, "big")
        headers.append(header)
        size += len(header)
    raw = b"".join(reversed(headers)) + b"\xc0"
    assert _rejects(keccak256(raw), b"\x01", [raw])


def test_non_bytes_items_are_rejected() -> None:
    assert "not bytes" in _rejects(keccak256(b"x"), b"k", ["x"])  # type: ignore[list-item]
    assert "32 bytes" in _rejects(b"short", b"k", [b"\x80"])
    assert "sequence" in _rejects(EMPTY_ROOT, b"k", 5)  # type: ignore[arg-type]


def _value_or_invalid(root: bytes, key: bytes, proof: list[bytes]) -> None:
    """verify_proof answers a non-empty value, None, or InvalidProof; nothing else."""
    try:
        result = verify_proof(root, key, proof)
    except InvalidProof:
        return
    assert result is None or (isinstance(result, bytes) and result)


rlp_items = st.recursive(
    st.binary(max_size=40), lambda inner: st.lists(inner, max_size=18), max_leaves=40
)


@given(
    st.binary(max_size=32),
    st.booleans(),
    st.binary(max_size=8),
    st.lists(st.binary(max_size=600), min_size=1, max_size=5),
)
def test_verify_is_total_on_arbitrary_bytes(
    root: bytes, root_matches: bool, key: bytes, proof: list[bytes]
) -> None:
    if root_matches:  # get past the hash check so the bytes reach the decoder
        root = keccak256(proof[0])
    _value_or_invalid(root, key, proof)


@given(rlp_items, st.lists(rlp_items, max_size=4), st.binary(max_size=8))
def test_verify_is_total_on_structured_items_that_hash_correctly(
    first: object, rest: list[object], key: bytes
) -> None:
    """The root matches the first item, so the decoder and walker see arbitrary shapes."""
    proof = [rlp.encode(first), *(rlp.encode(r) for r in rest)]
    _value_or_invalid(keccak256(proof[0]), key, proof)
