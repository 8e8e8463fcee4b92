"""Four validators' drivers in one process: finality across epochs with each finalization
certificate beside its block, a node that missed a block fetches it and notarizes again
(review M3), and a proposal forking off a final block gets no NOTARIZE (review H1).

Real RocksDB files and signatures; the network and the clock are the cluster's
(tests/node/cluster.py), the block source is the other nodes' databases.
"""

from __future__ import annotations

from pathlib import Path

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.consensus import (
    Certificate,
    FetchCertificates,
    Proposal,
    SignatureVerifier,
    SignedVote,
    VoteKind,
    verify_certificate,
)
from moderntensor.node._events import NetworkMessage
from moderntensor.state.store import Database
from tests.factories import genesis_doc
from tests.node.cluster import VALIDATOR_KEYS, Cluster, Member


async def test_four_validators_finalize_across_epochs_each_block_with_its_certificate(
    tmp_path: Path,
) -> None:
    genesis = parse_genesis(genesis_doc(extra_validators=3, epoch_length=4))
    async with Cluster(tmp_path, genesis, VALIDATOR_KEYS).running() as cluster:
        await cluster.exchange_status()
        await cluster.run_until(lambda: min(cluster.heights()) >= 13, slots=40)
        config = cluster.members[0].parts.config
        verifier = SignatureVerifier(config.chain_id, config.genesis_hash)
        for member in cluster.members:
            assert member.parts.core.epoch >= 3  # three boundaries finalized and entered
            chain, journal = member.chain, member.parts.journal
            for number in range(1, chain.head.number + 1):
                cert = journal.finalization(number)
                assert cert is not None and cert.kind is VoteKind.FINALIZE
                assert cert.block_hash == chain.chaindb.get_canonical_hash(number)
                vset = member.parts.service.validator_set(cert.epoch)
                assert vset is not None
                verify_certificate(cert, vset, verifier)
            # nothing left over below the committed head
            head = chain.head
            assert all(b.number > head.number for b in journal.stored_blocks())
            assert all(
                (c.epoch, c.slot) > (member.parts.core.epoch - 1, head.slot)
                for c in journal.certificates_after((0, 0))
            )


async def test_a_node_that_missed_a_block_fetches_it_and_notarizes(tmp_path: Path) -> None:
    genesis = parse_genesis(genesis_doc(extra_validators=3, epoch_length=32))
    async with Cluster(tmp_path, genesis, VALIDATOR_KEYS).running() as cluster:
        await cluster.exchange_status()
        await cluster.run_until(lambda: min(cluster.heights()) >= 2)
        victim = cluster.members[3]
        victim.hold_fetches = True
        lost: list[Proposal] = []

        def lose_one_block(_a: Member, b: Member, message: NetworkMessage) -> bool:
            if b is victim and isinstance(message, Proposal) and not lost:
                lost.append(message)
                return True
            return False

        cluster.drop = lose_one_block
        # The victim finalizes the block by its votes, without having it.
        await cluster.run_until(
            lambda: bool(lost) and victim.parts.core.finalized.hash == lost[0].block_hash
        )
        missed = lost[0].block
        assert victim.chain.get_header(missed.hash) is None
        # One more validator down: from now on the victim's vote is needed for a quorum.
        await cluster.crash(cluster.members[2])
        await cluster.run_until(lambda: victim.driver.missing_verdicts >= 1, slots=20)
        victim.hold_fetches = False

        def notarized_a_child() -> bool:
            protection = victim.parts.protection
            assert protection is not None
            core = victim.parts.core
            for slot in range(missed.header.slot + 1, core.view + 1):
                voted = protection.record_of(core.epoch, slot).notarize
                header = victim.chain.get_header(voted) if voted else None
                if header is not None and header.number > missed.number:
                    return True
            return False

        await cluster.run_until(notarized_a_child, slots=20)
        assert missed.hash in victim.fetcher.served
        await cluster.run_until(lambda: victim.chain.head.number > missed.number, slots=20)
        assert victim.chain.chaindb.get_canonical_hash(missed.number) == missed.hash


