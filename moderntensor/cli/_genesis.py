"""``moderntensor genesis``: create, validate and inspect genesis files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from moderntensor.chain.genesis import (
    GenesisError,
    alloc_state_root,
    build_genesis,
    describe,
    load_genesis,
    parse_genesis,
)
from moderntensor.cli import CLIError
from moderntensor.crypto import PrivateKey, checksum_address, parse_address
from moderntensor.keys import KeyFileError, ValidatorKeys, write_key_file

TOKEN = 10**18


def register(groups: Any) -> None:
    genesis = groups.add_parser("genesis", help="create, validate and inspect genesis files")
    sub = genesis.add_subparsers(dest="command", metavar="COMMAND", required=True)

    new = sub.add_parser(
        "new",
        help="write genesis.json and validator key files",
        description="Generate a genesis file with N validators (fresh keys, written to "
        "DIR/keys/validator-I.json with mode 0600) and optional prefunded accounts.",
    )
    new.add_argument("--validators", type=int, required=True, metavar="N")
    new.add_argument("--out", required=True, metavar="DIR")
    add_genesis_options(new, slot=2.0, epoch=900)
    new.set_defaults(handler=_new)

    validate = sub.add_parser(
        "validate", help="check a genesis file, listing every problem at once"
    )
    validate.add_argument("file")
    validate.set_defaults(handler=_validate)

    inspect = sub.add_parser(
        "inspect",
        help="print hash, state root, validators and supply as JSON",
    )
    inspect.add_argument("file")
    inspect.set_defaults(handler=_inspect)

    alloc_root = sub.add_parser(
        "alloc-root",
        help="print the Ethereum state root of a geth-style alloc",
        description="Compute the state root of an allocation on its own, to compare with an "
        "Ethereum network's genesis. FILE is a geth genesis (with an 'alloc' key, "
        "and optionally 'alloc_with_code'), or a bare {address: {balance, nonce, code, "
        "storage}} map; '-' reads standard input.",
    )
    alloc_root.add_argument("file")
    alloc_root.set_defaults(handler=_alloc_root)


def genesis_document(
    args: argparse.Namespace, names: list[str]
) -> tuple[dict[str, Any], list[ValidatorKeys]]:
    """A genesis document with fresh validator keys, from ``genesis new``'s options (shared
    with ``testnet init``).

    Raises:
        CLIError: an option out of range, or a genesis that does not validate.
    """
    genesis_time = args.genesis_time
    if genesis_time is None:
        genesis_time = (int(time.time()) // 60 + 2) * 60
    keys = [ValidatorKeys(name, PrivateKey.generate(), PrivateKey.generate()) for name in names]
    alloc: dict[str, dict[str, str]] = {}
    for k in keys:  # owners need gas money to send staking transactions
        alloc[checksum_address(k.account.address)] = {"balance": hex(1_000 * TOKEN)}
    for item in args.alloc:
        address, _, amount = item.partition("=")
        if not amount.isdigit():
            raise CLIError(f"--alloc {item!r}: expected ADDR=TOKENS, TOKENS a whole number")
        try:
            parse_address(address)
        except ValueError:
            raise CLIError(
                f"--alloc {item!r}: {address!r} is not an address (0x and 40 hex digits)"
            ) from None
        alloc[address] = {"balance": hex(int(amount) * TOKEN)}
    doc = {
        "chain_id": args.chain_id,
        "network_name": args.network_name,
        "genesis_time": genesis_time,
        "consensus": {
            "slot_duration": args.slot_duration,
            "epoch_length": args.epoch_length,
            "min_stake": str(args.min_stake * TOKEN),
            "max_validators": 100,
            "evidence_epochs": args.evidence_epochs,
            "unbonding_epochs": args.unbonding_epochs,
            "slash_fraction": "0.05",
            "block_reward": str(2 * TOKEN),
        },
        "network": {"p2p_port": 30303, "rpc_port": 8545, "max_peers": 50},
        "block": {"gas_limit": 30_000_000, "base_fee": 10**9, "min_gas_price": 10**9},
        "total_supply": str(args.supply * TOKEN),
        "decimals": 18,
        "validators": [
            {
                "address": checksum_address(k.account.address),
                "consensus_pubkey": "0x" + k.consensus.public_key_bytes.hex(),
                "stake": str(args.stake * TOKEN),
                "name": k.name,
            }
            for k in keys
        ],
        "alloc": alloc,
    }
    try:
        parse_genesis(doc, "generated genesis")
    except GenesisError as exc:
        raise CLIError(str(exc)) from None
    return doc, keys


def write_genesis(out: Path, doc: dict[str, Any], keys: list[ValidatorKeys]) -> list[Path]:
    """Write ``genesis.json`` and ``keys/validator-I.json`` (mode 0600); return the key paths.

    Raises:
        CLIError: the directory or a key file cannot be written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--out {out}: cannot create the directory: {exc.strerror}") from None
    paths = [out / "keys" / f"validator-{i}.json" for i in range(len(keys))]
    try:
        for path, k in zip(paths, keys, strict=True):
            write_key_file(path, k.to_json())
    except KeyFileError as exc:
        raise CLIError(str(exc)) from None
    (out / "genesis.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return paths


def check_out_dir(text: str) -> Path:
    """``--out DIR`` of ``genesis new`` and ``testnet init``: a directory, new or without a
    genesis.json (``keys new --out`` takes a file; a name ending in .json here is a mix-up, and
    would otherwise silently become a directory).

    Raises:
        CLIError: ``text`` names an existing file, a .json name, or a directory that already
            holds a genesis.json.
    """
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a directory (--out takes a directory)")
    if not out.exists() and out.suffix.lower() == ".json":
        raise CLIError(
            f"--out {out}: --out takes a directory, where genesis.json and keys/ are written"
        )
    if (out / "genesis.json").exists():
        raise CLIError(f"{out / 'genesis.json'} already exists; refusing to overwrite it")
    return out


def add_genesis_options(parser: argparse.ArgumentParser, *, slot: float, epoch: int) -> None:
    """The genesis options ``genesis new`` and ``testnet init`` share."""
    parser.add_argument("--chain-id", type=int, required=True, metavar="ID")
    parser.add_argument("--network-name", default="moderntensor-testnet")
    parser.add_argument(
        "--genesis-time",
        type=int,
        default=None,
        help="unix seconds (default: now + 60, rounded to the minute)",
    )
    parser.add_argument(
        "--slot-duration", type=float, default=slot, help=f"seconds (default {slot:g})"
    )
    parser.add_argument(
        "--epoch-length",
        type=int,
        default=epoch,
        help=f"blocks per epoch (default {epoch}: 30 minutes of 2 s slots)",
    )
    parser.add_argument(
        "--evidence-epochs",
        type=int,
        default=48,
        help="epochs evidence of an offence stays includable (default 48: one day)",
    )
    parser.add_argument(
        "--unbonding-epochs",
        type=int,
        default=144,
        help="epochs before unstaked stake can be withdrawn, at least 2 + evidence epochs + 1 "
        "(default 144: three days)",
    )
    parser.add_argument("--stake", type=int, default=100_000, help="tokens per validator")
    parser.add_argument("--min-stake", type=int, default=10_000, help="tokens")
    parser.add_argument("--supply", type=int, default=1_000_000_000, help="total supply in tokens")
    parser.add_argument(
        "--alloc",
        action="append",
        default=[],
        metavar="ADDR=TOKENS",
        help="prefund an account (repeatable)",
    )


def _new(args: argparse.Namespace) -> int:
    if args.validators < 1:
        raise CLIError("--validators must be at least 1")
    out = check_out_dir(args.out)
    doc, keys = genesis_document(args, [f"validator-{i}" for i in range(args.validators)])
    paths = write_genesis(out, doc, keys)
    block, _ = build_genesis(parse_genesis(doc, "generated genesis"))
    print(
        json.dumps(
            {
                "genesis": str(out / "genesis.json"),
                "keys": [str(p) for p in paths],
                "hash": "0x" + block.hash.hex(),
                "state_root": "0x" + block.header.state_root.hex(),
            },
            indent=2,
        )
    )
    return 0


def _load(path: str) -> Any:
    try:
        return load_genesis(path)
    except GenesisError as exc:
        raise CLIError(str(exc)) from None


def _validate(args: argparse.Namespace) -> int:
    genesis = _load(args.file)
    block, _ = build_genesis(genesis)
    print(
        f"ok: {args.file}: chain_id={genesis.chain_id} validators={len(genesis.validators)} "
        f"accounts={len(genesis.alloc)} hash=0x{block.hash.hex()}"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    genesis = _load(args.file)
    block, _ = build_genesis(genesis)
    print(json.dumps(describe(genesis, block), indent=2))
    return 0


def _alloc_root(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        doc = json.loads(text)
    except OSError as exc:
        raise CLIError(f"{args.file}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CLIError(f"{args.file}: not a UTF-8 text file (expected JSON)") from None
    except json.JSONDecodeError as exc:
        raise CLIError(f"{args.file}: not JSON: {exc}") from None
    try:
        root = alloc_state_root(doc, args.file)
    except GenesisError as exc:
        raise CLIError(str(exc)) from None
    print("0x" + root.hex())
    return 0
