"""``moderntensor faucet``: run the testnet faucet (docs/faucet.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import trio

from moderntensor.cli import CLIError
from moderntensor.cli._signals import stop_on_signal
from moderntensor.crypto import PrivateKey
from moderntensor.keys import KeyFileError

__all__ = ["load_faucet_key", "register"]

_DESCRIPTION = """\
Serve a faucet: POST /api/claim {"address": "0x..."} pays a fixed amount from the key's
account, within per-address and per-IP cooldowns and a daily cap; GET /api/info, /api/stats;
a web page at /. State (claims, payouts, block lists) is kept in SQLite and survives restarts.
Admin endpoints (/api/admin/block, unblock, blocks, history, cleanup) need the config's
admin_token as "Authorization: Bearer <token>". See docs/faucet.md for faucet.toml.

The key file is JSON with a private_key: an "account" key file ({"kind": "account",
"private_key": "0x..."}) or a validator key file (its account key pays).
"""


def register(groups: Any) -> None:
    faucet = groups.add_parser(
        "faucet",
        help="run the testnet faucet (HTTP API and web page)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    faucet.add_argument("--rpc", required=True, metavar="URL", help="the node's JSON-RPC URL")
    faucet.add_argument("--key-file", required=True, type=Path, metavar="K", help="payer key")
    faucet.add_argument("--config", type=Path, metavar="TOML", help="faucet.toml ([faucet])")
    faucet.add_argument("--host", help="listen address (overrides faucet.host)")
    faucet.add_argument("--port", type=int, help="listen port (overrides faucet.port)")
    faucet.add_argument("--database", help="SQLite file (overrides faucet.database)")
    faucet.add_argument("--chain-id", type=int, help="refuse to start on another chain")
    faucet.add_argument("--log-format", choices=("text", "json"), default="text")
    faucet.set_defaults(handler=_run)


def load_faucet_key(path: Path) -> PrivateKey:
    """The paying key of an ``account`` or ``validator`` key file.

    Raises:
        KeyFileError: missing, unreadable, of another kind or without a valid private_key.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: cannot read a JSON key file: {exc}") from None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind not in ("account", "validator"):
        raise KeyFileError(f"{path}: expected an account or validator key file, found {kind!r}")
    text = doc.get("private_key")
    if not isinstance(text, str):
        raise KeyFileError(f"{path}: missing private_key")
    try:
        return PrivateKey.from_hex(text)
    except ValueError as exc:
        raise KeyFileError(f"{path}: private_key: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    from moderntensor.faucet import ConfigError, NodeUnavailable, load_config, serve_faucet
    from moderntensor.node._logging import setup_logging

    setup_logging("info", args.log_format)
    try:
        key = load_faucet_key(args.key_file)
        config = load_config(args.config, host=args.host, port=args.port, database=args.database)
    except (KeyFileError, ConfigError) as exc:
        raise CLIError(str(exc)) from None

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal, nursery.cancel_scope)
            await serve_faucet(config, key, args.rpc, chain_id=args.chain_id)

    try:
        trio.run(main)
    except* (ConfigError, NodeUnavailable, ValueError) as group:
        raise CLIError(str(group.exceptions[0])) from None
    return 0
