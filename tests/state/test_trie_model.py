"""The trie against a plain model: a dict and an obviously-correct recursive root function.

The reference root below is written from the Yellow Paper (appendix D) with the generic
``rlp`` encoder and shares no code with ``moderntensor.state``: it rebuilds the whole trie
from the dict every time, which is slow and simple.
"""

from __future__ import annotations

from typing import Any

import rlp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from moderntensor.crypto import keccak256
from moderntensor.state.trie import HexaryTrie, MemoryNodeStore, SecureTrie

# -- the reference model ------------------------------------------------------------------


def _nibbles(key: bytes) -> tuple[int, ...]:
    out: list[int] = []
    for byte in key:
        out += [byte >> 4, byte & 15]
    return tuple(out)


def _hex_prefix(path: tuple[int, ...], leaf: bool) -> bytes:
    flag = 2 if leaf else 0
    digits = [flag + 1, *path] if len(path) % 2 else [flag, 0, *path]
    return bytes(digits[i] * 16 + digits[i + 1] for i in range(0, len(digits), 2))


def _reference(node: Any) -> Any:
    """How a parent refers to a node: inline if its RLP is under 32 bytes, else its hash."""
    encoded = rlp.encode(node)
    return node if len(encoded) < 32 else keccak256(encoded)


def _build(pairs: dict[tuple[int, ...], bytes]) -> Any:
    """The node (as nested lists) holding ``pairs`` (paths relative to this node)."""
    if len(pairs) == 1:
        ((path, value),) = pairs.items()
        return [_hex_prefix(path, leaf=True), value]
    paths = list(pairs)
    prefix_length = 0
    while (
        all(len(p) > prefix_length for p in paths) and len({p[prefix_length] for p in paths}) == 1
    ):
        prefix_length += 1
    if prefix_length:
        rest = {p[prefix_length:]: v for p, v in pairs.items()}
        return [_hex_prefix(paths[0][:prefix_length], leaf=False), _reference(_build(rest))]
    slots: list[Any] = []
    for nibble in range(16):
        sub = {p[1:]: v for p, v in pairs.items() if p and p[0] == nibble}
        slots.append(_reference(_build(sub)) if sub else b"")
    slots.append(pairs.get((), b""))
    return slots


def reference_root(model: dict[bytes, bytes], secure: bool = False) -> bytes:
    """The Merkle Patricia root of ``model`` (keys hashed first when ``secure``)."""
    if not model:
        return keccak256(rlp.encode(b""))
    pairs = {_nibbles(keccak256(k) if secure else k): v for k, v in model.items()}
    return keccak256(rlp.encode(_build(pairs)))


def test_reference_model_on_known_roots() -> None:
    """The model itself reproduces two ethereum/tests roots (so it is a fair judge)."""
    assert reference_root({}) == bytes.fromhex(
        "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
    )
    puppy = {b"do": b"verb", b"horse": b"stallion", b"doge": b"coin", b"dog": b"puppy"}
    assert reference_root(puppy) == bytes.fromhex(
        "5991bb8c6514148a29db676a14ac506cd2cd5775ace63c30a4fe457715e9ac84"
    )


# -- strategies ---------------------------------------------------------------------------

# Few distinct bytes so keys share prefixes, end inside each other and split extensions.
keys = st.lists(st.sampled_from([0x00, 0x01, 0x10, 0x11, 0x12, 0xAB, 0xFF]), max_size=5).map(bytes)
# Short values give inlined (< 32 byte) nodes, long ones hashed nodes.
values = st.binary(min_size=1, max_size=40)
items = st.dictionaries(keys, values, max_size=30)


@given(items)
def test_root_matches_reference(model: dict[bytes, bytes]) -> None:
    trie = HexaryTrie(MemoryNodeStore())
    for key, value in model.items():
        trie.set(key, value)
    assert trie.root_hash == reference_root(model)
    for key, value in model.items():
        assert trie.get(key) == value


@given(items)
def test_secure_root_matches_reference(model: dict[bytes, bytes]) -> None:
    trie = SecureTrie(MemoryNodeStore())
    for key, value in model.items():
        trie.set(key, value)
    assert trie.root_hash == reference_root(model, secure=True)
    for key, value in model.items():
        assert trie.get(key) == value


@given(items, st.randoms(use_true_random=False))
def test_root_independent_of_insertion_order(model: dict[bytes, bytes], rng: Any) -> None:
    pairs = list(model.items())
    first = HexaryTrie(MemoryNodeStore())
    for key, value in pairs:
        first.set(key, value)
    rng.shuffle(pairs)
    second = HexaryTrie(MemoryNodeStore())
    for key, value in pairs:
        second.set(key, value)
    assert first.root_hash == second.root_hash


@given(items, keys, values)
def test_delete_then_reinsert_restores_root(
    model: dict[bytes, bytes], key: bytes, value: bytes
) -> None:
    trie = HexaryTrie(MemoryNodeStore())
    for k, v in model.items():
        trie.set(k, v)
    trie.set(key, value)
    before = trie.root_hash
    trie.delete(key)
    assert trie.get(key) is None
    without = dict(model)
    without.pop(key, None)
    assert trie.root_hash == reference_root(without)
    trie.set(key, value)
    assert trie.root_hash == before


