"""The ``moderntensor`` commands: each input mistake of the newcomer review is one line on
stderr, exit code 2, no traceback (through ``main()``, plus one real child process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moderntensor.cli import main
from moderntensor.codec import encode_rlp, encode_uint

ROOT = Path(__file__).resolve().parents[2]


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must fail; return its one error line."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe")
    return path


@pytest.mark.parametrize(
    "command",
    [["genesis", "validate"], ["genesis", "inspect"], ["genesis", "alloc-root"], ["keys", "show"]],
)
def test_non_utf8_file(
    capsys: pytest.CaptureFixture[str], binary: Path, command: list[str]
) -> None:
    line = refused(capsys, *command, str(binary))
    assert f"{binary}: not a UTF-8 text file" in line


def test_non_utf8_in_a_child_process(binary: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "moderntensor.cli", "genesis", "validate", str(binary)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"moderntensor genesis: error: {binary}: not a UTF-8 text file (expected genesis JSON)"
    ]


@pytest.mark.parametrize("group", ["genesis new", "testnet init"])
def test_out_names_an_existing_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, group: str
) -> None:
    existing = tmp_path / "genesis.json"
    existing.write_text("{}")
    argv = [*group.split(), "--validators", "1", "--chain-id", "5", "--out", str(existing)]
    line = refused(capsys, *argv)
    assert line.endswith(
        f"--out {existing}: exists and is not a directory (--out takes a directory)"
    )
    assert existing.read_text() == "{}"


def test_out_that_looks_like_a_file_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "mygenesis.json"
    line = refused(
        capsys, "genesis", "new", "--validators", "1", "--chain-id", "5", "--out", str(out)
    )
    assert "--out takes a directory" in line
    assert not out.exists()  # no directory named like a file


def test_out_that_cannot_be_created(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "net"  # a directory under a file
    line = refused(
        capsys, "genesis", "new", "--validators", "1", "--chain-id", "5", "--out", str(out)
    )
    assert line.startswith(f"moderntensor genesis: error: --out {out}: cannot create the directory")


def test_keys_new_out_is_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, "keys", "new", "node", "--out", str(tmp_path))
    assert line.endswith(f"{tmp_path}: is a directory; give the key file to create")


def test_keys_show_of_a_json_that_is_no_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "empty.json").write_text("{}")
    line = refused(capsys, "keys", "show", str(tmp_path / "empty.json"))
    assert "not a key file: kind is None, expected 'node', 'validator' or 'account'" in line


def test_alloc_mistakes_say_what_is_expected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ["genesis", "new", "--validators", "1", "--chain-id", "5", "--out", str(tmp_path / "n")]
    line = refused(capsys, *base, "--alloc", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266=1.5")
    assert "TOKENS a whole number" in line
    line = refused(capsys, *base, "--alloc", "bad=1")
    assert "'bad' is not an address" in line and "0xbad" not in line


def test_tx_decode_error_has_no_backend_debug_text(capsys: pytest.CaptureFixture[str]) -> None:
    trailing = "0x" + (encode_rlp([encode_uint(1), encode_uint(2)]) + b"\x03").hex()
    line = refused(capsys, "tx", "decode", trailing)
    assert line == "moderntensor tx: error: invalid transaction: legacy tx: invalid RLP: " \
        "trailing bytes after the item"  # fmt: skip
    line = refused(capsys, "tx", "decode", "0x02f86c00")
    assert "PayloadInfo" not in line and "Rlp" not in line and "DecodingError" not in line
    assert line.endswith("invalid RLP: ends before the length its prefix announces")


def genesis_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], **changes: object) -> Path:
    out = tmp_path / "net"
    assert main(["genesis", "new", "--validators", "3", "--chain-id", "5", "--out", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads((out / "genesis.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            doc[section][field] = value
        else:
            doc[section] = value
    (out / "genesis.json").write_text(json.dumps(doc))
    return out / "genesis.json"


def test_validate_refuses_a_chain_id_beyond_eip_2294(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = genesis_file(tmp_path, capsys, chain_id=2**70)
    line = refused(capsys, "genesis", "validate", str(path))
    assert f"chain_id: {2**70} is above 9223372036854775771, the largest EIP-2294 allows" in line


def test_validate_refuses_more_validators_than_max_validators(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = genesis_file(tmp_path, capsys, consensus__max_validators=2)
    line = refused(capsys, "genesis", "validate", str(path))
    assert "validators: 3 listed but consensus.max_validators is 2: 1 of them could never" in line


def test_genesis_new_with_more_validators_than_can_be_active_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "net"
    argv = ["genesis", "new", "--validators", "101", "--chain-id", "5", "--out", str(out)]
    line = refused(capsys, *argv)
    assert "validators: 101 listed but consensus.max_validators is 100" in line
    assert not out.exists()  # no key files for validators that could never be active
