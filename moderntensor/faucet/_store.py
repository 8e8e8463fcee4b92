"""The faucet's durable state in SQLite: claims with their payout transaction, block lists,
lifetime totals.

Why SQLite: stdlib, one file, transactions; WAL with ``synchronous=FULL`` so a committed row
survives a kill -9 or a power cut. The write-ahead rule of the payout: a claim row is
committed (``accepted``) before a transaction is signed for it, and the signed raw
transaction with its hash and nonce is committed (``signed``) before it is sent. After a crash
every claim not ``final``/``failed`` is resumed from its row (see ``_payer.py``): the same
signed bytes are re-sent, so a claim is never paid twice, and none is lost.

Claim states: ``accepted`` -> ``signed`` -> ``sent`` -> ``final`` (or ``failed`` with an
error). Amounts are wei as decimal text (they overflow SQLite's 64-bit integers).

Calls are synchronous and short (indexed reads, one small commit): the Trio loop runs them
inline, which also makes "check limits, then record the claim" atomic between tasks.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import attrs

from moderntensor.faucet._limits import Usage, compute_day_start

__all__ = ["ClaimRow", "Store", "open_store"]

ACTIVE = ("accepted", "signed", "sent")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL,
    ip TEXT NOT NULL,
    amount TEXT NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    nonce INTEGER,
    tx_hash TEXT,
    raw_tx BLOB,
    signed_at REAL,
    sent_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    block_number INTEGER,
    final_at REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS claims_address ON claims (address, created);
CREATE INDEX IF NOT EXISTS claims_ip ON claims (ip, created);
CREATE INDEX IF NOT EXISTS claims_created ON claims (created);
CREATE INDEX IF NOT EXISTS claims_status ON claims (status);
CREATE UNIQUE INDEX IF NOT EXISTS claims_tx ON claims (tx_hash);
CREATE TABLE IF NOT EXISTS blocks (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@attrs.frozen(slots=True)
class ClaimRow:
    id: int
    address: str
    ip: str
    amount: int
    created: float
    status: str
    nonce: int | None
    tx_hash: str | None
    raw_tx: bytes | None
    signed_at: float | None
    sent_at: float | None
    attempts: int
    block_number: int | None
    final_at: float | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "ip": self.ip,
            "amount": str(self.amount),
            "created": self.created,
            "status": self.status,
            "nonce": self.nonce,
            "txHash": self.tx_hash,
            "attempts": self.attempts,
            "blockNumber": self.block_number,
            "error": self.error,
        }


_COLUMNS = ", ".join(a.name for a in attrs.fields(ClaimRow))


def _row(values: tuple[Any, ...]) -> ClaimRow:
    fields = list(values)
    fields[3] = int(fields[3])
    fields[8] = None if fields[8] is None else bytes(fields[8])
    return ClaimRow(*fields)


class Store:
    """One SQLite connection, used from the faucet's Trio thread only."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self.db:  # one transaction, committed (fsync'd) on exit
            return self.db.execute(sql, params)

    # -- claims --------------------------------------------------------------------------

    def get_usage(
        self, address: str, ip: str, config_windows: tuple[float, float], now: float
    ) -> Usage:
        """Counted claims (not failed) of ``address`` and ``ip`` in their windows, and the
        wei paid or promised since midnight UTC."""
        address_window, ip_window = config_windows
        q = "SELECT created FROM claims WHERE {} = ? AND created > ? AND status != 'failed'"
        by_address = self.db.execute(q.format("address"), (address, now - address_window))
        by_ip = self.db.execute(q.format("ip"), (ip, now - ip_window))
        return Usage(
            tuple(r[0] for r in by_address),
            tuple(r[0] for r in by_ip),
            self.get_paid_today(now),
        )

    def get_paid_today(self, now: float) -> int:
        """Wei paid or promised (claims not failed) since midnight UTC."""
        today = self.db.execute(
            "SELECT amount FROM claims WHERE created >= ? AND status != 'failed'",
            (compute_day_start(now),),
        )
        return sum(int(r[0]) for r in today)

    def add_claim(self, address: str, ip: str, amount: int, now: float) -> int:
        cursor = self._write(
            "INSERT INTO claims (address, ip, amount, created, status) "
            "VALUES (?, ?, ?, ?, 'accepted')",
            (address, ip, str(amount), now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def set_signed(self, claim_id: int, nonce: int, tx_hash: str, raw: bytes, now: float) -> None:
        self._write(
            "UPDATE claims SET status = 'signed', nonce = ?, tx_hash = ?, raw_tx = ?, "
            "signed_at = ?, error = NULL WHERE id = ?",
            (nonce, tx_hash, raw, now, claim_id),
        )

    def set_sent(self, claim_id: int, now: float) -> None:
        self._write(
            "UPDATE claims SET status = 'sent', sent_at = ?, attempts = attempts + 1 "
            "WHERE id = ? AND status IN ('signed', 'sent')",
            (now, claim_id),
        )

    def set_final(self, claim_id: int, block_number: int, now: float) -> None:
        with self.db:
            changed = self.db.execute(
                "UPDATE claims SET status = 'final', block_number = ?, final_at = ? "
                "WHERE id = ? AND status != 'final'",
                (block_number, now, claim_id),
            ).rowcount
            if changed:
                amount = self.db.execute(
                    "SELECT amount FROM claims WHERE id = ?", (claim_id,)
                ).fetchone()[0]
                self._bump("claims_paid", 1)
                self._bump("wei_paid", int(amount))

    def set_failed(self, claim_id: int, error: str, refused: bool = False) -> None:
        """``refused``: the node never accepted the payout, so its transaction is forgotten
        (a later claim may sign the very same bytes: same nonce, recipient and amount)."""
        forget = ", tx_hash = NULL, raw_tx = NULL" if refused else ""
        with self.db:
            self.db.execute(
                f"UPDATE claims SET status = 'failed', error = ?{forget} WHERE id = ?",
                (error, claim_id),
            )
            self._bump("claims_failed", 1)

    def note_error(self, claim_id: int, error: str) -> None:
        self._write("UPDATE claims SET error = ? WHERE id = ?", (error, claim_id))

    def _bump(self, name: str, by: int) -> None:
        row = self.db.execute("SELECT value FROM totals WHERE name = ?", (name,)).fetchone()
        value = (int(row[0]) if row else 0) + by
        self.db.execute(
            "INSERT OR REPLACE INTO totals (name, value) VALUES (?, ?)", (name, str(value))
        )

    def get_claim(self, claim_id: int) -> ClaimRow | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM claims WHERE id = ?", (claim_id,))
        found = row.fetchone()
        return None if found is None else _row(found)

    def find_by_hash(self, tx_hash: str) -> ClaimRow | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM claims WHERE tx_hash = ?", (tx_hash,))
        found = row.fetchone()
        return None if found is None else _row(found)

    def get_active(self) -> list[ClaimRow]:
        """Claims not final nor failed, oldest nonce first (unsigned ones last, by id)."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM claims WHERE status IN {ACTIVE!r} "
            "ORDER BY nonce IS NULL, nonce, id"
        )
        return [_row(r) for r in rows]

    def get_history(self, limit: int, address: str | None = None) -> list[ClaimRow]:
        if address is None:
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM claims ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM claims WHERE address = ? ORDER BY id DESC LIMIT ?",
                (address, limit),
            )
        return [_row(r) for r in rows]

    def cleanup(self, retention: float, now: float) -> int:
        """Delete finished claims created more than ``retention`` seconds ago; the totals keep
        counting them. Returns how many rows went."""
        return self._write(
            "DELETE FROM claims WHERE created < ? AND status IN ('final', 'failed')",
            (now - retention,),
        ).rowcount

    # -- statistics ----------------------------------------------------------------------

    def get_stats(self, now: float) -> dict[str, Any]:
        totals = dict(self.db.execute("SELECT name, value FROM totals").fetchall())
        by_status = dict(
            self.db.execute("SELECT status, COUNT(*) FROM claims GROUP BY status").fetchall()
        )
        day = self.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT address), COUNT(DISTINCT ip) FROM claims "
            "WHERE created >= ? AND status != 'failed'",
            (now - 86_400.0,),
        ).fetchone()
        return {
            "claimsPaid": int(totals.get("claims_paid", 0)),
            "weiPaid": str(int(totals.get("wei_paid", 0))),
            "claimsFailed": int(totals.get("claims_failed", 0)),
            "byStatus": {s: by_status.get(s, 0) for s in (*ACTIVE, "final", "failed")},
            "last24h": {"claims": day[0], "addresses": day[1], "ips": day[2]},
            "historyRows": sum(by_status.values()),
        }

    # -- block lists ---------------------------------------------------------------------

    def block(self, kind: str, value: str, reason: str, now: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO blocks (kind, value, reason, created) VALUES (?, ?, ?, ?)",
            (kind, value, reason, now),
        )

    def unblock(self, kind: str, value: str) -> bool:
        return (
            self._write("DELETE FROM blocks WHERE kind = ? AND value = ?", (kind, value)).rowcount
            > 0
        )

    def get_blocked(self, kind: str) -> list[str]:
        rows = self.db.execute("SELECT value FROM blocks WHERE kind = ? ORDER BY value", (kind,))
        return [r[0] for r in rows]

    def list_blocks(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT kind, value, reason, created FROM blocks ORDER BY created")
        return [{"kind": k, "value": v, "reason": r, "created": c} for k, v, r, c in rows]


def open_store(path: str | Path) -> Store:
    """Open (creating if needed) the database at ``path``; ``":memory:"`` for tests."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.isolation_level = "DEFERRED"  # `with db:` then wraps each write in BEGIN ... COMMIT
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return Store(db)
