"""Ethereum's hexary Merkle Patricia trie, byte-exact, built for many updates per block.

How it stays fast (py-trie hashes and stores every node on every update; we do not):

* No encoding or hashing happens in :meth:`HexaryTrie.set` / :meth:`HexaryTrie.delete`.
  An update changes the nodes on the key's path in place when this trie created them and
  has not shared them (each node carries its trie's ``owner`` token), and copies them
  otherwise; either way those nodes lose their cached reference, untouched subtrees keep
  theirs. In-place updates matter: path copying allocated ~6 nodes per update, and the
  allocation plus the garbage collector's work on them cost more than the rest of ``set``.
* :attr:`HexaryTrie.root_hash` encodes and hashes only the nodes without a cached reference,
  each once (a branch splices its changed children into its cached encoding), and keeps the
  hashed encodings; :meth:`HexaryTrie.commit` hands over those still reachable from the
  root, ready for one database batch.
* Nodes read from the store are decoded on first touch and stay in the in-memory graph, so a
  long-lived trie reads each node from disk at most once. The usual shapes (a branch of
  hashes, a leaf, an extension to a hash) are sliced straight out of the stored bytes
  (:func:`node_from_raw`, ~3x faster than generic RLP decoding); a node loaded into a slot
  this trie owns is owned too, so its first update is in place rather than a copy.
* :meth:`HexaryTrie.copy` is O(1) apart from hashing pending changes: both tries then share
  every node, give up ownership of all of them and diverge by copy-on-write (e.g. to
  execute a block that may be discarded).

Encoding rules (Yellow Paper appendix D): leaf ``[hp(path, leaf), value]``, extension
``[hp(path), child]``, branch ``[c0..c15, value]``; a child whose RLP is under 32 bytes is
inlined, otherwise referenced by keccak256; the root hash is keccak256 of the root's RLP
even when it is short. An empty trie's root is :data:`EMPTY_ROOT` and stores nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Self

import rlp

from ..codec import DecodeError
from ..crypto import keccak256
from ._nodes import (
    Branch,
    Child,
    Extension,
    Leaf,
    Node,
    compute_ref,
    encode_node,
    key_to_nibbles,
    node_from_raw,
    node_from_stored,
)
from ._ordered import ordered_trie_root
from ._update import TrieUpdates

__all__ = [
    "EMPTY_ROOT",
    "CorruptTrieNode",
    "HexaryTrie",
    "MemoryNodeStore",
    "MissingTrieNode",
    "NodeReader",
    "SecureTrie",
    "ordered_trie_root",
]

EMPTY_ROOT = keccak256(b"\x80")
"""keccak256(rlp(b'')): the root of the empty trie."""


class MissingTrieNode(Exception):
    """A node the trie references is not in its store (pruned, or the wrong database)."""

    def __init__(self, node_hash: bytes) -> None:
        super().__init__(f"trie node 0x{node_hash.hex()} is missing from the store")
        self.node_hash = node_hash


class CorruptTrieNode(Exception):
    """A node read from the store does not decode as a trie node."""

    def __init__(self, node_hash: bytes, problem: str) -> None:
        super().__init__(f"trie node 0x{node_hash.hex()} is corrupt: {problem}")
        self.node_hash = node_hash
        self.problem = problem


class NodeReader(Protocol):
    """Where a trie reads committed nodes: encoded node by its keccak256."""

    def get_node(self, node_hash: bytes) -> bytes | None: ...


class MemoryNodeStore:
    """A dict-backed :class:`NodeReader` (tests, ordered roots, short-lived tries)."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: Mapping[bytes, bytes] | None = None) -> None:
        self.nodes: dict[bytes, bytes] = dict(nodes) if nodes else {}

    def get_node(self, node_hash: bytes) -> bytes | None:
        return self.nodes.get(node_hash)

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        """Add committed nodes (the dict :meth:`HexaryTrie.commit` returns)."""
        self.nodes.update(nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"trie keys are bytes, got {type(key).__name__}")


