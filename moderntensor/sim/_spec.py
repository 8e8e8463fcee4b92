"""What a simulation runs: the command line's settings, parsed into plain values (pure).

Specs are written in slots, the unit operators think in:

* ``--partition 30-80:0,1,2|3,4,5,6``: from slot 30 to slot 80 (exclusive) nodes 0-2 and
  3-6 cannot reach each other (nodes in no group can reach everyone). Repeatable.
* ``--crash 2:40`` (node 2 stops at slot 40, for good), ``--crash 2:40:90`` (and restarts at
  slot 90 on its data), ``--crash 2:40:90:wipe`` (restarts on an empty data directory, keys
  kept), ``--crash 2:40:90:restore-backup`` (restarts on a copy of its data taken at slot
  40 minus one epoch: an operator restoring yesterday's backup). Repeatable.
"""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "Crash",
    "CrashMode",
    "Partition",
    "SimConfig",
    "SpecError",
    "parse_crash",
    "parse_partition",
]


class SpecError(ValueError):
    """A spec that does not parse; the message names the spec and what is wrong."""


class CrashMode(enum.Enum):
    RESUME = "resume"
    WIPE = "wipe"
    RESTORE_BACKUP = "restore-backup"


@attrs.frozen(slots=True)
class Partition:
    start: int
    end: int
    groups: tuple[frozenset[int], ...]

    @property
    def spec(self) -> str:
        sides = "|".join(",".join(str(n) for n in sorted(g)) for g in self.groups)
        return f"{self.start}-{self.end}:{sides}"

    def describe(self) -> str:
        sides = " | ".join("{" + ", ".join(str(n) for n in sorted(g)) + "}" for g in self.groups)
        return f"slots {self.start}-{self.end}: partition {sides}"

    def sides(self) -> dict[int, int]:
        """Node -> the index of its group (nodes in no group are in none)."""
        return {n: i for i, group in enumerate(self.groups) for n in group}

    def separates(self, a: int, b: int, slot: int) -> bool:
        """Whether nodes ``a`` and ``b`` are cut off from each other at ``slot``."""
        if not self.start <= slot < self.end:
            return False
        side = self.sides()
        return a in side and b in side and side[a] != side[b]


@attrs.frozen(slots=True)
class Crash:
    node: int
    slot: int
    restart: int | None = None
    mode: CrashMode = CrashMode.RESUME

    @property
    def spec(self) -> str:
        parts = [str(self.node), str(self.slot)]
        if self.restart is not None:
            parts.append(str(self.restart))
            if self.mode is not CrashMode.RESUME:
                parts.append(self.mode.value)
        return ":".join(parts)

    def describe(self) -> str:
        text = f"slot {self.slot}: node {self.node} crashes"
        if self.restart is None:
            return text + " for good"
        how = {CrashMode.RESUME: "on its data", CrashMode.WIPE: "on an empty data directory",
               CrashMode.RESTORE_BACKUP: "on a backup one epoch old"}[self.mode]  # fmt: skip
        return f"{text}, restarts at slot {self.restart} {how}"


