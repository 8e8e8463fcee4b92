"""``moderntensor keys new account`` and ``moderntensor faucet``'s start-up errors."""

from __future__ import annotations

import json
import logging
import socket
import stat
from collections.abc import Iterator

import pytest

from moderntensor.cli import main
from moderntensor.cli._faucet import load_faucet_key
from moderntensor.keys import KeyFileError


def test_account_key_file_round_trip(tmp_path, capsys) -> None:
    path = tmp_path / "faucet-key.json"
    assert main(["keys", "new", "account", "--out", str(path)]) == 0
    public = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_faucet_key(path)
    assert public["address"].lower() == "0x" + key.address.hex()
    assert main(["keys", "show", str(path)]) == 0
    assert "private_key" not in json.loads(capsys.readouterr().out)
    assert main(["keys", "new", "account", "--out", str(path)]) == 2  # never overwritten


def test_faucet_key_file_errors(tmp_path) -> None:
    path = tmp_path / "k.json"
    with pytest.raises(KeyFileError, match="not found"):
        load_faucet_key(path)
    path.write_text(json.dumps({"kind": "node", "private_key": "0x" + "11" * 32}))
    with pytest.raises(KeyFileError, match="account or validator"):
        load_faucet_key(path)
    path.write_text(json.dumps({"kind": "account", "private_key": "0x12"}))
    with pytest.raises(KeyFileError, match="private_key"):
        load_faucet_key(path)


@pytest.fixture
def logger_restored() -> Iterator[None]:
    """The command sets up the package's logging: put it back for the tests that follow."""
    logger = logging.getLogger("moderntensor")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.usefixtures("logger_restored")
def test_faucet_command_start_errors(tmp_path, capsys) -> None:
    key = tmp_path / "k.json"
    key.write_text(json.dumps({"kind": "account", "private_key": "0x" + "11" * 32}))
    config = tmp_path / "faucet.toml"
    config.write_text('[faucet]\namount = "500"\n')
    args = ["faucet", "--rpc", "http://127.0.0.1:9", "--key-file", str(key)]
    assert main([*args, "--config", str(config)]) == 2
    assert "validator-sized" in capsys.readouterr().err
    assert main([*args, "--database", str(tmp_path / "f.sqlite3")]) == 2
    assert "cannot reach the node" in capsys.readouterr().err


@pytest.mark.usefixtures("logger_restored")
def test_faucet_port_in_use_is_one_line(tmp_path, capsys, node) -> None:  # type: ignore[no-untyped-def]
    """A port another process holds: exit 2 with one line naming the port, no traceback."""
    key = tmp_path / "k.json"
    key.write_text(json.dumps({"kind": "account", "private_key": "0x" + "11" * 32}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["faucet", "--rpc", f"http://127.0.0.1:{node.port}", "--key-file", str(key)]
        args += ["--port", str(port), "--database", str(tmp_path / "f.sqlite3")]
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: faucet.port {port} on 127.0.0.1: " in err and "in use" in err, err
    assert "Traceback" not in err
