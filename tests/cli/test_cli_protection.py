"""``moderntensor keys protection export|import`` over real RocksDB data dirs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import build_genesis, parse_genesis
from moderntensor.chain.votes import VoteKind
from moderntensor.cli import main
from moderntensor.consensus import SlashingRefused
from moderntensor.consensus._protection import DatabaseStore, SignedRecord, SlashingProtection
from moderntensor.crypto import checksum_address
from moderntensor.state.store import Database
from tests.factories import CHAIN_ID, VALIDATOR_CONSENSUS, genesis_doc, key, make_genesis

P, N, X, F = VoteKind.PROPOSE, VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE
V1 = VALIDATOR_CONSENSUS.address
V2 = key(1002).address
H1, H2, H3 = b"\x11" * 32, b"\x22" * 32, b"\x33" * 32

# (validator, kind, epoch, slot, hash): what the old machine signed
SIGNED = [
    (V1, N, 0, 1, H1),
    (V1, F, 0, 1, H1),
    (V1, P, 0, 2, H2),
    (V1, N, 0, 2, H2),
    (V1, X, 0, 3, bytes(32)),
    (V1, N, 1, 4, H3),
    (V2, N, 0, 1, H1),
    (V2, X, 0, 2, bytes(32)),
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def genesis_file(tmp_path: Path) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis_doc()), encoding="utf-8")
    return path


def genesis_hash() -> str:
    return "0x" + build_genesis(make_genesis())[0].hash.hex()


def protection(data_dir: Path, vid: bytes) -> tuple[Database, SlashingProtection]:
    db = Database.open(data_dir / "chaindb")
    return db, SlashingProtection(DatabaseStore(db), vid)


def snapshot(data_dir: Path, vid: bytes) -> tuple[Any, Any, list[Any]]:
    db, p = protection(data_dir, vid)
    try:
        return p.signed_mark, p.certified_mark, p.records()
    finally:
        db.close()


@pytest.fixture
def old_dir(tmp_path: Path) -> Path:
    """A data dir with the chain (as a node leaves it) and the SIGNED records."""
    data_dir = tmp_path / "old"
    db = Database.open(data_dir / "chaindb")
    try:
        Chain(db, make_genesis())
        stores = {vid: SlashingProtection(DatabaseStore(db), vid) for vid in (V1, V2)}
        stores[V1].observe_certificate(0, 2)
        for vid, kind, epoch, slot, block_hash in SIGNED:
            stores[vid].check_and_record(kind, epoch, slot, block_hash)
    finally:
        db.close()
    return data_dir


def export(capsys: pytest.CaptureFixture[str], data_dir: Path, genesis: Path, *extra: str) -> Any:
    code, out, err = run(
        capsys, "keys", "protection", "export", "--data-dir", str(data_dir),
        "--genesis", str(genesis), *extra,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)


def import_(
    capsys: pytest.CaptureFixture[str], doc: Any, data_dir: Path, genesis: Path, tmp_path: Path
) -> tuple[int, str, str]:
    path = tmp_path / "interchange.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return run(
        capsys, "keys", "protection", "import", str(path), "--data-dir", str(data_dir),
        "--genesis", str(genesis),
    )  # fmt: skip


def test_export_writes_every_record_and_both_marks(
    capsys: pytest.CaptureFixture[str], old_dir: Path, genesis_file: Path
) -> None:
    doc = export(capsys, old_dir, genesis_file)
    assert doc["metadata"] == {
        "interchange_format": "moderntensor-slashing-protection",
        "interchange_format_version": "1",
        "chain_id": CHAIN_ID,
        "genesis_hash": genesis_hash(),
    }
    by_id = {entry["validator_id"]: entry for entry in doc["data"]}
    assert set(by_id) == {checksum_address(V1), checksum_address(V2)}
    v1 = by_id[checksum_address(V1)]
    assert v1["high_water"] == {
        "signed": {"epoch": 1, "slot": 4},
        "certified": {"epoch": 0, "slot": 2},
    }
    assert v1["records"] == [
        {"epoch": 0, "slot": 1, "propose": None, "notarize": "0x" + H1.hex(), "nullify": False,
         "finalize": "0x" + H1.hex()},
        {"epoch": 0, "slot": 2, "propose": "0x" + H2.hex(), "notarize": "0x" + H2.hex(),
         "nullify": False, "finalize": None},
        {"epoch": 0, "slot": 3, "propose": None, "notarize": None, "nullify": True,
         "finalize": None},
        {"epoch": 1, "slot": 4, "propose": None, "notarize": "0x" + H3.hex(), "nullify": False,
         "finalize": None},
    ]  # fmt: skip
    only = export(capsys, old_dir, genesis_file, "--validator", checksum_address(V2))
    assert [e["validator_id"] for e in only["data"]] == [checksum_address(V2)]
    assert only["data"][0]["high_water"]["certified"] is None


def test_round_trip_into_a_fresh_data_dir(
    capsys: pytest.CaptureFixture[str], old_dir: Path, genesis_file: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "moved.json"
    doc = export(capsys, old_dir, genesis_file, "--out", str(out_file))
    assert doc["file"] == str(out_file)
    new_dir = tmp_path / "new"  # a new machine: the data dir does not exist yet
    code, out, err = run(
        capsys, "keys", "protection", "import", str(out_file), "--data-dir", str(new_dir),
        "--genesis", str(genesis_file),
    )  # fmt: skip
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["conflicts"] == 0 and report["chain"].startswith("none yet")
    for vid in (V1, V2):
        assert snapshot(new_dir, vid) == snapshot(old_dir, vid)
    # the node starts on the imported data dir, and its signer refuses what conflicts
    db, p = protection(new_dir, V1)
    try:
        Chain(db, make_genesis())
        with pytest.raises(SlashingRefused):
            p.check(N, 0, 2, H3)  # another NOTARIZE in a round notarized before the move
        with pytest.raises(SlashingRefused):
            p.check(X, 0, 1, bytes(32))  # NULLIFY after FINALIZE
        with pytest.raises(SlashingRefused):
            p.check(X, 0, 2, bytes(32))  # NULLIFY at the certified mark
    finally:
        db.close()
    # importing again changes nothing, now against a data dir that holds the chain
    code, out, _ = run(
        capsys, "keys", "protection", "import", str(out_file), "--data-dir", str(new_dir),
        "--genesis", str(genesis_file),
    )  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["chain"] == genesis_hash()
    assert all(v["changed"] == 0 for v in report["validators"])
    # the file is never overwritten
    code, _, err = run(
        capsys, "keys", "protection", "export", "--data-dir", str(old_dir),
        "--genesis", str(genesis_file), "--out", str(out_file),
    )  # fmt: skip
    assert code == 2 and "already exists" in err


def test_conflicting_record_is_reported_and_kept(
    capsys: pytest.CaptureFixture[str], old_dir: Path, genesis_file: Path, tmp_path: Path
) -> None:
    doc = export(capsys, old_dir, genesis_file)
    new_dir = tmp_path / "new"
    db, p = protection(new_dir, V1)
    try:
        p.check_and_record(N, 0, 2, H3)  # this machine notarized another block in round (0, 2)
        p.check_and_record(X, 1, 4, bytes(32))  # and nullified the round the old one notarized
    finally:
        db.close()
    code, out, err = import_(capsys, doc, new_dir, genesis_file, tmp_path)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1 and json.loads(out)["conflicts"] == 1
    assert lines[0].startswith("conflict: validator " + checksum_address(V1))
    assert "(0, 2)" in lines[0] and "NOTARIZE" in lines[0] and H3.hex() in lines[0]
    assert "kept the local record" in lines[0]
    records = dict(snapshot(new_dir, V1)[2])
    assert records[(0, 2)] == SignedRecord(notarize=H3)  # not overwritten, PROPOSE not added
    assert records[(0, 1)] == SignedRecord(notarize=H1, finalize=H1)  # the rest merged
    assert records[(1, 4)] == SignedRecord(notarize=H3, nullify=True)  # NOTARIZE + NULLIFY: fine
    assert dict(snapshot(new_dir, V2)[2]) == dict(snapshot(old_dir, V2)[2])


def test_nullify_against_finalize_is_reported(
    capsys: pytest.CaptureFixture[str], old_dir: Path, genesis_file: Path, tmp_path: Path
) -> None:
    doc = export(capsys, old_dir, genesis_file)
    new_dir = tmp_path / "new"
    db, p = protection(new_dir, V1)
    try:
        p.check_and_record(X, 0, 1, bytes(32))  # the old machine FINALIZEd round (0, 1)
    finally:
        db.close()
    code, _, err = import_(capsys, doc, new_dir, genesis_file, tmp_path)
    assert code == 1 and "NULLIFY" in err and "FINALIZE" in err and "(0, 1)" in err
    record = dict(snapshot(new_dir, V1)[2])[(0, 1)]
    assert record.nullify and record.finalize == H1  # both on record: refuses either again


def test_import_never_lowers_a_mark(
    capsys: pytest.CaptureFixture[str], old_dir: Path, genesis_file: Path, tmp_path: Path
) -> None:
    doc = export(capsys, old_dir, genesis_file)
    new_dir = tmp_path / "new"
    db, p = protection(new_dir, V1)
    try:
        p.observe_certificate(5, 9)
        p.check_and_record(N, 5, 10, H2)
    finally:
        db.close()
    assert import_(capsys, doc, new_dir, genesis_file, tmp_path)[0] == 0
    assert snapshot(new_dir, V1)[:2] == ((5, 10), (5, 9))  # the file's (1, 4), (0, 2) are lower
    # a mark above the local one is raised; the signed mark covers every imported record
    entry = next(e for e in doc["data"] if e["validator_id"] == checksum_address(V1))
    entry["high_water"] = {"signed": None, "certified": {"epoch": 7, "slot": 1}}
    entry["records"].append({"epoch": 8, "slot": 3, "notarize": "0x" + H1.hex()})
    assert import_(capsys, doc, new_dir, genesis_file, tmp_path)[0] == 0
    assert snapshot(new_dir, V1)[:2] == ((8, 3), (7, 1))


def test_another_chain_is_refused_naming_the_field(
    capsys: pytest.CaptureFixture[str], old_dir: Path, genesis_file: Path, tmp_path: Path
) -> None:
    doc = export(capsys, old_dir, genesis_file)
    new_dir = tmp_path / "new"
    wrong = json.loads(json.dumps(doc))
    wrong["metadata"]["genesis_hash"] = "0x" + "ab" * 32
    code, out, err = import_(capsys, wrong, new_dir, genesis_file, tmp_path)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "metadata.genesis_hash" in err and "ab" * 32 in err
    assert not new_dir.exists()  # refused before anything was opened or written
    wrong = json.loads(json.dumps(doc))
    wrong["metadata"]["chain_id"] = CHAIN_ID + 1
    code, _, err = import_(capsys, wrong, new_dir, genesis_file, tmp_path)
    assert code == 2 and "metadata.chain_id" in err and str(CHAIN_ID + 1) in err
    # a genesis file of another chain than the data dir's
    other_doc = {**genesis_doc(), "chain_id": 99}
    other = tmp_path / "other-genesis.json"
    other.write_text(json.dumps(other_doc), encoding="utf-8")
    doc["metadata"]["chain_id"] = 99
    doc["metadata"]["genesis_hash"] = "0x" + build_genesis(parse_genesis(other_doc))[0].hash.hex()
    code, _, err = import_(capsys, doc, old_dir, other, tmp_path)
    assert code == 2 and "--genesis" in err and str(old_dir) in err
    code, _, err = run(
        capsys, "keys", "protection", "export", "--data-dir", str(old_dir), "--genesis", str(other)
    )
    assert code == 2 and "--genesis" in err


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["metadata"].update(interchange_format="eip-3076"),
         "metadata.interchange_format"),
        (lambda d: d["metadata"].update(interchange_format_version="2"),
         "metadata.interchange_format_version"),
        (lambda d: d["metadata"].pop("chain_id"), "metadata.chain_id"),
        (lambda d: d["data"][0].update(validator_id="0x1234"), "data[0].validator_id"),
        (lambda d: d["data"][0]["records"][1].update(notarize="0x12"),
         "data[0].records[1].notarize"),
        (lambda d: d["data"][0]["records"][0].update(nullify=1), "data[0].records[0].nullify"),
        (lambda d: d["data"][0]["records"][0].update(epoch=-1), "data[0].records[0].epoch"),
        (lambda d: d["data"][0]["records"][0].update(slot=True), "data[0].records[0].slot"),
        (lambda d: d["data"][0]["records"][0].update(finalise=None), "data[0].records[0].finalise"),
        (lambda d: d["data"][1]["high_water"].update(signed={"epoch": 1}),
         "data[1].high_water.signed.slot"),
        (lambda d: d.update(data={}), "data"),
    ],
)  # fmt: skip
def test_malformed_file_names_the_field(
    capsys: pytest.CaptureFixture[str],
    old_dir: Path,
    genesis_file: Path,
    tmp_path: Path,
    edit: Any,
    field: str,
) -> None:
    doc = export(capsys, old_dir, genesis_file)
    edit(doc)
    new_dir = tmp_path / "new"
    code, out, err = import_(capsys, doc, new_dir, genesis_file, tmp_path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "interchange.json: " + field + ":" in err
    assert not new_dir.exists()


def test_not_json_and_missing_inputs(
    capsys: pytest.CaptureFixture[str], old_dir: Path, genesis_file: Path, tmp_path: Path
) -> None:
    code, _, err = import_(capsys, '{"metadata": ', tmp_path / "new", genesis_file, tmp_path)
    assert code == 2 and "interchange.json: not JSON" in err and err.count("\n") == 1
    code, _, err = run(
        capsys, "keys", "protection", "import", str(tmp_path / "absent.json"),
        "--data-dir", str(old_dir), "--genesis", str(genesis_file),
    )  # fmt: skip
    assert code == 2 and "absent.json: cannot read" in err
    code, _, err = run(
        capsys, "keys", "protection", "export", "--data-dir", str(tmp_path / "nothing"),
        "--genesis", str(genesis_file),
    )  # fmt: skip
    assert code == 2 and "no node database" in err and not (tmp_path / "nothing").exists()
    code, _, err = run(
        capsys, "keys", "protection", "export", "--data-dir", str(old_dir),
        "--genesis", str(genesis_file), "--validator", checksum_address(key(7).address),
    )  # fmt: skip
    assert code == 2 and "no slashing-protection data" in err


def test_a_running_node_is_reported(
    capsys: pytest.CaptureFixture[str], old_dir: Path, genesis_file: Path, tmp_path: Path
) -> None:
    doc = export(capsys, old_dir, genesis_file)
    with Database.open(old_dir / "chaindb"):  # the node holds the RocksDB lock
        code, _, err = run(
            capsys, "keys", "protection", "export", "--data-dir", str(old_dir),
            "--genesis", str(genesis_file),
        )  # fmt: skip
        assert code == 2 and "stop the node" in err and err.count("\n") == 1
        code, _, err = import_(capsys, doc, old_dir, genesis_file, tmp_path)
        assert code == 2 and "stop the node" in err


def test_console_script_pipes_export_into_import(
    old_dir: Path, genesis_file: Path, tmp_path: Path
) -> None:
    base = [sys.executable, "-m", "moderntensor.cli", "keys", "protection"]
    exported = subprocess.run(
        [*base, "export", "--data-dir", str(old_dir), "--genesis", str(genesis_file)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    new_dir = tmp_path / "new"
    imported = subprocess.run(
        [*base, "import", "-", "--data-dir", str(new_dir), "--genesis", str(genesis_file)],
        input=exported.stdout, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert snapshot(new_dir, V1) == snapshot(old_dir, V1)
