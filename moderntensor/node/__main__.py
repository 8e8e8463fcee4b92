"""``python -m moderntensor.node``: run a node from node.toml, or a one-validator dev chain.

Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when a component failed, 2 for an
operator's mistake: in the configuration or the command line, or found while starting (a port
in use, a data directory held by another node or holding another chain). A mistake prints one
line, ``error: ...``, naming the flag or ``node.toml`` key, and no traceback.

The dev chain takes Anvil's flags (``--accounts``, ``--balance``, ``--mnemonic``,
``--chain-id``, ``--gas-limit``, ``--base-fee``, ``--block-time``, ``--port``, ``--host``) with
Anvil's meaning, so a script that starts Anvil can start this node instead.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import trio

from moderntensor import __version__
from moderntensor.chain.genesis import GenesisError, load_genesis, parse_genesis
from moderntensor.explorer import ExplorerConfig
from moderntensor.keys import KeyFileError, load_node_key, load_validator_keys
from moderntensor.mempool import DEV_MEMPOOL
from moderntensor.node._logging import setup_logging
from moderntensor.node._network import network_config
from moderntensor.node._preflight import Listener, StartupError, check_data_dir, check_listeners
from moderntensor.node._supervisor import NodeSettings, run_node
from moderntensor.node.config import ConfigError, ConfigOverrides, load_config
from moderntensor.node.devnet import (
    DevOptions,
    DevOptionsError,
    check_resume,
    dev_genesis_for,
    dev_keys,
    format_dev_banner,
)
from moderntensor.rpc import MetricsConfig, RpcConfig

__all__ = ["main"]

DEV_FLAGS = {
    "slot_duration": "--block-time", "accounts": "--accounts", "balance": "--balance",
    "mnemonic": "--mnemonic", "chain_id": "--chain-id", "gas_limit": "--gas-limit",
    "base_fee": "--base-fee",
}  # fmt: skip
"""The flags that shape the dev genesis (``DevOptions`` field -> flag)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None


def _ether(text: str) -> int:
    try:
        wei = Decimal(text) * 10**18
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected an amount of ETH, got {text!r}") from None
    if wei != wei.to_integral_value() or wei < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of wei, got {text!r} ETH")
    return int(wei)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m moderntensor.node",
        description="Run a ModernTensor node from a config file, or a one-validator dev chain.",
    )
    parser.add_argument("--config", type=Path, help="node.toml (see the commented example)")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="one-validator dev chain: chain id 1337, 1 s slots, 10 prefunded dev accounts "
        "(the default when no --config is given)",
    )
    parser.add_argument("--data-dir", type=Path, help="override node.data_dir (dev: persist)")
    parser.add_argument(
        "--rpc-addr",
        "--host",
        metavar="ADDR",
        help="override rpc.addr, an IP address (default 127.0.0.1)",
    )
    parser.add_argument(
        "--rpc-port",
        "--port",
        "-p",
        type=int,
        metavar="PORT",
        help="override rpc.port (default 8545)",
    )
    parser.add_argument(
        "--p2p-port",
        type=int,
        help="override p2p.port; with --dev, listen for peers on 127.0.0.1 at this port "
        "(the dev chain has no network otherwise)",
    )
    parser.add_argument(
        "--explorer-port",
        type=int,
        metavar="PORT",
        help="serve the block explorer at this port (enables [explorer]; with --dev, on the "
        "--rpc-addr address)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error", "critical"), default=None
    )
    parser.add_argument("--log-format", choices=("text", "json"), default=None)
    dev = parser.add_argument_group(
        "dev chain (Anvil's flags; they shape the genesis, so they apply to a new data dir: "
        "on a resumed --data-dir a value other than the chain's is refused)"
    )
    dev.add_argument(
        "--block-time", "--blockTime", "--slot-duration", "-b", dest="slot_duration",
        type=_seconds,
        metavar="SECONDS", help="seconds per slot, ms precision (default 1)",
    )  # fmt: skip
    dev.add_argument(
        "--accounts", "-a", type=int, metavar="NUM", help="funded dev accounts (default 10)"
    )
    dev.add_argument(
        "--balance", type=_ether, metavar="ETH", help="ETH per dev account (default 10000)"
    )
    dev.add_argument(
        "--mnemonic", "-m", help='BIP-39 mnemonic of the accounts (default "test test ... junk")'
    )
    dev.add_argument(
        "--chain-id", type=int, help="default 1337 (Anvil's is 31337: pass --chain-id 31337)"
    )
    dev.add_argument("--gas-limit", type=int, help="block gas limit (default 30000000)")
    dev.add_argument(
        "--base-fee", "--block-base-fee-per-gas", type=int, metavar="WEI",
        help="genesis base fee, which the base fee never falls below (default 1000000000)",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"moderntensor {__version__}")
    return parser


