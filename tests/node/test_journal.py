"""The consensus journal and the evidence pool on a real RocksDB: what survives a reopen, what
goes when, and the commit batch that carries extra writes (the finalization certificate)."""

from __future__ import annotations

from pathlib import Path

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.votes import Evidence, SignedVote, VoteKind, evidence_id, sign_vote
from moderntensor.consensus import Certificate, build_certificate
from moderntensor.crypto import keccak256
from moderntensor.node._evidence import EvidencePool
from moderntensor.node._journal import ConsensusJournal
from moderntensor.state.store import Column, Database
from tests.factories import VALIDATOR_CONSENSUS, genesis_doc, key

GENESIS = parse_genesis(genesis_doc())
CHAIN_ID = GENESIS.chain_id


def certificate(kind: VoteKind, epoch: int, slot: int, genesis_hash: bytes) -> Certificate:
    block_hash = b"\x00" * 32 if kind is VoteKind.NULLIFY else keccak256(bytes([slot]))
    vote = sign_vote(VALIDATOR_CONSENSUS, CHAIN_ID, genesis_hash, kind, epoch, slot, block_hash)
    return build_certificate(kind, epoch, slot, block_hash, [vote])


def test_pending_blocks_survive_a_reopen_and_go_at_commit_or_finality(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, GENESIS)
        journal = ConsensusJournal(db)
        first = chain.build_block(chain.head, 1, VALIDATOR_CONSENSUS, [])
        second = chain.build_block(first.block.header, 2, VALIDATOR_CONSENSUS, [])
        fork = chain.build_block(chain.head, 3, VALIDATOR_CONSENSUS, [])  # also height 1
        for executed in (second, first, fork):
            journal.store_block(executed.block)
    with Database.open(tmp_path / "db") as db:
        chain, journal = Chain(db, GENESIS), ConsensusJournal(db)
        stored = journal.stored_blocks()
        assert [b.number for b in stored] == [1, 1, 2]  # lowest first
        assert {b.hash for b in stored} == {first.block.hash, second.block.hash, fork.block.hash}
        # commit the first with its copy deleted in the same batch; the fork goes at finality
        executed = chain.execute_block(first.block)
        chain.commit(executed, finalized=True, extra=[journal.block_delete(first.block.hash)])
        journal.committed([first.block.hash])
        journal.forget_blocks_through(chain.head.number)
        assert [b.hash for b in journal.stored_blocks()] == [second.block.hash]
    with Database.open(tmp_path / "db") as db:
        assert [b.hash for b in ConsensusJournal(db).stored_blocks()] == [second.block.hash]


def test_commit_batch_carries_the_finalization_and_deletes(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        chain, journal = Chain(db, GENESIS), ConsensusJournal(db)
        executed = chain.build_block(chain.head, 1, VALIDATOR_CONSENSUS, [])
        db_key = b"pending-block/" + executed.block.hash
        journal.store_block(executed.block)
        assert db.get(Column.CONSENSUS, db_key) is not None
        cert = certificate(VoteKind.FINALIZE, 0, 1, chain.genesis_hash)
        extra = [journal.block_delete(executed.block.hash), journal.finalization_write(1, cert)]
        chain.commit(executed, finalized=True, extra=extra)
        assert journal.finalization(1) == cert
        assert db.get(Column.CONSENSUS, db_key) is None
        assert chain.chaindb.get_canonical_hash(1) == executed.block.hash


def test_certificate_journal_replays_above_a_round_and_prunes_below(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        genesis_hash = Chain(db, GENESIS).genesis_hash
        journal = ConsensusJournal(db)
        certs = [
            certificate(VoteKind.NOTARIZE, 0, 5, genesis_hash),
            certificate(VoteKind.FINALIZE, 0, 5, genesis_hash),
            certificate(VoteKind.NULLIFY, 0, 6, genesis_hash),
            certificate(VoteKind.NOTARIZE, 1, 2, genesis_hash),  # next epoch: views start again
        ]
        for cert in reversed(certs):
            journal.record_certificate(cert)
            journal.record_certificate(cert)  # once each
        assert journal.certificates_after((0, 0)) == certs
        assert journal.certificates_after((0, 5)) == certs[2:]
        journal.prune_certificates((0, 6))
    with Database.open(tmp_path / "db") as db:
        assert ConsensusJournal(db).certificates_after((0, 0)) == certs[3:]


def test_evidence_pool_keys_by_offence_and_survives_a_reopen(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        genesis_hash = Chain(db, GENESIS).genesis_hash
        offender = key(3000)

        def notarize(n: int) -> SignedVote:
            return sign_vote(offender, CHAIN_ID, genesis_hash, VoteKind.NOTARIZE, 0, 9,
                             keccak256(bytes([n])))  # fmt: skip

        one = Evidence(notarize(1), notarize(2))
        same_offence = Evidence(notarize(3), notarize(1))
        assert evidence_id(one) == evidence_id(same_offence)
        pool = EvidencePool(ConsensusJournal(db), CHAIN_ID, genesis_hash)
        assert pool.add(one) and not pool.add(same_offence)
        assert len(pool) == 1
    with Database.open(tmp_path / "db") as db:
        journal = ConsensusJournal(db)
        pool = EvidencePool(journal, CHAIN_ID, genesis_hash)
        assert len(pool) == 1 and evidence_id(one) in pool
        (raw,) = pool.pending(10)
        assert pool.forget([raw]) == 1  # a committed block included the offence
        assert journal.evidence() == {}
