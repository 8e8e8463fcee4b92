"""Run a testnet made by ``moderntensor testnet init`` on this host: every node as its own
process, a live status table, and all of them stopped on Ctrl-C.

    scripts/localnet DIR [--seconds N] [--refresh S]

Each node's output goes to ``DIR/<node>/node.log``. The table polls each node's JSON-RPC once
per refresh: head and finalized height, the consensus view, peers, whether it signs yet.
``--seconds`` stops everything after that long (for scripts and tests); without it, Ctrl-C
does (each node gets SIGTERM and stops cleanly, SIGKILL after 5 s).
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table

RPC_TIMEOUT_S = 1.0


def rpc_status(url: str) -> dict[str, Any]:
    """One JSON-RPC batch: head, finality and peers; {} while the node does not answer."""
    parts = urlsplit(url)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "mt_finality", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "net_peerCount", "params": []},
    ]
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=RPC_TIMEOUT_S)
    try:
        conn.request("POST", "/", json.dumps(batch), {"Content-Type": "application/json"})
        answers = json.loads(conn.getresponse().read())
    except (OSError, ValueError, http.client.HTTPException):
        return {}
    finally:
        conn.close()
    by_id = {a.get("id"): a.get("result") for a in answers if isinstance(a, dict)}
    finality = by_id.get(1) or {}
    peers = by_id.get(2)
    return {
        "head": int(finality.get("headNumber", "0x0"), 16),
        "finalized": int(finality.get("finalizedNumber", "0x0"), 16),
        "view": finality.get("view"),
        "synced": finality.get("synced"),
        "peers": int(peers, 16) if isinstance(peers, str) else None,
    }


def render(nodes: list[dict[str, Any]], status: list[dict[str, Any]], started: float) -> Table:
    table = Table(title=f"localnet — {time.monotonic() - started:,.0f} s — Ctrl-C stops all")
    for column in ("node", "rpc port", "head", "final", "view", "peers", "signing", "process"):
        table.add_column(column, no_wrap=True)
    for node, row in zip(nodes, status, strict=True):
        alive = row.get("process", "running")
        port = node["rpc"].rsplit(":", 1)[-1]
        if not row.get("rpc_ok"):
            table.add_row(node["name"], port, "-", "-", "-", "-", "-", alive)
            continue
        table.add_row(
            node["name"],
            port,
            str(row["head"]),
            str(row["finalized"]),
            str(row["view"]) if row["view"] is not None else "-",
            str(row["peers"]) if row["peers"] is not None else "-",
            "-" if row["synced"] is None else ("yes" if row["synced"] else "waiting"),
            alive,
        )
    return table


async def run(directory: Path, seconds: float | None, refresh: float) -> int:
    summary = json.loads((directory / "testnet.json").read_text())
    nodes: list[dict[str, Any]] = summary["nodes"]
    console = Console()
    started = time.monotonic()
    procs: list[trio.Process] = []
    status: list[dict[str, Any]] = [{} for _ in nodes]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            log = open(Path(node["config"]).parent / "node.log", "ab")  # noqa: SIM115
            command = [sys.executable, "-m", "moderntensor.node", "--config", node["config"]]
            proc = await nursery.start(
                partial(trio.run_process, command, stdout=log, stderr=subprocess.STDOUT,
                        check=False)
            )  # fmt: skip
            procs.append(proc)
        with trio.move_on_after(seconds if seconds is not None else float("inf")):
            with Live(
                render(nodes, status, started), console=console, refresh_per_second=4
            ) as live:
                while True:
                    for i, node in enumerate(nodes):
                        row = await trio.to_thread.run_sync(rpc_status, node["rpc"])
                        row["rpc_ok"] = bool(row)
                        code = procs[i].returncode
                        row["process"] = "running" if code is None else f"exited {code}"
                        status[i] = row
                    live.update(render(nodes, status, started))
                    await trio.sleep(refresh)
        nursery.cancel_scope.cancel()  # terminates every node (SIGTERM, then SIGKILL)
    finalized = [row.get("finalized", 0) for row in status]
    console.print(f"stopped; finalized heights: {finalized}")
    return 0 if all(p.returncode is not None for p in procs) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="a directory made by `moderntensor testnet init`")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--refresh", type=float, default=1.0, help="seconds between polls")
    args = parser.parse_args()
    if not (args.dir / "testnet.json").exists():
        print(f"localnet: {args.dir}/testnet.json not found: run `moderntensor testnet init "
              f"--validators N --out {args.dir}` first", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    try:
        sys.exit(trio.run(run, args.dir, args.seconds, args.refresh))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
