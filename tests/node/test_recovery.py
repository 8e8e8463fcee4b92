"""Crashes between FINALIZE and commit (review M2): one validator, and a whole network of four
crashing at once, restart on their databases and finish the slot; evidence found before a
crash is still there after it, is gossiped and ends up in a block.

Real RocksDB files, real signatures and slashing protection; the network and the clock are
the cluster's (tests/node/cluster.py).
"""

from __future__ import annotations

from pathlib import Path

import trio

from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.staking import get_validator
from moderntensor.chain.votes import Evidence, SignedVote, VoteKind, sign_vote
from moderntensor.consensus import Certificate
from moderntensor.crypto import keccak256
from moderntensor.node._events import NetworkMessage
from tests.factories import genesis_doc, key
from tests.node.cluster import VALIDATOR_KEYS, Cluster, Member


def _finalized_unseen(member: Member) -> set[tuple[int, int, bytes]]:
    """Rounds above the committed head where the record says FINALIZE was signed."""
    protection = member.parts.protection
    assert protection is not None
    core, head = member.parts.core, member.chain.head
    out = set()
    for slot in range(head.slot + 1, core.view + 1):
        record = protection.record_of(core.epoch, slot)
        if record.finalize:
            out.add((core.epoch, slot, record.finalize))
    return out


async def test_one_validator_crashing_after_finalize_before_commit_finalizes_again(
    tmp_path: Path,
) -> None:
    genesis = parse_genesis(genesis_doc())
    async with Cluster(tmp_path, genesis, VALIDATOR_KEYS[:1]).running() as cluster:
        await cluster.run_until(lambda: cluster.heights()[0] >= 3)
        node = cluster.members[0]
        parts = node.parts
        # Take the next build request ourselves and build the block.
        node.hold_builds = True
        await cluster.run_until(lambda: parts.build_receive.statistics().current_buffer_used > 0)
        request = parts.build_receive.receive_nowait()
        built = await parts.producer.build(request)
        assert built.proposal is not None
        block = built.proposal.block
        # The commit needs the chain lock: hold it, so the driver stops right there, after
        # the core formed the finalization (our own FINALIZE alone is a quorum).
        async with parts.chain_lock, trio.open_nursery() as nursery:
            nursery.start_soon(node.driver.handle, built)
            with trio.fail_after(10):
                while parts.chain_lock.statistics().tasks_waiting == 0:
                    await trio.sleep(0.005)
            assert parts.protection is not None
            record = parts.protection.record_of(request.epoch, request.slot)
            assert record.finalize == block.hash  # FINALIZE is on record ...
            assert node.chain.head.number == block.number - 1  # ... the block is not committed
            nursery.cancel_scope.cancel()  # the process dies here
        node = await cluster.restart(node)
        await cluster.run_until(lambda: cluster.heights()[0] >= block.number + 3)
        assert node.chain.chaindb.get_canonical_hash(block.number) == block.hash
        assert node.parts.protection is not None
        record = node.parts.protection.record_of(request.epoch, request.slot)
        assert not record.nullify and record.finalize == block.hash
        cert = node.parts.journal.finalization(block.number)
        assert cert is not None and cert.block_hash == block.hash


async def test_a_whole_network_crashing_between_finalize_and_commit_recovers(
    tmp_path: Path,
) -> None:
    """Every FINALIZE is lost, so all four sign FINALIZE for a block nobody commits; then all
    four processes die at once. On restart they re-send what their records hold, finish
    that slot with the very block they voted for, and go on; nobody equivocated."""
    genesis = parse_genesis(genesis_doc(extra_validators=3))
    async with Cluster(tmp_path, genesis, VALIDATOR_KEYS).running() as cluster:
        await cluster.exchange_status()
        await cluster.run_until(lambda: min(cluster.heights()) >= 3)
        heads = cluster.heights()

        def lose_finality(_a: Member, _b: Member, message: NetworkMessage) -> bool:
            return (isinstance(message, SignedVote | Certificate)) and (
                message.kind is VoteKind.FINALIZE
            )

        cluster.drop = lose_finality

        def all_signed_the_same_finalize() -> bool:
            return bool(set.intersection(*(_finalized_unseen(m) for m in cluster.members)))

        await cluster.run_until(all_signed_the_same_finalize, slots=10)
        pending = set.intersection(*(_finalized_unseen(m) for m in cluster.members))
        assert cluster.heights() == heads  # nobody committed anything meanwhile
        for member in cluster.members:
            await cluster.crash(member)
        cluster.drop = lambda a, b, m: False
        for i in range(4):
            await cluster.restart(cluster.members[i])
        await cluster.exchange_status()
        await cluster.run_until(lambda: min(cluster.heights()) >= max(heads) + 4, slots=20)
        for epoch, slot, block_hash in pending:
            for member in cluster.members:
                header = member.chain.chaindb.get_header(block_hash)
                assert header is not None and header.slot == slot
                assert member.chain.chaindb.get_canonical_hash(header.number) == block_hash
                assert member.parts.protection is not None
                assert not member.parts.protection.record_of(epoch, slot).nullify
        assert all(len(m.driver.evidence) == 0 for m in cluster.members)


async def test_evidence_survives_a_restart_is_gossiped_and_included(tmp_path: Path) -> None:
    genesis = parse_genesis(genesis_doc(extra_validators=3))
    async with Cluster(tmp_path, genesis, VALIDATOR_KEYS).running() as cluster:
        gossiped: list[Evidence] = []

        def watch(_a: Member, _b: Member, message: NetworkMessage) -> bool:
            if isinstance(message, Evidence):
                gossiped.append(message)
            return False

        cluster.drop = watch
        await cluster.exchange_status()
        await cluster.run_until(lambda: min(cluster.heights()) >= 2)
        # Validator 3 signs two NOTARIZE for one round, bypassing its slashing protection.
        witness = cluster.members[0]
        core, config = witness.parts.core, witness.parts.config
        votes = [
            sign_vote(VALIDATOR_KEYS[3], config.chain_id, config.genesis_hash,
                      VoteKind.NOTARIZE, core.epoch, core.view + 1, keccak256(bytes([n])))
            for n in range(2)
        ]  # fmt: skip
        for vote in votes:
            await witness.driver.handle(vote)
        assert len(witness.driver.evidence) == 1
        # a peer's proof against a key that is no validator is refused (the peer's fault)
        stranger = [
            sign_vote(key(9999), config.chain_id, config.genesis_hash, VoteKind.NOTARIZE,
                      core.epoch, core.view, keccak256(bytes([n])))
            for n in range(2)
        ]  # fmt: skip
        rejected = witness.driver.rejected_messages
        await witness.driver.handle(Evidence(stranger[0], stranger[1]))
        assert witness.driver.rejected_messages == rejected + 1
        assert len(witness.parts.journal.evidence()) == 1
        # The witness dies before anything else happens; its evidence is on disk.
        witness = await cluster.restart(witness)
        assert len(witness.driver.evidence) == 1
        witness.driver.add_known_validator_sets()
        await cluster.exchange_status()
        owner = key(2002).address  # validator 3's account (tests.factories)

        def jailed() -> bool:
            record = get_validator(witness.chain.state_at(witness.chain.head), owner)
            return record is not None and record.jailed

        await cluster.run_until(jailed, slots=30)
        await cluster.run_until(lambda: all(len(m.driver.evidence) == 0 for m in cluster.members))
        assert all(m.parts.journal.evidence() == {} for m in cluster.members)
        # it went out once from the witness (restarted: once more from its journal is fine)
        assert gossiped and all(e.first.signer == VALIDATOR_KEYS[3].address for e in gossiped)
