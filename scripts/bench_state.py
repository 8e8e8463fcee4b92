#!/usr/bin/env python3
"""Benchmark: signed transfers executed and committed per second, trie updates per second.

For each state size (prefunded accounts), 10,000 pre-signed EIP-1559 transfers are fed as raw
bytes through the whole path a block takes: decode + sender recovery, nonce/balance/fee checks,
execution, one state hash per block, and one atomic RocksDB WriteBatch per block (trie nodes,
header, body, receipts, indexes, head). Single process, one core.

Usage: python scripts/bench_state.py [--accounts 1000 100000] [--transfers 10000]
                                      [--block-size 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.transactions import (
    DynamicFeeTransaction,
    decode_transaction,
    sign_transaction,
)
from moderntensor.crypto import PrivateKey, checksum_address, keccak256
from moderntensor.state.store import Database
from moderntensor.state.trie import MemoryNodeStore, SecureTrie

CHAIN_ID = 1337
GWEI = 10**9


def account_key(i: int) -> PrivateKey:
    return PrivateKey(keccak256(b"bench-account" + i.to_bytes(8, "big")))


def genesis_doc(addresses: list[bytes], validator: PrivateKey, owner: PrivateKey) -> dict:  # type: ignore[type-arg]
    return {
        "chain_id": CHAIN_ID,
        "network_name": "bench",
        "genesis_time": 1_700_000_000,
        "consensus": {
            "slot_duration": 1,
            "epoch_length": 32,
            "min_stake": "1",
            "max_validators": 10,
            "evidence_epochs": 1,
            "unbonding_epochs": 4,
            "slash_fraction": "0.05",
            "block_reward": str(2 * 10**18),
        },
        "block": {"gas_limit": 1_000_000_000, "base_fee": GWEI, "min_gas_price": GWEI},
        "total_supply": str(10**40),
        "decimals": 18,
        "validators": [
            {
                "address": checksum_address(owner.address),
                "consensus_pubkey": "0x" + validator.public_key_bytes.hex(),
                "stake": str(10**24),
                "name": "bench",
            }
        ],
        "alloc": {"0x" + a.hex(): {"balance": str(10**24)} for a in addresses},
    }


def run_transfers(accounts: int, transfers: int, block_size: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    senders = min(accounts, transfers)  # every sender signs at least one transfer
    keys = [account_key(i) for i in range(senders)]
    t0 = time.perf_counter()
    addresses = [k.address for k in keys]
    addresses += [keccak256(i.to_bytes(8, "big"))[12:] for i in range(senders, accounts)]
    nonces = [0] * senders
    raws: list[bytes] = []
    for n in range(transfers):
        s = n % senders
        tx = DynamicFeeTransaction(
            chain_id=CHAIN_ID,
            nonce=nonces[s],
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=10 * GWEI,
            gas=21_000,
            to=addresses[rng.randrange(accounts)],
            value=rng.randrange(1, 10**15),
        )
        nonces[s] += 1
        raws.append(sign_transaction(tx, keys[s]).raw)
    setup_sign = time.perf_counter() - t0
    validator, owner = account_key(10**9), account_key(10**9 + 1)
    genesis = parse_genesis(genesis_doc(addresses, validator, owner))
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        t0 = time.perf_counter()
        db = Database.open(Path(tmp) / "db")
        Chain(db, genesis)  # writes genesis (state of `accounts` accounts) in one batch
        db.close()
        setup_genesis = time.perf_counter() - t0
        db = Database.open(Path(tmp) / "db")
        chain = Chain(db, genesis)  # cold: the state is read lazily from RocksDB
        included = 0
        start = time.perf_counter()
        for slot, i in enumerate(range(0, len(raws), block_size), start=1):
            txs = [decode_transaction(raw) for raw in raws[i : i + block_size]]
            executed = chain.build_block(chain.head, slot, validator, txs)
            chain.commit(executed)
            included += len(executed.block.transactions)
        elapsed = time.perf_counter() - start
        db.close()
    if included != transfers:
        raise SystemExit(f"only {included} of {transfers} transfers were included")
    return {
        "accounts": accounts,
        "transfers": transfers,
        "block_size": block_size,
        "seconds": round(elapsed, 3),
        "transfers_per_s": round(transfers / elapsed),
        "setup_sign_s": round(setup_sign, 2),
        "setup_genesis_s": round(setup_genesis, 2),
    }


def run_trie(keys: int, updates: int, batch: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    trie = SecureTrie(MemoryNodeStore())
    t0 = time.perf_counter()
    population = [rng.randbytes(20) for _ in range(keys)]
    for k in population:
        trie.set(k, rng.randbytes(70))
    trie.commit()
    build = time.perf_counter() - t0
    start = time.perf_counter()
    for i in range(0, updates, batch):
        for _ in range(min(batch, updates - i)):
            trie.set(population[rng.randrange(keys)], rng.randbytes(70))
        trie.commit()  # hash and collect the block's new nodes once per batch
    elapsed = time.perf_counter() - start
    return {
        "trie_keys": keys,
        "trie_updates": updates,
        "batch": batch,
        "trie_updates_per_s": round(updates / elapsed),
        "trie_build_inserts_per_s": round(keys / build),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--transfers", type=int, default=10_000)
    parser.add_argument("--block-size", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "runs": [],
    }
    for accounts in args.accounts:
        run = run_transfers(accounts, args.transfers, args.block_size, args.seed)
        results["runs"].append(run)  # type: ignore[attr-defined]
        if not args.json:
            print(
                f"{run['transfers']:>6} transfers over {accounts:>7} accounts: "
                f"{run['transfers_per_s']:>6} transfers/s executed+committed "
                f"({run['seconds']} s, blocks of {run['block_size']}; setup: signing "
                f"{run['setup_sign_s']} s, genesis {run['setup_genesis_s']} s)",
                flush=True,
            )
    trie = run_trie(100_000, 100_000, 1_000, args.seed)
    results["trie"] = trie
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"trie: {trie['trie_updates_per_s']} updates/s on a {trie['trie_keys']}-key secure "
            f"trie (hashed every {trie['batch']}); build {trie['trie_build_inserts_per_s']} "
            "inserts/s"
        )
        print(f"peak RSS: {results['peak_rss_mb']} MB  ({results['machine']})")


if __name__ == "__main__":
    main()
