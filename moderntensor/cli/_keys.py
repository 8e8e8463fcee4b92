"""``moderntensor keys``: create and show node and validator keys; move slashing protection."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from moderntensor.cli import CLIError, _protection
from moderntensor.cli._faucet import load_faucet_key
from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.keys import (
    KeyFileError,
    NodeKey,
    ValidatorKeys,
    load_node_key,
    load_validator_keys,
    write_key_file,
)


def register(groups: Any) -> None:
    keys = groups.add_parser(
        "keys", help="create and show keys; export and import slashing protection"
    )
    sub = keys.add_subparsers(dest="command", metavar="COMMAND", required=True)

    new = sub.add_parser(
        "new",
        help="create a key file (mode 0600)",
        description="Create a node key (network identity), validator keys (account key that "
        "owns the stake plus consensus key that signs votes) or an account key (e.g. the "
        "faucet's). Prints the public part as JSON.",
    )
    new.add_argument("kind", choices=("node", "validator", "account"))
    new.add_argument("--out", required=True, help="key file to create (never overwritten)")
    new.add_argument("--name", default="", help="validator name (validator keys only)")
    new.set_defaults(handler=_new)

    show = sub.add_parser(
        "show",
        help="print a key file's public part as JSON",
        description="Print the public part of a key file (peer id, or address, validator id "
        "and consensus public key). --private also prints the private keys.",
    )
    show.add_argument("file")
    show.add_argument("--private", action="store_true", help="include private keys")
    show.set_defaults(handler=_show)

    _protection.register(sub)


def _new(args: argparse.Namespace) -> int:
    doc: dict[str, Any]
    if args.kind == "node":
        doc = NodeKey(PrivateKey.generate()).to_json()
    elif args.kind == "account":
        key = PrivateKey.generate()
        doc = {
            "kind": "account",
            "address": checksum_address(key.address),
            "private_key": "0x" + key.secret.hex(),
        }
    else:
        doc = ValidatorKeys(args.name, PrivateKey.generate(), PrivateKey.generate()).to_json()
    try:
        write_key_file(args.out, doc)
    except KeyFileError as exc:
        raise CLIError(str(exc)) from None
    public = {k: v for k, v in doc.items() if "private" not in k}
    print(json.dumps({"file": args.out, **public}, indent=2))
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        with open(args.file, encoding="utf-8") as handle:
            kind = json.load(handle).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None  # unreadable: the loader below names the problem
    else:
        if kind not in ("node", "validator", "account"):
            raise CLIError(f"{args.file}: not a key file: kind is {kind!r}, "
                           "expected 'node', 'validator' or 'account'")  # fmt: skip
    try:
        if kind == "node":
            print(json.dumps(load_node_key(args.file).to_json(args.private), indent=2))
        elif kind == "account":
            key = load_faucet_key(Path(args.file))
            doc = {"kind": "account", "address": checksum_address(key.address)}
            if args.private:
                doc["private_key"] = "0x" + key.secret.hex()
            print(json.dumps(doc, indent=2))
        else:
            print(json.dumps(load_validator_keys(args.file).to_json(args.private), indent=2))
    except KeyFileError as exc:
        raise CLIError(str(exc)) from None
    return 0
