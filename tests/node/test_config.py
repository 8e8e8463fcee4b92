"""node.toml: the example loads; each class of mistake gives a message naming file, key, want."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import moderntensor.node.config as config_module
from moderntensor.crypto import PrivateKey
from moderntensor.keys import NodeKey, ValidatorKeys, write_key_file
from moderntensor.mempool import MempoolConfig
from moderntensor.node.config import (
    ConfigError,
    ConfigOverrides,
    Multiaddr,
    NodeConfig,
    load_config,
    parse_multiaddr,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "node.toml"
PEER = "02" + "ab" * 32
MINIMAL = '[node]\ndata_dir = "data"\ngenesis = "genesis.json"\n'


def write(tmp_path: Path, text: str, *, genesis: bool = True) -> Path:
    if genesis:
        (tmp_path / "genesis.json").write_text("{}")
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def error_of(path: Path, overrides: ConfigOverrides | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value


def test_exports_each_name_once() -> None:
    names = config_module.__all__
    assert len(names) == len(set(names))
    assert all(hasattr(config_module, name) for name in names)


def test_example_node_toml_loads_with_the_documented_defaults(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "node.toml")
    (tmp_path / "genesis.json").write_text("{}")
    config = load_config(tmp_path / "node.toml")
    assert config.node.data_dir == tmp_path / "data"
    assert config.node.genesis == tmp_path / "genesis.json"
    # the example shows the defaults: it must say exactly what an empty section means
    defaults = NodeConfig(node=config.node)
    assert config == defaults
    assert config.mempool.to_pool_config() == MempoolConfig()
    assert (config.rpc.addr, config.rpc.port) == ("127.0.0.1", 8545)
    assert config.validator.key_file is None


def test_full_config_with_keys_and_peers(tmp_path: Path) -> None:
    write_key_file(
        tmp_path / "keys" / "validator.key",
        ValidatorKeys("v0", PrivateKey(b"\x01" * 32), PrivateKey(b"\x02" * 32)).to_json(),
    )
    write_key_file(tmp_path / "node.key", NodeKey(PrivateKey(b"\x03" * 32)).to_json())
    path = write(
        tmp_path,
        MINIMAL
        + 'log_level = "DEBUG"\nlog_format = "json"\n'
        + '[validator]\nkey_file = "keys/validator.key"\n'
        + '[rpc]\naddr = "::1"\nport = 0\ncors_origins = ["http://localhost:3000"]\n'
        + '[p2p]\nnode_key_file = "node.key"\n'
        + f'bootstrap = ["/ip4/10.0.0.2/tcp/30303/ws/p2p/{PEER}",'
        + f' "/dns4/boot.example.org/tcp/443/ws/p2p/{PEER}"]\n'
        + "[mempool]\nglobal_slots = 10\nmin_tip = 0\njournal = false\n",
    )
    config = load_config(path)
    assert config.node.log_level == "debug"
    assert config.node.log_format == "json"
    assert config.validator.key_file == tmp_path / "keys" / "validator.key"
    assert config.rpc.cors_origins == ("http://localhost:3000",)
    assert config.rpc.port == 0
    assert config.p2p.bootstrap == (
        Multiaddr("ip4", "10.0.0.2", 30303, PEER),
        Multiaddr("dns4", "boot.example.org", 443, PEER),
    )
    assert str(config.p2p.bootstrap[0]) == f"/ip4/10.0.0.2/tcp/30303/ws/p2p/{PEER}"
    assert config.mempool.to_pool_config().global_slots == 10
    assert config.mempool.to_pool_config().min_tip == 0
    assert config.mempool.journal is False


def test_overrides_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL + "[rpc]\nport = 9000\n")
    monkeypatch.chdir(tmp_path)
    overrides = ConfigOverrides(
        data_dir=Path("elsewhere"), rpc_addr="0.0.0.0", rpc_port=8546, log_level="warning"
    )
    config = load_config(path, overrides)
    assert config.node.data_dir == tmp_path / "elsewhere"
    assert (config.rpc.addr, config.rpc.port) == ("0.0.0.0", 8546)
    assert config.node.log_level == "warning"


def test_bad_override_names_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    error = error_of(path, ConfigOverrides(rpc_port=70000))
    assert (
        str(error)
        == "command line: --rpc-port: expected a TCP port (integer 0-65535), got integer 70000"
    )
    assert "--log-level: expected one of debug, info" in str(
        error_of(path, ConfigOverrides(log_level="loud"))
    )
    assert "--rpc-addr: expected an IP address" in str(
        error_of(path, ConfigOverrides(rpc_addr="x"))
    )


def test_missing_file(tmp_path: Path) -> None:
    error = error_of(tmp_path / "nope.toml")
    assert (
        str(error)
        == f"{tmp_path / 'nope.toml'}: cannot read config file: No such file or directory"
    )


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[rpc]\nport = = 1\n")
    message = str(error_of(path))
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 5" in message


def test_unknown_key_is_named_with_the_valid_ones(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[rpc]\nprot = 8545\n")
    assert str(error_of(path)) == (
        f"{path}: rpc.prot: unknown key; valid keys in [rpc]: enabled, addr, port, "
        "cors_origins, max_body_bytes, max_batch, max_connections, max_http_connections_per_ip, "
        "max_ws_connections_per_ip, first_request_timeout_s, idle_timeout_s, "
        "batch_response_max_bytes, batch_cpu_budget_s, read_threads, health_max_unfinalized_slots"
    )


def test_rpc_limits_load_and_bad_values_name_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL + "[rpc]\nmax_http_connections_per_ip = 8\nfirst_request_timeout_s = 2.5\n"
        "idle_timeout_s = 30\nhealth_max_unfinalized_slots = 12\n",
    )
    rpc = load_config(path).rpc.to_rpc_config()
    assert (rpc.max_http_connections_per_ip, rpc.first_request_timeout_s) == (8, 2.5)
    assert (rpc.idle_timeout_s, rpc.health_max_unfinalized_slots) == (30.0, 12)
    assert rpc.batch_response_max_bytes == 25_000_000  # untouched keys keep the defaults
    path = write(tmp_path, MINIMAL + "[rpc]\nfirst_request_timeout_s = 0\nread_threads = 1.5\n")
    assert str(error_of(path)) == (
        f"{path}: 2 problems:\n"
        "  rpc.first_request_timeout_s: expected a positive number of seconds, got integer 0\n"
        "  rpc.read_threads: expected a positive integer, got float 1.5"
    )


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[rcp]\nport = 8545\n")
    message = str(error_of(path))
    assert message == (
        f"{path}: [rcp]: unknown section; valid sections: node, validator, rpc, p2p, metrics, "
        "mempool, explorer"
    )


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[rpc]\nport = "8545"\nenabled = 1\n')
    error = error_of(path)
    assert sorted(error.errors) == [
        "rpc.enabled: expected true or false, got integer 1",
        "rpc.port: expected a TCP port (integer 0-65535), got string '8545'",
    ]
    assert str(error).startswith(f"{path}: 2 problems:\n  rpc.")


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "rpc = 5\n" + MINIMAL)
    assert str(error_of(path)) == f"{path}: [rpc]: expected a table, got integer 5"


def test_missing_required_key_and_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\ngenesis = "genesis.json"\n')
    assert str(error_of(path)) == f"{path}: node.data_dir: missing required key"
    path = write(tmp_path, "[rpc]\nport = 1\n")
    assert "[node]: missing required section" in str(error_of(path))


def test_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[validator]\nkey_file = "v.key"\n', genesis=False)
    error = error_of(path)
    assert error.errors == [
        f"node.genesis: file not found: {tmp_path / 'genesis.json'}",
        f"validator.key_file: file not found: {tmp_path / 'v.key'}",
    ]


def test_key_file_of_the_wrong_kind(tmp_path: Path) -> None:
    write_key_file(tmp_path / "v.key", NodeKey(PrivateKey(b"\x03" * 32)).to_json())
    path = write(tmp_path, MINIMAL + '[validator]\nkey_file = "v.key"\n')
    assert str(error_of(path)) == (
        f"{path}: validator.key_file: {tmp_path / 'v.key'}: expected a validator key file, "
        "found kind='node'"
    )


def test_bad_address_and_port(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[metrics]\naddr = "localhost"\nport = 65536\n')
    assert sorted(error_of(path).errors) == [
        "metrics.addr: expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got 'localhost'",
        "metrics.port: expected a TCP port (integer 0-65535), got integer 65536",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("/ip4/10.0.0.2/tcp/30303/p2p/" + PEER, "expected /ip4/<address>/tcp/<port>/ws/p2p/"),
        ("/ip4/10.0.0.256/tcp/30303/ws/p2p/" + PEER, "'10.0.0.256' is not an IP address"),
        ("/ip6/10.0.0.2/tcp/30303/ws/p2p/" + PEER, "'10.0.0.2' is not an IPv6 address"),
        ("/ip4/10.0.0.2/tcp/0/ws/p2p/" + PEER, "port '0' is not in 1-65535"),
        ("/ip4/10.0.0.2/tcp/30303/ws/p2p/QmPeer", "peer id must be the 66 hex digits"),
        ("/udp/10.0.0.2/tcp/30303/ws/p2p/" + PEER, "unknown protocol 'udp'"),
    ],
)
def test_bad_multiaddr(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_multiaddr(text)
    assert problem in str(info.value)
    path = write(
        tmp_path, MINIMAL + f'[p2p]\nbootstrap = ["/ip4/10.0.0.1/tcp/1/ws/p2p/{PEER}", "{text}"]\n'
    )
    (message,) = error_of(path).errors
    assert message.startswith("p2p.bootstrap: item 1: ")
    assert problem in message


def test_bad_choice_and_limits(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL.replace("[node]\n", '[node]\nlog_format = "xml"\n')
        + "[mempool]\naccount_slots = 0\nmin_tip = -1\nmax_per_sender = 64\n",
    )
    assert sorted(error_of(path).errors) == [
        "mempool.account_slots: expected a positive integer, got integer 0",
        "mempool.max_per_sender: unknown key; valid keys in [mempool]: global_slots, "
        "account_slots, global_queue, account_queue, queue_lifetime_s, max_tx_size, "
        "price_bump_percent, min_tip, journal, journal_max_bytes",
        "mempool.min_tip: expected a non-negative integer, got integer -1",
        "node.log_format: expected one of text, json; got string 'xml'",
    ]


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    path = write(tmp_path, MINIMAL)
    assert (
        str(error_of(path))
        == f"{path}: node.data_dir: {tmp_path / 'data'} exists and is not a directory"
    )


def test_peer_limits_and_the_bootnode_role(tmp_path: Path) -> None:
    text = MINIMAL + (
        "[p2p]\nmax_peers = 20\nmax_inbound = 15\nmax_inbound_per_ip = 2\n"
        "bootnode = true\nstale_after_s = 120\n"
    )
    p2p = load_config(write(tmp_path, text)).p2p
    assert (p2p.inbound_limit, p2p.outbound_limit, p2p.max_inbound_per_ip) == (15, 10, 2)
    assert p2p.bootnode and p2p.stale_after_s == 120
    small = load_config(write(tmp_path, MINIMAL + "[p2p]\nmax_peers = 5\n")).p2p
    assert (small.inbound_limit, small.outbound_limit) == (5, 5)  # defaults fit the total


def test_peer_limits_above_the_total_or_not_positive_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[p2p]\nmax_inbound = 60\nmax_outbound = 51\n")
    error = error_of(path)
    assert str(error).startswith(f"{path}: ")
    assert error.errors == [
        "p2p.max_inbound: 60 is more than p2p.max_peers (50)",
        "p2p.max_outbound: 51 is more than p2p.max_peers (50)",
    ]
    path = write(tmp_path, MINIMAL + '[p2p]\nmax_inbound_per_ip = 0\nbootnode = "yes"\n')
    assert sorted(error_of(path).errors) == [
        "p2p.bootnode: expected true or false, got string 'yes'",
        "p2p.max_inbound_per_ip: expected a positive integer, got integer 0",
    ]
