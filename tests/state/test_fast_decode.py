"""The fast decoding paths agree with the general ones, byte for byte and error for error.

* ``node_from_raw`` (stored trie nodes straight from their bytes) against ``rlp.decode`` +
  ``node_from_stored``, on every node of random tries (inlined children, branch values, long
  values) and on corrupted copies of them;
* ``decode_account`` / ``encode_account`` against the generic RLP codec;
* tries whose nodes are loaded from a store (and so owned by the loading trie) against
  tries built in memory, including a copy taken after loading.
"""

from __future__ import annotations

from typing import Any

import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from moderntensor.codec import DecodeError, decode_rlp, encode_rlp, encode_uint
from moderntensor.state._nodes import (
    Branch,
    Extension,
    Leaf,
    Node,
    node_from_raw,
    node_from_stored,
)
from moderntensor.state.account import (
    EMPTY_CODE_HASH,
    EMPTY_ROOT,
    Account,
    decode_account,
    encode_account,
)
from moderntensor.state.trie import HexaryTrie, MemoryNodeStore, SecureTrie

# -- trie nodes ---------------------------------------------------------------------------


def _shape(node: Node | bytes | None) -> Any:
    """Everything a decoded node carries, as plain comparable data."""
    if node is None or isinstance(node, bytes):
        return node
    if type(node) is Branch:
        return (
            "branch",
            [_shape(c) for c in node.children],
            node.value,
            node.ref,
            node.payload,
            node.sizes,
            node.dirty,
            node.owner,
        )
    if type(node) is Leaf:
        return ("leaf", node.path, node.value, node.ref, node.owner)
    assert type(node) is Extension
    return ("extension", node.path, _shape(node.child), node.ref, node.owner)


def _general(raw: bytes, ref: bytes | None) -> Any:
    """The general decoder's verdict: the node's shape, or the decode problem."""
    try:
        item = rlp.decode(raw, strict=True)
    except Exception:
        return "invalid rlp"
    try:
        return _shape(node_from_stored(raw, item, ref))
    except DecodeError as exc:
        return ("error", exc.problem)


def _fast(raw: bytes, ref: bytes | None) -> Any:
    """The fast decoder's verdict: a shape, an error, or None (left to the general path)."""
    try:
        node = node_from_raw(raw, ref)
    except DecodeError as exc:
        return ("error", exc.problem)
    return None if node is None else _shape(node)


def _agree(raw: bytes) -> bool:
    """The fast path either declines or says exactly what the general path says; returns
    whether it took the node."""
    ref = b"\xa0" + b"\x11" * 32 if len(raw) >= 32 else None
    fast = _fast(raw, ref)
    if fast is not None:
        assert fast == _general(raw, ref), raw.hex()
    return fast is not None


def _stored_nodes(pairs: dict[bytes, bytes], secure: bool) -> list[bytes]:
    store = MemoryNodeStore()
    trie = (SecureTrie if secure else HexaryTrie)(store)
    for key, value in pairs.items():
        trie.set(key, value)
    store.put_nodes(trie.commit())
    return list(store.nodes.values())


keys = st.binary(min_size=0, max_size=6)
values = st.one_of(st.binary(min_size=1, max_size=8), st.binary(min_size=50, max_size=300))


@settings(max_examples=150)
@given(st.dictionaries(keys, values, max_size=40), st.booleans())
def test_fast_node_decoding_matches_general(pairs: dict[bytes, bytes], secure: bool) -> None:
    for raw in _stored_nodes(pairs, secure):
        _agree(raw)


def test_fast_path_takes_the_usual_state_trie_nodes() -> None:
    pairs = {i.to_bytes(20, "big"): b"\x01" * 70 for i in range(300)}
    nodes = _stored_nodes(pairs, secure=True)
    assert all(_agree(raw) for raw in nodes)
    kinds = {type(node_from_raw(raw, None)) for raw in nodes}
    assert {Branch, Leaf} <= kinds
    # An extension to a hashed branch: two keys sharing their first 20 nibbles.
    ext = _stored_nodes({b"\x00" * 10 + b"\x01": b"\x02" * 40, b"\x00" * 11: b"\x03" * 40}, False)
    assert any(type(node_from_raw(raw, None)) is Extension for raw in ext)
    # A leaf with a value over 255 bytes (a three-byte string header).
    long_leaf = _stored_nodes({b"\x01": b"\x05" * 300}, False)
    assert all(_agree(raw) for raw in long_leaf)


