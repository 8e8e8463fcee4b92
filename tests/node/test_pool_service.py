"""The mempool service against a real chain: re-validation at a new head, including senders
admitted while the accounts were being read in the worker thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.mempool import AccountReader, Mempool, read_accounts
from moderntensor.node import _pool_service
from moderntensor.node._pool_service import MempoolService
from moderntensor.service import ChainService
from moderntensor.state.store import Database
from tests.mempool.test_pool_chain import GWEI, VALIDATOR, genesis_doc, next_base_fee, transfer


async def test_a_sender_admitted_during_the_read_is_revalidated_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        pool = Mempool(chain.params, chain.state_at(chain.head), next_base_fee(chain))
        waiting, included = transfer(1, 0, GWEI), transfer(0, 0, GWEI)
        pool.add(waiting)
        chain.commit(chain.build_block(chain.head, 1, VALIDATOR, [included]), finalized=True)
        service = ChainService(chain, pool)

        def read_then_admit(state: AccountReader, addresses: list[bytes]) -> object:
            accounts = read_accounts(state, addresses)
            # The event loop admits a submission while this thread reads (it waits on us
            # here, so touching the pool from this thread is safe in this test).
            pool.add(included)  # the pool still judges by the old head: admitted
            return accounts

        monkeypatch.setattr(_pool_service, "read_accounts", read_then_admit)
        await MempoolService(chain, pool, service).revalidate(chain.head)
        assert included.hash not in pool, "stale at the new head, yet still offered"
        assert pool.pending_nonce(included.sender) == 1
        assert waiting.hash in pool
