"""The local transactions journal: its record format, and the journal task over a real pool.

The format is total (any bytes give the whole records before the first bad one); a node's
RPC submissions are appended, gossiped ones are not, a restart re-admits them and compacts the
file to what the pool took back. The kill -9 case with a real node process is in
``test_pool_process.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import hypothesis.strategies as st
import trio
from hypothesis import given

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.node._tx_journal import (
    MAX_RECORD,
    TxJournal,
    decode_records,
    encode_records,
)
from moderntensor.service import ChainService
from moderntensor.state.store import Database
from tests.mempool.test_pool_chain import GWEI, genesis_doc, next_base_fee, transfer

raws = st.lists(st.binary(min_size=1, max_size=300), max_size=20)


@given(records=raws, cut=st.integers(0, 10_000))
def test_records_round_trip_and_a_torn_tail_is_dropped(records: list[bytes], cut: int) -> None:
    data = encode_records(records)
    assert decode_records(data) == (records, len(data))
    torn = data[: min(cut, len(data))]
    got, valid = decode_records(torn)
    assert got == records[: len(got)], "a prefix of what was written, in order"
    assert encode_records(got) == torn[:valid]
    if cut < len(data):
        assert len(got) < len(records)


@given(data=st.binary(max_size=2_000))
def test_any_bytes_give_records_never_an_error(data: bytes) -> None:
    got, valid = decode_records(data)
    assert encode_records(got) == data[:valid]
    assert all(0 < len(r) <= MAX_RECORD for r in got)


def test_an_absurd_length_ends_the_journal() -> None:
    good = encode_records([b"\x02abc"])
    assert decode_records(good + (MAX_RECORD + 1).to_bytes(4, "big") + b"x" * 10) == (
        [b"\x02abc"],
        len(good),
    )
    assert decode_records(good + b"\x00\x00\x00\x00" + good) == ([b"\x02abc"], len(good))


def new_service(db: Database) -> tuple[ChainService, Mempool]:
    chain = Chain(db, parse_genesis(genesis_doc()))
    pool = Mempool(chain.params, chain.state_at(chain.head), next_base_fee(chain),
                   MempoolConfig())  # fmt: skip
    return ChainService(chain, pool), pool


async def test_rpc_submissions_are_journaled_and_readmitted_gossip_is_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "transactions.journal"
    local = [transfer(0, n, GWEI) for n in range(3)] + [transfer(1, 4, GWEI)]  # one queued
    replaced = transfer(0, 1, 2 * GWEI, 20 * GWEI)
    gossiped = transfer(2, 0, GWEI)
    with Database.open(tmp_path / "db") as db:
        service, pool = new_service(db)
        journal = TxJournal(path, max_bytes=1 << 20)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run, service, pool)
            for tx in local:
                service.submit_raw_transaction(tx.raw)
            service.submit_raw_transaction(replaced.raw)
            await service.submit_raw_transactions([gossiped.raw])  # the network's path
            assert journal.appended == 5
            nursery.cancel_scope.cancel()
        records, _ = decode_records(path.read_bytes())
        assert records == [tx.raw for tx in [*local, replaced]]
        assert gossiped.raw not in records
        # a restart: a fresh pool gets them back, the replacement winning as before
        service, pool = new_service(db)
        journal = TxJournal(path, max_bytes=1 << 20)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run, service, pool)
            nursery.cancel_scope.cancel()
        assert journal.readmitted == 4
        expected = {local[0].hash, replaced.hash, local[2].hash, local[3].hash}
        assert {tx.hash for tx in pool} == expected
        assert pool.statistics().queued == 1
        compacted, _ = decode_records(path.read_bytes())
        # journal order, which re-admits them all again (the replacement fills the gap)
        assert compacted == [local[0].raw, local[2].raw, local[3].raw, replaced.raw]


async def test_a_torn_journal_loads_what_is_whole_and_is_compacted(tmp_path: Path) -> None:
    path = tmp_path / "transactions.journal"
    txs = [transfer(0, n, GWEI) for n in range(4)]
    data = encode_records([tx.raw for tx in txs])
    path.write_bytes(data[:-5])  # a crash in the middle of the last write
    with Database.open(tmp_path / "db") as db:
        service, pool = new_service(db)
        journal = TxJournal(path, max_bytes=1 << 20)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run, service, pool)
            nursery.cancel_scope.cancel()
    assert [tx.hash for tx in pool] == [tx.hash for tx in txs[:3]]
    assert path.read_bytes() == encode_records([tx.raw for tx in txs[:3]])
    assert not os.path.exists(str(path) + ".new")


async def test_the_journal_is_compacted_when_it_grows_past_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "transactions.journal"
    txs = [transfer(0, n, GWEI) for n in range(40)]
    record = len(encode_records([txs[0].raw]))
    with Database.open(tmp_path / "db") as db:
        service, pool = new_service(db)
        journal = TxJournal(path, max_bytes=10 * record)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run, service, pool)
            for tx in txs:
                service.submit_raw_transaction(tx.raw)
            pool.remove_included(txs[:35])  # mined: no longer worth keeping
            assert path.stat().st_size == 40 * record
            with trio.fail_after(10):
                while path.stat().st_size == 40 * record:  # the task checks once a second
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert decode_records(path.read_bytes())[0] == [tx.raw for tx in txs[35:]]
    assert journal.size == 5 * record
