"""The RocksDB store: column families, atomic batches, reopening, locking, crash safety."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moderntensor.state.store import Column, Database, DatabaseError

REPO = Path(__file__).resolve().parents[2]


def test_batch_spans_columns_and_is_invisible_until_written(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        batch = db.batch()
        for column in Column:
            batch.put(column, b"key", column.value.encode())
        batch.put_nodes({b"\x01" * 32: b"node one", b"\x02" * 32: b"node two"})
        assert len(batch) == len(Column) + 2
        assert all(db.get(column, b"key") is None for column in Column)
        db.write(batch)
        for column in Column:
            if column is not Column.NODES:
                assert db.get(column, b"key") == column.value.encode()
        assert db.get_node(b"\x01" * 32) == b"node one"
        assert db.get(Column.NODES, b"\x02" * 32) == b"node two"
        assert db.get(Column.META, b"\x01" * 32) is None  # columns are separate spaces


def test_delete_and_overwrite_in_one_batch(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        first = db.batch()
        first.put(Column.HEADERS, b"a", b"1")
        first.put(Column.HEADERS, b"b", b"2")
        db.write(first)
        second = db.batch()
        second.delete(Column.HEADERS, b"a")
        second.put(Column.HEADERS, b"b", b"3")
        second.delete(Column.HEADERS, b"never there")
        db.write(second, sync=False)
        assert db.get(Column.HEADERS, b"a") is None
        assert db.get(Column.HEADERS, b"b") == b"3"


def test_a_batch_is_written_once_and_only_to_its_database(tmp_path: Path) -> None:
    with Database.open(tmp_path / "a") as a, Database.open(tmp_path / "b") as b:
        batch = a.batch()
        batch.put(Column.META, b"head", b"x")
        with pytest.raises(DatabaseError, match="another database"):
            b.write(batch)
        a.write(batch)
        with pytest.raises(DatabaseError, match="write to database"):
            a.write(batch)
        assert b.get(Column.META, b"head") is None


def test_reopen_persists(tmp_path: Path) -> None:
    path = tmp_path / "db"
    db = Database.open(path)
    batch = db.batch()
    batch.put(Column.CANONICAL, (7).to_bytes(8, "big"), b"\xaa" * 32)
    batch.put_nodes({b"\x03" * 32: b"node"})
    db.write(batch)
    db.close()
    with Database.open(str(path)) as again:
        assert again.get(Column.CANONICAL, (7).to_bytes(8, "big")) == b"\xaa" * 32
        assert again.get_node(b"\x03" * 32) == b"node"


def test_close_is_idempotent_and_use_after_close_is_an_error(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "db")
    batch = db.batch()  # a leftover batch must not keep the database (or its lock) alive
    batch.put(Column.META, b"k", b"v")
    rows = db.iterate(Column.META)
    db.close()
    db.close()
    with pytest.raises(DatabaseError, match="closed"):
        db.get(Column.META, b"k")
    with pytest.raises(DatabaseError, match="closed"):
        db.get_node(b"\x00" * 32)
    with pytest.raises(DatabaseError, match="closed"):
        db.batch()
    with pytest.raises(DatabaseError, match="closed"):
        db.write(batch)
    with pytest.raises(DatabaseError, match="closed"):
        batch.put(Column.META, b"k", b"v")
    with pytest.raises(DatabaseError, match="closed"):
        list(rows)
    with Database.open(tmp_path / "db") as again:  # the lock was released
        assert again.get(Column.META, b"k") is None


def test_second_open_of_the_same_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Database.open(path):
        with pytest.raises(DatabaseError) as info:
            Database.open(path)
        assert str(path) in str(info.value)
        assert "in use" in str(info.value)
        other = subprocess.run(
            [sys.executable, "-c", _OPEN_IN_CHILD, str(path)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=60,
        )
        assert other.returncode == 3, other.stderr
        assert str(path) in other.stdout


_OPEN_IN_CHILD = textwrap.dedent(
    """
    import sys
    from moderntensor.state.store import Database, DatabaseError
    try:
        Database.open(sys.argv[1])
    except DatabaseError as exc:
        print(exc)
        sys.exit(3)
    """
)


def test_unusable_path_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(DatabaseError) as info:
        Database.open(blocker / "db")
    assert str(blocker / "db") in str(info.value)


def test_iterate_by_prefix_in_key_order_across_chunks(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        batch = db.batch()
        expected = []
        for i in range(700):  # more than one internal chunk
            key = b"tx" + i.to_bytes(4, "big")
            batch.put(Column.TX_INDEX, key, b"%d" % i)
            expected.append((key, b"%d" % i))
        batch.put(Column.TX_INDEX, b"tw", b"before")
        batch.put(Column.TX_INDEX, b"ty", b"after")
        batch.put(Column.RECEIPTS, b"tx\x00\x00\x00\x01", b"other column")
        db.write(batch)
        assert list(db.iterate(Column.TX_INDEX, b"tx")) == expected
        everything = list(db.iterate(Column.TX_INDEX))
        assert [k for k, _ in everything] == sorted(k for k, _ in everything)
        assert len(everything) == 702
        assert list(db.iterate(Column.TX_INDEX, b"zz")) == []
        assert list(db.iterate(Column.CONSENSUS)) == []


# -- crash safety: SIGKILL a writer at arbitrary moments, reopen, check all-or-nothing -----

_WRITER = textwrap.dedent(
    """
    import sys
    from moderntensor.state.store import Column, Database
    db = Database.open(sys.argv[1])
    start = int.from_bytes(db.get(Column.META, b"head") or b"\\x00", "big")
    number = start
    while True:
        number += 1
        tag = number.to_bytes(4, "big")
        batch = db.batch()
        # A block-like batch: many nodes, a header, a body, an index entry, then the head.
        batch.put_nodes({tag + i.to_bytes(28, "big"): bytes(300) for i in range(40)})
        batch.put(Column.HEADERS, tag, bytes(500))
        batch.put(Column.BODIES, tag, bytes(2000))
        batch.put(Column.CANONICAL, tag, tag)
        batch.put(Column.META, b"head", tag)
        db.write(batch, sync=False)
        if number == start + 20:
            print("running", flush=True)
    """
)


def _check_consistent(path: Path) -> int:
    with Database.open(path) as db:
        head = int.from_bytes(db.get(Column.META, b"head") or b"\x00", "big")
        for number in (head, head + 1):
            tag = number.to_bytes(4, "big")
            present = number <= head
            for column in (Column.HEADERS, Column.BODIES, Column.CANONICAL):
                assert (db.get(column, tag) is not None) == present, (column, number, head)
            nodes = [db.get_node(tag + i.to_bytes(28, "big")) for i in range(40)]
            assert all((n is not None) == present for n in nodes), (number, head)
        assert len(list(db.iterate(Column.CANONICAL))) == head
    return head


def test_sigkill_mid_write_leaves_all_or_none_of_each_batch(tmp_path: Path) -> None:
    """Kill, reopen and check, continue writing, kill again: six times at varied moments."""
    path = tmp_path / "db"
    heads = []
    for delay in (0.0, 0.03, 0.07, 0.12, 0.2, 0.3):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)],
            stdout=subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"running\n"
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=delay)  # let it write for a while (it never exits by itself)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        heads.append(_check_consistent(path))
    assert heads == sorted(heads)
    assert heads[0] >= 20
