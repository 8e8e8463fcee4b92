"""SIGKILL during a loop of block commits: the database reopens at a whole block.

The child commits blocks as fast as it can; the parent kills it at several moments, reopens
the database and checks (1) every block the child reported committed is there, (2) the head's
state is stored and its root matches the header, (3) every canonical block has its header,
body, receipts and state, and (4) replaying the stored blocks on a fresh database reproduces
every state root (no half-written block).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.state.account import EMPTY_ROOT
from moderntensor.state.statedb import StateDB
from moderntensor.state.store import Database
from tests.factories import USERS, genesis_doc

ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(db: Path, genesis: Path, wait_commits: int, extra_delay: float) -> int:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.chain.crash_child", str(db), str(genesis), "100000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    last = -1
    deadline = time.monotonic() + 60
    try:
        assert child.stdout is not None
        seen = 0
        while seen < wait_commits and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith("committed"):
                last = int(line.split()[1])
                seen += 1
        time.sleep(extra_delay)  # land the kill at a different point of the commit cycle
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
        for line in rest.splitlines():
            if line.startswith("committed"):
                last = int(line.split()[1])
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    return last


def test_sigkill_mid_commit_reopens_at_a_whole_block(tmp_path: Path) -> None:
    genesis_file = tmp_path / "genesis.json"
    genesis_file.write_text(json.dumps(genesis_doc(users=4)))
    genesis = parse_genesis(json.loads(genesis_file.read_text()))
    db_path = tmp_path / "db"
    reported = 0
    for round_, (commits, delay) in enumerate([(3, 0.0), (5, 0.013), (4, 0.029), (6, 0.041)]):
        reported = max(reported, run_and_kill(db_path, genesis_file, commits, delay))
        with Database.open(db_path) as db:
            chain = Chain(db, genesis)
            head = chain.head
            assert head.number >= reported, f"round {round_}: lost committed blocks"
            state = StateDB(db, head.state_root)
            assert state.root == head.state_root
            assert state.get_nonce(USERS[0].address) == head.number
            for number in range(head.number + 1):
                block_hash = chain.chaindb.get_canonical_hash(number)
                assert block_hash is not None
                block = chain.chaindb.get_block(block_hash)
                assert block is not None
                assert len(chain.chaindb.get_receipts(block_hash)) == len(block.transactions)
                assert chain.chaindb.has_state(block.header.state_root)
            reported = head.number
    # Replay every stored block on a fresh database: identical roots, block by block.
    with Database.open(db_path) as db, Database.open(tmp_path / "replay") as fresh:
        stored = Chain(db, genesis)
        replay = Chain(fresh, genesis)
        for number in range(1, stored.head.number + 1):
            block = stored.chaindb.get_block(stored.chaindb.get_canonical_hash(number))  # type: ignore[arg-type]
            assert block is not None
            executed = replay.import_block(block)
            assert executed.state.root == block.header.state_root != EMPTY_ROOT
        assert replay.head.hash == stored.head.hash
