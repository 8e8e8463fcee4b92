"""``[explorer]`` in node.toml and ``--explorer-port``: loaded strictly, started by the node,
and a taken or shared port is the operator's one-line error (exit 2), like the other ports."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from moderntensor.explorer import ExplorerConfig
from moderntensor.node.__main__ import build_parser, config_listeners, config_settings
from moderntensor.node.__main__ import dev_settings as node_dev_settings
from moderntensor.node.config import ConfigError, ConfigOverrides, ExplorerSection, load_config
from tests.node.test_operator_errors import (
    config_body,
    make_testnet,
    run_node,
    taken_port,
    write_config,
)
from tests.ports import free_port_run


def test_the_section_is_off_by_default_and_loads_strictly(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    plain = load_config(write_config(net / "node.toml", config_body("genesis.json")))
    assert plain.explorer == ExplorerSection() and not plain.explorer.enabled
    assert (plain.explorer.addr, plain.explorer.port) == ("127.0.0.1", 4000)
    extra = '[explorer]\nenabled = true\naddr = "0.0.0.0"\nport = 4100\nindex_blocks = 500\n'
    config = write_config(net / "node.toml", config_body("genesis.json", extra=extra))
    args = build_parser().parse_args(["--config", str(config)])
    settings, _, _ = config_settings(args)
    assert settings.explorer == ExplorerConfig(addr="0.0.0.0", port=4100, index_blocks=500)
    assert [(x.name, x.port) for x in config_listeners(settings)][-1] == ("explorer.port", 4100)
    bad = '[explorer]\nenabled = "yes"\nport = "4000"\ncolour = 1\n'
    with pytest.raises(ConfigError) as info:
        load_config(write_config(net / "node.toml", config_body("genesis.json", extra=bad)))
    text = str(info.value)
    assert "explorer.enabled: expected true or false" in text
    assert "explorer.port: expected a TCP port" in text
    assert "explorer.colour: unknown key" in text


def test_the_flag_enables_the_explorer_over_the_file(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    path = write_config(net / "node.toml", config_body("genesis.json"))
    config = load_config(path, ConfigOverrides(explorer_port=4321))
    assert config.explorer.enabled and config.explorer.port == 4321
    with pytest.raises(ConfigError, match="--explorer-port: expected a TCP port"):
        load_config(path, ConfigOverrides(explorer_port=70000))


def test_dev_flag_serves_the_explorer_on_the_rpc_address(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--dev", "--data-dir", str(tmp_path / "d"), "--rpc-port", "0", "--explorer-port", "0"]
    )
    assert isinstance(args, argparse.Namespace)
    settings, _ = node_dev_settings(args)
    assert settings.explorer == ExplorerConfig(addr="127.0.0.1", port=0)


def test_dev_explorer_port_in_use(tmp_path: Path) -> None:
    with taken_port() as port:
        line = run_node(tmp_path, "--dev", "--rpc-port", "0", "--explorer-port", str(port))
    assert line == (
        f"error: --explorer-port {port} on 127.0.0.1: address already in use "
        "(another process listens there)"
    )


def test_dev_explorer_port_equal_to_rpc_port(tmp_path: Path) -> None:
    port = str(free_port_run(1))
    line = run_node(tmp_path, "--dev", "--rpc-port", port, "--explorer-port", port)
    assert (
        line == f"error: --explorer-port {port} is also --rpc-port: give each listener its own port"
    )


def test_config_explorer_port_in_use(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    with taken_port() as port:
        extra = f"[explorer]\nenabled = true\nport = {port}\n"
        config = write_config(net / "node.toml", config_body("genesis.json", extra=extra))
        line = run_node(tmp_path, "--config", str(config))
    assert line.startswith(f"error: explorer.port {port} on 127.0.0.1: address already in use")
