"""Hypothesis drives 4-10 voting cores (plus validators that join later) over arbitrary
orders, drops, duplicates, delays, partitions, crash-restarts, restores from a backup, wiped
data dirs, runtime validator-set changes and byzantine signers under 1/3 of the stake;
invariants after every step, and liveness after every heal.

The checks live in ``harness.Cluster.check_*`` and the ``Oracle``, written without the
production quorum, certificate, set or evidence code (STYLE rule 16).
"""

from __future__ import annotations

import random

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from moderntensor.chain.blocks import Block
from moderntensor.chain.votes import ZERO_HASH, VoteKind, sign_vote
from moderntensor.consensus import (
    Certificate,
    InvalidCertificate,
    InvalidMessage,
    Proposal,
    build_certificate,
)
from moderntensor.consensus._protection import MemoryStore
from moderntensor.crypto import keccak256

from .harness import (
    CHAIN_ID,
    EPOCH_LENGTH,
    GENESIS_HASH,
    OUTSIDERS,
    Cluster,
    make_block,
)

STEPS = 60
LIVENESS_SLOTS = 40
"""After a heal, with all honest stake connected and every message delivered within a slot,
some block finalizes within this many slots (measured: see docs/consensus.md, Tests)."""


class ConsensusMachine(RuleBasedStateMachine):
    cluster: Cluster
    backups = Bundle("backups")

    @initialize(data=st.data())
    def setup(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(4, 10), label="validators")
        extra = data.draw(st.integers(0, 2), label="honest keys that may join later")
        stakes = data.draw(
            st.lists(st.integers(1, 100), min_size=n + extra, max_size=n + extra), label="stakes"
        )
        byz = set(data.draw(st.sets(st.integers(0, n - 1), max_size=n // 2), label="byzantine"))
        while byz and 3 * sum(stakes[i] for i in byz) >= sum(stakes[:n]):
            byz.discard(max(byz, key=lambda i: stakes[i]))
        self.cluster = Cluster(stakes, byz, members=range(n))
        self.rng = random.Random(data.draw(st.integers(0, 2**32), label="order seed"))
        self.liveness_checks = 0

    # ------------------------------------------------------------ network

    @precondition(lambda self: self.cluster.pending)
    @rule(index=st.integers(0, 10**6))
    def deliver_one(self, index: int) -> None:
        self.cluster.deliver(index % len(self.cluster.pending))

    @precondition(lambda self: self.cluster.pending)
    @rule(count=st.integers(1, 60))
    def deliver_some(self, count: int) -> None:
        for _ in range(count):
            ready = self.cluster.deliverable()
            if not ready:
                return
            self.cluster.deliver(ready[self.rng.randrange(len(ready))])

    @rule(mask=st.lists(st.booleans(), min_size=12, max_size=12))
    def partition(self, mask: list[bool]) -> None:
        """Delay every message between two sides (until ``heal``); delays, not losses."""
        self.cluster.sides = dict(zip(sorted(self.cluster.nodes), mask, strict=False))

    @rule()
    def heal(self) -> None:
        self.cluster.sides = {}

    @rule()
    def deliver_everything(self) -> None:
        self.cluster.flush(self.rng, limit=20_000)

    @precondition(lambda self: self.cluster.pending)
    @rule(index=st.integers(0, 10**6))
    def drop(self, index: int) -> None:
        self.cluster.pending.pop(index % len(self.cluster.pending))

    @precondition(lambda self: len(self.cluster.pending) > 4)
    @rule(start=st.integers(0, 10**6), length=st.integers(1, 40))
    def drop_burst(self, start: int, length: int) -> None:
        """A burst of lost messages (review M1)."""
        i = start % len(self.cluster.pending)
        del self.cluster.pending[i : i + length]

    @precondition(lambda self: self.cluster.pending)
    @rule(index=st.integers(0, 10**6))
    def duplicate(self, index: int) -> None:
        dest, message, _ = self.cluster.pending[index % len(self.cluster.pending)]
        self.cluster.deliver_to(dest, message)

    @precondition(lambda self: self.cluster.verdicts)
    @rule(index=st.integers(0, 10**6))
    def execute(self, index: int) -> None:
        self.cluster.run_verdict(index % len(self.cluster.verdicts))

    @precondition(lambda self: self.cluster.fetches)
    @rule(index=st.integers(0, 10**6))
    def fetch(self, index: int) -> None:
        self.cluster.run_fetch(index % len(self.cluster.fetches))

    @precondition(lambda self: self.cluster.cert_fetches)
    @rule(index=st.integers(0, 10**6))
    def fetch_certificates(self, index: int) -> None:
        self.cluster.run_cert_fetch(index % len(self.cluster.cert_fetches))

    @rule(ms=st.sampled_from([300, 1_000, 2_500]))
    def advance_time(self, ms: int) -> None:
        self.cluster.advance(ms)

    @rule(ms=st.sampled_from([1_000, 2_500]), heal=st.booleans())
    def advance_time_then_deliver_everything(self, ms: int, heal: bool) -> None:
        if heal:
            self.cluster.sides = {}
        self.cluster.advance(ms)
        self.cluster.flush(self.rng, limit=20_000)

    # --------------------------------------------------------- operators

    def _settle_outgoing(self, vid: bytes) -> None:
        """Before a restore or a wipe, what the old process had already sent arrives (a
        partition only delays: a restart takes far longer than a message's trip); a message
        still arriving after the restart is the stated residual risk (docs/consensus.md,
        "Restarts"). What no honest node received is then forgotten by the oracle."""
        cluster = self.cluster
        for _ in range(len(cluster.pending)):
            mine = [i for i, p in enumerate(cluster.pending) if p[2] == vid]
            if not mine:
                break
            cluster.deliver(mine[0])
        cluster.lost_with_the_database(vid)

    def _forget(self, vid: bytes) -> None:
        cluster = self.cluster
        cluster.pending = [p for p in cluster.pending if p[0] != vid]
        cluster.verdicts = [(d, h) for d, h in cluster.verdicts if d != vid]
        cluster.fetches = [(d, h) for d, h in cluster.fetches if d != vid]
        cluster.cert_fetches = [f for f in cluster.cert_fetches if f[0] != vid]
        cluster.received[vid] = set()  # it forgot what it saw

    @rule(index=st.integers(0, 10**6))
    def crash_and_restart(self, index: int) -> None:
        """A node loses its memory but keeps its database (slashing protection)."""
        key = self.cluster.honest_keys[index % len(self.cluster.honest_keys)]
        self._forget(key.address)
        self.cluster.boot(key)

    @rule(target=backups, index=st.integers(0, 10**6))
    def take_backup(self, index: int) -> tuple[int, dict[bytes, bytes]]:
        key = self.cluster.honest_keys[index % len(self.cluster.honest_keys)]
        return index, dict(self.cluster.stores[key.address].data)

    @rule(backup=backups)
    def restore_from_backup(self, backup: tuple[int, dict[bytes, bytes]]) -> None:
        """An operator restores a node's data dir from an older backup, then syncs the chain
        (review H2): it must sign nothing an honest peer can turn into evidence."""
        index, data = backup
        key = self.cluster.honest_keys[index % len(self.cluster.honest_keys)]
        self._settle_outgoing(key.address)
        self._forget(key.address)
        store = MemoryStore()
        store.data = dict(data)
        self.cluster.stores[key.address] = store
        self.cluster.boot(key, final=self.cluster.best_final())

    @rule(index=st.integers(0, 10**6))
    def wipe_and_restart(self, index: int) -> None:
        """A node restarts on an empty data dir (slashing protection gone) and syncs."""
        key = self.cluster.honest_keys[index % len(self.cluster.honest_keys)]
        self._settle_outgoing(key.address)
        self._forget(key.address)
        self.cluster.stores[key.address] = MemoryStore()
        self.cluster.boot(key, final=self.cluster.best_final())

    @rule(op=st.sampled_from(["join", "leave", "jail"]), index=st.integers(0, 15))
    def staking_operation(self, op: str, index: int) -> None:
        """The next honest block carries a staking operation: validator sets change at the
        epoch boundaries two epochs on (joins, leaves, jailing)."""
        self.cluster.next_op = b"%s:%d" % (op.encode(), index % len(self.cluster.keys))

    @rule()
    def heal_and_check_liveness(self) -> None:
        """DESIGN §5.3: heal everything; byzantine validators fall silent; nodes an epoch or
        more behind sync; then every message arrives within a slot, and a block must
        finalize within LIVENESS_SLOTS slots."""
        cluster = self.cluster
        cluster.sides = {}
        for vid in sorted(cluster.nodes):
            cluster.sync(vid)
        before = cluster.oracle.height[cluster.best_final().hash]
        for _ in range(LIVENESS_SLOTS):
            cluster.advance(1_000)
            cluster.flush(self.rng, limit=50_000)
            if cluster.oracle.height[cluster.best_final().hash] > before:
                self.liveness_checks += 1
                return
        raise AssertionError(
            f"no block finalized in {LIVENESS_SLOTS} slots:\n" + cluster.describe()
        )

    # ----------------------------------------------------------- byzantine

    @precondition(lambda self: self.cluster.byzantine)
    @rule(data=st.data())
    def byzantine_leader_splits(self, data: st.DataObject) -> None:
        """A byzantine leader sends two blocks to two halves (perhaps as the network
        partitions along that line); all byzantine validators notarize and finalize both."""
        cluster = self.cluster
        byz_ids = {k.address: k for k in cluster.byzantine}
        candidates = [
            (vid, core) for vid, core in cluster.nodes.items() if core.leader(core.view) in byz_ids
        ]
        if not candidates:
            return
        _, core = candidates[data.draw(st.integers(0, len(candidates) - 1), label="node")]
        slot, epoch = core.view, core.epoch
        known = sorted(h for h, (s, _) in cluster.oracle.parent.items() if s < slot)
        parent = data.draw(st.sampled_from([GENESIS_HASH, *known]), label="parent (any)")
        if cluster.oracle.height[parent] + 1 > (epoch + 1) * EPOCH_LENGTH:
            return
        leader = byz_ids[core.leader(slot)]  # type: ignore[index]
        honest = sorted(cluster.nodes)
        mask = data.draw(st.lists(st.booleans(), min_size=len(honest), max_size=len(honest)))
        if data.draw(st.booleans(), label="the network partitions along the split"):
            cluster.sides = dict(zip(honest, mask, strict=True))
        side_a = [vid for vid, m in zip(honest, mask, strict=True) if m]
        side_b = [vid for vid, m in zip(honest, mask, strict=True) if not m]
        salt = data.draw(st.binary(min_size=1, max_size=4), label="salt")
        x = cluster.byzantine_proposal(leader, slot, parent, salt + b"x", side_a)
        y = cluster.byzantine_proposal(leader, slot, parent, salt + b"y", side_b)
        if data.draw(st.booleans(), label="y is invalid"):
            cluster.invalid_blocks.add(y.block_hash)
        block_epoch = x.epoch(EPOCH_LENGTH)
        for key in cluster.byzantine:
            for block in (x, y):
                for kind in (VoteKind.NOTARIZE, VoteKind.FINALIZE):
                    cluster.byzantine_vote(key, kind, block_epoch, slot, block.block_hash, honest)
        if cluster.sides and data.draw(st.booleans(), label="play it out inside the partition"):
            cluster.flush(self.rng, limit=20_000)

    @precondition(lambda self: self.cluster.byzantine)
    @rule(data=st.data())
    def byzantine_vote(self, data: st.DataObject) -> None:
        """Any byzantine signer signs anything about a round near the honest views."""
        cluster = self.cluster
        key = data.draw(st.sampled_from(cluster.byzantine), label="signer")
        rounds = sorted({core.round for core in cluster.nodes.values()})
        epoch = data.draw(st.sampled_from(sorted({e for e, _ in rounds})), label="epoch")
        views = [v for e, v in rounds if e == epoch]
        slot = data.draw(st.integers(max(1, views[0] - 2), views[-1] + 1), label="slot")
        kind = data.draw(
            st.sampled_from([VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE]), label="kind"
        )
        known = [h for h, (s, _) in cluster.oracle.parent.items() if s == slot]
        block = data.draw(st.sampled_from([*known, keccak256(b"junk %d" % slot)]), label="block")
        to = data.draw(st.sets(st.sampled_from(sorted(cluster.nodes)), min_size=1), label="to")
        cluster.byzantine_vote(key, kind, epoch, slot, block, to)

    @precondition(lambda self: self.cluster.byzantine)
    @rule()
    def byzantine_finalize_and_nullify_everything(self) -> None:
        """Every byzantine signer finalizes every notarized block it can see and nullifies
        those slots too (a NULLIFY+FINALIZE equivocation per slot)."""
        cluster = self.cluster
        targets: set[tuple[int, int, bytes]] = set()
        for core in cluster.nodes.values():
            targets.update(
                (core.epoch, s, h) for h, s in core.notarized().items() if s > core.finalized.slot
            )
        everyone = sorted(cluster.nodes)
        for key in cluster.byzantine:
            for epoch, slot, h in sorted(targets):
                cluster.byzantine_vote(key, VoteKind.FINALIZE, epoch, slot, h, everyone)
                cluster.byzantine_vote(key, VoteKind.NULLIFY, epoch, slot, ZERO_HASH, everyone)

    @precondition(lambda self: self.cluster.byzantine)
    @rule(data=st.data())
    def proposal_header_mismatch(self, data: st.DataObject) -> None:
        """Review H1: a block whose header does not hold together with what it claims (a
        proposer that did not sign it, or a signature over another slot) is refused, and the
        core is left exactly as it was."""
        cluster = self.cluster
        vid = data.draw(st.sampled_from(sorted(cluster.nodes)), label="target")
        core = cluster.nodes[vid]
        leader = core.leader(core.view)
        key = next((k for k in cluster.keys if k.address == leader), None)
        if key is None:
            return
        forger = data.draw(st.sampled_from(cluster.byzantine), label="forger")
        parent = core.finalized.hash
        height = cluster.oracle.height[parent] + 1
        good = make_block(key, core.view, parent, height, b"mismatch")
        variant = data.draw(st.sampled_from(["signed by another", "signed for another slot"]))
        if variant == "signed by another":
            other = make_block(forger, core.view, parent, height, b"mismatch")
            header = attrs.evolve(good.header, proposer_signature=other.header.proposer_signature)
        else:
            other = make_block(key, core.view + 1, parent, height, b"mismatch")
            header = attrs.evolve(good.header, proposer_signature=other.header.proposer_signature)
        if header == good.header:
            return
        before = (core.round, core.finalized, core.notarized())
        with pytest.raises(InvalidMessage):
            core.on_proposal(Proposal(Block(header)), cluster.now)
        assert (core.round, core.finalized, core.notarized()) == before

    @rule(data=st.data())
    def outsiders_vote(self, data: st.DataObject) -> None:
        """Keys outside every set sign votes for live rounds: they must never count."""
        cluster = self.cluster
        target = data.draw(st.sampled_from(sorted(cluster.nodes)), label="target")
        core = cluster.nodes[target]
        key = data.draw(st.sampled_from(OUTSIDERS), label="outsider")
        kind = data.draw(st.sampled_from([VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE]))
        known = [h for h, (s, _) in cluster.oracle.parent.items() if s == core.view]
        h = data.draw(st.sampled_from([*known, keccak256(b"junk")]), label="block")
        vote = sign_vote(
            key, CHAIN_ID, GENESIS_HASH, kind, core.epoch, core.view,
            ZERO_HASH if kind is VoteKind.NULLIFY else h,
        )  # fmt: skip
        cluster.oracle.note_signed(vote, honest=False)
        for vid in sorted(cluster.nodes):
            cluster.send(vid, vote)

    @rule(data=st.data())
    def forged_certificate_rejected(self, data: st.DataObject) -> None:
        """Certificates from another chain, from outsiders, or signed for another epoch."""
        cluster = self.cluster
        vid = data.draw(st.sampled_from(sorted(cluster.nodes)), label="target")
        core = cluster.nodes[vid]
        kind = data.draw(st.sampled_from([VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE]))
        h = ZERO_HASH if kind is VoteKind.NULLIFY else keccak256(b"forged %d" % core.view)
        variant = data.draw(st.sampled_from(["chain", "genesis", "outsiders", "epoch"]))
        cert = self._forge(variant, kind, core.epoch, core.view, h)
        if cert is None:
            return
        before = (core.round, core.finalized, core.notarized())
        with pytest.raises(InvalidCertificate):
            core.on_certificate(cert, cluster.now)
        assert (core.round, core.finalized, core.notarized()) == before

    def _forge(
        self, variant: str, kind: VoteKind, epoch: int, slot: int, h: bytes
    ) -> Certificate | None:
        cluster = self.cluster
        chain_id, genesis, signed_epoch = CHAIN_ID, GENESIS_HASH, epoch
        members = cluster.oracle.stakes.get(epoch)
        if members is None:
            return None
        keys = [k for k in cluster.keys if k.address in members]
        if variant == "chain":
            chain_id += 1
        elif variant == "genesis":
            genesis = keccak256(b"another genesis")
        elif variant == "outsiders":
            keys = OUTSIDERS
        else:  # the members' real signatures, but over another epoch's round
            signed_epoch = epoch + 1
        votes = [sign_vote(k, chain_id, genesis, kind, signed_epoch, slot, h) for k in keys]
        cert = build_certificate(kind, signed_epoch, slot, h, votes)
        return Certificate(kind, epoch, slot, h, cert.signatures)

    # ---------------------------------------------------------- invariants

    @invariant()
    def agreement(self) -> None:
        self.cluster.check_agreement()

    @invariant()
    def certificates_never_conflict(self) -> None:
        self.cluster.check_certificates()

    @invariant()
    def no_honest_equivocation(self) -> None:
        self.cluster.check_no_honest_equivocation()

    @invariant()
    def equivocations_become_evidence(self) -> None:
        self.cluster.check_evidence()


MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestConsensus = ConsensusMachine.TestCase
TestConsensus.settings = MACHINE_SETTINGS


# Derandomized, but the search still depends on the process's hash seed (bytes hashing), so
# mutant budgets have margin (see test_mutants.py).
MUTANT_SETTINGS = settings(
    MACHINE_SETTINGS,
    max_examples=4000,
    derandomize=True,
    database=None,
    print_blob=False,
    phases=[Phase.generate],
    report_multiple_bugs=False,
)
