"""``moderntensor tx decode``: decode signed transactions to JSON (one tx per argument or line)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from moderntensor.chain.transactions import (
    TransactionInvalid,
    decode_transaction,
    validate_transaction_static,
)
from moderntensor.chain.tx_json import transaction_to_json
from moderntensor.cli import CLIError
from moderntensor.codec import DecodeError

__all__ = ["register"]

_DESCRIPTION = """\
Decode a signed Ethereum-format transaction (legacy/EIP-155, EIP-2930 type 1, EIP-1559 type 2)
given as hex (with or without 0x) and print it as one JSON object with keys type, hash, sender,
chain_id, nonce, to, value, gas, gas_price (legacy, type 1) or max_fee_per_gas and
max_priority_fee_per_gas (type 2), data, access_list, v, y_parity, r, s.

Output follows Ethereum JSON-RPC conventions: quantities are 0x-prefixed minimal hex ("0x0"),
byte strings are 0x-hex, addresses are EIP-55 checksummed; chain_id is null for a pre-EIP-155
transaction and to is null for a contract creation.

With no argument, reads one hex transaction per line from standard input (blank lines are
skipped) and prints one JSON line per transaction; a bad line is reported on standard error
with its line number and the rest are still decoded. Exit code 2 if any transaction is invalid.
"""


def register(groups: Any) -> None:
    tx = groups.add_parser("tx", help="decode transactions", description="Transaction tools.")
    commands = tx.add_subparsers(dest="command", metavar="COMMAND", required=True)
    decode = commands.add_parser(
        "decode",
        help="decode a signed transaction to JSON",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument(
        "raw", nargs="?", metavar="HEX", help="the transaction as hex; omit to read stdin"
    )
    decode.add_argument(
        "--chain-id",
        type=int,
        metavar="N",
        help="also apply the stateless validity rules for chain N (chain id, EIP-2681 nonce, "
        "fee caps, EIP-3860 initcode size, intrinsic gas)",
    )
    decode.add_argument(
        "--allow-unprotected",
        action="store_true",
        help="with --chain-id, accept pre-EIP-155 legacy transactions (no chain id)",
    )
    decode.set_defaults(handler=_decode)


def _parse_hex(text: str) -> bytes:
    body = text.strip()
    if body[:2] in ("0x", "0X"):
        body = body[2:]
    if not body:
        raise ValueError("empty transaction hex")
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise ValueError("not hex (expected 0x followed by an even number of hex digits)") from None


def _decode_one(text: str, args: argparse.Namespace) -> dict[str, Any]:
    """Raises ValueError (DecodeError and TransactionInvalid are ValueErrors) naming the problem."""
    try:
        tx = decode_transaction(_parse_hex(text))
    except DecodeError as exc:
        raise ValueError(f"invalid transaction: {exc}") from None
    if args.chain_id is not None:
        try:
            validate_transaction_static(
                tx, chain_id=args.chain_id, allow_unprotected=args.allow_unprotected
            )
        except TransactionInvalid as exc:
            raise ValueError(f"transaction not valid on chain {args.chain_id}: {exc}") from None
    return transaction_to_json(tx)


def _decode(args: argparse.Namespace) -> int:
    if args.raw is not None:
        try:
            obj = _decode_one(args.raw, args)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        print(json.dumps(obj, indent=2))
        return 0
    failed = 0
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            obj = _decode_one(line, args)
        except ValueError as exc:
            failed += 1
            print(f"moderntensor tx: error: line {number}: {exc}", file=sys.stderr)
            continue
        print(json.dumps(obj))
    if failed:
        print(f"moderntensor tx: {failed} invalid transaction(s)", file=sys.stderr)
        return 2
    return 0
