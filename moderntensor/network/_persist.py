"""Peer scores on disk (``<data_dir>/peers.json``): the thin I/O around
:meth:`PeerScores.snapshot` / :meth:`PeerScores.restore`.

Trio's clock is monotonic per process, so the file holds wall-clock times: when it was saved
and, per banned id, when its ban ends. Loading converts back to seconds left and lets scores
decay over the time the node was down. The file is written atomically (a temporary file in
the same directory, fsynced, renamed over the old one, then the directory fsynced): a crash
leaves the old file or the new one, never half of one. A file that does not parse is logged
and ignored (scores are a defence, not state the chain depends on); it is overwritten at the
next save.

Format (version 1)::

    {"version": 1, "saved_at": <unix seconds>,
     "peers": [{"id": <peer id hex>, "score": <float>, "banned_until": <unix seconds or 0>}]}
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from moderntensor._files import write_atomic
from moderntensor.network._logging import event
from moderntensor.network._score import PeerScores

__all__ = [
    "FORMAT_VERSION",
    "decode_scores",
    "encode_scores",
    "load_scores",
    "save_scores",
    "write_atomic",
]

log = logging.getLogger("moderntensor.network")

FORMAT_VERSION = 1


def encode_scores(scores: PeerScores, now: float, wall_now: float) -> bytes:
    """The file's bytes for ``scores`` (``now``: trio's clock; ``wall_now``: unix seconds)."""
    peers = [
        {"id": pid, "score": round(value, 4), "banned_until": wall_now + left if left else 0}
        for pid, value, left in scores.snapshot(now)
    ]
    doc = {"version": FORMAT_VERSION, "saved_at": wall_now, "peers": peers}
    return json.dumps(doc, indent=1).encode()


def decode_scores(data: bytes, wall_now: float) -> tuple[list[tuple[str, float, float]], float]:
    """``(snapshot items, seconds since saved)`` from the file's bytes.

    Raises:
        ValueError: not a version-1 scores file.
    """
    doc: Any = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"not a version {FORMAT_VERSION} peer scores file")
    saved_at = _number(doc.get("saved_at"))
    items = []
    for peer in doc.get("peers", ()):
        if not isinstance(peer, dict) or not isinstance(peer.get("id"), str):
            raise ValueError(f"bad peer entry {peer!r}")
        until = _number(peer.get("banned_until", 0))
        left = max(0.0, until - saved_at) if until else 0.0
        items.append((peer["id"], _number(peer.get("score", 0)), left))
    return items, max(0.0, wall_now - saved_at)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def save_scores(path: Path, scores: PeerScores, now: float, wall_now: float) -> None:
    """Write the scores atomically (``write_atomic``).

    Raises:
        OSError: the file cannot be written.
    """
    write_atomic(path, encode_scores(scores, now, wall_now))


def load_scores(path: Path, scores: PeerScores, now: float, wall_now: float) -> int:
    """Restore the scores saved at ``path`` (none if it does not exist or does not parse);
    returns how many ids were read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        event(log, logging.WARNING, "peer scores not loaded", path=str(path), reason=str(exc))
        return 0
    try:
        items, elapsed = decode_scores(data, wall_now)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        event(log, logging.WARNING, "peer scores not loaded", path=str(path), reason=str(exc))
        return 0
    scores.restore(items, now, elapsed)
    return len(items)
