"""Genesis validation reports every problem at once, each naming its field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from moderntensor.chain.genesis import (
    DEFAULT_EVIDENCE_EPOCHS,
    GenesisError,
    build_genesis,
    load_genesis,
    parse_genesis,
)
from moderntensor.crypto import checksum_address
from tests.factories import genesis_doc, key


def test_valid_genesis_builds_a_deterministic_block() -> None:
    genesis = parse_genesis(genesis_doc())
    block_a, commit_a = build_genesis(genesis)
    block_b, commit_b = build_genesis(parse_genesis(genesis_doc()))
    assert block_a.hash == block_b.hash and commit_a.root == commit_b.root
    assert block_a.header.number == 0 and block_a.header.base_fee_per_gas == 10**9
    assert genesis.consensus.slash_fraction_bps == 500
    changed = genesis_doc(block_reward=3)
    assert build_genesis(parse_genesis(changed))[0].hash != block_a.hash  # params are committed


def test_every_error_is_reported_at_once() -> None:
    doc = genesis_doc(users=2)
    doc["validators"].append(copy.deepcopy(doc["validators"][0]))  # duplicate address and key
    doc["validators"].append(
        {
            "address": checksum_address(key(5).address),
            "consensus_pubkey": "0x02" + "00" * 32,  # not on the curve
            "stake": "1",  # below min_stake
            "name": "low",
        }
    )
    doc["total_supply"] = "1000"  # stakes + alloc exceed it
    doc["genesis_time"] = -5
    doc["consensus"]["slot_duration"] = 0
    doc["consensus"]["slash_fraction"] = "1.5"
    doc["block"]["gas_limit"] = "lots"
    doc["alloc"]["0x123"] = {"balance": "1"}
    doc["surprise"] = True
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc, "g.json")
    text = str(info.value)
    for expected in [
        "validators[1].address: duplicate of validators[0].address",
        "validators[1].consensus_pubkey: duplicate of validators[0]",
        "validators[2].consensus_pubkey: consensus_pubkey is not a valid secp256k1 public key",
        "validators[2].stake: 1 is below consensus.min_stake",
        "total_supply: stakes + alloc",
        "genesis_time: must be at least 0",
        "consensus.slot_duration",
        "consensus.slash_fraction",
        "block.gas_limit: expected an integer",
        "alloc[0x123]",
        "surprise: unknown key",
    ]:
        assert expected in text, expected
    assert text.startswith("g.json: ")
    assert len(info.value.errors) >= 11


def test_hex_and_decimal_amounts_agree() -> None:
    doc = genesis_doc(users=1)
    (address,) = doc["alloc"]
    doc["alloc"][address] = {"balance": hex(10**21), "nonce": "0x2"}
    genesis = parse_genesis(doc)
    assert genesis.alloc[0][1].balance == 10**21 and genesis.alloc[0][1].nonce == 2


def test_load_genesis_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenesisError, match=r"(?s)bad.json: .*not JSON: .*line 1 column 2"):
        load_genesis(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(genesis_doc()))
    assert load_genesis(good).chain_id == 1337


def test_unbonding_must_outlast_the_set_delay_and_the_evidence_age() -> None:
    doc = genesis_doc(evidence_epochs=3, unbonding_epochs=5)
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc, "g.json")
    assert info.value.errors == [
        "consensus.unbonding_epochs: 5 is too short: it must be at least 2 (validator-set delay)"
        " + evidence_epochs 3 + 1 = 6, so stake cannot be withdrawn while an offence of its"
        " own can still be proven"
    ]
    genesis = parse_genesis(genesis_doc(evidence_epochs=3, unbonding_epochs=6))
    assert (genesis.params.evidence_epochs, genesis.params.unbonding_epochs) == (3, 6)


def test_evidence_epochs_defaults_to_two_and_is_at_least_one() -> None:
    doc = genesis_doc(unbonding_epochs=5)
    del doc["consensus"]["evidence_epochs"]
    assert parse_genesis(doc).consensus.evidence_epochs == DEFAULT_EVIDENCE_EPOCHS == 2
    doc["consensus"]["unbonding_epochs"] = 4  # 2 + 2 + 1 = 5 with the default
    with pytest.raises(GenesisError, match=r"unbonding_epochs: 4 is too short.* = 5"):
        parse_genesis(doc)
    doc["consensus"]["unbonding_epochs"] = 0  # dev chains once used 0 and 1
    with pytest.raises(GenesisError, match="unbonding_epochs: 0 is too short"):
        parse_genesis(doc)
    doc["consensus"]["unbonding_epochs"] = 100
    for bad, problem in (
        (0, "must be at least 1, got 0"),
        ("many", "expected an integer (number, decimal or 0x-hex string), got 'many'"),
    ):
        doc["consensus"]["evidence_epochs"] = bad
        with pytest.raises(GenesisError) as info:
            parse_genesis(doc)
        # only the bad field: the unbonding rule is not judged against a broken number
        assert info.value.errors == [f"consensus.evidence_epochs: {problem}"]


def test_evidence_epochs_is_committed_to_the_genesis_hash() -> None:
    one = build_genesis(parse_genesis(genesis_doc(evidence_epochs=1, unbonding_epochs=8)))
    five = build_genesis(parse_genesis(genesis_doc(evidence_epochs=5, unbonding_epochs=8)))
    assert one[0].hash != five[0].hash
