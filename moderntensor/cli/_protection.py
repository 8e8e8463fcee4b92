"""``moderntensor keys protection``: export and import slashing-protection data (EIP-3076 style).

The interchange file, one JSON object::

    {"metadata": {"interchange_format": "moderntensor-slashing-protection",
                  "interchange_format_version": "1", "chain_id": 7777, "genesis_hash": "0x..."},
     "data": [{"validator_id": "0x...",
               "high_water": {"signed": {"epoch": E, "slot": S} | null,
                              "certified": {"epoch": E, "slot": S} | null},
               "records": [{"epoch": E, "slot": S, "propose": "0x..." | null,
                            "notarize": "0x..." | null, "nullify": false,
                            "finalize": "0x..." | null}, ...]}]}

Epochs and slots are JSON integers (decimal strings are accepted too); hashes are 32 bytes.

Both commands open the node's database (``DATA_DIR/chaindb``), so the node must be stopped:
RocksDB's lock refuses a second opener. The database does not store the chain id, so both take
``--genesis FILE`` (the node's genesis file): it gives the chain id and the genesis hash, and
the genesis hash must be the one of the chain in the data dir, if it has one yet. Import into a
data dir without a chain (a new machine, before the node's first start) is allowed: the node
builds the chain from the same genesis file when it starts.

Import merges with :meth:`SlashingProtection.merge` (the union of what both sides signed; a
round where both signed the same kind on different hashes is a conflict: reported, local record
kept, exit code 1) and raises the high-water marks with :meth:`raise_marks` (never lowers them).
The signed mark is raised to at least the highest imported round that holds a signature.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from moderntensor.chain.chaindb import ChainDB
from moderntensor.chain.genesis import GenesisError, build_genesis, load_genesis
from moderntensor.chain.votes import VoteKind
from moderntensor.cli import CLIError
from moderntensor.cli._interchange import FORMAT, FORMAT_VERSION, _Entry, _parse
from moderntensor.codec import DecodeError
from moderntensor.consensus._protection import (
    _MARKS_PREFIX,
    _PREFIX,
    ALLOWED_AFTER,
    DatabaseStore,
    Round,
    SignedRecord,
    SlashingProtection,
)
from moderntensor.crypto import checksum_address, parse_address
from moderntensor.state.store import Column, Database, DatabaseError

DB_NAME = "chaindb"  # the node opens DATA_DIR/chaindb (moderntensor/node/_supervisor.py)
_ID_BYTES = 20
_ROUND_BYTES = 16  # epoch and slot, 8 bytes each, big-endian
_FLUSH_EVERY = 4096


def register(keys_commands: Any) -> None:
    """Add ``protection export|import`` under ``moderntensor keys``."""
    protection = keys_commands.add_parser(
        "protection",
        help="export and import slashing-protection data (to move a validator)",
        description="Move a validator's slashing-protection data between machines: stop the "
        "node on the old machine, export, import on the new machine, then start the node "
        "there. Never restore a data dir from a backup onto a validator that kept running "
        "after the backup. Both commands need the node on DATA_DIR stopped.",
    )
    sub = protection.add_subparsers(dest="protection_command", metavar="COMMAND", required=True)
    genesis_help = (
        "the chain's genesis file, as in node.toml (required: the database does not hold the "
        "chain id); its hash must be that of the chain in the data dir, if it has one"
    )

    export = sub.add_parser(
        "export",
        help="write the slashing-protection data of a data dir as JSON",
        description="Write every record and both high-water marks of the validators in "
        "DATA_DIR (or only those given with --validator) as interchange JSON. Stop the node "
        "first, and do not start it again on this machine once the validator moves.",
    )
    export.add_argument("--data-dir", required=True, metavar="DIR", help="the node's data dir")
    export.add_argument("--genesis", required=True, metavar="FILE", help=genesis_help)
    export.add_argument(
        "--validator",
        action="append",
        default=[],
        metavar="0xID",
        help="export only this validator id (repeatable; default: every validator found)",
    )
    export.add_argument(
        "--out", metavar="FILE", help="write here (never overwritten) instead of stdout"
    )
    export.set_defaults(handler=_export)

    imp = sub.add_parser(
        "import",
        help="merge an exported file into a data dir",
        description="Merge interchange JSON into DATA_DIR (created if missing: importing "
        "before the node's first start on a new machine is the usual case). The file's "
        "chain_id and genesis_hash must match --genesis. Records are merged (a round both "
        "sides signed differently is reported and keeps the local record: exit code 1); "
        "high-water marks are only ever raised. FILE '-' reads standard input.",
    )
    imp.add_argument("file")
    imp.add_argument("--data-dir", required=True, metavar="DIR", help="the node's data dir")
    imp.add_argument("--genesis", required=True, metavar="FILE", help=genesis_help)
    imp.set_defaults(handler=_import)


# -- the chain and the database ---------------------------------------------------------------


def _chain_of(genesis_file: str) -> tuple[int, bytes]:
    """(chain id, genesis hash) of a genesis file."""
    try:
        genesis = load_genesis(genesis_file)
    except GenesisError as exc:
        raise CLIError(str(exc)) from None
    block, _ = build_genesis(genesis)
    return genesis.chain_id, block.hash


def _open(data_dir: str, genesis_hash: bytes, *, create: bool) -> tuple[Database, bool]:
    """The data dir's database, checked against the genesis; and whether it holds a chain.

    Raises:
        CLIError: no database (export), locked (the node runs), unusable, or another chain.
    """
    path = Path(data_dir) / DB_NAME
    if not create and not path.is_dir():
        raise CLIError(f"--data-dir {data_dir}: no node database ({path} does not exist)")
    try:
        db = Database.open(path)
    except DatabaseError as exc:
        hint = "; stop the node using this data dir first" if "in use" in str(exc) else ""
        raise CLIError(f"--data-dir {data_dir}: {exc}{hint}") from None
    stored = ChainDB(db).genesis_hash()
    if stored is not None and stored != genesis_hash:
        db.close()
        raise CLIError(
            f"--genesis: hash 0x{genesis_hash.hex()}, but data dir {data_dir} holds the chain "
            f"with genesis 0x{stored.hex()}"
        )
    return db, stored is not None


# -- export -----------------------------------------------------------------------------------


def _stored_validators(db: Database) -> list[bytes]:
    """Every validator id with records or marks in the CONSENSUS column, sorted."""
    found: set[bytes] = set()
    for key, _ in db.iterate(Column.CONSENSUS, _MARKS_PREFIX):
        if len(key) == len(_MARKS_PREFIX) + _ID_BYTES:
            found.add(key[len(_MARKS_PREFIX) :])
    for key, _ in db.iterate(Column.CONSENSUS, _PREFIX):
        if len(key) == len(_PREFIX) + _ID_BYTES + _ROUND_BYTES:
            found.add(key[len(_PREFIX) : len(_PREFIX) + _ID_BYTES])
    return sorted(found)


def _hash_json(value: bytes) -> str | None:
    return "0x" + value.hex() if value else None


def _round_json(rnd: Round | None) -> dict[str, int] | None:
    return None if rnd is None else {"epoch": rnd[0], "slot": rnd[1]}


def _entry_json(protection: SlashingProtection) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the validator's header fields, its records) as JSON values."""
    head = {
        "validator_id": checksum_address(protection.validator_id),
        "high_water": {
            "signed": _round_json(protection.signed_mark),
            "certified": _round_json(protection.certified_mark),
        },
    }
    records = [
        {
            "epoch": epoch,
            "slot": slot,
            "propose": _hash_json(record.propose),
            "notarize": _hash_json(record.notarize),
            "nullify": record.nullify,
            "finalize": _hash_json(record.finalize),
        }
        for (epoch, slot), record in protection.records()
    ]
    return head, records


