"""Tries committed to a real RocksDB database and reopened from it (the lazy-loading path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.crypto import keccak256
from moderntensor.state.proof import verify_proof
from moderntensor.state.store import Column, Database
from moderntensor.state.trie import HexaryTrie, SecureTrie
from tests.state.test_trie_model import keys, reference_root, values

items = st.dictionaries(keys, values, max_size=30)
changes = st.lists(st.tuples(keys, st.one_of(st.just(b""), values)), max_size=20)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One database for every example: nodes are content-addressed, so tries can share it."""
    with Database.open(tmp_path_factory.mktemp("trie") / "db") as db:
        yield db


def _commit(db: Database, trie: HexaryTrie) -> bytes:
    root = trie.root_hash
    batch = db.batch()
    batch.put_nodes(trie.commit())
    db.write(batch, sync=False)
    return root


@given(items, changes)
def test_reopened_trie_has_same_root_values_and_keeps_updating(
    database: Database, model: dict[bytes, bytes], updates: list[tuple[bytes, bytes]]
) -> None:
    trie = HexaryTrie(database)
    for key, value in model.items():
        trie.set(key, value)
    root = _commit(database, trie)

    reopened = HexaryTrie(database, root)
    assert reopened.root_hash == root
    for key, value in model.items():
        assert reopened.get(key) == value
        assert verify_proof(root, key, reopened.prove(key)) == value

    fresh = HexaryTrie(database, root)  # nothing loaded yet: updates load on the way
    for key, value in updates:
        fresh.set(key, value)
        if value:
            model[key] = value
        else:
            model.pop(key, None)
    assert fresh.root_hash == reference_root(model)
    second = _commit(database, fresh)
    again = HexaryTrie(database, second)
    for key, value in model.items():
        assert again.get(key) == value


def test_state_trie_survives_closing_the_database(tmp_path: Path) -> None:
    """A secure trie of 2,000 accounts, committed with a head pointer, after a real reopen."""
    path = tmp_path / "db"
    accounts = {keccak256(i.to_bytes(4, "big"))[:20]: b"account %d" % i for i in range(2000)}
    with Database.open(path) as db:
        trie = SecureTrie(db)
        for address, account in accounts.items():
            trie.set(address, account)
        root = trie.root_hash
        batch = db.batch()
        batch.put_nodes(trie.commit())
        batch.put(Column.META, b"state_root", root)
        db.write(batch)
    with Database.open(path) as db:
        stored_root = db.get(Column.META, b"state_root")
        assert stored_root == root
        reopened = SecureTrie(db, stored_root)
        for address, account in accounts.items():
            assert reopened.get(address) == account
        model = {keccak256(a): v for a, v in accounts.items()}
        for n, address in enumerate(list(accounts)[:100]):
            reopened.set(address, b"changed %d" % n)
            model[keccak256(address)] = b"changed %d" % n
        assert reopened.root_hash == reference_root(model)