def test_fast_path_declines_inlined_children_and_branch_values() -> None:
    inline = _stored_nodes({bytes((k,)): b"\x02" * 8 for k in range(1, 5)}, False)
    valued = _stored_nodes({b"\x01": b"\x05" * 40, b"\x01\x02": b"\x06" * 40}, False)
    declined = 0
    for raw in inline + valued:
        general = _general(raw, None)
        if general[0] == "branch" and (general[2] or any(isinstance(c, tuple) for c in general[1])):
            assert node_from_raw(raw, None) is None
            declined += 1
    assert declined == 2


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A stored node with bytes changed, cut off or appended."""
    pairs = draw(st.dictionaries(keys, values, min_size=1, max_size=12))
    raw = bytearray(draw(st.sampled_from(_stored_nodes(pairs, draw(st.booleans())))))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "cut", "append"]))
        if kind == "set" and raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        elif kind == "cut" and raw:
            del raw[draw(st.integers(0, len(raw) - 1)) :]
        else:
            raw += draw(st.binary(min_size=1, max_size=3))
    return bytes(raw)


@settings(max_examples=400)
@given(corrupted())
def test_fast_node_decoding_of_corrupt_bytes_matches_general(raw: bytes) -> None:
    _agree(raw)


def test_fast_path_rejects_non_canonical_framing() -> None:
    good = _stored_nodes({b"\x01" * 20: b"\x07" * 60, b"\x02" * 20: b"\x08" * 60}, False)
    leaf = next(raw for raw in good if type(node_from_raw(raw, None)) is Leaf)
    assert leaf[0] == 0xF8
    payload = leaf[2:]
    for raw in (
        b"\xf9\x00" + bytes((len(payload),)) + payload,  # a long length that fits in one byte
        b"\xf8" + bytes((len(payload) + 1,)) + payload,  # header longer than the payload
        leaf + b"\x00",  # trailing byte
        b"\xc4\x82\x20\x01\x81\x05",  # a one-byte value < 0x80 in a string header
        b"\xc3\x20\xb8\x05",  # a long string header for a short value
    ):
        assert node_from_raw(raw, None) is None
        assert _general(raw, None) in ("invalid rlp",) or _general(raw, None)[0] == "error"


# -- loaded nodes are owned by the loading trie --------------------------------------------


@settings(max_examples=60)
@given(
    st.dictionaries(keys, values, min_size=1, max_size=30),
    st.dictionaries(keys, values, max_size=10),
    st.booleans(),
)
def test_loaded_trie_updates_match_fresh_build(
    base: dict[bytes, bytes], changes: dict[bytes, bytes], copy_first: bool
) -> None:
    """Read every key (loading and owning the nodes), optionally copy, then update: both the
    updated trie and the copy must equal tries built in memory from the same contents."""
    store = MemoryNodeStore()
    built = HexaryTrie(store)
    for key, value in base.items():
        built.set(key, value)
    store.put_nodes(built.commit())
    loaded = HexaryTrie(store, built.root_hash)
    for key, value in base.items():
        assert loaded.get(key) == value
    other = loaded.copy() if copy_first else None
    for key, value in changes.items():
        loaded.set(key, value)
    expected = HexaryTrie(MemoryNodeStore())
    for key, value in {**base, **changes}.items():
        expected.set(key, value)
    assert loaded.root_hash == expected.root_hash
    if other is not None:
        assert other.root_hash == built.root_hash
        assert all(other.get(key) == value for key, value in base.items())
    store.put_nodes(loaded.commit())
    reopened = HexaryTrie(store, expected.root_hash)
    assert all(reopened.get(key) == value for key, value in {**base, **changes}.items())


# -- accounts -------------------------------------------------------------------------------


def _generic_encode(account: Account) -> bytes:
    return encode_rlp(
        [
            encode_uint(account.nonce),
            encode_uint(account.balance),
            account.storage_root,
            account.code_hash,
        ]
    )


hashes = st.one_of(
    st.just(EMPTY_ROOT), st.just(EMPTY_CODE_HASH), st.binary(min_size=32, max_size=32)
)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**256 - 1), hashes, hashes)
def test_account_codec_matches_generic(nonce: int, balance: int, root: bytes, code: bytes) -> None:
    account = Account(nonce, balance, root, code)
    raw = encode_account(account)
    assert raw == _generic_encode(account)
    assert decode_account(raw) == account


def test_account_encoding_out_of_range_falls_back() -> None:
    wide = Account(2**64, 2**256)
    assert encode_account(wide) == _generic_encode(wide)
    try:
        decode_account(encode_account(wide))
    except DecodeError:
        pass
    else:
        raise AssertionError("a nonce over 64 bits must not decode")


def _generic_decode(raw: bytes) -> Any:
    from moderntensor.codec import expect_fixed, expect_list, expect_uint

    try:
        fields = expect_list(decode_rlp(raw, "account"), "account", 4)
        return Account(
            expect_uint(fields[0], "account.nonce", 64),
            expect_uint(fields[1], "account.balance"),
            expect_fixed(fields[2], "account.storage_root", 32),
            expect_fixed(fields[3], "account.code_hash", 32),
        )
    except DecodeError as exc:
        return ("error", exc.problem)


def _decode(raw: bytes) -> Any:
    try:
        return decode_account(raw)
    except DecodeError as exc:
        return ("error", exc.problem)


@st.composite
def corrupt_accounts(draw: st.DrawFn) -> bytes:
    account = Account(
        draw(st.integers(0, 2**64 - 1)),
        draw(st.integers(0, 2**256 - 1)),
        draw(hashes),
        draw(hashes),
    )
    raw = bytearray(encode_account(account))
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.booleans()):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        else:
            raw.insert(draw(st.integers(0, len(raw))), draw(st.integers(0, 255)))
    return bytes(raw)


@settings(max_examples=400)
@given(corrupt_accounts())
def test_account_decoding_of_corrupt_bytes_matches_generic(raw: bytes) -> None:
    assert _decode(raw) == _generic_decode(raw)


def test_account_decoding_rejects_non_canonical_integers() -> None:
    tail = b"\xa0" + EMPTY_ROOT + b"\xa0" + EMPTY_CODE_HASH
    for fields in (b"\x00\x80", b"\x81\x05\x80", b"\x82\x00\x01\x80", b"\x80\x00", b"\x80\x81\x7f"):
        payload = fields + tail
        raw = b"\xf8" + bytes((len(payload),)) + payload
        verdict = _decode(raw)
        assert verdict == _generic_decode(raw)
        assert verdict[0] == "error"