def _chunks(
    metadata: dict[str, Any], entries: list[tuple[dict[str, Any], list[dict[str, Any]]]]
) -> Iterator[str]:
    """The interchange JSON: metadata indented, one record a line (files can be large)."""
    yield '{\n  "metadata": ' + json.dumps(metadata) + ',\n  "data": ['
    for i, (head, records) in enumerate(entries):
        yield ("," if i else "") + "\n    " + json.dumps(head)[:-1] + ', "records": ['
        for j, record in enumerate(records):
            yield ("," if j else "") + "\n      " + json.dumps(record)
        yield ("\n    " if records else "") + "]}"
    yield ("\n  " if entries else "") + "]\n}\n"


def _write(chunks: Iterator[str], out: TextIO) -> None:
    for chunk in chunks:
        out.write(chunk)


def _export(args: argparse.Namespace) -> int:
    wanted: list[bytes] = []
    for text in args.validator:
        try:
            wanted.append(parse_address(text))
        except ValueError as exc:
            raise CLIError(f"--validator: {exc}") from None
    chain_id, genesis_hash = _chain_of(args.genesis)
    db, _ = _open(args.data_dir, genesis_hash, create=False)
    try:
        stored = _stored_validators(db)
        for vid in wanted:
            if vid not in stored:
                raise CLIError(
                    f"--validator {checksum_address(vid)}: no slashing-protection data in "
                    f"data dir {args.data_dir}"
                )
        entries = []
        for vid in list(dict.fromkeys(wanted)) or stored:
            try:
                entries.append(_entry_json(SlashingProtection(DatabaseStore(db), vid)))
            except DecodeError as exc:
                raise CLIError(
                    f"--data-dir {args.data_dir}: validator {checksum_address(vid)}: corrupt "
                    f"slashing-protection data: {exc}"
                ) from None
    finally:
        db.close()
    metadata = {
        "interchange_format": FORMAT,
        "interchange_format_version": FORMAT_VERSION,
        "chain_id": chain_id,
        "genesis_hash": "0x" + genesis_hash.hex(),
    }
    if args.out is None:
        _write(_chunks(metadata, entries), sys.stdout)
        return 0
    try:
        with open(args.out, "x", encoding="utf-8") as handle:
            try:
                _write(_chunks(metadata, entries), handle)
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                os.unlink(args.out)
                raise
    except FileExistsError:
        raise CLIError(f"--out {args.out}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise CLIError(f"--out {args.out}: cannot write: {exc.strerror}") from None
    summary = {
        "file": args.out,
        "validators": [
            {"validator_id": head["validator_id"], "records": len(records)}
            for head, records in entries
        ],
    }
    print(json.dumps(summary, indent=2))
    return 0


# -- import: merging --------------------------------------------------------------------------


class _BatchedStore:
    """The database store for the offline import: writes go out in large fsynced batches.

    :class:`DatabaseStore` fsyncs every put, which the signing path needs and which would make
    an import of months of records take hours. Nothing runs on the database meanwhile (the
    import holds its lock), the import reports success only after :meth:`flush`, and merging
    again is harmless, so an import that fails midway is simply run again.
    """

    def __init__(self, db: Database) -> None:
        self.inner = DatabaseStore(db)
        self.pending: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        value = self.pending.get(key)
        return value if value is not None else self.inner.get(key)

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        self.pending.update(items)
        if len(self.pending) >= _FLUSH_EVERY:
            self.flush()

    def items(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        self.flush()
        return self.inner.items(prefix)

    def flush(self) -> None:
        if self.pending:
            self.inner.put_many(sorted(self.pending.items()))
            self.pending.clear()


def _signed_kinds(record: SignedRecord) -> set[VoteKind]:
    return {kind for kind in VoteKind if record.get(kind) is not None}


def _cross_conflict(local: SignedRecord, incoming: SignedRecord) -> str | None:
    """A pair of *different* kinds that :data:`ALLOWED_AFTER` forbids in one round, which the
    union would hold and the local record did not (``merge`` reports only same-kind clashes)."""
    mine, theirs = _signed_kinds(local), _signed_kinds(incoming)
    both = mine | theirs
    for kind in sorted(both):
        for earlier in ALLOWED_AFTER[kind]:
            if earlier is kind or earlier not in both:
                continue
            if kind in mine and earlier in mine:
                continue
            here = " and ".join(k.name for k in sorted(mine)) or "nothing"
            there = " and ".join(k.name for k in sorted(theirs))
            return f"{here} here, {there} imported: both {earlier.name} and {kind.name} signed"
    return None


def _merge_entry(store: _BatchedStore, entry: _Entry, conflicts: list[str]) -> dict[str, Any]:
    protection = SlashingProtection(store, entry.validator_id)
    name = checksum_address(entry.validator_id)
    merged = 0
    top: Round | None = entry.signed
    for rnd, incoming in entry.records:
        if _signed_kinds(incoming) and (top is None or rnd > top):
            top = rnd
        before = protection.record_of(*rnd)
        cross = _cross_conflict(before, incoming)
        reason = protection.merge(rnd, incoming)
        if reason is not None:
            conflicts.append(f"validator {name}: {reason}; kept the local record")
            continue
        if cross is not None:
            conflicts.append(f"validator {name}: round {rnd}: {cross}; recorded both")
        if protection.record_of(*rnd) != before:
            merged += 1
    protection.raise_marks(top, entry.certified)
    return {
        "validator_id": name,
        "records": len(entry.records),
        "changed": merged,
        "high_water": {
            "signed": _round_json(protection.signed_mark),
            "certified": _round_json(protection.certified_mark),
        },
    }


def _import(args: argparse.Namespace) -> int:
    chain_id, genesis_hash = _chain_of(args.genesis)
    source = "<stdin>" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except OSError as exc:
        raise CLIError(f"{source}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CLIError(f"{source}: not UTF-8 text") from None
    entries = _parse(source, text, chain_id, genesis_hash)
    db, has_chain = _open(args.data_dir, genesis_hash, create=True)
    conflicts: list[str] = []
    try:
        store = _BatchedStore(db)
        try:
            summary = [_merge_entry(store, entry, conflicts) for entry in entries]
        except DecodeError as exc:
            raise CLIError(
                f"--data-dir {args.data_dir}: corrupt slashing-protection data: {exc}"
            ) from None
        store.flush()
    except DatabaseError as exc:
        raise CLIError(f"--data-dir {args.data_dir}: {exc}") from None
    finally:
        db.close()
    for line in conflicts:
        print(f"conflict: {line}", file=sys.stderr)
    report = {
        "file": source,
        "data_dir": args.data_dir,
        "chain": "0x" + genesis_hash.hex() if has_chain else "none yet (built at first start)",
        "conflicts": len(conflicts),
        "validators": summary,
    }
    print(json.dumps(report, indent=2))
    return 1 if conflicts else 0
