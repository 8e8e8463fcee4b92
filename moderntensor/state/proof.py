"""Merkle proofs against a state root: check what a peer or an RPC client was told.

A proof is the list of encoded trie nodes on a key's path, root first, as
:meth:`~moderntensor.state.trie.HexaryTrie.prove` and ``eth_getProof`` (``accountProof``,
``storageProof[i].proof``) give it. Nodes under 32 bytes travel inside their parent, so
every list item is a node referenced by hash (or the root). For a secure (state or storage)
trie, pass ``keccak256(key)`` as the key.

:func:`verify_proof` is total: any root, key and list of byte strings give a value, None
(the proof shows the key is absent) or :class:`InvalidProof`; never another exception.
Before decoding, each item's top-level shape is checked (at most 17 items; an inlined node
is a list under 32 bytes), which also bounds nesting, so no input can exhaust the decoder's
stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import rlp

from ..codec import DecodeError
from ..crypto import keccak256
from ._nodes import Branch, Leaf, Node, key_to_nibbles, node_from_item
from .trie import EMPTY_ROOT

__all__ = ["InvalidProof", "verify_proof"]


class InvalidProof(ValueError):
    """The proof does not connect to the root, or an item is not a trie node (says which)."""


def _check_shape(raw: bytes, index: int) -> None:
    """Reject what no trie node looks like before handing bytes to the RLP decoder.

    Raises:
        InvalidProof: not one RLP list of at most 17 items whose list items are < 32 bytes.
    """
    size = len(raw)
    if size == 0:
        raise InvalidProof(f"proof item {index} is empty")
    head = raw[0]
    if head < 0xC0:
        raise InvalidProof(f"proof item {index} is not an RLP list")
    if head <= 0xF7:
        pos, end = 1, 1 + head - 0xC0
    else:
        width = head - 0xF7
        pos = 1 + width
        end = pos + int.from_bytes(raw[1:pos], "big")
    if end != size:
        raise InvalidProof(f"proof item {index}: list length does not match its {size} bytes")
    count = 0
    while pos < end:
        count += 1
        if count > 17:
            raise InvalidProof(f"proof item {index} has more than 17 items")
        b0 = raw[pos]
        if b0 < 0x80:
            pos += 1
        elif b0 < 0xB8:
            pos += 1 + b0 - 0x80
        elif b0 < 0xC0:
            width = b0 - 0xB7
            pos += 1 + width + int.from_bytes(raw[pos + 1 : pos + 1 + width], "big")
        elif b0 < 0xE0:  # a list of 1 + 0..31 bytes: an inlined node
            pos += 1 + b0 - 0xC0
        else:
            raise InvalidProof(f"proof item {index} inlines a node of 32 bytes or more")
    if pos != end:
        raise InvalidProof(f"proof item {index}: items overrun the list")


def _load(proof: Sequence[bytes], index: int, expected: bytes, what: str) -> Node | None:
    """Decode proof item ``index``, which must hash to ``expected``."""
    if index >= len(proof):
        raise InvalidProof(f"proof ends before the node 0x{expected.hex()} that {what} needs")
    raw = proof[index]
    if not isinstance(raw, bytes):
        raise InvalidProof(f"proof item {index} is {type(raw).__name__}, not bytes")
    if keccak256(raw) != expected:
        raise InvalidProof(f"proof item {index} does not hash to the reference in {what}")
    if index == 0 and raw == b"\x80":
        return None  # the empty trie's root node
    _check_shape(raw, index)
    try:
        return node_from_item(rlp.decode(raw, strict=True), None)
    except DecodeError as exc:
        raise InvalidProof(f"proof item {index} is not a trie node: {exc.problem}") from None
    except Exception as exc:  # the RLP backend's own errors
        raise InvalidProof(f"proof item {index} is not valid RLP: {exc}") from None


def verify_proof(root_hash: bytes, key: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The value under ``key`` in the trie with root ``root_hash``, as ``proof`` shows it.

    Args:
        root_hash: the 32-byte trie root (e.g. a header's ``stateRoot``).
        key: the trie key (``keccak256(address)`` or ``keccak256(slot)`` for secure tries).
        proof: encoded nodes from the root along the key's path.

    Returns:
        The value, or None when the proof shows that the key is not in the trie.

    Raises:
        InvalidProof: a wrong-size root, an item that does not hash to its parent's
            reference, an item that is not a trie node, a proof that stops early or has
            items left over.
        TypeError: ``key`` is not bytes (a caller bug, not a bad proof).
    """
    if not isinstance(key, bytes):
        raise TypeError(f"key must be bytes, got {type(key).__name__}")
    if not isinstance(root_hash, bytes) or len(root_hash) != 32:
        raise InvalidProof("root hash must be 32 bytes")
    try:
        items = list(proof)
    except TypeError:
        raise InvalidProof("proof is not a sequence of byte strings") from None
    if not items:
        if root_hash == EMPTY_ROOT:
            return None
        raise InvalidProof("empty proof for a non-empty root")
    path = key_to_nibbles(key)
    node = _load(items, 0, root_hash, "the root")
    index = 1
    pos = 0
    value: bytes | None = None
    while node is not None:
        if type(node) is Branch:
            if pos == len(path):
                value = node.value or None
                break
            child = node.children[path[pos]]
            pos += 1
            from_extension = False
        elif type(node) is Leaf:
            if len(path) - pos == len(node.path) and path.endswith(node.path):
                value = node.value
            break
        else:
            if not path.startswith(node.path, pos):
                break
            pos += len(node.path)
            child = node.child
            from_extension = True
        if isinstance(child, bytes):
            node = _load(items, index, child[1:], "its parent")
            index += 1
            if from_extension and type(node) is not Branch:
                raise InvalidProof(f"proof item {index - 1} follows an extension but is no branch")
        else:
            node = child
    if index != len(items):
        raise InvalidProof(f"{len(items) - index} proof item(s) left over after the key's path")
    return value