def _given_dev_flags(args: argparse.Namespace) -> dict[str, Any]:
    values = {field: getattr(args, field, None) for field in DEV_FLAGS}
    return {field: value for field, value in values.items() if value is not None}


def _check_port(flag: str, port: int | None) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise StartupError(f"{flag}: expected a TCP port (integer 0-65535), got {port}")


def _check_ip(flag: str, addr: str) -> None:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise StartupError(
            f"{flag}: expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got {addr!r}"
        ) from None


def dev_listeners(args: argparse.Namespace) -> list[Listener]:
    """What the dev chain listens on, named by its flags (for :func:`check_listeners`).

    Raises:
        StartupError: a bad --rpc-addr, --rpc-port or --p2p-port.
    """
    rpc_addr = args.rpc_addr or "127.0.0.1"
    _check_ip("--rpc-addr", rpc_addr)
    _check_port("--rpc-port", args.rpc_port)
    _check_port("--p2p-port", args.p2p_port)
    _check_port("--explorer-port", args.explorer_port)
    listeners = [Listener("--rpc-port", rpc_addr, 8545 if args.rpc_port is None else args.rpc_port)]
    if args.p2p_port is not None:
        listeners.append(Listener("--p2p-port", "127.0.0.1", args.p2p_port))
    if args.explorer_port is not None:
        listeners.append(Listener("--explorer-port", rpc_addr, args.explorer_port))
    return listeners


def dev_settings(args: argparse.Namespace) -> tuple[NodeSettings, str]:
    """Settings of the dev chain and its banner; without --data-dir the data dir is a new
    temporary directory (the caller removes it at exit).

    Its genesis is kept in the data dir (``dev-genesis.json``) so a restart resumes. Every
    check runs before anything is written, and a temporary data dir is made last, so a
    refused start leaves nothing behind.

    Raises:
        StartupError, DevOptionsError, GenesisError: a mistake, in one line.
    """
    rpc_listener = dev_listeners(args)[0]
    rpc = RpcConfig(addr=rpc_listener.addr, port=rpc_listener.port)
    given = _given_dev_flags(args)
    options = DevOptions(**given)
    options.check()
    genesis_file = None if args.data_dir is None else args.data_dir / "dev-genesis.json"
    if genesis_file is not None:
        check_data_dir(args.data_dir, "--data-dir")
    if genesis_file is not None and genesis_file.exists():
        genesis = load_genesis(genesis_file)
        options = check_resume(genesis, given, str(args.data_dir))
        keys = dev_keys(options.mnemonic, options.accounts)
        doc = None
    else:
        if args.data_dir is not None and (args.data_dir / "chaindb").exists():
            raise StartupError(
                f"--data-dir {args.data_dir}: holds a chain database but no dev-genesis.json, "
                "so not a dev chain's (use another --data-dir, or --config for that node)"
            )
        keys = dev_keys(options.mnemonic, options.accounts)
        doc = dev_genesis_for(int(time.time()), options, keys)
        genesis = parse_genesis(doc, "dev genesis")
    p2p = None
    if args.p2p_port is not None:  # a dev chain needs no peers; listen only when asked
        p2p = network_config(genesis, listen_addr="127.0.0.1", port=args.p2p_port)
    banner = format_dev_banner(keys, chain_id=genesis.chain_id, balance=options.balance)
    if args.data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="moderntensor-dev-"))
    else:
        data_dir = args.data_dir
    if doc is not None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / "dev-genesis.json").write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
        except OSError as exc:
            if args.data_dir is None:
                shutil.rmtree(data_dir, ignore_errors=True)
            raise StartupError(f"--data-dir {data_dir}: cannot write: {exc.strerror}") from None
    explorer = None
    if args.explorer_port is not None:
        explorer = ExplorerConfig(addr=rpc.addr, port=args.explorer_port)
    settings = NodeSettings(
        data_dir, genesis, keys.validator.consensus, rpc, mempool=DEV_MEMPOOL, p2p=p2p,
        explorer=explorer,
    )  # fmt: skip
    return settings, banner


