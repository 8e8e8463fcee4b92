"""A JSON-RPC batch's transactions reach the journal in one write, when the batch is released.

The dispatcher pre-decodes a batch (``ChainService.predecode``), submits its calls one by one,
then releases it before the response is written: the journal gets the batch's transactions at
the release, in one ``append_many`` (one ``write``), so nothing a client was answered about is
missing after a ``kill -9`` (``test_pool_process.py`` checks that with a real node process).
A transaction submitted on its own meanwhile is journaled at once, as before.
"""

from __future__ import annotations

from pathlib import Path

import trio

from moderntensor.chain.transactions import Transaction
from moderntensor.node._tx_journal import TxJournal, decode_records
from moderntensor.state.store import Database
from tests.mempool.test_pool_chain import GWEI, transfer
from tests.node.test_tx_journal import new_service


async def test_a_batch_is_journaled_in_one_write_at_its_release(tmp_path: Path) -> None:
    path = tmp_path / "transactions.journal"
    batch = [transfer(0, n, GWEI) for n in range(3)]
    single = transfer(1, 0, GWEI)
    with Database.open(tmp_path / "db") as db:
        service, pool = new_service(db)
        journal = TxJournal(path, max_bytes=1 << 20)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run, service, pool)
            calls: list[list[Transaction]] = []
            append_many = service.on_local_transactions
            assert append_many is not None

            def spy(txs: list[Transaction]) -> None:
                calls.append(list(txs))
                append_many(txs)

            service.on_local_transactions = spy
            release = await service.predecode([tx.raw for tx in batch])
            for tx in batch:
                assert service.submit_raw_transaction(tx.raw) == tx.hash
            assert service.submit_raw_transaction(single.raw) == single.hash  # not pre-decoded
            assert journal.appended == 1, "the single one at once, the batch's held"
            assert decode_records(path.read_bytes())[0] == [single.raw]
            assert {tx.hash for tx in pool} == {tx.hash for tx in [*batch, single]}
            release()
            assert calls == [batch], "one call, the batch's transactions in order"
            assert journal.appended == 4
            assert decode_records(path.read_bytes())[0] == [single.raw] + [tx.raw for tx in batch]
            release_empty = await service.predecode([])
            release_empty()
            assert len(calls) == 1, "nothing held: nothing told"
            nursery.cancel_scope.cancel()
        # a restart re-admits all four
        service, pool = new_service(db)
        journal = TxJournal(path, max_bytes=1 << 20)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run, service, pool)
            nursery.cancel_scope.cancel()
        assert journal.readmitted == 4
        assert {tx.hash for tx in pool} == {tx.hash for tx in [*batch, single]}


async def test_without_the_batch_hook_a_batch_is_told_one_by_one_at_once(tmp_path: Path) -> None:
    txs = [transfer(0, n, GWEI) for n in range(2)]
    with Database.open(tmp_path / "db") as db:
        service, _pool = new_service(db)
        told: list[bytes] = []
        service.on_local_transaction = lambda tx: told.append(tx.hash)
        release = await service.predecode([tx.raw for tx in txs])
        for tx in txs:
            service.submit_raw_transaction(tx.raw)
        assert told == [tx.hash for tx in txs]
        release()
        assert told == [tx.hash for tx in txs]
