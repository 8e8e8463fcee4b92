"""Ethereum genesis allocations give Ethereum's published state roots through our CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from moderntensor.chain.genesis import alloc_state_root
from moderntensor.cli import main
from moderntensor.codec import decode_rlp
from moderntensor.crypto import keccak256
from moderntensor.state.account import EMPTY_ROOT
from tests.conftest import VECTORS

GENESIS = VECTORS / "genesis"
NETWORKS = ["sepolia", "goerli", "mainnet", "holesky"]


@pytest.mark.parametrize("network", NETWORKS)
def test_alloc_root_command_matches_published_root(network: str, capsys) -> None:  # type: ignore[no-untyped-def]
    path = GENESIS / f"{network}_genesis_alloc.json"
    expected = json.loads(path.read_text())["expected_state_root"]
    assert main(["genesis", "alloc-root", str(path)]) == 0
    assert capsys.readouterr().out.strip() == expected


def test_console_script_prints_sepolia_root() -> None:
    path = GENESIS / "sepolia_genesis_alloc.json"
    out = subprocess.run(
        [sys.executable, "-m", "moderntensor.cli", "genesis", "alloc-root", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == json.loads(path.read_text())["expected_state_root"]


def test_single_account_roots() -> None:
    doc = json.loads((GENESIS / "single_account_roots.json").read_text())
    for case in doc["cases"]:
        alloc = {case["address"]: {"balance": doc["balance"]}} if case.get("address") else {}
        assert "0x" + alloc_state_root(alloc).hex() == case["expected_state_root"]
    assert alloc_state_root({}) == EMPTY_ROOT


def test_basic_genesis_tests_state_roots() -> None:
    doc = json.loads((GENESIS / "ethereum_tests_basic_genesis_tests.json").read_text())
    for name, case in doc.items():
        header = decode_rlp(bytes.fromhex(case["result"].removeprefix("0x")))[0]
        assert isinstance(header, list)
        assert alloc_state_root(case["alloc"], name) == header[3], name


def test_mainnet_genesis_block_hash_vector() -> None:
    doc = json.loads((GENESIS / "ethereum_tests_genesishashestest.json").read_text())
    block = decode_rlp(bytes.fromhex(doc["genesis_rlp_hex"]))
    assert isinstance(block, list) and isinstance(block[0], list)
    assert block[0][3].hex() == doc["genesis_state_root"]  # type: ignore[union-attr]
    from moderntensor.codec import encode_rlp

    assert keccak256(encode_rlp(block[0])).hex() == doc["genesis_hash"]