async def test_a_block_forking_off_a_final_block_gets_no_notarize(tmp_path: Path) -> None:
    """The H1 attack: once B1 is final, the leader of a later slot proposes Z, a height-1
    block on genesis. The proposal *is* the block (``Proposal(Z)``), so its parent is
    genesis, which is not notarized above the final block: nobody executes or votes for it."""
    genesis = parse_genesis(genesis_doc(extra_validators=3, epoch_length=32))
    async with Cluster(tmp_path, genesis, VALIDATOR_KEYS).running() as cluster:
        byzantine = cluster.members[1]
        honest = [m for m in cluster.members if m is not byzantine]

        def hide_its_blocks(a: Member, _b: Member, message: NetworkMessage) -> bool:
            return a is byzantine and isinstance(message, Proposal)

        cluster.drop = hide_its_blocks
        await cluster.exchange_status()
        await cluster.run_until(lambda: min(cluster.heights()) >= 2)

        def byzantine_leads_the_view() -> bool:
            views = {m.parts.core.view for m in honest}
            view = min(views)
            leader = honest[0].parts.core.leader(view)
            return len(views) == 1 and leader == byzantine.key.address

        await cluster.run_until(byzantine_leads_the_view, slots=40)
        view = honest[0].parts.core.view
        with Database.open(tmp_path / "forger") as db:
            forger = Chain(db, genesis)
            genesis_header = forger.head
            z = forger.build_block(genesis_header, view, byzantine.key, []).block
        assert z.number == 1 and z.header.parent_hash == genesis_header.hash
        assert cluster.members[0].chain.head.number >= 2  # B1 and B2 are final
        assert all(m.parts.core.epoch == 0 for m in honest)  # Z's round is a live one
        rejected = [m.driver.rejected_messages for m in honest]
        for member in honest:
            await member.driver.handle(Proposal(z))
        await cluster.settle()
        for member in honest:
            protection = member.parts.protection
            assert protection is not None
            assert protection.record_of(0, view).notarize == b""
            assert member.chain.get_header(z.hash) is None  # not even executed
        # authentic and from the slot's leader: not rejected, just never voted for
        assert [m.driver.rejected_messages for m in honest] == rejected
        # the slot times out and the chain goes on
        height = min(cluster.heights())
        await cluster.run_until(lambda: min(cluster.heights()) >= height + 2, slots=20)


async def test_a_boundary_block_that_cannot_finalize_in_its_slot_is_proposed_again(
    tmp_path: Path,
) -> None:
    """Every FINALIZE of the epoch's last block in its own slot is lost; a later leader
    proposes the same block again, it finalizes in that later slot, every node commits it
    with that finalization and enters the next epoch."""
    genesis = parse_genesis(genesis_doc(extra_validators=3, epoch_length=4))
    async with Cluster(tmp_path, genesis, VALIDATOR_KEYS).running() as cluster:
        boundary: list[Proposal] = []

        def lose_its_finality(_a: Member, _b: Member, message: NetworkMessage) -> bool:
            if isinstance(message, Proposal) and message.height == 4 and not boundary:
                boundary.append(message)
            return (
                bool(boundary)
                and isinstance(message, SignedVote | Certificate)
                and message.kind is VoteKind.FINALIZE
                and message.slot == boundary[0].slot
            )

        cluster.drop = lose_its_finality
        await cluster.exchange_status()
        await cluster.run_until(lambda: min(cluster.heights()) >= 6, slots=40)
        block = boundary[0].block
        for member in cluster.members:
            assert member.chain.chaindb.get_canonical_hash(4) == block.hash
            cert = member.parts.journal.finalization(4)
            assert cert is not None and cert.block_hash == block.hash
            assert cert.slot > block.header.slot  # finalized in a re-proposal's slot
            assert member.parts.core.epoch >= 1


async def test_certificates_the_core_lacks_come_from_the_journal_or_from_peers(
    tmp_path: Path,
) -> None:
    """``FetchCertificates``: a node serves a round from its own journal when it has it
    (after a restart), and asks its peers otherwise; the core verifies what comes back."""
    genesis = parse_genesis(genesis_doc(extra_validators=3, epoch_length=32))
    async with Cluster(tmp_path, genesis, VALIDATOR_KEYS).running() as cluster:
        await cluster.exchange_status()
        await cluster.run_until(lambda: min(cluster.heights()) >= 2)
        victim, witness = cluster.members[3], cluster.members[0]
        epoch, slot = witness.parts.core.round

        def victim_misses_the_round(_a: Member, b: Member, message: NetworkMessage) -> bool:
            if isinstance(message, SignedVote | Certificate) and message.kind is VoteKind.FINALIZE:
                return True  # nothing commits: the round's certificates stay journaled
            return b is victim and getattr(message, "slot", None) == slot

        cluster.drop = victim_misses_the_round
        await cluster.run_until(
            lambda: bool(witness.parts.journal.certificates_of((epoch, slot))), slots=10
        )
        assert not victim.parts.core.certificate(VoteKind.NOTARIZE, slot)
        await victim.driver.process([FetchCertificates(epoch, slot, "a test asks")])
        await cluster.settle()
        assert (epoch, slot) in victim.fetcher.rounds_served
        assert victim.parts.core.certificate(VoteKind.NOTARIZE, slot)  # verified, applied
        # the witness has the round in its own journal: no peer is asked
        served = list(witness.fetcher.rounds_served)
        await witness.driver.process([FetchCertificates(epoch, slot, "a test asks")])
        await cluster.settle()
        assert witness.fetcher.rounds_served == served
