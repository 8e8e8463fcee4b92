"""``python -m moderntensor.node``: configuration mistakes exit 2 with the file and key named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moderntensor.node.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "nope.toml" in err


def test_unknown_key_and_bad_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\ndata_dir = "d"\ngenesis = "g.json"\n[rpc]\nport = "80"\nflavour = 1\n'
    )
    (tmp_path / "g.json").write_text("{}")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "node.toml" in err and "rpc.port" in err and "rpc.flavour" in err


def test_version_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "moderntensor.node", "--version"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("moderntensor ")
    out = subprocess.run(
        [sys.executable, "-m", "moderntensor.node", "--help"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0 and "--data-dir" in out.stdout and "--dev" in out.stdout
