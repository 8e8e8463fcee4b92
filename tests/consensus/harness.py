"""A simulated network of voting cores plus an independent oracle (STYLE rules 15, 16).

The oracle never calls production quorum, evidence or certificate code: it keeps its own table
of stakes per epoch, its own record of what every key really signed, and its own conflict rule.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence

import attrs

from moderntensor.chain.validators import ValidatorRecord
from moderntensor.chain.votes import ZERO_HASH, SignedVote, VoteKind, sign_vote
from moderntensor.consensus import (
    BlockRef,
    Broadcast,
    BuildBlock,
    Certificate,
    ConsensusConfig,
    EvidenceFound,
    ExecuteBlock,
    Finalized,
    InvalidMessage,
    MemoryStore,
    Preset,
    Proposal,
    ProtectedSigner,
    SetTimer,
    SignatureVerifier,
    SigningRefused,
    SimplexCore,
    SlashingProtection,
    ValidatorSet,
    compute_validator_set,
)
from moderntensor.crypto import PrivateKey, keccak256

CHAIN_ID = 4242
GENESIS_HASH = keccak256(b"moderntensor test genesis")
GENESIS = BlockRef(0, GENESIS_HASH)
KEYS = [PrivateKey(keccak256(b"consensus test key %d" % i)) for i in range(16)]
OUTSIDERS = [PrivateKey(keccak256(b"outsider key %d" % i)) for i in range(8)]

TEST_PRESET = Preset(
    slot_duration_ms=1_000,
    epoch_length=4,
    timeout_ms=2_000,
    max_validators=100,
    evidence_window=10_000,
    max_future_slots=10_000,
)
CONFIG = ConsensusConfig(CHAIN_ID, GENESIS_HASH, 0, TEST_PRESET)

Message = Proposal | SignedVote | Certificate


def epoch_stakes(base: Sequence[int], epoch: int, rotate: bool) -> list[int]:
    """Stakes in an epoch: with ``rotate``, every other validator's stake doubles by parity."""
    if not rotate:
        return list(base)
    return [s * (2 if (i + epoch) % 2 else 1) for i, s in enumerate(base)]


def make_sets(
    keys: Sequence[PrivateKey], base: Sequence[int], epochs: int, rotate: bool = False
) -> list[ValidatorSet]:
    sets = []
    for e in range(epochs):
        records = [
            ValidatorRecord(k.address, k.public_key_bytes, s)
            for k, s in zip(keys, epoch_stakes(base, e, rotate), strict=True)
        ]
        seed = keccak256(b"seed %d" % e)
        sets.append(compute_validator_set(records, e, seed, TEST_PRESET.max_validators))
    return sets


def block_hashes(slot: int, parent: bytes, proposer: bytes, salt: bytes) -> bytes:
    return keccak256(b"seal" + slot.to_bytes(8, "big") + parent + proposer + salt)


def make_proposal(key: PrivateKey, slot: int, parent: bytes, salt: bytes = b"") -> Proposal:
    """A proposal signed without slashing protection (how a byzantine leader signs)."""
    seal = block_hashes(slot, parent, key.address, salt)
    vote = sign_vote(key, CHAIN_ID, GENESIS_HASH, VoteKind.PROPOSE, slot, seal)
    block_hash = keccak256(seal + vote.signature.to_bytes())
    return Proposal(slot, block_hash, parent, seal, key.address, vote.signature)


