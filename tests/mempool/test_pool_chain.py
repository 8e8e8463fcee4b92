"""The pool against the real chain: blocks built from ``best_transactions`` include all of them."""

from __future__ import annotations

import random
from pathlib import Path

from moderntensor.chain.chain import Chain
from moderntensor.chain.execution import compute_next_base_fee
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.transactions import DynamicFeeTransaction, Transaction, sign_transaction
from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.state.store import Database

GWEI = 10**9
VALIDATOR = PrivateKey(b"\x01" * 32)
OWNER = PrivateKey(b"\x02" * 32)
USERS = [PrivateKey(bytes([3 + i]) * 32) for i in range(5)]
GAS_LIMIT = 21_000 * 7  # a small block, so the pool drains over several of them


def genesis_doc() -> dict[str, object]:
    return {
        "chain_id": 1337,
        "network_name": "pool-test",
        "genesis_time": 1_700_000_000,
        "consensus": {
            "slot_duration": 1,
            "epoch_length": 32,
            "min_stake": "1000",
            "max_validators": 10,
            "evidence_epochs": 1,
            "unbonding_epochs": 4,
            "slash_fraction": "0.05",
            "block_reward": "0",
        },
        "block": {"gas_limit": GAS_LIMIT, "base_fee": GWEI, "min_gas_price": GWEI},
        "total_supply": str(10**30),
        "validators": [
            {
                "address": checksum_address(OWNER.address),
                "consensus_pubkey": "0x" + VALIDATOR.public_key_bytes.hex(),
                "stake": "100000",
            }
        ],
        "alloc": {checksum_address(u.address): {"balance": str(10**21)} for u in USERS},
    }


def transfer(user: int, nonce: int, tip: int, max_fee: int = 10 * GWEI) -> Transaction:
    tx = DynamicFeeTransaction(
        chain_id=1337,
        nonce=nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=max_fee,
        gas=21_000,
        to=USERS[(user + 1) % len(USERS)].address,
        value=10**15,
    )
    return sign_transaction(tx, USERS[user])


def next_base_fee(chain: Chain) -> int:
    head = chain.head
    return compute_next_base_fee(
        head.base_fee_per_gas, head.gas_used, head.gas_limit, chain.params.min_base_fee
    )


def test_blocks_from_the_pool_include_every_selected_transaction(tmp_path: Path) -> None:
    rng = random.Random(7)
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        pool = Mempool(chain.params, chain.state_at(chain.head), next_base_fee(chain))
        submitted = [
            transfer(u, n, rng.randrange(1, 5) * GWEI // 2) for u in range(5) for n in range(5)
        ]
        rng.shuffle(submitted)  # gaps first: they wait as queued until filled
        for tx in submitted:
            pool.add(tx)
        replaced = submitted[0]
        better = transfer(USERS.index(next(u for u in USERS if u.address == replaced.sender)),
                          replaced.nonce, 4 * GWEI, 20 * GWEI)  # fmt: skip
        pool.add(better)
        assert len(pool) == 25 and pool.statistics().queued == 0
        included: list[Transaction] = []
        for slot in range(1, 20):
            if not len(pool):
                break
            base_fee = next_base_fee(chain)
            best = pool.best_transactions(base_fee, chain.params.gas_limit)
            assert best, "a non-empty pool of executable transfers must offer something"
            executed = chain.build_block(chain.head, slot, VALIDATOR, best)
            assert list(executed.block.transactions) == best
            assert all(r.status == 1 for r in executed.receipts)
            chain.commit(executed)
            included += best
            pool.remove_included(best)
            pool.on_new_head(chain.state_at(chain.head), next_base_fee(chain))
        assert len(pool) == 0
        assert len(included) == 25 and better in included and replaced not in included
        state = chain.state_at(chain.head)
        assert all(state.get_nonce(u.address) == 5 for u in USERS)
        assert all(pool.pending_nonce(u.address) == 5 for u in USERS)


def test_a_head_from_elsewhere_makes_pool_entries_stale(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        pool = Mempool(
            chain.params,
            chain.state_at(chain.head),
            next_base_fee(chain),
            MempoolConfig(account_queue=8),
        )
        ours = [transfer(0, n, GWEI) for n in range(3)]
        for tx in ours:
            pool.add(tx)
        theirs = transfer(0, 0, 2 * GWEI)  # the same nonce, in another node's block
        chain.commit(chain.build_block(chain.head, 1, VALIDATOR, [theirs]))
        dropped = pool.on_new_head(chain.state_at(chain.head), next_base_fee(chain))
        assert dropped == [ours[0]]
        best = pool.best_transactions(next_base_fee(chain), chain.params.gas_limit)
        assert best == ours[1:]
        executed = chain.build_block(chain.head, 2, VALIDATOR, best)
        assert list(executed.block.transactions) == best
