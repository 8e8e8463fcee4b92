"""``python -m moderntensor.node``: run a node from node.toml, or a one-validator dev chain.

Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when a component failed, 2 for a
mistake in the configuration or the command line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from moderntensor import __version__
from moderntensor.chain.genesis import GenesisError, load_genesis, parse_genesis
from moderntensor.keys import KeyFileError, load_node_key, load_validator_keys
from moderntensor.mempool import DEV_MEMPOOL
from moderntensor.node._logging import setup_logging
from moderntensor.node._network import network_config
from moderntensor.node._supervisor import NodeSettings, run_node
from moderntensor.node.config import ConfigError, ConfigOverrides, load_config
from moderntensor.node.devnet import dev_genesis_doc, dev_keys, format_dev_banner
from moderntensor.rpc import MetricsConfig, RpcConfig

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser.add_argument("--rpc-addr", help="override rpc.addr (default 127.0.0.1)")
    parser.add_argument("--rpc-port", type=int, help="override rpc.port (default 8545)")
    parser.add_argument(
        "--p2p-port",
        type=int,
        help="override p2p.port; with --dev, listen for peers on 127.0.0.1 at this port "
        "(the dev chain has no network otherwise)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error", "critical"), default=None
    )
    parser.add_argument("--log-format", choices=("text", "json"), default=None)
    parser.add_argument(
        "--slot-duration", type=float, default=1.0, help="dev only: seconds per slot (default 1)"
    )
    parser.add_argument("--version", action="version", version=f"moderntensor {__version__}")
    return parser


def dev_settings(args: argparse.Namespace) -> tuple[NodeSettings, str]:
    """Settings of the dev chain; its genesis is kept in the data dir so a restart resumes."""
    keys = dev_keys()
    if args.data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="moderntensor-dev-"))
    else:
        data_dir = args.data_dir
    genesis_file = data_dir / "dev-genesis.json"
    if genesis_file.exists():
        genesis = load_genesis(genesis_file)
    else:
        doc = dev_genesis_doc(int(time.time()), args.slot_duration, keys)
        genesis = parse_genesis(doc, "dev genesis")
        data_dir.mkdir(parents=True, exist_ok=True)
        genesis_file.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    rpc = RpcConfig(
        addr=args.rpc_addr or "127.0.0.1", port=8545 if args.rpc_port is None else args.rpc_port
    )
    p2p = None
    if args.p2p_port is not None:  # a dev chain needs no peers; listen only when asked
        p2p = network_config(genesis, listen_addr="127.0.0.1", port=args.p2p_port)
    settings = NodeSettings(
        data_dir, genesis, keys.validator.consensus, rpc, mempool=DEV_MEMPOOL, p2p=p2p
    )
    return settings, format_dev_banner(keys)


def config_settings(args: argparse.Namespace) -> tuple[NodeSettings, str, str]:
    overrides = ConfigOverrides(
        data_dir=args.data_dir,
        rpc_addr=args.rpc_addr,
        rpc_port=args.rpc_port,
        p2p_port=args.p2p_port,
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
        rpc = RpcConfig(
            addr=str(config.rpc.addr),
            port=int(config.rpc.port),
            cors_origins=config.rpc.cors_origins,  # type: ignore[arg-type]
            max_body_bytes=int(config.rpc.max_body_bytes),
            max_batch=int(config.rpc.max_batch),
        )
    metrics = None
    if config.metrics.enabled:
        metrics = MetricsConfig(str(config.metrics.addr), int(config.metrics.port))
    p2p = node_key = None
    if config.p2p.enabled:
        p2p = network_config(
            genesis, listen_addr=str(config.p2p.listen_addr), port=int(config.p2p.port),
            bootstrap=config.p2p.bootstrap, max_peers=int(config.p2p.max_peers),
        )  # fmt: skip
        if config.p2p.node_key_file is not None:
            node_key = load_node_key(config.p2p.node_key_file).key
    settings = NodeSettings(
        config.node.data_dir, genesis, key, rpc, config.mempool.to_pool_config(), metrics,
        p2p, node_key,
    )  # fmt: skip
    return settings, str(config.node.log_level), str(config.node.log_format)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    temporary: Path | None = None
    try:
        if args.config is not None and not args.dev:
            settings, level, fmt = config_settings(args)
            banner = ""
        else:
            settings, banner = dev_settings(args)
            level, fmt = "info", "text"
            if args.data_dir is None:
                temporary = settings.data_dir
    except (ConfigError, GenesisError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or level, args.log_format or fmt)
    if banner:
        print(banner, flush=True)
    try:
        return trio.run(run_node, settings)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
