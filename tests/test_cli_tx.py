"""``moderntensor tx decode``: in-process through main() and as a real subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from moderntensor.chain.transactions import (
    DynamicFeeTransaction,
    LegacyTransaction,
    sign_transaction,
)
from moderntensor.cli import main
from moderntensor.crypto import PrivateKey, checksum_address

KEY = PrivateKey(bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"))
TO = bytes.fromhex("d3cda913deb6f67967b99d67acdfa1712c293601")

TX2 = sign_transaction(
    DynamicFeeTransaction(
        chain_id=1,
        nonce=3,
        max_priority_fee_per_gas=2 * 10**9,
        max_fee_per_gas=5 * 10**10,
        gas=21_000,
        to=TO,
        value=10**18,
    ),
    KEY,
)
TX0 = sign_transaction(
    LegacyTransaction(chain_id=None, nonce=0, gas_price=10**9, gas=60_000, to=None, data=b"\x60"),
    KEY,
)
HEX2 = "0x" + TX2.raw.hex()
HEX0 = TX0.raw.hex()  # without 0x: accepted too


def run_main(
    argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None
) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as patch:
        if stdin is not None:
            patch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_one_dynamic_fee_tx(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["tx", "decode", HEX2], capsys)
    assert (code, err) == (0, "")
    obj = json.loads(out)
    assert obj == {
        "type": "0x2",
        "hash": "0x" + TX2.hash.hex(),
        "sender": checksum_address(KEY.address),
        "chain_id": "0x1",
        "nonce": "0x3",
        "to": checksum_address(TO),
        "value": hex(10**18),
        "gas": "0x5208",
        "max_fee_per_gas": hex(5 * 10**10),
        "max_priority_fee_per_gas": hex(2 * 10**9),
        "data": "0x",
        "access_list": [],
        "v": hex(TX2.y_parity),
        "y_parity": hex(TX2.y_parity),
        "r": hex(TX2.r),
        "s": hex(TX2.s),
    }


def test_decode_legacy_creation_without_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["tx", "decode", HEX0], capsys)
    obj = json.loads(out)
    assert code == 0
    assert obj["type"] == "0x0" and obj["chain_id"] is None and obj["to"] is None
    assert obj["gas_price"] == hex(10**9) and "max_fee_per_gas" not in obj
    assert obj["data"] == "0x60"


def test_invalid_transaction_exits_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = HEX2[:-2]  # truncated
    code, out, err = run_main(["tx", "decode", bad], capsys)
    assert code == 2 and out == ""
    assert err.startswith("moderntensor tx: error: invalid transaction: EIP-1559 tx payload")
    assert len(err.strip().splitlines()) == 1


def test_not_hex_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["tx", "decode", "0xzz"], capsys)
    assert code == 2 and "not hex" in err


def test_blob_transaction_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["tx", "decode", "0x03" + TX2.raw[1:].hex()], capsys)
    assert code == 2 and "EIP-4844" in err


def test_chain_id_option_applies_static_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["tx", "decode", "--chain-id", "1", HEX2], capsys)
    assert code == 0 and json.loads(out)["nonce"] == "0x3"
    code, out, err = run_main(["tx", "decode", "--chain-id", "5", HEX2], capsys)
    assert code == 2 and out == "" and "wrong_chain_id" in err
    code, _, err = run_main(["tx", "decode", "--chain-id", "1", HEX0], capsys)
    assert code == 2 and "unprotected" in err
    code, _, _ = run_main(["tx", "decode", "--chain-id", "1", "--allow-unprotected", HEX0], capsys)
    assert code == 0


def test_stdin_mode_reports_line_numbers_and_continues(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [HEX2, "", "0x02c0", "not-hex", HEX0, "0x"]
    code, out, err = run_main(["tx", "decode"], capsys, stdin="\n".join(lines) + "\n")
    assert code == 2
    decoded = [json.loads(line) for line in out.splitlines()]
    assert [d["hash"] for d in decoded] == ["0x" + TX2.hash.hex(), "0x" + TX0.hash.hex()]
    errors = err.splitlines()
    assert errors[0].startswith("moderntensor tx: error: line 3: invalid transaction:")
    assert "field count" in errors[0]
    assert errors[1].startswith("moderntensor tx: error: line 4: not hex")
    assert errors[2].startswith("moderntensor tx: error: line 6: empty")
    assert errors[3] == "moderntensor tx: 3 invalid transaction(s)"


def test_stdin_mode_all_valid_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["tx", "decode"], capsys, stdin=f"{HEX0}\n  {HEX2}  \n")
    assert (code, err) == (0, "")
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["0x0", "0x2"]


def test_help_states_the_json_conventions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["tx", "decode", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "EIP-55" in text and "0x-prefixed minimal hex" in text


def _subprocess(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moderntensor.cli", "tx", "decode", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_subprocess_argument_and_stdin() -> None:
    one = _subprocess(HEX2)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["sender"] == checksum_address(KEY.address)

    many = _subprocess(stdin=f"{HEX2}\n0xf8\n{HEX0}\n")
    assert many.returncode == 2
    assert len(many.stdout.splitlines()) == 2
    assert "line 2: invalid transaction" in many.stderr

    bad = _subprocess("0x01")
    assert bad.returncode == 2
    assert "moderntensor tx: error: invalid transaction: EIP-2930 tx payload" in bad.stderr
