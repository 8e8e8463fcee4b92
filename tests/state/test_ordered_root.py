"""The one-pass ordered root agrees with a trie built key by key (keys rlp(index))."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from moderntensor.codec import encode_rlp, encode_uint
from moderntensor.state import _ordered as trie
from moderntensor.state.trie import EMPTY_ROOT, HexaryTrie, MemoryNodeStore, ordered_trie_root


def reference_root(items: list[bytes]) -> bytes:
    trie = HexaryTrie(MemoryNodeStore())
    for index, item in enumerate(items):
        trie.set(encode_rlp(encode_uint(index)), item)
    return trie.root_hash


@given(st.lists(st.binary(min_size=1, max_size=80), max_size=300))
def test_ordered_root_matches_the_trie(items: list[bytes]) -> None:
    assert ordered_trie_root(items) == reference_root(items)


def test_sizes_around_rlp_length_boundaries() -> None:
    assert ordered_trie_root([]) == EMPTY_ROOT
    for n in (1, 2, 127, 128, 129, 255, 256, 257, 1100):
        items = [bytes([i % 251 + 1]) * (1 + i % 40) for i in range(n)]
        assert ordered_trie_root(items) == reference_root(items), n


def test_sizes_past_the_kept_index_keys() -> None:
    """Roots of more items than the kept keys, then fewer again (the kept list unchanged)."""
    n = trie._INDEX_KEYS_KEPT + 3
    items = [i.to_bytes(3, "big") for i in range(n)]
    assert ordered_trie_root(items) == reference_root(items)
    assert len(trie._index_keys_kept) <= trie._INDEX_KEYS_KEPT
    assert ordered_trie_root(items[:300]) == reference_root(items[:300])