@attrs.frozen(slots=True, kw_only=True)
class SimConfig:
    validators: int = 4
    byzantine: int = 0
    slots: int = 100
    seed: int = 0
    latency_ms: int = 50
    jitter_ms: int = 20
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: bool = False
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    tx_rate: float = 0.0
    """Transfers per second submitted to random honest nodes (virtual time)."""
    slot_ms: int = 1000
    epoch_length: int = 16
    behaviours: tuple[str, ...] = ()
    """Byzantine behaviour per byzantine validator (default: equivocators)."""

    def to_json(self) -> dict[str, object]:
        """The replay file's contents (``from_json`` reads it back)."""
        doc = attrs.asdict(self, recurse=False)
        doc["partitions"] = [p.spec for p in self.partitions]
        doc["crashes"] = [c.spec for c in self.crashes]
        doc["behaviours"] = list(self.behaviours)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> SimConfig:
        fields = {a.name for a in attrs.fields(cls)}
        unknown = set(doc) - fields
        if unknown:
            raise SpecError(f"replay file: unknown key {sorted(unknown)[0]!r}")
        values = dict(doc)
        values["partitions"] = tuple(parse_partition(str(s)) for s in doc.get("partitions", []))  # type: ignore[attr-defined]
        values["crashes"] = tuple(parse_crash(str(s)) for s in doc.get("crashes", []))  # type: ignore[attr-defined]
        values["behaviours"] = tuple(doc.get("behaviours", []))  # type: ignore[arg-type]
        try:
            return cls(**values)  # type: ignore[arg-type]
        except TypeError as exc:
            raise SpecError(f"replay file: {exc}") from None

    def behaviour_of(self, node: int) -> str | None:
        """The behaviour of validator ``node`` if it is byzantine (the last ``byzantine``
        validators take ``behaviours`` in turn; default: equivocators), else None."""
        k = node - (self.validators - self.byzantine)
        if not 0 <= k < self.byzantine:
            return None
        behaviours = self.behaviours or ("equivocator",)
        return behaviours[k % len(behaviours)]

    def doppelgangers(self) -> list[int]:
        """The validators whose key runs on a second node too."""
        return [n for n in range(self.validators) if self.behaviour_of(n) == "doppelganger"]

    def events(self) -> list[str]:
        """The run as a short numbered story (what a shrunk failure prints)."""
        lines = [f"{self.validators} validators, {self.slots} slots of {self.slot_ms} ms, "
                 f"epochs of {self.epoch_length} blocks, seed {self.seed}"]  # fmt: skip
        for node in range(self.validators - self.byzantine, self.validators):
            lines.append(f"node {node} is byzantine: {self.behaviour_of(node)}")
        if self.drop or self.duplicate or self.reorder:
            lines.append(f"links lose {self.drop:.0%}, duplicate {self.duplicate:.0%}"
                         + (", reorder" if self.reorder else ""))  # fmt: skip
        if self.tx_rate:
            lines.append(f"{self.tx_rate:g} transfers/s")
        timed = [(p.start, p.describe()) for p in self.partitions]
        timed += [(c.slot, c.describe()) for c in self.crashes]
        lines += [text for _, text in sorted(timed)]
        return [f"{i}. {line}" for i, line in enumerate(lines, 1)]

    def __attrs_post_init__(self) -> None:
        if self.validators < 1:
            raise SpecError(f"--validators {self.validators}: at least 1")
        if not 0 <= self.byzantine < self.validators:
            raise SpecError(f"--byzantine {self.byzantine}: 0 .. validators - 1")
        for p in self.partitions:
            for group in p.groups:
                bad = [n for n in group if n >= self.validators]
                if bad:
                    raise SpecError(f"--partition: node {bad[0]} does not exist")
        for c in self.crashes:
            if c.node >= self.validators:
                raise SpecError(f"--crash {c.node}:...: node {c.node} does not exist")


def _int(text: str, what: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SpecError(f"{spec!r}: {what} {text!r} is not a number") from None
    if value < 0:
        raise SpecError(f"{spec!r}: {what} {value} is negative")
    return value


def parse_partition(spec: str) -> Partition:
    """``START-END:a,b,c|d,e``."""
    window, sep, sides = spec.partition(":")
    start_text, dash, end_text = window.partition("-")
    if not sep or not dash:
        raise SpecError(f"{spec!r}: expected START-END:a,b|c,d")
    start, end = _int(start_text, "start slot", spec), _int(end_text, "end slot", spec)
    if end <= start:
        raise SpecError(f"{spec!r}: the end slot must be after the start slot")
    groups = tuple(
        frozenset(_int(n, "node", spec) for n in side.split(",") if n) for side in sides.split("|")
    )
    if len(groups) < 2 or any(not g for g in groups):
        raise SpecError(f"{spec!r}: at least two non-empty groups, separated by |")
    seen: set[int] = set()
    for group in groups:
        if seen & group:
            raise SpecError(f"{spec!r}: node {min(seen & group)} is in two groups")
        seen |= group
    return Partition(start, end, groups)


def parse_crash(spec: str) -> Crash:
    """``NODE:SLOT[:RESTART_SLOT[:wipe|restore-backup]]``."""
    parts = spec.split(":")
    if not 2 <= len(parts) <= 4:
        raise SpecError(f"{spec!r}: expected NODE:SLOT[:RESTART[:wipe|restore-backup]]")
    node, slot = _int(parts[0], "node", spec), _int(parts[1], "slot", spec)
    restart = _int(parts[2], "restart slot", spec) if len(parts) > 2 else None
    if restart is not None and restart <= slot:
        raise SpecError(f"{spec!r}: the restart slot must be after the crash slot")
    mode = CrashMode.RESUME
    if len(parts) == 4:
        try:
            mode = CrashMode(parts[3])
        except ValueError:
            raise SpecError(f"{spec!r}: mode {parts[3]!r} is not wipe or restore-backup") from None
    return Crash(node, slot, restart, mode)
