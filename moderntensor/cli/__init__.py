"""The ``moderntensor`` console script: keys, genesis, testnet, transactions, faucet, monitor.

Each command group lives in its own ``_*.py`` module exposing ``register(subparsers)``; a
command handler returns the process exit code. Errors a user can fix print one line naming
what is wrong and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from moderntensor import __version__

__all__ = ["CLIError", "main"]


class CLIError(Exception):
    """A mistake in the command's input; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from moderntensor.cli import _faucet, _genesis, _keys, _monitor, _testnet, _tx

    parser = argparse.ArgumentParser(
        prog="moderntensor",
        description="ModernTensor node tools: keys, genesis, testnet, transactions, faucet, "
        "monitor.",
    )
    parser.add_argument("--version", action="version", version=f"moderntensor {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for module in (_keys, _genesis, _testnet, _tx, _faucet, _monitor):
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CLIError as exc:
        print(f"moderntensor {args.group}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