def config_settings(args: argparse.Namespace) -> tuple[NodeSettings, str, str]:
    """Settings from node.toml and the flags that override it.

    Raises:
        ConfigError, GenesisError, KeyFileError, StartupError: a mistake, in one line each.
    """
    given = _given_dev_flags(args)
    if getattr(args, "dev", False):
        raise StartupError("--dev and --config: give one (--dev runs a dev chain, no node.toml)")
    if given:
        raise StartupError(
            f"{DEV_FLAGS[next(iter(given))]} is for the dev chain: a node.toml node takes its "
            "chain from node.genesis (drop --config to run a dev chain)"
        )
    overrides = ConfigOverrides(
        data_dir=args.data_dir,
        rpc_addr=args.rpc_addr,
        rpc_port=args.rpc_port,
        p2p_port=args.p2p_port,
        explorer_port=args.explorer_port,
        log_level=args.log_level,
    )
    config = load_config(args.config, overrides)
    if config.node.genesis is None:
        raise ConfigError(["node.genesis: missing (path to the genesis JSON)"], str(args.config))
    genesis = load_genesis(config.node.genesis)
    key = None
    if config.validator.key_file is not None:
        key = load_validator_keys(config.validator.key_file).consensus
    rpc = None
    if config.rpc.enabled:
        rpc = config.rpc.to_rpc_config()
    metrics = None
    if config.metrics.enabled:
        metrics = MetricsConfig(str(config.metrics.addr), int(config.metrics.port))
    p2p = node_key = None
    if config.p2p.enabled:
        p2p = network_config(
            genesis, listen_addr=str(config.p2p.listen_addr), port=int(config.p2p.port),
            bootstrap=config.p2p.bootstrap, max_peers=int(config.p2p.max_peers),
            max_inbound=config.p2p.inbound_limit, max_outbound=config.p2p.outbound_limit,
            max_inbound_per_ip=int(config.p2p.max_inbound_per_ip),
            bootnode=config.p2p.bootnode, stale_after_s=float(config.p2p.stale_after_s),
            discover=config.p2p.discover,
        )  # fmt: skip
        if config.p2p.node_key_file is not None:
            node_key = load_node_key(config.p2p.node_key_file).key
    explorer = None
    if config.explorer.enabled:
        section = config.explorer
        explorer = ExplorerConfig(
            addr=str(section.addr), port=int(section.port),
            max_connections=int(section.max_connections), index_blocks=int(section.index_blocks),
        )  # fmt: skip
    settings = NodeSettings(
        config.node.data_dir, genesis, key, rpc, config.mempool.to_pool_config(), metrics,
        p2p, node_key, explorer,
    )  # fmt: skip
    return settings, str(config.node.log_level), str(config.node.log_format)


def config_listeners(settings: NodeSettings) -> list[Listener]:
    """What a node.toml node listens on, named by its keys (for :func:`check_listeners`)."""
    listeners = []
    if settings.rpc is not None:
        listeners.append(Listener("rpc.port", settings.rpc.addr, settings.rpc.port))
    if settings.metrics is not None:
        listeners.append(Listener("metrics.port", settings.metrics.addr, settings.metrics.port))
    if settings.p2p is not None and settings.p2p.listen_addr is not None:
        listeners.append(Listener("p2p.port", settings.p2p.listen_addr, settings.p2p.port))
    if settings.explorer is not None:
        listeners.append(Listener("explorer.port", settings.explorer.addr, settings.explorer.port))
    return listeners


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    temporary: Path | None = None
    try:
        if args.config is not None:
            settings, level, fmt = config_settings(args)
            check_listeners(config_listeners(settings))
            banner = ""
        else:
            check_listeners(dev_listeners(args))
            settings, banner = dev_settings(args)
            level, fmt = "info", "text"
            if args.data_dir is None:
                temporary = settings.data_dir
        setup_logging(args.log_level or level, args.log_format or fmt)
        if banner:
            print(banner, flush=True)
        return trio.run(run_node, settings)
    except (ConfigError, GenesisError, KeyFileError, DevOptionsError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
