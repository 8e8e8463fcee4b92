"""Trie nodes in memory: three slotted classes, hex-prefix paths and hand-rolled RLP.

Why hand-rolled: a node's encoding is a concatenation of its children's references (each
either ``0xa0 || hash`` or the child's own short encoding), so building it from cached byte
strings is a ``b"".join`` with a list header; going through a generic encoder would re-walk
nested Python lists for every dirty node of every block.

Representation (shared by the trie and the proof verifier):

* a path is ``bytes`` with one nibble (0..15) per byte;
* a child slot holds ``None`` (empty), a node object, or ``bytes`` — an unresolved hash
  reference, always the 33-byte RLP item ``0xa0 || keccak256(child)``, so it can be copied
  into the parent's encoding as is and resolved with ``ref[1:]`` on first touch;
* ``ref`` caches the node's reference as its parent embeds it: ``0xa0 || hash`` when the
  encoding is 32 bytes or longer, else the encoding itself (nodes under 32 bytes are inlined).
  ``None`` means "not computed yet";
* ``owner`` is the token of the one trie allowed to change the node in place (it created
  or loaded the node and has not shared it since); every other node is immutable, except for
  replacing an unresolved child reference by the equal decoded node (a memo).
"""

from __future__ import annotations

from typing import TypeAlias, final

from ..codec import DecodeError, RLPItem
from ..crypto import keccak256

__all__ = [
    "Branch",
    "Child",
    "Extension",
    "Leaf",
    "Node",
    "compute_ref",
    "decode_compact",
    "encode_compact",
    "encode_node",
    "key_to_nibbles",
    "node_from_item",
    "node_from_raw",
    "node_from_stored",
]

_HEX_DIGITS = b"0123456789abcdef"
_TO_NIBBLES = bytes.maketrans(_HEX_DIGITS, bytes(range(16)))
_FROM_NIBBLES = bytes.maketrans(bytes(range(16)), _HEX_DIGITS)
_MAX_EMBED_DEPTH = 64  # nodes inlined in nodes; a real trie needs far fewer (each is < 32 bytes)


def key_to_nibbles(key: bytes) -> bytes:
    """``b"\\x12\\xab"`` -> ``b"\\x01\\x02\\x0a\\x0b"`` (C-speed: hex, then a byte table)."""
    return key.hex().encode().translate(_TO_NIBBLES)


def encode_compact(path: bytes, leaf: bool) -> bytes:
    """Hex-prefix encoding (Yellow Paper appendix C): flag nibble, pad nibble if even length."""
    digits = path.translate(_FROM_NIBBLES).decode()
    if len(path) & 1:
        return bytes.fromhex(("3" if leaf else "1") + digits)
    return bytes.fromhex(("20" if leaf else "00") + digits)


def decode_compact(raw: bytes) -> tuple[bytes, bool]:
    """Inverse of :func:`encode_compact`: ``(nibbles, is_leaf)``.

    Raises:
        DecodeError: empty, an unknown flag, or a non-zero pad nibble.
    """
    if not raw:
        raise DecodeError("trie node", "empty hex-prefix path")
    nibbles = key_to_nibbles(raw)
    flag = nibbles[0]
    if flag > 3:
        raise DecodeError("trie node", f"hex-prefix flag {flag} is not 0..3")
    if flag & 1:
        return nibbles[1:], flag == 3
    if nibbles[1] != 0:
        raise DecodeError("trie node", "hex-prefix pad nibble is not zero")
    return nibbles[2:], flag == 2


@final
class Leaf:
    """The rest of a key's path and its (non-empty) value."""

    __slots__ = ("owner", "path", "ref", "value")

    def __init__(
        self, path: bytes, value: bytes, ref: bytes | None = None, owner: object = None
    ) -> None:
        self.path = path
        self.value = value
        self.ref = ref
        self.owner = owner


@final
class Extension:
    """A shared path segment (non-empty) leading to one branch."""

    __slots__ = ("child", "owner", "path", "ref")

    def __init__(
        self, path: bytes, child: Child, ref: bytes | None = None, owner: object = None
    ) -> None:
        self.path = path
        self.child = child
        self.ref = ref
        self.owner = owner


