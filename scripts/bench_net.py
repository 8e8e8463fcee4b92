#!/usr/bin/env python3
"""Benchmark: the network, in three parts (issue 11).

* ``gossip``: two nodes' NetworkService over real trio-websocket on 127.0.0.1; signed votes
  and transaction batches pushed from one side; delivered messages/s (and transfers/s for
  the batches) at the other (scripts/_bench_net_gossip.py).
* ``sync``: a chain of ``--blocks`` blocks of ``--txs`` transfers (built once, cached under
  ``--cache``) served by a node process; a fresh node range-syncs it over WebSocket:
  blocks/s and re-executed transfers/s (scripts/_bench_net_sync.py).
* ``localnet``: ``moderntensor testnet init --validators 4`` with 1 s slots and a 150M gas
  limit, every node its own OS process; pre-signed transfers fed through every validator's
  JSON-RPC at full speed for ``--seconds``; finalized transfers/s and submit-to-finalized
  p50/p99 at every node (scripts/_bench_net_localnet.py).
* ``all``: the three, in that order.

Each part prints a table and the machine; ``--json FILE`` also writes the figures.

Usage: python scripts/bench_net.py gossip [--votes 20000] [--txs 20000]
       python scripts/bench_net.py sync [--blocks 5000] [--txs 100] [--senders 20]
       python scripts/bench_net.py localnet [--seconds 30] [--validators 4]
       python scripts/bench_net.py all
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench_net_gossip as gossip
import _bench_net_localnet as localnet
import _bench_net_sync as sync
from _bench_net_common import machine


def _gossip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--votes", type=int, default=20_000, help="signed votes to push")
    p.add_argument("--gossip-txs", dest="txs", type=int, default=20_000,
                   help="transfers to push in batch frames")  # fmt: skip
    p.add_argument("--gossip-senders", dest="senders", type=int, default=200)
    p.add_argument("--gossip-timeout", dest="timeout", type=float, default=120.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--log-level", default="warning")
    sub = parser.add_subparsers(dest="part", required=True)
    _gossip_args(sub.add_parser("gossip", help="gossip between two nodes"))
    sync.add_arguments(sub.add_parser("sync", help="range sync of a long chain"))
    localnet.add_arguments(sub.add_parser("localnet", help="a 4-validator localnet"))
    everything = sub.add_parser("all", help="the three parts")
    _gossip_args(everything)
    sync.add_arguments(everything)
    localnet.add_arguments(everything)
    args = parser.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: where is it stuck?
    from moderntensor.node._logging import setup_logging

    setup_logging(args.log_level)
    results: dict[str, Any] = {"machine": machine()}
    if args.part in ("gossip", "all"):
        results["gossip"] = trio.run(gossip.run, args)
        gossip.report(results["gossip"])
    if args.part in ("sync", "all"):
        results["sync"] = trio.run(sync.run, args)
        sync.report(results["sync"])
    if args.part in ("localnet", "all"):
        results["localnet"] = trio.run(localnet.run, args)
        localnet.report(results["localnet"])
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
