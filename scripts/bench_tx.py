"""Benchmark: decode + hash + sender per second for signed transfers, on one core.

Usage: python scripts/bench_tx.py [--seconds 2] [--distinct 2000]

Each round decodes ``--distinct`` different signed transfers (so nothing is cached between
rounds: every decode parses, hashes and recovers from scratch) and reads ``hash`` and
``sender``. The loop is bounded by ``--seconds`` per case. Prints one JSON line per case.
"""

from __future__ import annotations

import argparse
import json
import time

from moderntensor.chain.transactions import (
    DynamicFeeTransaction,
    LegacyTransaction,
    Transaction,
    decode_transaction,
    sign_transaction,
)
from moderntensor.crypto import PrivateKey, Signature, keccak256, recover_address


def _transfers(kind: str, count: int) -> list[bytes]:
    key = PrivateKey(bytes(range(1, 33)))
    to = bytes.fromhex("3535353535353535353535353535353535353535")
    out = []
    for nonce in range(count):
        tx: Transaction
        if kind == "legacy":
            tx = LegacyTransaction(
                chain_id=1, nonce=nonce, gas_price=10**9, gas=21_000, to=to, value=10**18
            )
        else:
            tx = DynamicFeeTransaction(
                chain_id=1,
                nonce=nonce,
                max_priority_fee_per_gas=10**9,
                max_fee_per_gas=3 * 10**10,
                gas=21_000,
                to=to,
                value=10**18,
            )
        out.append(sign_transaction(tx, key).raw)
    return out


def _bench(raws: list[bytes], seconds: float) -> tuple[int, float]:
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for raw in raws:
            tx = decode_transaction(raw)
            tx.hash  # noqa: B018 - the point is to touch the cached properties
            tx.sender  # noqa: B018
        done += len(raws)
    return done, time.perf_counter() - start


def _bench_recover(seconds: float) -> tuple[int, float]:
    """Baseline: recover_address alone (the floor under decode+hash+sender)."""
    key = PrivateKey(bytes(range(1, 33)))
    pairs = [(d, key.sign(d)) for d in (keccak256(i.to_bytes(4, "big")) for i in range(500))]
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for digest, sig in pairs:
            recover_address(digest, Signature(sig.y_parity, sig.r, sig.s))
        done += len(pairs)
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--distinct", type=int, default=2000)
    args = parser.parse_args()
    done, elapsed = _bench_recover(args.seconds)
    print(
        json.dumps(
            {
                "case": "baseline: recover_address alone",
                "per_second": round(done / elapsed),
                "seconds": round(elapsed, 3),
            }
        )
    )
    for kind in ("legacy", "eip1559"):
        raws = _transfers(kind, args.distinct)
        done, elapsed = _bench(raws, args.seconds)
        print(
            json.dumps(
                {
                    "case": f"{kind} transfer decode+hash+sender",
                    "txs": done,
                    "seconds": round(elapsed, 3),
                    "per_second": round(done / elapsed),
                    "bytes_per_tx": len(raws[0]),
                }
            )
        )


if __name__ == "__main__":
    main()