@final
class Branch:
    """Sixteen child slots (one per nibble) and the value of a key ending here (b'' if none).

    Encoding cache: ``payload`` is the concatenation of the sixteen child references,
    ``sizes`` their lengths (one byte each), ``dirty`` a bitmask of the slots replaced since
    the payload was built. Re-encoding a branch after one child changed then splices that
    child's reference in, instead of visiting all sixteen children again.
    """

    __slots__ = ("children", "dirty", "owner", "payload", "ref", "sizes", "value")

    def __init__(
        self,
        children: list[Child | None],
        value: bytes,
        ref: bytes | None = None,
        payload: bytes | None = None,
        sizes: bytes = b"",
        dirty: int = 0,
        owner: object = None,
    ) -> None:
        self.children = children
        self.value = value
        self.ref = ref
        self.payload = payload
        self.sizes = sizes
        self.dirty = dirty
        self.owner = owner


Node: TypeAlias = Leaf | Extension | Branch
Child: TypeAlias = Node | bytes  # bytes: an unresolved 33-byte reference 0xa0 || hash


# RLP headers for lengths below 256, precomputed (most nodes and values are that short).
_STRING_HEADER = [bytes((0x80 + n,)) for n in range(56)] + [
    bytes((0xB8, n)) for n in range(56, 256)
]
_LIST_HEADER = [bytes((0xC0 + n,)) for n in range(56)] + [bytes((0xF8, n)) for n in range(56, 256)]


def _encode_string(raw: bytes) -> bytes:
    """RLP of a byte string."""
    n = len(raw)
    if n < 256:
        if n == 1 and raw[0] < 0x80:
            return raw
        return _STRING_HEADER[n] + raw
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xB7 + len(size),)) + size + raw


def _wrap_list(payload: bytes) -> bytes:
    """RLP list header + payload (the payload is already a concatenation of RLP items)."""
    n = len(payload)
    if n < 256:
        return _LIST_HEADER[n] + payload
    if n < 65536:
        return b"\xf9" + n.to_bytes(2, "big") + payload
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0xF7 + len(size),)) + size + payload


_MAX_SPLICES = 6  # beyond this many changed children, rebuilding the payload is as cheap
_ALL_HASHES = bytes([33] * 16)  # the sizes of a branch whose sixteen children are hashed
_SIXTEEN_HASHES = b"\xa0" * 16  # every 33rd byte of such a branch's payload, from the first


def _branch_payload(node: Branch, sink: dict[bytes, bytes]) -> bytes:
    """The concatenated references of a branch's sixteen slots, from the cache if possible."""
    payload = node.payload
    dirty = node.dirty
    children = node.children
    if payload is not None and dirty and dirty.bit_count() <= _MAX_SPLICES:
        sizes = node.sizes
        while dirty:
            low = dirty & -dirty
            dirty ^= low
            i = low.bit_length() - 1
            c = children[i]
            r = (
                b"\x80"
                if c is None
                else c
                if isinstance(c, bytes)
                else (c.ref or compute_ref(c, sink))
            )
            if sizes is _ALL_HASHES:
                start = 33 * i
                old = 33
            else:
                start = sum(sizes[:i])
                old = sizes[i]
            payload = payload[:start] + r + payload[start + old :]
            if len(r) != old:
                sizes = sizes[:i] + bytes((len(r),)) + sizes[i + 1 :]
                if sizes == _ALL_HASHES:
                    sizes = _ALL_HASHES
        node.payload = payload
        node.sizes = sizes
        node.dirty = 0
        return payload
    if payload is None or dirty:
        parts = [
            b"\x80" if c is None else c if isinstance(c, bytes) else (c.ref or compute_ref(c, sink))
            for c in children
        ]
        payload = node.payload = b"".join(parts)
        sizes = bytes(map(len, parts))
        node.sizes = _ALL_HASHES if sizes == _ALL_HASHES else sizes
        node.dirty = 0
    return payload


