"""The slashing-protection interchange file: reading and checking it for ``keys protection import``.

The format is described in :mod:`moderntensor.cli._protection`; every error names the file and
the field.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from moderntensor.cli import CLIError
from moderntensor.consensus._protection import Round, SignedRecord
from moderntensor.crypto import parse_address

FORMAT = "moderntensor-slashing-protection"
FORMAT_VERSION = "1"


@attrs.frozen(slots=True)
class _Entry:
    validator_id: bytes
    signed: Round | None
    certified: Round | None
    records: list[tuple[Round, SignedRecord]]


class _Reader:
    """Typed reads of the parsed JSON; every error names the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> CLIError:
        return CLIError(f"{self.source}: {where}: {problem}")

    def obj(self, value: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "expected a JSON object")
        for name in sorted(required - value.keys()):
            raise self.fail(f"{where}.{name}" if where else name, "missing")
        for name in sorted(value.keys() - required - optional):
            raise self.fail(f"{where}.{name}" if where else name, "unknown field")
        return value

    def uint(self, value: Any, where: str) -> int:
        if isinstance(value, str) and value.isdigit() and value.isascii():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
            raise self.fail(where, f"expected an unsigned 64-bit integer, got {value!r}")
        return value

    def hash(self, value: Any, where: str) -> bytes:
        if value is None:
            return b""
        if isinstance(value, str) and value.startswith("0x") and len(value) == 66:
            try:
                raw = bytes.fromhex(value[2:])
            except ValueError:
                raw = b""
            if len(raw) == 32:
                return raw
        raise self.fail(where, f"expected null or 0x and 64 hex digits, got {value!r}")

    def round(self, value: Any, where: str, nullable: bool) -> Round | None:
        if value is None and nullable:
            return None
        return self.epoch_slot(self.obj(value, where, {"epoch", "slot"}, set()), where)

    def epoch_slot(self, fields: dict[str, Any], where: str) -> Round:
        epoch = self.uint(fields["epoch"], where + ".epoch")
        return epoch, self.uint(fields["slot"], where + ".slot")

    def record(self, value: Any, where: str) -> tuple[Round, SignedRecord]:
        kinds = {"propose", "notarize", "nullify", "finalize"}
        fields = self.obj(value, where, {"epoch", "slot"}, kinds)
        rnd = self.epoch_slot(fields, where)
        nullify = fields.get("nullify", False)
        if not isinstance(nullify, bool):
            raise self.fail(where + ".nullify", f"expected true or false, got {nullify!r}")
        record = SignedRecord(
            self.hash(fields.get("propose"), where + ".propose"),
            self.hash(fields.get("notarize"), where + ".notarize"),
            nullify,
            self.hash(fields.get("finalize"), where + ".finalize"),
        )
        return rnd, record

    def entry(self, value: Any, where: str) -> _Entry:
        fields = self.obj(value, where, {"validator_id", "high_water", "records"}, set())
        try:
            vid = parse_address(fields["validator_id"])
        except ValueError as exc:
            raise self.fail(where + ".validator_id", str(exc)) from None
        marks_at = where + ".high_water"
        marks = self.obj(fields["high_water"], marks_at, {"signed", "certified"}, set())
        records = fields["records"]
        if not isinstance(records, list):
            raise self.fail(where + ".records", "expected a JSON array")
        return _Entry(
            vid,
            self.round(marks["signed"], marks_at + ".signed", True),
            self.round(marks["certified"], marks_at + ".certified", True),
            [self.record(r, f"{where}.records[{i}]") for i, r in enumerate(records)],
        )


def _parse(source: str, text: str, chain_id: int, genesis_hash: bytes) -> list[_Entry]:
    """The file's entries, after checking its metadata against the local chain.

    Raises:
        CLIError: not JSON, a malformed field, another format or version, another chain.
    """
    reader = _Reader(source)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{source}: not JSON: {exc}") from None
    top = reader.obj(doc, "", {"metadata", "data"}, set())
    meta = reader.obj(
        top["metadata"],
        "metadata",
        {"interchange_format", "interchange_format_version", "chain_id", "genesis_hash"},
        set(),
    )
    if meta["interchange_format"] != FORMAT:
        raise reader.fail(
            "metadata.interchange_format", f"{meta['interchange_format']!r}, expected {FORMAT!r}"
        )
    if meta["interchange_format_version"] != FORMAT_VERSION:
        raise reader.fail(
            "metadata.interchange_format_version",
            f"{meta['interchange_format_version']!r} is not supported (only {FORMAT_VERSION!r})",
        )
    file_genesis = reader.hash(meta["genesis_hash"], "metadata.genesis_hash")
    if file_genesis != genesis_hash:
        raise reader.fail(
            "metadata.genesis_hash",
            f"0x{file_genesis.hex()} is another chain; this chain's genesis is "
            f"0x{genesis_hash.hex()}",
        )
    file_chain = reader.uint(meta["chain_id"], "metadata.chain_id")
    if file_chain != chain_id:
        raise reader.fail(
            "metadata.chain_id", f"{file_chain!r} is another chain; this chain's id is {chain_id}"
        )
    data = top["data"]
    if not isinstance(data, list):
        raise reader.fail("data", "expected a JSON array")
    return [reader.entry(item, f"data[{i}]") for i, item in enumerate(data)]
