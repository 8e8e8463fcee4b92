"""Trie behaviour beyond the model: errors, lazy loading, copies, commits, ordered roots."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.codec import encode_rlp, encode_uint
from moderntensor.crypto import keccak256
from moderntensor.state import trie as trie_module
from moderntensor.state.trie import (
    EMPTY_ROOT,
    CorruptTrieNode,
    HexaryTrie,
    MemoryNodeStore,
    MissingTrieNode,
    SecureTrie,
    ordered_trie_root,
)
from tests.state.test_trie_model import reference_root

PUPPY = {b"do": b"verb", b"horse": b"stallion", b"doge": b"coin", b"dog": b"puppy"}


def _filled(store: MemoryNodeStore, items: dict[bytes, bytes]) -> HexaryTrie:
    trie = HexaryTrie(store)
    for key, value in items.items():
        trie.set(key, value)
    return trie


class CountingStore(MemoryNodeStore):
    """Counts reads, to show nodes are loaded once and only when touched."""

    __slots__ = ("reads",)

    def __init__(self, nodes: dict[bytes, bytes]) -> None:
        super().__init__(nodes)
        self.reads = 0

    def get_node(self, node_hash: bytes) -> bytes | None:
        self.reads += 1
        return super().get_node(node_hash)


def test_empty_trie() -> None:
    trie = HexaryTrie(MemoryNodeStore())
    assert trie.root_hash == EMPTY_ROOT
    assert trie.get(b"x") is None
    assert trie.commit() == {}
    assert trie.prove(b"x") == []
    trie.delete(b"x")
    assert trie.root_hash == EMPTY_ROOT


def test_set_and_delete_everything_returns_to_empty_root() -> None:
    trie = _filled(MemoryNodeStore(), PUPPY)
    assert trie.root_hash != EMPTY_ROOT
    for key in PUPPY:
        trie.delete(key)
    assert trie.root_hash == EMPTY_ROOT


def test_key_may_be_empty_and_prefix_of_others() -> None:
    items = {b"": b"root value", b"\x00": b"a", b"\x00\x01": b"b"}
    trie = _filled(MemoryNodeStore(), items)
    assert trie.root_hash == reference_root(items)
    assert trie.get(b"") == b"root value"
    trie.delete(b"\x00")
    assert trie.get(b"\x00") is None
    assert trie.get(b"\x00\x01") == b"b"
    assert trie.root_hash == reference_root({b"": b"root value", b"\x00\x01": b"b"})


def test_bad_types_are_rejected() -> None:
    trie = HexaryTrie(MemoryNodeStore())
    with pytest.raises(TypeError):
        trie.set("key", b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        trie.set(b"key", "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SecureTrie(MemoryNodeStore()).get("key")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        HexaryTrie(MemoryNodeStore(), b"\x00" * 31)


def test_commit_then_reopen_reads_lazily_and_once() -> None:
    items = {bytes([i, j]): bytes([i]) * 40 for i in range(16) for j in range(16)}
    first = _filled(MemoryNodeStore(), items)
    root = first.root_hash
    nodes = first.commit()
    assert keccak256(nodes[root]) == root
    assert all(keccak256(enc) == h for h, enc in nodes.items())
    store = CountingStore(nodes)
    reopened = HexaryTrie(store, root)
    assert store.reads == 0  # nothing is read before it is needed
    assert reopened.get(b"\x05\x06") == b"\x05" * 40
    first_reads = store.reads
    assert 0 < first_reads < len(nodes)
    assert reopened.get(b"\x05\x06") == b"\x05" * 40
    assert store.reads == first_reads  # decoded nodes stay in memory
    for key, value in items.items():
        assert reopened.get(key) == value
    assert reopened.root_hash == root


def test_reopened_trie_keeps_updating_like_a_fresh_one() -> None:
    items = {keccak256(bytes([i])): bytes([i]) * (i % 50 + 1) for i in range(200)}
    store = MemoryNodeStore()
    trie = _filled(store, items)
    root = trie.root_hash
    store.put_nodes(trie.commit())
    reopened = HexaryTrie(store, root)
    for i in range(0, 200, 3):
        key = keccak256(bytes([i]))
        reopened.delete(key)
        items.pop(key)
    for i in range(200, 260):
        key = keccak256(bytes([i % 256, 1]))
        reopened.set(key, b"new")
        items[key] = b"new"
    assert reopened.root_hash == reference_root(items)
    store.put_nodes(reopened.commit())
    again = HexaryTrie(store, reopened.root_hash)
    for key, value in items.items():
        assert again.get(key) == value


def test_short_root_is_stored_and_reloaded_by_hash() -> None:
    trie = _filled(MemoryNodeStore(), {b"a": b"b"})
    root = trie.root_hash
    nodes = trie.commit()
    assert len(nodes[root]) < 32
    reopened = HexaryTrie(MemoryNodeStore(nodes), root)
    assert reopened.get(b"a") == b"b"
    reopened.set(b"c", b"d")
    assert reopened.root_hash == reference_root({b"a": b"b", b"c": b"d"})


def test_missing_node_names_its_hash() -> None:
    trie = _filled(MemoryNodeStore(), PUPPY)
    root = trie.root_hash
    nodes = trie.commit()
    with pytest.raises(MissingTrieNode) as info:
        HexaryTrie(MemoryNodeStore(), root).get(b"dog")
    assert info.value.node_hash == root
    assert root.hex() in str(info.value)
    # A missing inner node surfaces too (and the trie stays usable after the error).
    inner = next(h for h in nodes if h != root)
    partial = dict(nodes)
    del partial[inner]
    broken = HexaryTrie(MemoryNodeStore(partial), root)
    with pytest.raises(MissingTrieNode) as info:
        for key in PUPPY:
            broken.get(key)
    assert info.value.node_hash == inner


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x80", b"\xc0", b"\xc2\x80\x80", b"\xff" * 40, encode_rlp([b"\x30", []])],
)
def test_corrupt_node_is_reported(garbage: bytes) -> None:
    root = keccak256(b"anything")
    trie = HexaryTrie(MemoryNodeStore({root: garbage}), root)
    with pytest.raises(CorruptTrieNode) as info:
        trie.get(b"key")
    assert info.value.node_hash == root


def test_noop_updates_keep_the_cached_root() -> None:
    trie = _filled(MemoryNodeStore(), PUPPY)
    root = trie.root_hash
    trie.commit()
    trie.set(b"dog", b"puppy")  # same value
    trie.delete(b"cat")  # absent
    assert trie.commit() == {}  # nothing was re-hashed
    assert trie.root_hash == root


def test_copy_is_independent() -> None:
    original = _filled(MemoryNodeStore(), PUPPY)
    fork = original.copy()
    fork.set(b"dog", b"wolf")
    fork.delete(b"horse")
    original.set(b"cat", b"meow")
    assert fork.get(b"dog") == b"wolf"
    assert original.get(b"dog") == b"puppy"
    assert original.get(b"horse") == b"stallion"
    assert fork.get(b"cat") is None
    fork_model = {**PUPPY, b"dog": b"wolf"}
    del fork_model[b"horse"]
    assert fork.root_hash == reference_root(fork_model)
    assert original.root_hash == reference_root({**PUPPY, b"cat": b"meow"})
    assert type(SecureTrie(MemoryNodeStore()).copy()) is SecureTrie


def test_copy_on_write_never_leaks_into_the_other_trie() -> None:
    """Each kind of in-place edit after a copy: branch value, branch child, leaf, extension."""
    items = {b"\x01": b"branch value", b"\x01\x02": b"a" * 40, b"\x01\x03": b"b" * 40}
    original = _filled(MemoryNodeStore(), items)
    fork = original.copy()
    original.set(b"\x01", b"changed")  # the branch under the extension: value
    original.set(b"\x01\x04", b"c" * 40)  # then a child of that same (now owned) branch
    original.set(b"\x01\x02", b"d" * 40)  # a leaf
    original.set(b"\x01\x03\x05", b"e")  # a leaf split under the branch
    original.set(b"\x02", b"f")  # splits the root extension
    assert fork.root_hash == reference_root(items)
    for key in [*items, b"\x01\x04", b"\x01\x03\x05", b"\x02"]:
        assert fork.get(key) == items.get(key)
    fork.set(b"\x01\x02", b"g")
    assert original.get(b"\x01\x02") == b"d" * 40


def test_updates_after_commit_edit_in_place_without_touching_the_store() -> None:
    store = MemoryNodeStore()
    trie = _filled(store, PUPPY)
    old_root = trie.root_hash
    store.put_nodes(trie.commit())
    snapshot = dict(store.nodes)
    trie.set(b"dog", b"wolf")
    trie.set(b"doge", b"shiba")
    store.put_nodes(trie.commit())
    assert all(store.nodes[h] == enc for h, enc in snapshot.items())
    old = HexaryTrie(store, old_root)
    for key, value in PUPPY.items():
        assert old.get(key) == value


def test_each_commit_returns_every_node_its_root_needs() -> None:
    """Committing a fork and the original into separate stores: each store is complete."""
    base = _filled(MemoryNodeStore(), PUPPY)
    fork = base.copy()
    fork.set(b"doggo", b"x" * 40)
    base.set(b"horses", b"y" * 40)
    for trie in (base, fork):
        root = trie.root_hash
        alone = HexaryTrie(MemoryNodeStore(trie.commit()), root)
        for key in [*PUPPY, b"doggo", b"horses"]:
            assert alone.get(key) == trie.get(key)


def test_secure_trie_hashes_keys_and_survives_cache_turnover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trie_module, "_KEY_HASH_GENERATION", 8)
    secure = SecureTrie(MemoryNodeStore())
    plain = HexaryTrie(MemoryNodeStore())
    for i in range(50):
        key = b"account %d" % i
        secure.set(key, b"v%d" % i)
        plain.set(keccak256(key), b"v%d" % i)
    for i in range(50):
        assert secure.get(b"account %d" % i) == b"v%d" % i
    assert secure.root_hash == plain.root_hash


@given(st.lists(st.binary(min_size=1, max_size=120), max_size=40))
def test_ordered_trie_root_is_the_index_keyed_trie(items: list[bytes]) -> None:
    model = {encode_rlp(encode_uint(i)): item for i, item in enumerate(items)}
    assert ordered_trie_root(items) == reference_root(model)


def test_ordered_trie_root_of_nothing_is_empty_root() -> None:
    assert ordered_trie_root([]) == EMPTY_ROOT


def test_nodes_are_ethereum_encodings() -> None:
    """The committed root node of the 'puppy' trie decodes to the textbook extension."""
    trie = _filled(MemoryNodeStore(), PUPPY)
    nodes = trie.commit()
    root_node = rlp.decode(nodes[trie.root_hash])
    assert root_node[0] == b"\x16"  # extension over nibble 6 (hex-prefix, odd length)
    assert len(root_node[1]) == 32