def encode_node(node: Node, sink: dict[bytes, bytes]) -> bytes:
    """The node's RLP; children without a cached ref are hashed on the way (into ``sink``)."""
    if type(node) is Branch:
        payload = _branch_payload(node, sink)
        value = node.value
        if value:
            return _wrap_list(payload + _encode_string(value))
        size = len(payload) + 1  # + 0x80, the empty value; at most 16 * 33 + 1 bytes
        header = _LIST_HEADER[size] if size < 256 else b"\xf9" + size.to_bytes(2, "big")
        return b"".join((header, payload, b"\x80"))
    if type(node) is Leaf:
        return _wrap_list(
            _encode_string(encode_compact(node.path, True)) + _encode_string(node.value)
        )
    child = node.child
    child_ref = child if isinstance(child, bytes) else (child.ref or compute_ref(child, sink))
    return _wrap_list(_encode_string(encode_compact(node.path, False)) + child_ref)


def compute_ref(node: Node, sink: dict[bytes, bytes]) -> bytes:
    """Encode (and, if 32 bytes or longer, hash) a node; cache and return its reference.

    Every hashed encoding is recorded in ``sink`` (hash -> RLP) so a commit can store it.
    """
    enc = encode_node(node, sink)
    if len(enc) < 32:
        node.ref = enc
        return enc
    digest = keccak256(enc)
    sink[digest] = enc
    ref = b"\xa0" + digest
    node.ref = ref
    return ref


def node_from_stored(raw: bytes, item: RLPItem, ref: bytes | None) -> Node:
    """:func:`node_from_item` for a node read from a store, whose encoding ``raw`` we have.

    A branch whose children are all hashes or empty gets its payload cache straight from
    ``raw`` (the references sit there contiguously), so re-encoding it after one child
    changes is a splice from the start.

    Raises:
        DecodeError: as :func:`node_from_item`.
    """
    node = node_from_item(item, ref)
    if type(node) is Branch and isinstance(item, list):
        sizes = bytes([len(c) + 1 if type(c) is bytes else 0 for c in item[:16]])
        if 0 not in sizes:  # no inlined child
            start = 1 if raw[0] <= 0xF7 else raw[0] - 0xF6
            value = node.value
            end = len(raw) - (len(_encode_string(value)) if value else 1)
            node.payload = raw[start:end]
            node.sizes = _ALL_HASHES if sizes == _ALL_HASHES else sizes
    return node


