"""The ordered roots of a block (transactions, receipts): a trie keyed by ``rlp(index)``,
built bottom-up in one pass from the keys in order (no node objects, nothing stored): a
block's two ordered roots were a tenth of its execution time through :class:`HexaryTrie`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ..codec import encode_rlp, encode_uint
from ..crypto import keccak256
from ._nodes import _encode_string, _wrap_list, encode_compact, key_to_nibbles
from .account import EMPTY_ROOT

__all__ = ["ordered_trie_root"]


def ordered_trie_root(items: Sequence[bytes]) -> bytes:
    """The transactions/receipts root: key ``rlp(index)``, value the item's encoding.

    Built bottom-up from the keys in order, in one pass.
    """
    n = len(items)
    if not n:
        return EMPTY_ROOT
    keys = _index_keys(n)
    # The keys in byte order, without sorting: rlp(1..127) are the bytes 01..7f, rlp(0) is
    # 80, and from 128 on rlp(i) is 81.., 82.., ... by length, then big-endian: numeric order.
    order = itertools.chain(range(1, min(n, 128)), (0,), range(128, n))
    pairs = [(keys[i], items[i]) for i in order]
    root = _build_ordered(pairs, 0, n, 0)
    return keccak256(root)


_INDEX_KEYS_KEPT = 1 << 16
_index_keys_kept: list[bytes] = []


def _index_keys(n: int) -> list[bytes]:
    """``key_to_nibbles(rlp(i))`` for ``i < n`` (at least); the first ``_INDEX_KEYS_KEPT`` are
    kept, as every block's roots use them. Worker threads may call this at once: the kept
    list is only ever replaced by a longer one with the same beginning."""
    global _index_keys_kept
    kept = _index_keys_kept
    if len(kept) >= n:
        return kept
    keys = kept + [key_to_nibbles(encode_rlp(encode_uint(i))) for i in range(len(kept), n)]
    if n <= _INDEX_KEYS_KEPT:
        _index_keys_kept = keys
    return keys


def _ref(encoded: bytes) -> bytes:
    """How a parent refers to a child node: inline under 32 bytes, else its hash."""
    return encoded if len(encoded) < 32 else b"\xa0" + keccak256(encoded)


_LEAF_PATHS_KEPT = 4096
_leaf_paths: dict[bytes, bytes] = {}
"""``rlp(hp(path, leaf))`` by nibble path: a block's leaves have few distinct rest paths."""


def _leaf(path: bytes, value: bytes) -> bytes:
    """The encoded leaf node ``[hp(path, leaf), value]``."""
    encoded_path = _leaf_paths.get(path)
    if encoded_path is None:
        encoded_path = _encode_string(encode_compact(path, True))
        if len(_leaf_paths) >= _LEAF_PATHS_KEPT:
            _leaf_paths.clear()
        _leaf_paths[path] = encoded_path
    return _wrap_list(encoded_path + _encode_string(value))


def _build_ordered(pairs: list[tuple[bytes, bytes]], lo: int, hi: int, depth: int) -> bytes:
    """The encoded node for ``pairs[lo:hi]`` (sorted, distinct paths) below ``depth`` nibbles."""
    first = pairs[lo][0]
    if hi - lo == 1:
        return _leaf(first[depth:], pairs[lo][1])
    last = pairs[hi - 1][0]
    common = depth
    limit = min(len(first), len(last))
    while common < limit and first[common] == last[common]:
        common += 1
    if common > depth:
        child = _build_ordered(pairs, lo, hi, common)
        return _wrap_list(_encode_string(encode_compact(first[depth:common], False)) + _ref(child))
    value = b""
    if len(first) == depth:  # a key ends here: the branch's value
        value = pairs[lo][1]
        lo += 1
    slots = [b"\x80"] * 16
    start = lo
    while start < hi:
        nibble = pairs[start][0][depth]
        end = start + 1
        while end < hi and pairs[end][0][depth] == nibble:
            end += 1
        if end - start == 1:  # a leaf: built here rather than by a call
            key, item = pairs[start]
            slots[nibble] = _ref(_leaf(key[depth + 1 :], item))
        else:
            slots[nibble] = _ref(_build_ordered(pairs, start, end, depth + 1))
        start = end
    return _wrap_list(b"".join(slots) + _encode_string(value))