@given(items, keys)
def test_deleting_an_absent_key_changes_nothing(model: dict[bytes, bytes], key: bytes) -> None:
    model.pop(key, None)
    trie = HexaryTrie(MemoryNodeStore())
    for k, v in model.items():
        trie.set(k, v)
    before = trie.root_hash
    trie.delete(key)
    trie.set(key, b"")  # an empty value is a delete too
    assert trie.root_hash == before


# -- a stateful run: updates, hashing, commits, copies and reloads against the model ------


class TrieMachine(RuleBasedStateMachine):
    """One trie, its model, a store that receives every commit, and a forked copy."""

    known = Bundle("known")

    @initialize()
    def start(self) -> None:
        self.store = MemoryNodeStore()
        self.trie = HexaryTrie(self.store)
        self.model: dict[bytes, bytes] = {}
        self.committed: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.forks: list[tuple[HexaryTrie, dict[bytes, bytes]]] = []

    @rule(target=known, key=keys, value=values)
    def set(self, key: bytes, value: bytes) -> bytes:
        self.trie.set(key, value)
        self.model[key] = value
        return key

    @rule(key=consumes(known))
    def delete_known(self, key: bytes) -> None:
        self.trie.delete(key)
        self.model.pop(key, None)

    @rule(key=keys)
    def delete_any(self, key: bytes) -> None:
        self.trie.delete(key)
        self.model.pop(key, None)

    @rule(key=keys)
    def get(self, key: bytes) -> None:
        assert self.trie.get(key) == self.model.get(key)

    @rule()
    def hash_midway(self) -> None:
        """Roots computed between commits must not leak dead nodes into the next commit."""
        assert self.trie.root_hash == reference_root(self.model)

    @rule()
    def commit(self) -> None:
        root = self.trie.root_hash
        self.store.put_nodes(self.trie.commit())
        self.committed.append((root, dict(self.model)))

    @precondition(lambda self: self.committed)
    @rule(data=st.data())
    def reopen(self, data: st.DataObject) -> None:
        """Continue from a committed root, read lazily from the store."""
        root, model = data.draw(st.sampled_from(self.committed))
        self.trie = HexaryTrie(self.store, root)
        self.model = dict(model)

    @rule(key=keys, value=values)
    def fork(self, key: bytes, value: bytes) -> None:
        """A copy diverges without touching the original; both commit into the store."""
        other = self.trie.copy()
        other.set(key, value)
        forked = {**self.model, key: value}
        assert other.root_hash == reference_root(forked)
        assert self.trie.root_hash == reference_root(self.model)
        self.store.put_nodes(other.commit())
        self.committed.append((other.root_hash, forked))
        self.forks.append((other, forked))

    @precondition(lambda self: self.forks)
    @rule(data=st.data())
    def switch_to_fork(self, data: st.DataObject) -> None:
        """Carry on with a fork; the trie left behind is checked at the end, untouched."""
        index = data.draw(st.integers(0, len(self.forks) - 1))
        trie, model = self.forks[index]
        self.forks[index] = (self.trie, dict(self.model))
        self.trie, self.model = trie, dict(model)

    @invariant()
    def store_holds_only_live_nodes(self) -> None:
        """Every stored node is reachable from some committed root (no garbage)."""
        if not hasattr(self, "store"):
            return
        reachable: set[bytes] = set()
        for root, _ in self.committed:
            _collect(self.store.nodes, root, reachable)
        assert set(self.store.nodes) == reachable

    def teardown(self) -> None:
        if not hasattr(self, "store"):
            return
        assert self.trie.root_hash == reference_root(self.model)
        for trie, model in self.forks:  # updates elsewhere never leaked into a fork
            assert trie.root_hash == reference_root(model)
            for key, value in model.items():
                assert trie.get(key) == value
        for root, model in self.committed:
            reopened = HexaryTrie(MemoryNodeStore(self.store.nodes), root)
            for key, value in model.items():
                assert reopened.get(key) == value


def _collect(nodes: dict[bytes, bytes], node_hash: bytes, seen: set[bytes]) -> None:
    """Hashes of the stored nodes reachable from ``node_hash`` (decoded with plain rlp)."""
    if node_hash in seen or node_hash == reference_root({}):
        return
    seen.add(node_hash)
    stack = [rlp.decode(nodes[node_hash])]
    while stack:
        item = stack.pop()
        children = item[:16] if len(item) == 17 else [item[1]] if item[0][0] >> 4 < 2 else []
        for child in children:
            if isinstance(child, list):
                stack.append(child)
            elif len(child) == 32 and child not in seen:
                seen.add(child)
                stack.append(rlp.decode(nodes[child]))


TrieMachine.TestCase.settings = settings(stateful_step_count=30)
test_trie_machine = TrieMachine.TestCase