@attrs.define
class Oracle:
    """What the test knows independently of the cores."""

    stakes: dict[int, dict[bytes, int]]  # epoch -> validator id -> stake
    honest: set[bytes]
    byzantine: set[bytes]
    parent: dict[bytes, tuple[int, bytes]] = attrs.Factory(dict)  # block -> (slot, parent)
    signed: set[tuple[int, int, bytes, bytes]] = attrs.Factory(set)  # (kind, slot, hash, signer)
    honest_votes: dict[tuple[bytes, int], set[tuple[int, bytes]]] = attrs.Factory(dict)

    def note_signed(self, vote: SignedVote, honest: bool) -> None:
        self.signed.add((int(vote.kind), vote.slot, vote.block_hash, vote.signer))
        if honest:
            self.honest_votes.setdefault((vote.signer, vote.slot), set()).add(
                (int(vote.kind), vote.block_hash)
            )

    def is_real_quorum(self, cert: Certificate) -> bool:
        """Distinct members of the slot's epoch, really signed, with > 2/3 of its stake."""
        table = self.stakes[cert.slot // TEST_PRESET.epoch_length]
        signers = [s for s, _ in cert.signatures]
        if len(set(signers)) != len(signers):
            return False
        for s in signers:
            if s not in table or (int(cert.kind), cert.slot, cert.block_hash, s) not in self.signed:
                return False
        return sum(table[s] for s in signers) * 3 > sum(table.values()) * 2

    def descends(self, child: bytes, ancestor: bytes) -> bool:
        cursor = child
        while cursor != ancestor:
            if cursor not in self.parent:
                return False
            cursor = self.parent[cursor][1]
        return True


def offences_of(messages: Iterable[tuple[int, int, bytes, bytes]]) -> set[tuple[bytes, int, str]]:
    """Equivocations among (kind, slot, hash, signer) tuples, by the test's own rule."""
    seen: dict[tuple[bytes, int], set[tuple[int, bytes]]] = {}
    for kind, slot, h, signer in messages:
        seen.setdefault((signer, slot), set()).add((kind, h))
    found = set()
    for (signer, slot), items in seen.items():
        kinds = {k for k, _ in items}
        for kind, name in ((VoteKind.PROPOSE, "proposal"), (VoteKind.NOTARIZE, "notarize")):
            if len({h for k, h in items if k == kind}) > 1:
                found.add((signer, slot, name))
        if VoteKind.NULLIFY in kinds and VoteKind.FINALIZE in kinds:
            found.add((signer, slot, "nullify-finalize"))
    return found


OFFENCE_NAMES = {1: "proposal", 2: "notarize", 3: "nullify-finalize"}


class Cluster:
    """Honest cores on a simulated network: messages wait in ``pending`` until delivered."""

    def __init__(
        self,
        stakes: Sequence[int],
        byzantine: set[int],
        epochs: int = 64,
        rotate: bool = False,
        keys: Sequence[PrivateKey] | None = None,
    ) -> None:
        self.keys = list(keys if keys is not None else KEYS[: len(stakes)])
        self.sets = make_sets(self.keys, stakes, epochs, rotate)
        self.verifier = SignatureVerifier(CHAIN_ID, GENESIS_HASH)
        self.byzantine = [self.keys[i] for i in sorted(byzantine)]
        self.honest_keys = [k for i, k in enumerate(self.keys) if i not in byzantine]
        self.oracle = Oracle(
            stakes={vs.epoch: {v.id: v.stake for v in vs.validators} for vs in self.sets},
            honest={k.address for k in self.honest_keys},
            byzantine={k.address for k in self.byzantine},
        )
        self.stores = {k.address: MemoryStore() for k in self.honest_keys}
        self.nodes: dict[bytes, SimplexCore] = {}
        self.now = 0
        self.pending: list[tuple[bytes, Message, bytes | None]] = []  # (to, message, from)
        self.sides: dict[bytes, bool] = {}  # a partition: honest node -> side (empty: none)
        self.verdicts: list[tuple[bytes, bytes]] = []  # (node, block hash) awaiting execution
        self.invalid_blocks: set[bytes] = set()
        self.timers: dict[bytes, int] = {}
        self.finalized: dict[bytes, list[BlockRef]] = {}
        self.evidence: dict[bytes, list[EvidenceFound]] = {}
        self.received: dict[bytes, set[tuple[int, int, bytes, bytes]]] = {}
        self.refused: list[SigningRefused] = []
        self.deliveries = 0
        self.check_finality_quorum = True
        self.incomplete = 0  # Finalized actions that could not link to the previous final block
        for key in self.honest_keys:
            self.boot(key)

    def boot(self, key: PrivateKey) -> None:
        """(Re)start a node from its slashing-protection store; it forgets everything else."""
        vid = key.address
        signer = ProtectedSigner(
            key, SlashingProtection(self.stores[vid], vid), CHAIN_ID, GENESIS_HASH
        )
        final = self.finalized.get(vid, [GENESIS])[-1]
        core = SimplexCore(CONFIG, self.sets, final, signer, self.verifier)
        self.nodes[vid] = core
        self.finalized.setdefault(vid, [GENESIS])
        self.evidence.setdefault(vid, [])
        self.received.setdefault(vid, set())
        self.handle(vid, core.start(self.now))

    # ------------------------------------------------------------- delivery

    def send(self, dest: bytes, message: Message, origin: bytes | None = None) -> None:
        self.pending.append((dest, message, origin))

    def broadcast(self, message: Message, origin: bytes | None = None) -> None:
        for vid in self.nodes:
            if vid != origin:
                self.send(vid, message, origin)

    def deliverable(self) -> list[int]:
        """Indices of pending messages that the current partition lets through (byzantine
        senders, origin None, reach everyone)."""
        if not self.sides:
            return list(range(len(self.pending)))
        return [
            i
            for i, (dest, _, origin) in enumerate(self.pending)
            if origin is None or self.sides.get(origin) == self.sides.get(dest)
        ]

    def deliver(self, index: int) -> None:
        dest, message, _ = self.pending.pop(index)
        self.deliver_to(dest, message)

    def deliver_to(self, dest: bytes, message: Message) -> None:
        core = self.nodes[dest]
        self.deliveries += 1
        try:
            if isinstance(message, Proposal):
                actions = core.on_proposal(message, self.now)
                vote = message.propose_vote()
                self.received[dest].add((int(vote.kind), vote.slot, vote.block_hash, vote.signer))
            elif isinstance(message, SignedVote):
                actions = core.on_vote(message, self.now)
                self.received[dest].add(
                    (int(message.kind), message.slot, message.block_hash, message.signer)
                )
            else:
                actions = core.on_certificate(message, self.now)
        except InvalidMessage:
            return
        self.handle(dest, actions)

    def flush(self, rng: random.Random | None = None, limit: int = 100_000) -> None:
        """Deliver everything (in a random order if ``rng``), including what that produces."""
        while limit > 0:
            limit -= 1
            if self.verdicts:
                self.run_verdict(0)
                continue
            ready = self.deliverable()
            if not ready:
                return
            self.deliver(ready[rng.randrange(len(ready))] if rng else ready[0])

    def run_verdict(self, index: int) -> None:
        dest, block_hash = self.verdicts.pop(index)
        valid = block_hash not in self.invalid_blocks
        self.handle(dest, self.nodes[dest].on_verdict(block_hash, valid, self.now))

    def advance(self, ms: int) -> None:
        """Move the clock and tick every node whose timer is due."""
        self.now += ms
        for vid, core in list(self.nodes.items()):
            if self.timers.get(vid, 0) <= self.now:
                self.handle(vid, core.on_tick(self.now))

    # ------------------------------------------------------------- actions

    def handle(self, vid: bytes, actions: list[object]) -> None:
        core = self.nodes[vid]
        for action in actions:
            if isinstance(action, Broadcast):
                if isinstance(action.message, SignedVote):
                    self.oracle.note_signed(action.message, honest=True)
                self.broadcast(action.message, origin=vid)
            elif isinstance(action, ExecuteBlock):
                self.verdicts.append((vid, action.proposal.block_hash))
            elif isinstance(action, BuildBlock):
                self.build(vid, core, action)
            elif isinstance(action, Finalized):
                self.finalized[vid].extend([*action.ancestors, action.block])
                self.incomplete += not action.complete
                if self.check_finality_quorum:
                    assert self.oracle.is_real_quorum(action.certificate), "no real quorum"
            elif isinstance(action, EvidenceFound):
                self.evidence[vid].append(action)
            elif isinstance(action, SetTimer):
                self.timers[vid] = action.deadline_ms
            elif isinstance(action, SigningRefused):
                self.refused.append(action)

    def build(self, vid: bytes, core: SimplexCore, action: BuildBlock) -> None:
        seal = block_hashes(action.slot, action.parent.hash, vid, b"honest")
        vote = core.sign_proposal(action.slot, seal)
        self.oracle.note_signed(vote, honest=True)
        block_hash = keccak256(seal + vote.signature.to_bytes())
        proposal = Proposal(action.slot, block_hash, action.parent.hash, seal, vid, vote.signature)
        self.oracle.parent[block_hash] = (action.slot, action.parent.hash)
        self.broadcast(proposal, origin=vid)
        self.handle(vid, core.on_proposal(proposal, self.now))

    # ------------------------------------------------------------ byzantine

    def byzantine_vote(
        self, key: PrivateKey, kind: VoteKind, slot: int, block_hash: bytes, to: Iterable[bytes]
    ) -> SignedVote:
        vote = sign_vote(
            key,
            CHAIN_ID,
            GENESIS_HASH,
            kind,
            slot,
            ZERO_HASH if kind is VoteKind.NULLIFY else block_hash,
        )
        self.oracle.note_signed(vote, honest=False)
        for dest in to:
            self.send(dest, vote)
        return vote

    def byzantine_proposal(
        self, key: PrivateKey, slot: int, parent: bytes, salt: bytes, to: Iterable[bytes]
    ) -> Proposal:
        proposal = make_proposal(key, slot, parent, salt)
        self.oracle.note_signed(proposal.propose_vote(), honest=False)
        self.oracle.parent[proposal.block_hash] = (slot, parent)
        for dest in to:
            self.send(dest, proposal)
        return proposal

    # --------------------------------------------------------------- checks

    def check_agreement(self) -> None:
        """DESIGN §5.1: all blocks finalized by honest nodes lie on one chain."""
        final: dict[bytes, int] = {}
        for refs in self.finalized.values():
            for ref in refs:
                final[ref.hash] = ref.slot
        ordered = sorted(final.items(), key=lambda item: item[1])
        for (h1, s1), (h2, s2) in itertools.pairwise(ordered):
            assert s1 != s2, f"two blocks finalized at slot {s1}"
            assert self.oracle.descends(h2, h1), f"finalized block at {s2} forks from {s1}"

    def check_no_honest_equivocation(self) -> None:
        """DESIGN §5.4: no honest key ever signed two conflicting messages."""
        for (signer, slot), items in self.oracle.honest_votes.items():
            msgs = [(k, slot, h, signer) for k, h in items]
            assert not offences_of(msgs), f"honest 0x{signer.hex()} equivocated in slot {slot}"

    def check_evidence(self) -> None:
        """DESIGN §5.4: every equivocation an honest node received became evidence; only
        byzantine validators are ever accused."""
        for vid, received in self.received.items():
            found = set()
            for item in self.evidence[vid]:
                ev = item.evidence
                assert ev.first.signer in self.oracle.byzantine, "honest validator accused"
                assert ev.first.signer == ev.second.signer and ev.first.slot == ev.second.slot
                found.update(
                    offences_of(
                        [
                            (int(v.kind), v.slot, v.block_hash, v.signer)
                            for v in (ev.first, ev.second)
                        ]
                    )
                )
            missing = offences_of(received) - found
            assert not missing, f"node 0x{vid.hex()} missed evidence {missing}"

    def check_all(self) -> None:
        self.check_agreement()
        self.check_no_honest_equivocation()
        self.check_evidence()
        assert not self.refused, f"an honest node tried to equivocate: {self.refused[0]}"
