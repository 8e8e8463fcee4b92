"""The update algorithms of the trie: insert and delete on the in-memory node graph.

Kept apart from :mod:`.trie` (reads, hashing, commits, proofs) because this is where the
structural cases live: splitting a leaf or an extension around a new branch on insert,
and collapsing a branch left with one item (merging paths) on delete.

Ownership: nodes carrying the trie's ``_owner`` token were created by this trie and never
shared, so they are changed in place (dropping their cached ref and marking the changed
branch slot dirty); any other node is copied first. Deletes always copy (they are rare).
"""

from __future__ import annotations

from typing import cast

from ._nodes import Branch, Child, Extension, Leaf, Node

__all__ = ["TrieUpdates"]


def _common_prefix_length(a: bytes, b: bytes, start: int) -> int:
    """Length of the common prefix of ``a`` and ``b[start:]``."""
    n = min(len(a), len(b) - start)
    i = 0
    while i < n and a[i] == b[start + i]:
        i += 1
    return i


class TrieUpdates:
    """Mixin of :class:`~moderntensor.state.trie.HexaryTrie`: ``_put`` and ``_remove``."""

    __slots__ = ("_changed", "_owner")

    def __init__(self) -> None:
        self._owner = object()  # the token of nodes this trie may change in place
        self._changed = False  # set by _put when an update changed something

    def _resolve(self, ref: bytes, parent_owner: object = None) -> Node:
        raise NotImplementedError  # provided by HexaryTrie

    def _put(self, node: Node | None, path: bytes, pos: int, value: bytes) -> Node:
        """The subtree ``node`` (at nibble ``pos`` of ``path``) with the value set.

        Nodes this trie owns are changed in place (their ref dropped); others are copied.
        Sets ``self._changed`` when anything changed.
        """
        owner = self._owner
        if node is None:
            self._changed = True
            return Leaf(path[pos:], value, None, owner)
        if type(node) is Branch:
            if pos == len(path):
                if node.value == value:
                    return node
                self._changed = True
                if node.owner is owner:
                    node.value = value
                    node.ref = None
                    return node
                return Branch(
                    node.children.copy(), value, None, node.payload, node.sizes, node.dirty, owner
                )
            i = path[pos]
            children = node.children
            child = children[i]
            if isinstance(child, bytes):
                child = children[i] = self._resolve(child, node.owner)
            new = self._put(child, path, pos + 1, value)
            if not self._changed:
                return node
            if node.owner is owner:
                children[i] = new
                node.ref = None
                node.dirty |= 1 << i
                return node
            children = children.copy()
            children[i] = new
            return Branch(
                children, node.value, None, node.payload, node.sizes, node.dirty | (1 << i), owner
            )
        if type(node) is Leaf:
            lpath = node.path
            rest = len(path) - pos
            if rest == len(lpath) and path.endswith(lpath):
                if node.value == value:
                    return node
                self._changed = True
                if node.owner is owner:
                    node.value = value
                    node.ref = None
                    return node
                return Leaf(lpath, value, None, owner)
            self._changed = True
            n = _common_prefix_length(lpath, path, pos)
            slots: list[Child | None] = [None] * 16
            branch_value = b""
            if n == len(lpath):
                branch_value = node.value
            else:
                slots[lpath[n]] = Leaf(lpath[n + 1 :], node.value, None, owner)
            if n == rest:
                branch_value = value
            else:
                slots[path[pos + n]] = Leaf(path[pos + n + 1 :], value, None, owner)
            branch = Branch(slots, branch_value, None, None, b"", 0, owner)
            return Extension(lpath[:n], branch, None, owner) if n else branch
        epath = node.path
        n = _common_prefix_length(epath, path, pos)
        if n == len(epath):
            child = node.child
            if isinstance(child, bytes):
                child = node.child = self._resolve(child, node.owner)
            new = self._put(child, path, pos + n, value)
            if not self._changed:
                return node
            if node.owner is owner:
                node.child = new
                node.ref = None
                return node
            return Extension(epath, new, None, owner)
        # The key leaves the extension after n nibbles: split it around a new branch.
        self._changed = True
        slots = [None] * 16
        tail = epath[n + 1 :]
        slots[epath[n]] = Extension(tail, node.child, None, owner) if tail else node.child
        branch_value = b""
        if pos + n == len(path):
            branch_value = value
        else:
            slots[path[pos + n]] = Leaf(path[pos + n + 1 :], value, None, owner)
        branch = Branch(slots, branch_value, None, None, b"", 0, owner)
        return Extension(epath[:n], branch, None, owner) if n else branch

    def _remove(self, node: Node, path: bytes, pos: int) -> Node | None:
        """The subtree ``node`` without the key; the same object if the key is absent.

        Copies the nodes on the path (deletes are rare enough not to need in-place edits).
        """
        if type(node) is Leaf:
            lpath = node.path
            if len(path) - pos == len(lpath) and path.endswith(lpath):
                return None
            return node
        if type(node) is Extension:
            epath = node.path
            if not path.startswith(epath, pos):
                return node
            child = node.child
            if isinstance(child, bytes):
                child = node.child = self._resolve(child, node.owner)
            new = self._remove(child, path, pos + len(epath))
            if new is child:
                return node
            return self._prefix(epath, new)
        if pos == len(path):
            if not node.value:
                return node
            return self._normalize(node, node.children.copy(), b"", 0)
        i = path[pos]
        sub = node.children[i]
        if sub is None:
            return node
        if isinstance(sub, bytes):
            sub = node.children[i] = self._resolve(sub, node.owner)
        new = self._remove(sub, path, pos + 1)
        if new is sub:
            return node
        children = node.children.copy()
        children[i] = new
        return self._normalize(node, children, node.value, 1 << i)

    def _prefix(self, prefix: bytes, node: Node | None) -> Node | None:
        """``node`` placed under ``prefix``: merges paths so no extension points at a leaf."""
        if node is None:
            return None
        if type(node) is Leaf:
            return Leaf(prefix + node.path, node.value, None, self._owner)
        if type(node) is Extension:
            return Extension(prefix + node.path, node.child, None, self._owner)
        return Extension(prefix, node, None, self._owner)

    def _normalize(
        self, old: Branch, children: list[Child | None], value: bytes, changed: int
    ) -> Node | None:
        """``old`` with new ``children`` (a fresh list) and ``value``, collapsed if it has
        fewer than two items left; ``changed`` marks the replaced slot for the payload cache.
        """
        count = 16 - children.count(None)
        if count >= 2 or (count == 1 and value):
            return Branch(
                children, value, None, old.payload, old.sizes, old.dirty | changed, self._owner
            )
        if count == 0:
            return Leaf(b"", value, None, self._owner) if value else None
        i = next(j for j, c in enumerate(children) if c is not None)
        only = cast(Child, children[i])
        if isinstance(only, bytes):
            only = self._resolve(only)
        return self._prefix(bytes((i,)), only)
