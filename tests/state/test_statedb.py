"""StateDB: journal reverts, storage, emptiness, and persistence through RocksDB."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from moderntensor.state.account import EMPTY_ROOT
from moderntensor.state.statedb import StateDB
from moderntensor.state.store import Database
from moderntensor.state.trie import MemoryNodeStore

A, B = b"\xaa" * 20, b"\xbb" * 20
SLOT = b"\x01" * 32


def test_revert_restores_accounts_and_storage() -> None:
    state = StateDB(MemoryNodeStore())
    state.add_balance(A, 100)
    state.set_storage(A, SLOT, b"\x05")
    mark = state.snapshot()
    state.sub_balance(A, 40)
    state.add_balance(B, 40)
    state.set_nonce(A, 7)
    state.set_storage(A, SLOT, b"\x09")
    state.revert(mark)
    assert (state.get_balance(A), state.get_balance(B), state.get_nonce(A)) == (100, 0, 0)
    assert state.get_storage(A, SLOT) == b"\x05"
    reference = StateDB(MemoryNodeStore())
    reference.add_balance(A, 100)
    reference.set_storage(A, SLOT, b"\x05")
    assert state.root == reference.root


def test_empty_accounts_are_not_stored_but_genesis_ones_are() -> None:
    state = StateDB(MemoryNodeStore())
    state.add_balance(A, 0)
    assert state.root == EMPTY_ROOT
    state.create_account(A)
    assert state.root != EMPTY_ROOT


def test_commit_persists_through_rocksdb(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        state = StateDB(db)
        for i in range(300):
            state.add_balance(i.to_bytes(20, "big"), i + 1)
        state.set_storage(A, SLOT, b"hello")
        commit = state.commit()
        batch = db.batch()
        batch.put_nodes(commit.nodes)
        db.write(batch)
    with Database.open(tmp_path / "db") as db:
        again = StateDB(db, commit.root)
        assert again.get_balance((299).to_bytes(20, "big")) == 300
        assert again.get_storage(A, SLOT) == b"hello"
        again.add_balance(B, 1)
        assert again.commit().root != commit.root


ops = st.lists(
    st.tuples(st.sampled_from([A, B]), st.integers(0, 3), st.integers(0, 50)), max_size=20
)


@given(ops, ops)
def test_revert_equals_never_applied(first: list, second: list) -> None:  # type: ignore[type-arg]
    """Applying `second` and reverting gives the same root as applying `first` alone."""

    def apply(state: StateDB, items: list) -> None:  # type: ignore[type-arg]
        for address, kind, amount in items:
            if kind == 0:
                state.add_balance(address, amount)
            elif kind == 1 and state.get_balance(address) >= amount:
                state.sub_balance(address, amount)
            elif kind == 2:
                state.set_nonce(address, amount)
            else:
                state.set_storage(address, amount.to_bytes(32, "big"), bytes([amount]) * 3)

    state, reference = StateDB(MemoryNodeStore()), StateDB(MemoryNodeStore())
    apply(state, first)
    apply(reference, first)
    mark = state.snapshot()
    apply(state, second)
    state.revert(mark)
    assert state.root == reference.root
