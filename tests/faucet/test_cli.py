"""``moderntensor keys new account`` and ``moderntensor faucet``'s start-up errors."""

from __future__ import annotations

import json
import logging
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