def node_from_raw(raw: bytes, ref: bytes | None) -> Node | None:
    """The fast path of decoding a stored node straight from its bytes, or None.

    Handles the shapes a state trie stores almost exclusively: a branch whose sixteen
    slots are empty (``0x80``) or hashes (``0xa0 || hash``) and whose value is empty, an
    extension to a hashed branch, and a leaf. Child references are sliced out of ``raw``
    as they are (no re-encoding) and the branch's payload cache is the slice holding them.
    Anything else — inlined children, a branch value, non-canonical or malformed RLP —
    gives None, and the caller decodes it the general way (which also reports the error);
    so whenever this returns a node, it equals what :func:`node_from_stored` builds.

    Raises:
        DecodeError: a well-framed leaf or extension with a bad hex-prefix path.
    """
    n = len(raw)
    if n < 3:
        return None
    b = raw[0]
    if b < 0xC0:
        return None
    if b <= 0xF7:
        pos = 1
        size = b - 0xC0
    elif b == 0xF8:
        pos = 2
        size = raw[1]
        if size < 56:
            return None
    elif b == 0xF9:
        pos = 3
        size = (raw[1] << 8) | raw[2]
        if size < 256:
            return None
    else:
        return None
    if pos + size != n:
        return None
    start = pos
    if size == 529 and raw[pos : n - 1 : 33] == _SIXTEEN_HASHES and raw[-1] == 0x80:
        full: list[Child | None] = [raw[i : i + 33] for i in range(pos, n - 1, 33)]
        return Branch(full, b"", ref, raw[pos:-1], _ALL_HASHES)
    # A branch: sixteen empty-or-hash slots, then the empty value as the last byte.
    children: list[Child | None] = []
    append = children.append
    for _ in range(16):
        if pos >= n:
            break
        b = raw[pos]
        if b == 0xA0:
            append(raw[pos : pos + 33])
            pos += 33
        elif b == 0x80:
            append(None)
            pos += 1
        else:
            break
    else:
        if pos + 1 == n and raw[pos] == 0x80:
            payload = raw[start:pos]
            if len(payload) == 528:
                sizes = _ALL_HASHES
            else:
                sizes = bytes([1 if c is None else 33 for c in children])
            return Branch(children, b"", ref, payload, sizes)
    # A leaf or an extension: a short hex-prefix path, then a value or a hashed child.
    pos = start
    b = raw[pos]
    if b < 0x80:
        compact = raw[pos : pos + 1]
        pos += 1
    elif 0x81 < b <= 0xB7:
        pos += 1 + b - 0x80
        compact = raw[start + 1 : pos]
    else:  # an empty path is invalid, a 1-byte string must be canonical: the slow path
        return None
    if pos >= n:
        return None
    b = raw[pos]  # the value or child: a byte string that must end exactly at the end
    if b < 0x80:
        first = pos
        end = pos + 1
    elif b <= 0xB7:
        first = pos + 1
        if b == 0x80 or (b == 0x81 and (first >= n or raw[first] < 0x80)):
            return None
        end = first + b - 0x80
    elif b == 0xB8 and pos + 2 < n:
        first = pos + 2
        end = first + raw[pos + 1]
        if end - first < 56:
            return None
    elif b == 0xB9 and pos + 3 < n:
        first = pos + 3
        end = first + ((raw[pos + 1] << 8) | raw[pos + 2])
        if end - first < 256:
            return None
    else:
        return None
    if end != n:
        return None
    path, is_leaf = decode_compact(compact)  # the framing is right: its errors are final
    if is_leaf:
        return Leaf(path, raw[first:], ref)
    if b == 0xA0 and path:
        return Extension(path, raw[pos:], ref)
    return None


def _child_from_item(item: RLPItem, depth: int) -> Child | None:
    """A branch or extension slot: b'' (empty), a 32-byte hash, or an inlined node."""
    if type(item) is bytes:
        if not item:
            return None
        if len(item) == 32:
            return b"\xa0" + item
        raise DecodeError("trie node", f"child reference of {len(item)} bytes (expected 0 or 32)")
    return node_from_item(item, None, depth + 1)


def node_from_item(item: RLPItem, ref: bytes | None, depth: int = 0) -> Node:
    """Build a node from decoded RLP; inlined children are built too, hashed ones stay refs.

    Raises:
        DecodeError: not the shape of a leaf, extension or branch.
    """
    if depth > _MAX_EMBED_DEPTH:
        raise DecodeError("trie node", "inlined nodes nested too deep")
    if not isinstance(item, list):
        raise DecodeError("trie node", "expected an RLP list, got a byte string")
    if len(item) == 17:
        children = [
            (b"\xa0" + c) if type(c) is bytes and len(c) == 32 else _child_from_item(c, depth)
            for c in item[:16]
        ]
        value = item[16]
        if not isinstance(value, bytes):
            raise DecodeError("trie node", "branch value is a list")
        return Branch(children, value, ref)
    if len(item) != 2:
        raise DecodeError("trie node", f"{len(item)} items (expected 2 or 17)")
    raw_path, second = item
    if not isinstance(raw_path, bytes):
        raise DecodeError("trie node", "path is a list")
    path, is_leaf = decode_compact(raw_path)
    if is_leaf:
        if not isinstance(second, bytes):
            raise DecodeError("trie node", "leaf value is a list")
        if not second:
            raise DecodeError("trie node", "leaf value is empty")
        return Leaf(path, second, ref)
    if not path:
        raise DecodeError("trie node", "extension with an empty path")
    child = _child_from_item(second, depth)
    if child is None:
        raise DecodeError("trie node", "extension without a child")
    if type(child) is not bytes and type(child) is not Branch:
        raise DecodeError("trie node", "extension child is not a branch")
    return Extension(path, child, ref)
