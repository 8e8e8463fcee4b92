"""Fee suggestion as geth's oracle: tips under 2 wei are not sampled, and the answer is never
below the pool's minimum tip (a suggestion the pool would refuse is no suggestion).

Real parts: a RocksDB chain with blocks built and committed, the node's ``ChainService`` and
the RPC's own ``ChainView`` and ``FeeOracle``.
"""

from __future__ import annotations

from pathlib import Path

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.rpc._chainview import ChainView
from moderntensor.rpc._fees import DEFAULT_TIP, FeeOracle
from moderntensor.service import ChainService
from moderntensor.state.store import Database
from tests.mempool.test_pool_chain import GWEI, VALIDATOR, genesis_doc, next_base_fee, transfer


def oracle_over(chain: Chain, min_tip: int) -> FeeOracle:
    pool = Mempool(chain.params, chain.state_at(chain.head), next_base_fee(chain),
                   MempoolConfig(min_tip=min_tip))  # fmt: skip
    return FeeOracle(ChainView(ChainService(chain, pool)))


def mine(chain: Chain, slot: int, tips: list[tuple[int, int, int]]) -> None:
    """One block of transfers ``(user, nonce, tip)`` at exactly the base fee plus the tip."""
    base = next_base_fee(chain)
    txs = [transfer(u, n, tip, max_fee=base + tip) for u, n, tip in tips]
    executed = chain.build_block(chain.head, slot, VALIDATOR, txs)
    assert all(r.status == 1 for r in executed.receipts)
    chain.commit(executed)


def test_tips_under_2_wei_are_not_sampled(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        oracle = oracle_over(chain, min_tip=0)
        assert oracle.suggested_tip() == DEFAULT_TIP, "no blocks: the default"
        # zero- and one-wei tips only (dev traffic, a validator's own): still the default
        mine(chain, 1, [(0, 0, 0), (1, 0, 1), (2, 0, 0), (3, 0, 1)])
        assert oracle.suggested_tip() == DEFAULT_TIP
        # two real tips beside many ignored ones: the sample is the real ones alone
        mine(chain, 2, [(0, 1, 0), (1, 1, 1), (2, 1, 3 * GWEI), (3, 1, 2 * GWEI), (4, 0, 1)])
        assert oracle.suggested_tip() == 3 * GWEI  # 60th percentile of [2, 3] gwei
        # exactly 2 wei is sampled
        mine(chain, 3, [(0, 2, 2), (1, 2, 2), (2, 2, 2), (3, 2, 2), (4, 1, 2)])
        assert oracle.suggested_tip() == 2  # 60th percentile of five 2s and two gwei-tips
        assert oracle.gas_price() == next_base_fee(chain) + 2


def test_the_suggestion_is_never_below_the_pools_minimum_tip(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        mine(chain, 1, [(u, 0, 5) for u in range(5)])
        assert oracle_over(chain, min_tip=0).suggested_tip() == 5
        high = oracle_over(chain, min_tip=7)
        assert high.suggested_tip() == 7
        assert high.gas_price() == next_base_fee(chain) + 7
        assert high.gas_price() >= chain.params.min_base_fee + 7
