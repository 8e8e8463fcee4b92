"""The ``moderntensor`` genesis and keys commands, through main() and the console script."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from moderntensor.cli import main
from moderntensor.keys import load_validator_keys


def run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_genesis_new_validate_inspect(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out_dir = tmp_path / "net"
    code, out, _ = run(
        capsys, "genesis", "new", "--validators", "3", "--chain-id", "4242", "--out", str(out_dir),
        "--genesis-time", "1800000000",
    )  # fmt: skip
    assert code == 0
    created = json.loads(out)
    assert len(created["keys"]) == 3
    for path in created["keys"]:
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    keys = load_validator_keys(created["keys"][0])
    genesis_file = out_dir / "genesis.json"
    code, out, _ = run(capsys, "genesis", "validate", str(genesis_file))
    assert code == 0 and out.startswith("ok: ") and created["hash"] in out
    code, out, _ = run(capsys, "genesis", "inspect", str(genesis_file))
    summary = json.loads(out)
    assert summary["hash"] == created["hash"] and summary["chain_id"] == 4242
    assert (
        summary["validators"][0]["consensus_pubkey"] == "0x" + keys.consensus.public_key_bytes.hex()
    )
    code, _, err = run(
        capsys, "genesis", "new", "--validators", "1", "--chain-id", "1", "--out", str(out_dir)
    )
    assert code == 2 and "already exists" in err


def test_genesis_new_defaults_to_days_of_unbonding(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    base = ["genesis", "new", "--validators", "1", "--chain-id", "5", "--genesis-time", "0"]
    assert run(capsys, *base, "--out", str(tmp_path / "a"))[0] == 0
    consensus = json.loads((tmp_path / "a" / "genesis.json").read_text())["consensus"]
    # 900 blocks of 2 s: 30 minutes an epoch; evidence for a day, unbonding for three
    assert (consensus["slot_duration"], consensus["epoch_length"]) == (2.0, 900)
    assert (consensus["evidence_epochs"], consensus["unbonding_epochs"]) == (48, 144)
    flags = ["--evidence-epochs", "3", "--unbonding-epochs", "6"]
    assert run(capsys, *base, "--out", str(tmp_path / "b"), *flags)[0] == 0
    consensus = json.loads((tmp_path / "b" / "genesis.json").read_text())["consensus"]
    assert (consensus["evidence_epochs"], consensus["unbonding_epochs"]) == (3, 6)
    flags = ["--evidence-epochs", "3", "--unbonding-epochs", "5"]
    code, _, err = run(capsys, *base, "--out", str(tmp_path / "c"), *flags)
    assert code == 2 and "consensus.unbonding_epochs: 5 is too short" in err and "= 6" in err
    assert not (tmp_path / "c").exists()  # nothing written


def test_genesis_validate_lists_all_errors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "g.json"
    bad.write_text(json.dumps({"chain_id": 0, "validators": []}))
    code, _, err = run(capsys, "genesis", "validate", str(bad))
    assert code == 2
    for field in ("chain_id", "network_name", "consensus", "block", "total_supply", "validators"):
        assert f"{field}:" in err, field


def test_keys_new_and_show(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    node_file = tmp_path / "node.json"
    code, out, _ = run(capsys, "keys", "new", "node", "--out", str(node_file))
    assert code == 0 and "private_key" not in out
    peer_id = json.loads(out)["peer_id"]
    assert stat.S_IMODE(node_file.stat().st_mode) == 0o600
    code, out, _ = run(capsys, "keys", "show", str(node_file))
    assert json.loads(out) == {"kind": "node", "peer_id": peer_id}
    code, _, err = run(capsys, "keys", "new", "node", "--out", str(node_file))
    assert code == 2 and "refusing to overwrite" in err
    val_file = tmp_path / "v.json"
    assert run(capsys, "keys", "new", "validator", "--out", str(val_file), "--name", "x")[0] == 0
    code, out, _ = run(capsys, "keys", "show", str(val_file), "--private")
    shown = json.loads(out)
    assert shown["name"] == "x" and shown["consensus_private_key"].startswith("0x")
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    code, _, err = run(capsys, "keys", "show", str(broken))
    assert code == 2 and "broken.json" in err


@pytest.mark.parametrize("group", ["genesis", "keys", "tx"])
def test_help_everywhere(group: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "moderntensor.cli", group, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "usage: moderntensor" in out.stdout
