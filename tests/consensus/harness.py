"""A simulated network of voting cores, their shell, and an independent oracle (STYLE 15, 16).

The harness plays the node shell for every core: it carries messages (with delays, drops,
duplicates and partitions decided by the test), "executes" blocks (valid unless the test says
otherwise, MISSING while the node lacks the parent), fetches missing blocks, adds validator
sets as finalized chains pass snapshot heights, and restarts nodes (memory lost; the slashing
protection store kept, rolled back to a backup, or wiped).

Validator sets change at run time: a block's header ``extra_data`` may carry a staking
operation (``join``, ``leave``, ``jail``), and the set of epoch ``e`` is the stake table after
the operations of the finalized blocks up to the snapshot height, computed by the harness's
own model. The oracle never calls production quorum, evidence, certificate or set code: it
keeps its own stake tables, its own record of what every key really signed, and its own
conflict rule.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence

import attrs

from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.chain.votes import ZERO_HASH, SignedVote, VoteKind, sign_vote
from moderntensor.consensus import (
    BlockRef,
    Broadcast,
    BuildBlock,
    Certificate,
    ConsensusConfig,
    EpochEntered,
    EvidenceFound,
    ExecuteBlock,
    FetchBlock,
    FetchCertificates,
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
    SlashingRefused,
    ValidatorSet,
    Verdict,
    compute_validator_set,
)
from moderntensor.crypto import PrivateKey, keccak256

CHAIN_ID = 4242
GENESIS_HASH = keccak256(b"moderntensor test genesis")
GENESIS = BlockRef(0, GENESIS_HASH)
KEYS = [PrivateKey(keccak256(b"consensus test key %d" % i)) for i in range(16)]
OUTSIDERS = [PrivateKey(keccak256(b"outsider key %d" % i)) for i in range(8)]
ZERO32 = b"\x00" * 32

EPOCH_LENGTH = 4
# Windows of production size relative to the epoch (the node uses max(64, 2 * epoch) and 64).
TEST_PRESET = Preset(
    slot_duration_ms=1_000,
    epoch_length=EPOCH_LENGTH,
    timeout_ms=2_000,
    max_validators=100,
    evidence_window=64,
    max_future_slots=32,
)
CONFIG = ConsensusConfig(CHAIN_ID, GENESIS_HASH, 0, TEST_PRESET)

Message = Proposal | SignedVote | Certificate
Round = tuple[int, int]


def epoch_of_height(height: int) -> int:
    """The test's own epoch rule (not production's): blocks 1..L are epoch 0, and so on."""
    return max(0, height - 1) // EPOCH_LENGTH


def make_block(key: PrivateKey, slot: int, parent: bytes, height: int, extra: bytes = b"") -> Block:
    """A block signed without slashing protection (how a byzantine leader signs)."""
    unsigned = Header(
        parent_hash=parent,
        coinbase=key.address,
        state_root=keccak256(b"state" + parent + extra),
        transactions_root=ZERO32,
        receipts_root=ZERO32,
        number=height,
        gas_limit=30_000_000,
        gas_used=0,
        timestamp=slot,
        base_fee_per_gas=0,
        slot=slot,
        proposer=key.address,
        extra_data=extra,
    )
    epoch = epoch_of_height(height)
    vote = sign_vote(key, CHAIN_ID, GENESIS_HASH, VoteKind.PROPOSE, epoch, slot, unsigned.seal_hash)
    return Block(attrs.evolve(unsigned, proposer_signature=vote.signature.to_bytes()))


def make_proposal(
    key: PrivateKey, slot: int, parent: bytes, height: int, extra: bytes = b""
) -> Proposal:
    return Proposal(make_block(key, slot, parent, height, extra))


# ---------------------------------------------------------------- the stake model

StakeTable = dict[bytes, int]  # validator id -> stake (only members, stake > 0)


def apply_op(table: StakeTable, op: bytes, keys: Sequence[PrivateKey], byz: set[bytes]) -> None:
    """The harness's own staking rule. ``join:i``/``leave:i`` move an honest key in or out,
    ``jail:i`` removes a byzantine one; an op that would leave byzantine stake at 1/3 or more,
    or an empty table, does nothing (the model keeps the test's fault assumption)."""
    if not op or b":" not in op:
        return
    name, _, index = op.partition(b":")
    if not index.isdigit() or int(index) >= len(keys):
        return
    vid = keys[int(index)].address
    new = dict(table)
    if name == b"join" and vid not in byz:
        new[vid] = new.get(vid, 0) + 7
    elif (name == b"leave" and vid not in byz) or (name == b"jail" and vid in byz):
        new.pop(vid, None)
    else:
        return
    total = sum(new.values())
    if total and 3 * sum(s for v, s in new.items() if v in byz) < total:
        table.clear()
        table.update(new)


def to_set(table: StakeTable, epoch: int, keys: Sequence[PrivateKey]) -> ValidatorSet:
    """The production ValidatorSet for a model table (what the shell hands the core)."""
    by_id = {k.address: k for k in keys}
    records = [
        ValidatorRecord(vid, by_id[vid].public_key_bytes, stake) for vid, stake in table.items()
    ]
    seed = keccak256(b"seed %d" % epoch)
    return compute_validator_set(records, epoch, seed, TEST_PRESET.max_validators)


@attrs.define
class Oracle:
    """What the test knows independently of the cores."""

    stakes: dict[int, StakeTable]  # epoch -> validator id -> stake (as first computed)
    honest: set[bytes]
    byzantine: set[bytes]
    parent: dict[bytes, tuple[int, bytes]] = attrs.Factory(dict)  # block -> (slot, parent)
    height: dict[bytes, int] = attrs.Factory(lambda: {GENESIS_HASH: 0})
    blocks: dict[bytes, Block] = attrs.Factory(dict)
    signed: set[tuple[int, int, int, bytes, bytes]] = attrs.Factory(set)
    honest_votes: dict[tuple[bytes, int, int], set[tuple[int, bytes]]] = attrs.Factory(dict)

    def note_block(self, block: Block) -> None:
        h = block.hash
        self.parent[h] = (block.header.slot, block.header.parent_hash)
        self.height[h] = block.header.number
        self.blocks[h] = block

    def note_signed(self, vote: SignedVote, honest: bool) -> None:
        key = (int(vote.kind), vote.epoch, vote.slot, vote.block_hash, vote.signer)
        self.signed.add(key)
        if honest:
            self.honest_votes.setdefault((vote.signer, vote.epoch, vote.slot), set()).add(
                (int(vote.kind), vote.block_hash)
            )

    def is_real_quorum(self, cert: Certificate) -> bool:
        """Distinct members of the certificate's epoch, really signed, > 2/3 of its stake."""
        table = self.stakes.get(cert.epoch)
        if table is None:
            return False
        signers = [s for s, _ in cert.signatures]
        if len(set(signers)) != len(signers):
            return False
        for s in signers:
            key = (int(cert.kind), cert.epoch, cert.slot, cert.block_hash, s)
            if s not in table or key not in self.signed:
                return False
        return sum(table[s] for s in signers) * 3 > sum(table.values()) * 2

    def descends(self, child: bytes, ancestor: bytes) -> bool:
        cursor = child
        while cursor != ancestor:
            if cursor not in self.parent:
                return False
            cursor = self.parent[cursor][1]
        return True

    def chain_to(self, head: bytes) -> list[bytes]:
        """Block hashes from genesis (excluded) to ``head``, oldest first."""
        out = []
        cursor = head
        while cursor != GENESIS_HASH:
            out.append(cursor)
            cursor = self.parent[cursor][1]
        return out[::-1]


def offences_of(
    messages: Iterable[tuple[int, int, int, bytes, bytes]],
) -> set[tuple[bytes, int, int, str]]:
    """Equivocations among (kind, epoch, slot, hash, signer) tuples, by the test's own rule."""
    seen: dict[tuple[bytes, int, int], set[tuple[int, bytes]]] = {}
    for kind, epoch, slot, h, signer in messages:
        seen.setdefault((signer, epoch, slot), set()).add((kind, h))
    found = set()
    for (signer, epoch, slot), items in seen.items():
        kinds = {k for k, _ in items}
        for kind, name in ((VoteKind.PROPOSE, "proposal"), (VoteKind.NOTARIZE, "notarize")):
            if len({h for k, h in items if k == kind}) > 1:
                found.add((signer, epoch, slot, name))
        if VoteKind.NULLIFY in kinds and VoteKind.FINALIZE in kinds:
            found.add((signer, epoch, slot, "nullify-finalize"))
    return found


def vote_key(vote: SignedVote) -> tuple[int, int, int, bytes, bytes]:
    return (int(vote.kind), vote.epoch, vote.slot, vote.block_hash, vote.signer)


class Cluster:
    """Honest cores on a simulated network: messages wait in ``pending`` until delivered."""

    def __init__(
        self,
        stakes: Sequence[int],
        byzantine: set[int],
        keys: Sequence[PrivateKey] | None = None,
        members: Sequence[int] | None = None,
    ) -> None:
        """``stakes[i]`` belongs to ``keys[i]``; ``members`` (default: all) are in the
        genesis set, the others may join later through ``join`` operations."""
        self.keys = list(keys if keys is not None else KEYS[: len(stakes)])
        members = list(range(len(stakes))) if members is None else list(members)
        self.genesis_table: StakeTable = {self.keys[i].address: stakes[i] for i in members}
        self.verifier = SignatureVerifier(CHAIN_ID, GENESIS_HASH)
        self.byzantine = [self.keys[i] for i in sorted(byzantine)]
        self.honest_keys = [k for i, k in enumerate(self.keys) if i not in byzantine]
        self.oracle = Oracle(
            stakes={0: dict(self.genesis_table), 1: dict(self.genesis_table)},
            honest={k.address for k in self.honest_keys},
            byzantine={k.address for k in self.byzantine},
        )
        self.sets: dict[int, ValidatorSet] = {
            e: to_set(self.genesis_table, e, self.keys) for e in (0, 1)
        }
        self.stores = {k.address: MemoryStore() for k in self.honest_keys}
        self.nodes: dict[bytes, SimplexCore] = {}
        self.now = 0
        self.pending: list[tuple[bytes, Message, bytes | None]] = []  # (to, message, from)
        self.sides: dict[bytes, bool] = {}  # a partition: honest node -> side (empty: none)
        self.verdicts: list[tuple[bytes, bytes]] = []  # (node, block hash) awaiting execution
        self.fetches: list[tuple[bytes, bytes]] = []  # (node, block hash) awaiting a peer
        self.cert_fetches: list[tuple[bytes, int, int]] = []  # (node, epoch, slot)
        self.invalid_blocks: set[bytes] = set()
        self.have: dict[bytes, set[bytes]] = {}  # node -> blocks it holds
        self.waiting: dict[bytes, set[bytes]] = {}  # node -> proposals that got MISSING
        self.timers: dict[bytes, int] = {}
        self.finalized: dict[bytes, list[BlockRef]] = {}
        self.evidence: dict[bytes, list[EvidenceFound]] = {}
        self.received: dict[bytes, set[tuple[int, int, int, bytes, bytes]]] = {}
        self.refused: list[SigningRefused] = []
        self.certificates: dict[tuple[int, int, int, bytes], Certificate] = {}
        self.deliveries = 0
        self.check_finality_quorum = True
        self.incomplete = 0  # Finalized actions that could not link to the previous final block
        self.next_op: bytes = b""  # a staking operation the next honest block carries
        self.epoch_starts: dict[int, BlockRef] = {}  # epoch -> the boundary that opened it
        self.rejected: list[tuple[bytes, str, str]] = []  # (node, message type, reason)
        for key in self.honest_keys:
            self.boot(key, synced=True)

    # ------------------------------------------------------------------ nodes

    def best_final(self) -> BlockRef:
        """The highest block any honest node finalized (what sync would bring a node to)."""
        refs = [refs[-1] for refs in self.finalized.values()] or [GENESIS]
        return max(refs, key=lambda r: self.oracle.height[r.hash])

    def frontier(self, asking: bytes) -> Round | None:
        """The highest certified round the *live* peers of ``asking`` report in their status
        (each peer's ``certified`` high-water mark; a wiped peer knows none)."""
        marks = [
            core._signer.protection.certified_mark
            for vid, core in self.nodes.items()
            if vid != asking and core._signer is not None
        ]
        known = [m for m in marks if m is not None]
        return max(known) if known else None

    def boot(self, key: PrivateKey, synced: bool = False, final: BlockRef | None = None) -> None:
        """(Re)start a node from its slashing-protection store and its finalized block; it
        forgets everything else. A restarted node learns the network's status first."""
        vid = key.address
        signer = ProtectedSigner(
            key, SlashingProtection(self.stores[vid], vid), CHAIN_ID, GENESIS_HASH
        )
        if final is None:
            final = self.finalized.get(vid, [GENESIS])[-1]
        height = self.oracle.height[final.hash]
        core = SimplexCore(
            CONFIG,
            self.sets.values(),
            final,
            signer,
            self.verifier,
            finalized_height=height,
            synced=synced,
        )
        self.nodes[vid] = core
        self.finalized.setdefault(vid, [GENESIS])
        if final not in self.finalized[vid]:
            self.finalized[vid].append(final)
        self.evidence.setdefault(vid, [])
        self.received.setdefault(vid, set())
        self.have[vid] = set(self.oracle.chain_to(final.hash))
        self.waiting[vid] = set()
        self.handle(vid, core.start(self.now))
        if not synced:  # the handshake: peers' highest certificate, and our votes they hold
            held = [v for other, c in self.nodes.items() if other != vid for v in c.votes_of(vid)]
            self.handle(vid, core.on_status(self.frontier(vid), held, self.now))

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

    def lost_with_the_database(self, vid: bytes) -> None:
        """A lossy restart of ``vid`` (restore, wipe) after its outgoing messages settled:
        what no honest node still holds of it (in its evidence book or next-epoch buffer)
        can no longer be shown by anyone honest, so the oracle stops holding it against the
        key. The property is "signs nothing an honest peer can turn into evidence"; a
        byzantine peer that withholds such a message is the stated residual risk."""
        held = {
            vote_key(v)
            for other, core in self.nodes.items()
            if other != vid
            for v in core.votes_of(vid)
        }
        for (signer, epoch, slot), items in self.oracle.honest_votes.items():
            if signer == vid:
                items.intersection_update(
                    {(k, h) for k, h in items if (k, epoch, slot, h, signer) in held}
                )

    def in_evidence_window(self, core: SimplexCore, vote: SignedVote) -> bool:
        """The test's own statement of which votes a core must check for equivocation: its
        epoch and the previous one, from ``evidence_window`` slots below its finalized slot
        up to ``max_future_slots`` above its view (older or farther is ignored by design:
        bounded memory)."""
        if not core.epoch - 1 <= vote.epoch <= core.epoch:
            return False
        if vote.slot < core.finalized.slot - TEST_PRESET.evidence_window:
            return False
        return vote.epoch < core.epoch or vote.slot <= core.view + TEST_PRESET.max_future_slots

    def deliver_to(self, dest: bytes, message: Message) -> None:
        core = self.nodes[dest]
        self.deliveries += 1
        try:
            if isinstance(message, Proposal):
                self.have[dest].add(message.block_hash)
                vote = message.propose_vote(EPOCH_LENGTH)
                checked = self.in_evidence_window(core, vote)
                actions = core.on_proposal(message, self.now)
                if checked:
                    self.received[dest].add(vote_key(vote))
                actions += self.retry_waiting(dest)
            elif isinstance(message, SignedVote):
                checked = self.in_evidence_window(core, message)
                actions = core.on_vote(message, self.now)
                if checked:
                    self.received[dest].add(vote_key(message))
            else:
                actions = core.on_certificate(message, self.now)
        except InvalidMessage as exc:
            self.rejected.append((dest, type(message).__name__, exc.reason))
            return
        self.handle(dest, actions)

    def flush(self, rng: random.Random | None = None, limit: int = 100_000) -> None:
        """Deliver everything (in a random order if ``rng``), including what that produces."""
        while limit > 0:
            limit -= 1
            if self.verdicts:
                self.run_verdict(0)
                continue
            if self.fetches:
                self.run_fetch(0)
                continue
            if self.cert_fetches:
                self.run_cert_fetch(0)
                continue
            ready = self.deliverable()
            if not ready:
                return
            self.deliver(ready[rng.randrange(len(ready))] if rng else ready[0])

    def flush_holding(
        self, hold: Callable[[bytes, Message], bool]
    ) -> list[tuple[bytes, Message, bytes | None]]:
        """Deliver everything in send order except the messages ``hold(dest, message)``
        keeps in flight; returns those (a test delivers or drops them later)."""
        held = []
        while self.pending or self.verdicts:
            if self.verdicts:
                self.run_verdict(0)
                continue
            dest, message, origin = self.pending.pop(0)
            if hold(dest, message):
                held.append((dest, message, origin))
            else:
                self.deliver_to(dest, message)
        return held

    def run_verdict(self, index: int) -> None:
        """Execute a block at a node: MISSING while it lacks the parent, else valid unless
        the test marked it invalid (or its parent is invalid)."""
        dest, block_hash = self.verdicts.pop(index)
        core = self.nodes[dest]
        parent = self.oracle.parent[block_hash][1]
        if parent not in self.have[dest] and parent != core.finalized.hash:
            self.waiting[dest].add(block_hash)
            self.handle(dest, core.on_verdict(block_hash, Verdict.MISSING, self.now))
            return
        bad = block_hash in self.invalid_blocks or parent in self.invalid_blocks
        verdict = Verdict.INVALID if bad else Verdict.VALID
        self.handle(dest, core.on_verdict(block_hash, verdict, self.now))

    def run_fetch(self, index: int) -> None:
        """A peer answers a fetch: the node now holds the block (and its ancestors)."""
        dest, block_hash = self.fetches.pop(index)
        if dest not in self.nodes or block_hash not in self.oracle.parent:
            return
        chain = self.oracle.chain_to(block_hash)
        self.have[dest].update(chain)
        core = self.nodes[dest]
        final = self.oracle.height[core.finalized.hash]
        for h in chain[final:]:  # the shell tells the core about the blocks it now holds
            self.handle(dest, core.on_block(self.oracle.blocks[h], self.now))
        self.handle(dest, self.retry_waiting(dest))

    def run_cert_fetch(self, index: int) -> None:
        """A peer answers "certificates of round (epoch, slot)" with what honest nodes hold."""
        dest, epoch, slot = self.cert_fetches.pop(index)
        if dest not in self.nodes:
            return
        for (_, e, s, _), cert in sorted(self.certificates.items(), key=lambda i: i[0]):
            if (e, s) == (epoch, slot):
                self.deliver_to(dest, cert)

    def retry_waiting(self, vid: bytes) -> list[object]:
        for h in sorted(self.waiting[vid]):
            if self.oracle.parent[h][1] in self.have[vid]:
                self.waiting[vid].discard(h)
                self.verdicts.append((vid, h))
        return []

    def advance(self, ms: int) -> None:
        """Move the clock and tick every node whose timer is due."""
        self.now += ms
        for vid, core in list(self.nodes.items()):
            if self.timers.get(vid, 0) <= self.now:
                self.handle(vid, core.on_tick(self.now))

    # ------------------------------------------------------------- actions

    def handle(self, vid: bytes, actions: Sequence[object]) -> None:
        core = self.nodes[vid]
        self._handle(vid, core, actions)
        wake = core.wake_at(self.now)  # nested handling can leave a stale SetTimer last
        if wake is not None and self.nodes.get(vid) is core:
            self.timers[vid] = wake

    def _handle(self, vid: bytes, core: SimplexCore, actions: Sequence[object]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                message = action.message
                if isinstance(message, SignedVote):
                    self.oracle.note_signed(message, honest=True)
                elif isinstance(message, Proposal):  # a re-proposal of a boundary block
                    self.oracle.note_signed(message.propose_vote(EPOCH_LENGTH), honest=True)
                else:
                    key = (int(message.kind), message.epoch, message.slot, message.block_hash)
                    self.certificates.setdefault(key, message)
                self.broadcast(message, origin=vid)
            elif isinstance(action, ExecuteBlock):
                self.verdicts.append((vid, action.proposal.block_hash))
            elif isinstance(action, BuildBlock):
                self.build(vid, core, action)
            elif isinstance(action, Finalized):
                self.on_finalized(vid, core, action)
            elif isinstance(action, FetchBlock):
                self.fetches.append((vid, action.block_hash))
            elif isinstance(action, FetchCertificates):
                self.cert_fetches.append((vid, action.epoch, action.slot))
            elif isinstance(action, EpochEntered):
                self.add_sets(vid, core, action)
            elif isinstance(action, EvidenceFound):
                self.evidence[vid].append(action)
            elif isinstance(action, SetTimer):
                self.timers[vid] = action.deadline_ms
            elif isinstance(action, SigningRefused):
                self.refused.append(action)

    def on_finalized(self, vid: bytes, core: SimplexCore, action: Finalized) -> None:
        for ref in (*action.ancestors, action.block):  # header slots, also for re-proposals
            known = self.oracle.parent.get(ref.hash)
            self.finalized[vid].append(ref if known is None else BlockRef(known[0], ref.hash))
        self.incomplete += not action.complete
        if self.check_finality_quorum:
            assert self.oracle.is_real_quorum(action.certificate), "no real quorum"
        height = self.oracle.height.get(action.block.hash)
        if height is None:
            return
        # The shell's job when the core could not tell the height: it fetched and committed
        # the block, and it is the epoch's boundary.
        if height == (core.epoch + 1) * EPOCH_LENGTH:
            self.have[vid].update(self.oracle.chain_to(action.block.hash))
            header_slot = self.oracle.parent[action.block.hash][0]  # not the round's slot
            boundary = BlockRef(header_slot, action.block.hash)
            self.handle(vid, core.enter_epoch(core.epoch + 1, boundary, self.now))

    def add_sets(self, vid: bytes, core: SimplexCore, entered: EpochEntered) -> None:
        """The core entered an epoch: compute the next epoch's set from this node's own
        finalized chain (the model's rule) and add it; every node must get the same set."""
        opened = self.epoch_starts.setdefault(entered.epoch, entered.boundary)
        assert opened == entered.boundary, f"epoch {entered.epoch} opened at two places"
        assert entered.boundary.slot == self.oracle.parent[entered.boundary.hash][0]
        epoch = entered.epoch + 1
        snapshot = entered.boundary.hash  # the boundary block that opened the epoch
        height = self.oracle.height[snapshot]
        assert height == entered.epoch * EPOCH_LENGTH, f"entered {entered} at height {height}"
        table = dict(self.genesis_table)
        for h in self.oracle.chain_to(snapshot):
            op = self.oracle.blocks[h].header.extra_data
            apply_op(table, op, self.keys, self.oracle.byzantine)
        known = self.oracle.stakes.setdefault(epoch, table)
        assert known == table, f"set agreement broken in epoch {epoch}"
        if epoch not in self.sets:
            self.sets[epoch] = to_set(table, epoch, self.keys)
        core.add_validator_set(self.sets[epoch])

    def sync(self, vid: bytes) -> None:
        """What the shell's sync does for a node an epoch or more behind: commit the
        finalized chain up to the best boundary block and enter its epoch."""
        core = self.nodes[vid]
        best = self.best_final()
        epoch = epoch_of_height(self.oracle.height[best.hash] + 1)
        if epoch <= core.epoch:
            return
        chain = self.oracle.chain_to(best.hash)
        boundary = chain[epoch * EPOCH_LENGTH - 1]
        mine = self.oracle.height[self.finalized[vid][-1].hash]
        for h in chain[mine : epoch * EPOCH_LENGTH]:
            self.finalized[vid].append(BlockRef(self.oracle.parent[h][0], h))
        self.have[vid].update(chain[: epoch * EPOCH_LENGTH])
        ref = BlockRef(self.oracle.parent[boundary][0], boundary)
        for vset in self.sets.values():
            core.add_validator_set(vset)
        self.handle(vid, core.enter_epoch(epoch, ref, self.now))

    def build(self, vid: bytes, core: SimplexCore, action: BuildBlock) -> None:
        height = self.oracle.height[action.parent.hash] + 1
        assert epoch_of_height(height) == action.epoch, "asked to build outside the epoch"
        key = next(k for k in self.honest_keys if k.address == vid)
        unsigned = make_block(key, action.slot, action.parent.hash, height, self.next_op)
        try:
            vote = core.sign_proposal(action.slot, unsigned.header.seal_hash)
        except SlashingRefused:  # we proposed another block here before a restart
            return
        self.oracle.note_signed(vote, honest=True)
        header = attrs.evolve(unsigned.header, proposer_signature=vote.signature.to_bytes())
        block = Block(header)
        self.next_op = b""
        self.oracle.note_block(block)
        proposal = Proposal(block)
        self.have[vid].add(block.hash)
        self.broadcast(proposal, origin=vid)
        self.handle(vid, core.on_proposal(proposal, self.now))

    # ------------------------------------------------------------ byzantine

    def byzantine_vote(
        self,
        key: PrivateKey,
        kind: VoteKind,
        epoch: int,
        slot: int,
        block_hash: bytes,
        to: Iterable[bytes],
    ) -> SignedVote:
        h = ZERO_HASH if kind is VoteKind.NULLIFY else block_hash
        vote = sign_vote(key, CHAIN_ID, GENESIS_HASH, kind, epoch, slot, h)
        self.oracle.note_signed(vote, honest=False)
        for dest in sorted(to):
            self.send(dest, vote)
        return vote

    def byzantine_proposal(
        self,
        key: PrivateKey,
        slot: int,
        parent: bytes,
        salt: bytes,
        to: Iterable[bytes],
    ) -> Proposal:
        height = self.oracle.height[parent] + 1
        proposal = make_proposal(key, slot, parent, height, salt)
        self.oracle.note_signed(proposal.propose_vote(EPOCH_LENGTH), honest=False)
        self.oracle.note_block(proposal.block)
        for dest in sorted(to):
            self.send(dest, proposal)
        return proposal

    def marks(self, vid: bytes) -> tuple[object, object]:
        protection = SlashingProtection(self.stores[vid], vid)
        return protection.signed_mark, protection.certified_mark

    def describe(self) -> str:
        """Each node's state, for a failure message."""
        lines = []
        for vid, core in sorted(self.nodes.items()):
            state = core._slots.get(core.view)
            leader = core.leader(core.view)
            role = "byz" if leader in self.oracle.byzantine else "honest"
            lines.append(
                f"0x{vid.hex()[:8]} round={core.round} synced={core.synced} "
                f"final=({core.finalized.slot}, "
                f"h{self.oracle.height.get(core.finalized.hash)}) "
                f"notarized={sorted(core.notarized().values())} leader={role} "
                f"proposal={None if state is None or state.proposal is None else state.phase} "
                f"notarize={None if state is None else state.my_notarize is not None} "
                f"nullify={None if state is None else state.my_nullify is not None} "
                f"refused={None if state is None else state.nullify_refused} "
                f"member={core._is_member()} marks={self.marks(vid)}"
            )  # fmt: skip
        lines.append(f"now={self.now} timers={sorted(self.timers.values())}")
        lines += [
            f"rejected at 0x{d.hex()[:8]}: {kind}: {why}" for d, kind, why in self.rejected[-6:]
        ]
        for vid, core in sorted(self.nodes.items()):
            prev = core._slots.get(core.view - 1)
            if prev is not None:
                lines.append(
                    f"0x{vid.hex()[:8]} slot {core.view - 1}: notarized={len(prev.notarizations)} "
                    f"nullified={prev.nullification is not None} "
                    f"nullify votes={len(prev.nullify_votes)}"
                )  # fmt: skip
        for vid, core in sorted(self.nodes.items()):
            if core.leader(core.view) == vid:
                parent = core._choose_parent(core.view)
                lines.append(
                    f"leader 0x{vid.hex()[:8]}: parent={parent} "
                    f"height={None if parent is None else core._heights.get(parent.hash)} "
                    f"may={core._may_sign(VoteKind.PROPOSE, core.view)} "
                    f"built={core._slots[core.view].build_requested} "
                    f"fetch={core._slots[core.view].fetch_requested}"
                )  # fmt: skip
        return "\n".join(lines)

    # --------------------------------------------------------------- checks

    def check_agreement(self) -> None:
        """DESIGN §5.1: all blocks finalized by honest nodes lie on one chain."""
        final: dict[bytes, int] = {}
        for refs in self.finalized.values():
            for ref in refs:
                final[ref.hash] = self.oracle.height[ref.hash]
        ordered = sorted(final.items(), key=lambda item: item[1])
        for (h1, n1), (h2, n2) in itertools.pairwise(ordered):
            assert n1 != n2, f"two blocks finalized at height {n1}"
            assert self.oracle.descends(h2, h1), f"finalized block at {n2} forks from {n1}"

    def check_certificates(self) -> None:
        """Review §7.2: among all certificates honest nodes formed or accepted, no two
        notarizations of one round, no finalization and nullification of one round."""
        by_round: dict[Round, dict[int, set[bytes]]] = {}
        for kind, epoch, slot, h in self.certificates:
            by_round.setdefault((epoch, slot), {}).setdefault(kind, set()).add(h)
        for rnd, kinds in by_round.items():
            assert len(kinds.get(int(VoteKind.NOTARIZE), ())) <= 1, f"two notarized in {rnd}"
            assert not (kinds.get(int(VoteKind.FINALIZE)) and kinds.get(int(VoteKind.NULLIFY))), (
                f"round {rnd} both finalized and nullified"
            )

    def check_no_honest_equivocation(self) -> None:
        """DESIGN §5.4: no honest key ever signed two conflicting messages."""
        for (signer, epoch, slot), items in self.oracle.honest_votes.items():
            msgs = [(k, epoch, slot, h, signer) for k, h in items]
            assert not offences_of(msgs), (
                f"honest 0x{signer.hex()} equivocated in epoch {epoch} slot {slot}: {items}"
            )

    def check_evidence(self) -> None:
        """DESIGN §5.4: every equivocation an honest node received became evidence; only
        byzantine validators are ever accused."""
        for vid, received in self.received.items():
            found = set()
            for item in self.evidence[vid]:
                ev = item.evidence
                assert ev.first.signer in self.oracle.byzantine, f"honest accused: {ev}"
                same = (ev.first.signer, ev.first.epoch, ev.first.slot)
                assert same == (ev.second.signer, ev.second.epoch, ev.second.slot), "bad evidence"
                found.update(offences_of([vote_key(v) for v in (ev.first, ev.second)]))
            missing = offences_of(received) - found
            assert not missing, f"node 0x{vid.hex()} missed evidence {missing}"

    def check_all(self) -> None:
        self.check_agreement()
        self.check_certificates()
        self.check_no_honest_equivocation()
        self.check_evidence()
        assert not self.refused, f"an honest node tried to equivocate: {self.refused[0]}"
