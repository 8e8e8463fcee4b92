"""``python -m moderntensor.node``: each operator mistake of the newcomer review ends in exactly one
line on stderr naming what to change, exit code 2, no traceback, and no temporary directory left
behind (real child processes; the ports taken are real listening sockets on 127.0.0.1)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.cli import main as cli_main
from moderntensor.node.__main__ import main as node_main
from moderntensor.node.devnet import dev_genesis_doc, dev_keys
from moderntensor.state.store import Database
from tests.ports import free_port_run

ROOT = Path(__file__).resolve().parents[2]


def run_node(tmp_path: Path, *args: str, process: bool = False) -> str:
    """Run the node with ``args`` (cwd ``tmp_path``); assert a refused start: exit code 2,
    exactly one line on stderr, no traceback, no temporary directory left. Returns the line.

    ``process``: in a child process, as an operator runs it. Otherwise ``main()`` runs here,
    which is the same code and several times faster on a loaded machine (an exception that
    escaped ``main`` would fail the test); the mistakes that are found only once the node
    runs (a locked or foreign database, a port taken) always use a child process.
    """
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    if process:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch)}
        done = subprocess.run(
            [sys.executable, "-m", "moderntensor.node", *args],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
        )  # fmt: skip
        code, err = done.returncode, done.stderr
    else:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path)
            patch.setattr(tempfile, "tempdir", str(scratch))
            stderr = io.StringIO()
            patch.setattr(sys, "stderr", stderr)
            code, err = node_main(list(args)), stderr.getvalue()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert code == 2, err
    assert lines[0].startswith("error: ")
    assert list(scratch.iterdir()) == []  # no moderntensor-dev-* directory left behind
    return lines[0]


@contextmanager
def taken_port() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port_run(1)))
        sock.listen()
        yield sock.getsockname()[1]


def make_testnet(tmp_path: Path, chain_id: int = 7777) -> Path:
    """``genesis new`` with one validator; returns the directory (genesis.json, keys/)."""
    out = tmp_path / f"net{chain_id}"
    argv = ["genesis", "new", "--validators", "1", "--chain-id", str(chain_id), "--out", str(out)]
    assert cli_main(argv) == 0
    return out


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def config_body(genesis: str, *, rpc_port: int = 0, extra: str = "") -> str:
    return (
        f'[node]\ndata_dir = "data"\ngenesis = "{genesis}"\n'
        f"[rpc]\nport = {rpc_port}\n[p2p]\nenabled = false\n{extra}"
    )


def test_dev_rpc_port_out_of_range(tmp_path: Path) -> None:
    for port, process in (("99999", True), ("-1", False)):
        line = run_node(tmp_path, "--dev", "--rpc-port", port, process=process)
        assert line == f"error: --rpc-port: expected a TCP port (integer 0-65535), got {port}"


def test_dev_rpc_addr_not_an_ip(tmp_path: Path) -> None:
    line = run_node(tmp_path, "--dev", "--rpc-addr", "foo")
    assert "--rpc-addr" in line and "'foo'" in line


def test_dev_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "genesis.json").write_text("{}")
    line = run_node(tmp_path, "--dev", "--data-dir", "genesis.json")
    assert line == "error: --data-dir genesis.json: exists and is not a directory"


def test_dev_bad_block_time(tmp_path: Path) -> None:
    line = run_node(tmp_path, "--dev", "--slot-duration", "0")
    assert line.startswith("error: --block-time: expected 0.001 to 3600 seconds")


def test_dev_rpc_port_in_use(tmp_path: Path) -> None:
    with taken_port() as port:
        line = run_node(tmp_path, "--dev", "--rpc-port", str(port), process=True)
    assert line == (
        f"error: --rpc-port {port} on 127.0.0.1: address already in use "
        "(another process listens there)"
    )


def test_dev_p2p_port_in_use(tmp_path: Path) -> None:
    with taken_port() as port:
        line = run_node(tmp_path, "--dev", "--rpc-port", "0", "--p2p-port", str(port))
    assert line.startswith(f"error: --p2p-port {port} on 127.0.0.1: address already in use")


def test_dev_p2p_port_equal_to_rpc_port(tmp_path: Path) -> None:
    port = str(free_port_run(1))
    line = run_node(tmp_path, "--dev", "--rpc-port", port, "--p2p-port", port)
    assert line == f"error: --p2p-port {port} is also --rpc-port: give each listener its own port"


def test_config_metrics_port_equal_to_rpc_port(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    port = free_port_run(1)
    body = config_body("genesis.json", rpc_port=port, extra=f"[metrics]\nenabled = true\n"
                       f"port = {port}\n")  # fmt: skip
    config = write_config(net / "node.toml", body)
    line = run_node(tmp_path, "--config", str(config))
    assert line == f"error: metrics.port {port} is also rpc.port: give each listener its own port"


def test_config_metrics_port_in_use(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    with taken_port() as port:
        extra = f"[metrics]\nenabled = true\nport = {port}\n"
        config = write_config(net / "node.toml", config_body("genesis.json", extra=extra))
        line = run_node(tmp_path, "--config", str(config))
    assert line.startswith(f"error: metrics.port {port} on 127.0.0.1: address already in use")


def test_config_rpc_port_in_use(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    with taken_port() as port:
        config = write_config(net / "node.toml", config_body("genesis.json", rpc_port=port))
        line = run_node(tmp_path, "--config", str(config))
    assert line.startswith(f"error: rpc.port {port} on 127.0.0.1: address already in use")


def test_config_data_dir_of_another_chain(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    other = parse_genesis(json.loads((make_testnet(tmp_path, 8888) / "genesis.json").read_text()))
    with Database.open(net / "data" / "chaindb") as db:
        Chain(db, other)  # the data dir now holds chain 8888
    config = write_config(net / "node.toml", config_body("genesis.json"))
    line = run_node(tmp_path, "--config", str(config), process=True)
    assert line.startswith(f"error: data dir {net / 'data'}: the database holds a chain")
    assert "use another data directory" in line


def test_dev_data_dir_of_another_chain_is_left_untouched(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    genesis = parse_genesis(json.loads((net / "genesis.json").read_text()))
    with Database.open(tmp_path / "dd" / "chaindb") as db:
        Chain(db, genesis)
    line = run_node(tmp_path, "--dev", "--data-dir", "dd")
    assert "holds a chain database but no dev-genesis.json" in line
    assert not (tmp_path / "dd" / "dev-genesis.json").exists()  # nothing written into it


def test_second_node_on_a_locked_data_dir(tmp_path: Path) -> None:
    doc = dev_genesis_doc(int(time.time()), 1.0, dev_keys())
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "dev-genesis.json").write_text(json.dumps(doc))
    with Database.open(tmp_path / "dd" / "chaindb") as db:  # the "first node" holds the lock
        Chain(db, parse_genesis(doc))
        line = run_node(tmp_path, "--dev", "--data-dir", "dd", "--rpc-port", "0", process=True)
    assert line == (
        "error: data dir dd: its database is in use by another process "
        "(is another node running on this data dir?)"
    )


def test_config_genesis_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe")
    config = write_config(tmp_path / "node.toml", config_body("binary.json"))
    line = run_node(tmp_path, "--config", str(config), process=True)
    assert (
        line == f"error: {tmp_path / 'binary.json'}: not a UTF-8 text file (expected genesis JSON)"
    )


def test_config_genesis_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    config = write_config(tmp_path / "node.toml", config_body("keys"))
    line = run_node(tmp_path, "--config", str(config))
    assert line.endswith(f"node.genesis: {tmp_path / 'keys'} is a directory, expected the "
                         "genesis JSON file")  # fmt: skip


def test_dev_flags_refused_with_config(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    config = write_config(net / "node.toml", config_body("genesis.json"))
    line = run_node(tmp_path, "--config", str(config), "--block-time", "2")
    assert line.startswith("error: --block-time is for the dev chain")


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--block-time", "2", "--block-time 2 s: the dev chain in dd was created with 1 s"),
        ("--chain-id", "31337", "--chain-id 31337: the dev chain in dd was created with 1337"),
        ("--balance", "5", "--balance 5 ETH: the dev chain in dd was created with 10000 ETH"),
    ],
)
def test_resumed_dev_chain_refuses_other_genesis_flags(
    tmp_path: Path, flag: str, value: str, said: str
) -> None:
    (tmp_path / "dd").mkdir()
    doc = dev_genesis_doc(int(time.time()), 1.0, dev_keys())
    (tmp_path / "dd" / "dev-genesis.json").write_text(json.dumps(doc))
    line = run_node(tmp_path, "--dev", "--data-dir", "dd", flag, value)
    assert line.startswith(f"error: {said}; genesis flags apply only to a new data dir")


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    line = run_node(tmp_path, "--dev", "--data-dir", "file/dd")
    assert line.startswith("error: --data-dir file/dd: cannot write: ")
    net = make_testnet(tmp_path)
    body = config_body("genesis.json").replace('"data"', f'"{tmp_path / "file" / "dd"}"')
    config = write_config(net / "node.toml", body)
    line = run_node(tmp_path, "--config", str(config), process=True)
    assert line.startswith(f"error: data dir {tmp_path / 'file' / 'dd'}: cannot create: ")


def test_dev_and_config_together(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
    config = write_config(net / "node.toml", config_body("genesis.json"))
    line = run_node(tmp_path, "--dev", "--config", str(config))
    assert line.startswith("error: --dev and --config: give one")
