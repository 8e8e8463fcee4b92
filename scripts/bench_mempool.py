"""Benchmark: mempool admits per second, block selection and re-validation on a new head.

Usage: python scripts/bench_mempool.py [--senders 2000] [--per-sender 10] [--rounds 3]
    [--long-senders 10] [--long-nonces 2000]

Transactions are signed once up front (signing, hashing and sender recovery are not what is
measured: a decoded transaction arrives with them cached). Each round admits every transaction
into a fresh pool over a dict-backed account reader, then times ``best_transactions`` for one
30M-gas block and ``on_new_head`` after that block. A second workload (``long_run``) admits
``--long-senders`` senders x ``--long-nonces`` consecutive nonces each (a load test, or an Anvil
user, from few accounts) under the ``--dev`` limits, then selects a block and applies it.
Prints one JSON line per measurement (best of the rounds).
"""

from __future__ import annotations

import argparse
import json
import time

import attrs

from moderntensor.chain.execution import ChainParams
from moderntensor.chain.transactions import DynamicFeeTransaction, Transaction, sign_transaction
from moderntensor.crypto import PrivateKey
from moderntensor.mempool import DEV_MEMPOOL, Mempool, MempoolConfig, MempoolRejected

GWEI = 10**9
PARAMS = ChainParams(
    chain_id=1337,
    gas_limit=30_000_000,
    min_base_fee=GWEI,
    block_reward=0,
    epoch_length=32,
    min_stake=1,
    unbonding_epochs=4,
    evidence_epochs=1,
    slash_fraction_bps=500,
)


class Accounts:
    def __init__(self, nonces: dict[bytes, int], balance: int) -> None:
        self.nonces = nonces
        self.balance = balance

    def get_nonce(self, address: bytes) -> int:
        return self.nonces.get(address, 0)

    def get_balance(self, address: bytes) -> int:
        return self.balance


def _transactions(senders: int, per_sender: int) -> list[Transaction]:
    to = bytes.fromhex("3535353535353535353535353535353535353535")
    out: list[Transaction] = []
    for i in range(senders):
        key = PrivateKey((i + 1).to_bytes(32, "big"))
        for nonce in range(per_sender):
            tx = DynamicFeeTransaction(
                chain_id=PARAMS.chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=(1 + (i * 7 + nonce) % 50) * GWEI // 10,
                max_fee_per_gas=20 * GWEI,
                gas=21_000,
                to=to,
                value=1,
            )
            out.append(sign_transaction(tx, key))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=2000)
    parser.add_argument("--per-sender", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-senders", type=int, default=10)
    parser.add_argument("--long-nonces", type=int, default=2000)
    args = parser.parse_args()
    txs = _transactions(args.senders, args.per_sender)
    config = MempoolConfig(global_slots=len(txs), account_slots=args.per_sender)
    best: dict[str, float] = {}

    def record(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    for _ in range(args.rounds):
        accounts = Accounts({}, 10**24)
        pool = Mempool(PARAMS, accounts, GWEI, config)
        start = time.perf_counter()
        for tx in txs:
            pool.add(tx)
        record("admit", time.perf_counter() - start)
        start = time.perf_counter()
        block = pool.best_transactions(GWEI, PARAMS.gas_limit)
        record("best_transactions", time.perf_counter() - start)
        for tx in block:
            accounts.nonces[tx.sender] = tx.nonce + 1
        start = time.perf_counter()
        pool.on_new_head(accounts, GWEI)
        record("on_new_head", time.perf_counter() - start)
        # a full pool: every further admit evicts the cheapest (or is refused as underpriced)
        half = attrs.evolve(config, global_slots=len(txs) // 2)
        full = Mempool(PARAMS, Accounts({}, 10**24), GWEI, half)
        refused = 0
        start = time.perf_counter()
        for tx in txs:
            try:
                full.add(tx)
            except MempoolRejected:  # refusals ("transaction underpriced") are measured too
                refused += 1
        record("admit_full_pool", time.perf_counter() - start)
    print(json.dumps({"case": "admit", "txs": len(txs), "per_s": round(len(txs) / best["admit"])}))
    print(
        json.dumps(
            {
                "case": "admit_full_pool",
                "txs": len(txs),
                "capacity": len(txs) // 2,
                "refused": refused,
                "per_s": round(len(txs) / best["admit_full_pool"]),
            }
        )
    )
    print(
        json.dumps(
            {
                "case": "best_transactions",
                "pool": len(txs),
                "selected": len(block),
                "ms": round(best["best_transactions"] * 1000, 2),
            }
        )
    )
    print(
        json.dumps(
            {
                "case": "on_new_head",
                "pool": len(txs),
                "senders": args.senders,
                "ms": round(best["on_new_head"] * 1000, 2),
            }
        )
    )
    _long_run(args.long_senders, args.long_nonces, args.rounds)


def _long_run(senders: int, nonces: int, rounds: int) -> None:
    """Few senders, long consecutive nonce runs: admit, select a block, apply it."""
    txs = _transactions(senders, nonces)
    admit = select = head = float("inf")
    selected = 0
    for _ in range(rounds):
        accounts = Accounts({}, 10**24)
        pool = Mempool(PARAMS, accounts, GWEI, DEV_MEMPOOL)
        start = time.perf_counter()
        for tx in txs:
            pool.add(tx)
        admit = min(admit, time.perf_counter() - start)
        start = time.perf_counter()
        block = pool.best_transactions(GWEI, PARAMS.gas_limit)
        select = min(select, time.perf_counter() - start)
        selected = len(block)
        for tx in block:
            accounts.nonces[tx.sender] = max(accounts.nonces.get(tx.sender, 0), tx.nonce + 1)
        start = time.perf_counter()
        pool.on_new_head(accounts, GWEI)
        head = min(head, time.perf_counter() - start)
    case = {"case": "long_run", "senders": senders, "nonces": nonces, "txs": len(txs)}
    print(json.dumps({**case, "admit_per_s": round(len(txs) / admit), "held": len(pool)}))
    print(json.dumps({**case, "best_transactions_ms": round(select * 1000, 2),
                      "selected": selected, "on_new_head_ms": round(head * 1000, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
