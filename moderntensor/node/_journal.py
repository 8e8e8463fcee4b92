"""The node's consensus journal: what must survive a crash besides slashing protection.

All of it lives in the database's CONSENSUS column (review M2, M4, L1):

* ``pending-block/<hash>``: a block executed here (ours, a proposal we found valid, or one
  fetched) but not final yet, written with an fsync *before* the core may sign NOTARIZE for
  it (or PROPOSE, for our own). A restarted node executes these again, so it still has
  every block it voted for. Deleted in the batch that commits the block, or once the
  finalized height passes a block that lost.
* ``cert-journal/<epoch 8><slot 8><kind 1><hash>``: every certificate the core broadcast
  (formed or received). Not synced: losing the newest is fine, the protocol re-sends it. A
  restarted node feeds the ones above its head back to the core; pruned as blocks commit.
* ``cert/finalize/<number 8>``: the finalization certificate of each committed block, in the
  same write batch as the block (:meth:`finalization_write`).
* ``evidence/<evidence id>``: equivocation proofs not yet included in a committed block
  (fsynced: an offence seen once must not be forgotten by a restart).

Not thread-safe beyond what RocksDB gives: the node calls the block methods from worker
threads (one key per call) and everything else from the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from moderntensor.chain.blocks import Block, decode_block, encode_block
from moderntensor.codec import DecodeError
from moderntensor.consensus import Certificate, Round, decode_certificate, encode_certificate
from moderntensor.state.store import Column, Database

__all__ = ["ConsensusJournal", "JournalWrite"]

log = logging.getLogger("moderntensor.node")

BLOCK_PREFIX = b"pending-block/"
CERT_JOURNAL_PREFIX = b"cert-journal/"
FINALIZATION_PREFIX = b"cert/finalize/"
EVIDENCE_PREFIX = b"evidence/"

JournalWrite = tuple[Column, bytes, bytes | None]
"""One write for a commit batch: (column, key, value); a None value deletes the key."""


def _cert_key(cert: Certificate) -> bytes:
    return (
        CERT_JOURNAL_PREFIX
        + cert.epoch.to_bytes(8, "big")
        + cert.slot.to_bytes(8, "big")
        + int(cert.kind).to_bytes(1, "big")
        + cert.block_hash
    )


def _cert_round(key: bytes) -> Round:
    rest = key[len(CERT_JOURNAL_PREFIX) :]
    return int.from_bytes(rest[:8], "big"), int.from_bytes(rest[8:16], "big")


class ConsensusJournal:
    """Typed reads and writes of the node's journal keys (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._block_heights: dict[bytes, int] = {}  # stored pending blocks: hash -> height
        self._journaled: set[bytes] = set()  # certificate keys written since the last prune
        for key, raw in db.iterate(Column.CONSENSUS, BLOCK_PREFIX):
            try:
                self._block_heights[key[len(BLOCK_PREFIX) :]] = decode_block(raw).number
            except DecodeError:
                self._delete([key])

    def _delete(self, keys: Iterable[bytes], *, sync: bool = False) -> None:
        batch = self.db.batch()
        for key in keys:
            batch.delete(Column.CONSENSUS, key)
        if len(batch):
            self.db.write(batch, sync=sync)

    # -- blocks not final yet -------------------------------------------------------------

    def has_block(self, block_hash: bytes) -> bool:
        """Whether the block is stored durably (pending or about to be committed)."""
        return block_hash in self._block_heights

    def store_block(self, block: Block) -> None:
        """Store an executed block before anything is signed for it (fsynced; a worker
        thread calls this)."""
        if block.hash in self._block_heights:
            return
        batch = self.db.batch()
        batch.put(Column.CONSENSUS, BLOCK_PREFIX + block.hash, encode_block(block))
        self.db.write(batch, sync=True)
        self._block_heights[block.hash] = block.number

    def stored_blocks(self) -> list[Block]:
        """Every stored pending block, lowest height first (a corrupt one is dropped)."""
        blocks = []
        for block_hash in sorted(self._block_heights, key=self._block_heights.__getitem__):
            raw = self.db.get(Column.CONSENSUS, BLOCK_PREFIX + block_hash)
            try:
                if raw is not None:
                    blocks.append(decode_block(raw))
            except DecodeError:
                self.forget_blocks([block_hash])
        return blocks

    def block_delete(self, block_hash: bytes) -> JournalWrite:
        """The write, for the batch that commits the block, that drops its pending copy."""
        return (Column.CONSENSUS, BLOCK_PREFIX + block_hash, None)

    def committed(self, block_hashes: Iterable[bytes]) -> None:
        """The blocks were committed (their copies went with :meth:`block_delete`)."""
        for block_hash in block_hashes:
            self._block_heights.pop(block_hash, None)

    def forget_blocks(self, block_hashes: Iterable[bytes]) -> None:
        """Delete stored pending blocks (not synced: a leftover is harmless)."""
        hashes = [h for h in block_hashes if h in self._block_heights]
        self._delete(BLOCK_PREFIX + h for h in hashes)
        for h in hashes:
            del self._block_heights[h]

    def forget_blocks_through(self, height: int) -> None:
        """Delete stored blocks at or below ``height`` (the finalized one): forks that lost."""
        self.forget_blocks([h for h, n in self._block_heights.items() if n <= height])

    # -- certificates ---------------------------------------------------------------------

    def record_certificate(self, cert: Certificate) -> None:
        """Journal a certificate the core broadcast (not synced; once per certificate)."""
        key = _cert_key(cert)
        if key in self._journaled:
            return
        batch = self.db.batch()
        batch.put(Column.CONSENSUS, key, encode_certificate(cert))
        self.db.write(batch, sync=False)
        self._journaled.add(key)

    def certificates_after(self, after: Round) -> list[Certificate]:
        """Journaled certificates of rounds after ``after``, oldest round first."""
        out: list[Certificate] = []
        corrupt: list[bytes] = []
        for key, raw in self.db.iterate(Column.CONSENSUS, CERT_JOURNAL_PREFIX):
            if len(key) != len(CERT_JOURNAL_PREFIX) + 49:
                corrupt.append(key)
                continue
            if _cert_round(key) <= after:
                continue
            try:
                out.append(decode_certificate(raw))
            except DecodeError:
                corrupt.append(key)
        self._delete(corrupt)
        return out

    def certificates_of(self, rnd: Round) -> list[Certificate]:
        """The journaled certificates of one round (a corrupt one is skipped)."""
        prefix = CERT_JOURNAL_PREFIX + rnd[0].to_bytes(8, "big") + rnd[1].to_bytes(8, "big")
        out = []
        for _key, raw in self.db.iterate(Column.CONSENSUS, prefix):
            try:
                out.append(decode_certificate(raw))
            except DecodeError:
                continue
        return out

    def prune_certificates(self, through: Round) -> None:
        """Drop journaled certificates of rounds up to ``through`` (committed history)."""
        stale = []
        for key, _raw in self.db.iterate(Column.CONSENSUS, CERT_JOURNAL_PREFIX):
            if len(key) == len(CERT_JOURNAL_PREFIX) + 49 and _cert_round(key) > through:
                break
            stale.append(key)
        self._delete(stale)
        self._journaled.difference_update(stale)

    def finalization_write(self, number: int, cert: Certificate) -> JournalWrite:
        """The write, for the batch that commits block ``number``, of its finalization."""
        return (Column.CONSENSUS, FINALIZATION_PREFIX + number.to_bytes(8, "big"),
                encode_certificate(cert))  # fmt: skip

    def finalization(self, number: int) -> Certificate | None:
        """The stored finalization certificate of the committed block ``number``.

        Raises:
            DecodeError: the stored certificate is corrupt.
        """
        raw = self.db.get(Column.CONSENSUS, FINALIZATION_PREFIX + number.to_bytes(8, "big"))
        return None if raw is None else decode_certificate(raw)

    # -- evidence -------------------------------------------------------------------------

    def store_evidence(self, evidence_id: bytes, raw: bytes) -> None:
        """Persist an equivocation proof (fsynced)."""
        batch = self.db.batch()
        batch.put(Column.CONSENSUS, EVIDENCE_PREFIX + evidence_id, raw)
        self.db.write(batch, sync=True)

    def forget_evidence(self, evidence_ids: Iterable[bytes]) -> None:
        """Delete stored proofs (included in a committed block, or useless)."""
        self._delete(EVIDENCE_PREFIX + e for e in evidence_ids)

    def evidence(self) -> dict[bytes, bytes]:
        """Every stored proof: evidence id -> encoded evidence."""
        return {
            key[len(EVIDENCE_PREFIX) :]: raw
            for key, raw in self.db.iterate(Column.CONSENSUS, EVIDENCE_PREFIX)
        }