class HexaryTrie(TrieUpdates):
    """A mutable view of a trie: reads lazily from ``db``, writes nowhere until committed.

    Args:
        db: where committed nodes are read from (:class:`MemoryNodeStore`, the RocksDB
            ``Database``, or anything with ``get_node``).
        root_hash: the root to start from; :data:`EMPTY_ROOT` for a new trie.
    """

    __slots__ = ("_db", "_pending", "_root", "_root_hash", "_rounds")

    def __init__(self, db: NodeReader, root_hash: bytes = EMPTY_ROOT) -> None:
        if not isinstance(root_hash, bytes) or len(root_hash) != 32:
            raise ValueError("root_hash must be 32 bytes")
        super().__init__()
        self._db = db
        self._root: Child | None = None if root_hash == EMPTY_ROOT else b"\xa0" + root_hash
        self._root_hash: bytes | None = root_hash
        self._pending: dict[bytes, bytes] = {}  # hashed since the last commit: hash -> RLP
        self._rounds = 0  # root computations since the last commit

    # -- keys -----------------------------------------------------------------------------

    def _path(self, key: bytes) -> bytes:
        """The nibble path of ``key`` (overridden by :class:`SecureTrie`)."""
        _check_key(key)
        return key_to_nibbles(key)

    # -- reads ----------------------------------------------------------------------------

    def _resolve(self, ref: bytes, parent_owner: object = None) -> Node:
        """Load and decode the node behind a 33-byte hash reference.

        The new node is this trie's own (changed in place by later updates, not copied) when
        the slot it fills is: ``parent_owner`` is this trie's token (the parent is reachable
        from this trie only) or the slot is the root's.

        Raises:
            MissingTrieNode: the store does not have it.
            CorruptTrieNode: the stored bytes are not a trie node.
        """
        node_hash = ref[1:]
        raw = self._db.get_node(node_hash)
        if raw is None:
            raise MissingTrieNode(node_hash)
        try:
            # A short encoding is only stored for the root; let its ref be recomputed.
            node_ref = ref if len(raw) >= 32 else None
            node = node_from_raw(raw, node_ref)
            if node is None:
                node = node_from_stored(raw, rlp.decode(raw, strict=True), node_ref)
        except DecodeError as exc:
            raise CorruptTrieNode(node_hash, exc.problem) from None
        except Exception as exc:  # the RLP backend's errors: the stored bytes are bad
            raise CorruptTrieNode(node_hash, f"invalid RLP ({exc})") from None
        if parent_owner is self._owner:
            node.owner = parent_owner
        return node

    def _root_node(self) -> Node | None:
        root = self._root
        if isinstance(root, bytes):
            root = self._root = self._resolve(root, self._owner)
        return root

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None.

        Raises:
            MissingTrieNode: a node on the key's path is not in the store.
            CorruptTrieNode: a node on the key's path does not decode.
        """
        path = self._path(key)
        node = self._root_node()
        pos = 0
        end = len(path)
        while node is not None:
            if type(node) is Branch:
                if pos == end:
                    return node.value or None
                children = node.children
                i = path[pos]
                child = children[i]
                if isinstance(child, bytes):
                    child = children[i] = self._resolve(child, node.owner)
                node = child
                pos += 1
            elif type(node) is Leaf:
                if end - pos == len(node.path) and path.endswith(node.path):
                    return node.value
                return None
            else:
                if not path.startswith(node.path, pos):
                    return None
                pos += len(node.path)
                child = node.child
                if isinstance(child, bytes):
                    child = node.child = self._resolve(child, node.owner)
                node = child
        return None

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    # -- writes ---------------------------------------------------------------------------

    def set(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``; an empty value deletes the key (Ethereum's rule).

        Raises:
            MissingTrieNode, CorruptTrieNode: as :meth:`get`.
        """
        if not isinstance(value, bytes):
            raise TypeError(f"trie values are bytes, got {type(value).__name__}")
        if not value:
            self.delete(key)
            return
        path = self._path(key)
        root = self._root_node()
        self._changed = False
        new = self._put(root, path, 0, value)
        if self._changed:
            self._root = new
            self._root_hash = None

    def delete(self, key: bytes) -> None:
        """Remove ``key``; removing an absent key changes nothing.

        Raises:
            MissingTrieNode, CorruptTrieNode: as :meth:`get` (a delete may need to read the
                sibling it merges with).
        """
        path = self._path(key)
        root = self._root_node()
        if root is None:
            return
        new = self._remove(root, path, 0)
        if new is not root:
            self._root = new
            self._root_hash = None

    # -- hashing, commit, proofs ----------------------------------------------------------

    @property
    def root_hash(self) -> bytes:
        """keccak256 of the root node; encodes and hashes the nodes changed since last time."""
        h = self._root_hash
        if h is None:
            self._rounds += 1
            root = self._root
            if root is None:
                h = EMPTY_ROOT
            elif isinstance(root, bytes):
                h = root[1:]
            else:
                ref = root.ref or compute_ref(root, self._pending)
                if len(ref) == 33:
                    h = ref[1:]
                else:  # a short root is still referenced (and stored) by its hash
                    h = keccak256(ref)
                    self._pending[h] = ref
            self._root_hash = h
        return h

    def commit(self) -> dict[bytes, bytes]:
        """The encoded nodes (hash -> RLP) the store needs for the current root.

        These are the nodes hashed since the previous commit that are still reachable: a
        root computed in between and then changed leaves nothing behind. After this the trie
        carries on from the committed root; the caller writes the nodes to its store.
        """
        root_hash = self.root_hash
        pending = self._pending
        self._pending = {}
        rounds, self._rounds = self._rounds, 0
        if rounds <= 1:
            return pending  # one hashing pass reaches only nodes of the current root
        out: dict[bytes, bytes] = {}
        root = self._root
        enc = pending.get(root_hash)
        if enc is None or root is None or isinstance(root, bytes):
            return out
        out[root_hash] = enc
        stack: list[Node] = [root]
        while stack:
            node = stack.pop()
            if type(node) is Branch:
                kids: Sequence[Child | None] = node.children
            elif type(node) is Extension:
                kids = (node.child,)
            else:
                continue
            for child in kids:
                if child is None or isinstance(child, bytes):
                    continue
                ref = child.ref
                if ref is None or len(ref) != 33:
                    continue  # inlined: part of its parent's encoding
                child_hash = ref[1:]
                enc = pending.get(child_hash)
                if enc is not None and child_hash not in out:
                    out[child_hash] = enc
                    stack.append(child)
        return out

    def prove(self, key: bytes) -> list[bytes]:
        """The encoded nodes from the root toward ``key`` (eth_getProof's shape).

        A membership proof ends at the node holding the value; an absence proof ends at the
        node where the key's path leaves the trie. Inlined nodes travel inside their parent.
        An empty trie's proof is empty.

        Raises:
            MissingTrieNode, CorruptTrieNode: as :meth:`get`.
        """
        path = self._path(key)
        self.root_hash  # noqa: B018 -- make every reference on the path known
        node = self._root_node()
        proof: list[bytes] = []
        pos = 0
        first = True
        while node is not None:
            ref = node.ref
            if first or ref is None or len(ref) == 33:
                proof.append(encode_node(node, self._pending))
            first = False
            if type(node) is Branch:
                if pos == len(path):
                    break
                i = path[pos]
                child = node.children[i]
                if isinstance(child, bytes):
                    child = node.children[i] = self._resolve(child, node.owner)
                node = child
                pos += 1
            elif type(node) is Leaf:
                break
            else:
                if not path.startswith(node.path, pos):
                    break
                pos += len(node.path)
                child = node.child
                if isinstance(child, bytes):
                    child = node.child = self._resolve(child, node.owner)
                node = child
        return proof

    def copy(self) -> Self:
        """An independent trie sharing every node (O(1) apart from hashing pending changes).

        Both tries may be changed and committed; each commit returns every node its own root
        needs that it has not committed before. Shared nodes are copied on write by both,
        so the first updates after a copy cost a little more.
        """
        self.root_hash  # noqa: B018 -- shared nodes must be hashed before they are shared
        other = object.__new__(type(self))
        other._db = self._db
        other._root = self._root
        other._root_hash = self._root_hash
        other._pending = dict(self._pending)
        other._rounds = self._rounds
        other._changed = False
        # Every node is shared now: neither trie may change one in place any more.
        other._owner = object()
        self._owner = object()
        return other


_KEY_HASH_GENERATION = 1 << 16
_key_hashes_new: dict[bytes, bytes] = {}
_key_hashes_old: dict[bytes, bytes] = {}


def _hashed_path(key: bytes) -> bytes:
    """Nibbles of keccak256(key), memoized (account and slot keys repeat block after block).

    Two generations of at most 65,536 keys each: when the new one fills up it becomes the
    old one, so recently used keys survive and eviction costs O(1).
    """
    global _key_hashes_new, _key_hashes_old
    path = _key_hashes_new.get(key)
    if path is None:
        path = _key_hashes_old.get(key)
        if path is None:
            _check_key(key)
            path = key_to_nibbles(keccak256(key))
        if len(_key_hashes_new) >= _KEY_HASH_GENERATION:
            _key_hashes_old = _key_hashes_new
            _key_hashes_new = {}
        _key_hashes_new[key] = path
    return path


class SecureTrie(HexaryTrie):
    """The state/storage trie: keys are keccak256-hashed before use (same API)."""

    __slots__ = ()

    def _path(self, key: bytes) -> bytes:
        return _hashed_path(key)
