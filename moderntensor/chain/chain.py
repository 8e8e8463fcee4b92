"""The chain: genesis, building and importing blocks, and committing them to RocksDB.

This is the one place that knows the whole block rule: header against parent (number, slot,
timestamp, gas limit, base fee, proposer signature), then evidence, transactions and the block
reward executed against the parent's state, then every root compared. It keeps the state of the
last committed block alive in memory, so the next block on top of it does not reload trie nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs

from moderntensor.chain._evidence_rules import (
    EvidenceRules,
    UnusableEvidence,
    apply_evidence,
    select_evidence,
)
from moderntensor.chain.blocks import (
    Block,
    Header,
    compute_evidence_root,
    compute_transactions_root,
)
from moderntensor.chain.chaindb import ChainDB
from moderntensor.chain.execution import (
    BlockEnv,
    ChainParams,
    TransactionRejected,
    compute_next_base_fee,
    execute_transactions,
    pay_block_reward,
)
from moderntensor.chain.genesis import Genesis, build_genesis
from moderntensor.chain.receipts import Receipt
from moderntensor.chain.staking import (
    get_validator_by_id,
)
from moderntensor.chain.timing import compute_block_epoch, compute_slot_start_ms
from moderntensor.chain.transactions import Transaction
from moderntensor.chain.votes import (
    VoteKind,
    vote_digest,
)
from moderntensor.crypto import InvalidSignature, PrivateKey, Signature, recover_address
from moderntensor.state.statedb import StateCommit, StateDB
from moderntensor.state.store import Column, Database
from moderntensor.state.trie import ordered_trie_root

__all__ = [
    "BlockDraft",
    "Chain",
    "ChainMismatch",
    "ExecutedBlock",
    "InvalidBlock",
    "MissingParent",
    "SealSigner",
]

log = logging.getLogger("moderntensor.chain")


class SealSigner(Protocol):
    """Signs a header's seal hash as the PROPOSE vote of ``slot`` (the consensus core does,
    through slashing protection); ``address`` is the validator id."""

    @property
    def address(self) -> bytes: ...

    def sign_seal(self, slot: int, seal_hash: bytes) -> Signature: ...


class InvalidBlock(Exception):
    """A block that breaks a rule; ``reason`` names the rule (the sender is at fault)."""

    def __init__(self, reason: str, block_hash: bytes = b"", number: int = -1) -> None:
        where = f"block {number} 0x{block_hash.hex()[:16]}" if block_hash else "block"
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.block_hash = block_hash


class MissingParent(InvalidBlock):
    """The block's parent is not here (neither committed nor executed): not a verdict on the
    block, which may be valid once the parent is fetched; ``parent_hash`` names it."""

    def __init__(self, block_hash: bytes, number: int, parent_hash: bytes) -> None:
        super().__init__("unknown parent", block_hash, number)
        self.parent_hash = parent_hash


class ChainMismatch(Exception):
    """The data directory holds another chain than the genesis given."""


@attrs.frozen(slots=True)
class ExecutedBlock:
    """A block with what executing it produced: ready for :meth:`Chain.commit`."""

    block: Block
    receipts: tuple[Receipt, ...]
    state: StateCommit


@attrs.frozen(slots=True)
class BlockDraft:
    """An executed block before its proposer signs it (see :meth:`Chain.draft_block`)."""

    header: Header  # proposer_signature still empty
    transactions: tuple[Transaction, ...]
    evidence: tuple[bytes, ...]
    receipts: tuple[Receipt, ...]
    commit: StateCommit
    state: StateDB = attrs.field(repr=False)

    @property
    def seal_hash(self) -> bytes:
        return self.header.seal_hash


class Chain:
    """One chain over one database; not thread-safe (the node serialises access)."""

    def __init__(self, db: Database, genesis: Genesis) -> None:
        self.db = db
        self.chaindb = ChainDB(db)
        self.genesis = genesis
        self.params: ChainParams = genesis.params
        genesis_block, commit = build_genesis(genesis)
        self.genesis_hash = genesis_block.hash
        stored = self.chaindb.genesis_hash()
        if stored is None:
            self.chaindb.commit_block(genesis_block, [], commit.nodes, finalized=True, genesis=True)
        elif stored != self.genesis_hash:
            raise ChainMismatch(
                f"the database holds a chain with genesis 0x{stored.hex()}, but the genesis "
                f"file gives 0x{self.genesis_hash.hex()}; use another data directory"
            )
        head_hash = self.chaindb.head_hash()
        head = self.chaindb.get_header(head_hash) if head_hash else None
        if head is None:
            raise ChainMismatch("the database has no head block: it is not a ModernTensor chain")
        self.chaindb.check_state(head)
        self.head: Header = head
        self._live: StateDB | None = None
        self._live_root = b""
        # Executed but not committed (notarized, not yet final): by hash, with their nodes.
        self._pending: dict[bytes, ExecutedBlock] = {}
        self._pending_nodes: dict[bytes, bytes] = {}

    # -- time and state -------------------------------------------------------------------

    def timestamp_of(self, slot: int) -> int:
        """Header timestamp of a slot: its start, in whole seconds."""
        start_ms = compute_slot_start_ms(
            self.genesis.genesis_time * 1000, self.genesis.consensus.slot_duration_ms, slot
        )
        return start_ms // 1000

    def state_at(self, header: Header) -> StateDB:
        """A fresh, private view of the state after ``header`` (for reads and RPC)."""
        return StateDB(self.db, header.state_root)

    def get_header(self, block_hash: bytes) -> Header | None:
        """A header that is committed or executed and pending."""
        pending = self._pending.get(block_hash)
        return pending.block.header if pending is not None else self.chaindb.get_header(block_hash)

    def get_pending(self, block_hash: bytes) -> ExecutedBlock | None:
        return self._pending.get(block_hash)

    def top_number(self) -> int:
        """The highest block executed here, committed or pending."""
        pending = list(self._pending.values())  # one C call: safe beside the worker thread
        return max([self.head.number, *(e.block.number for e in pending)])

    def get_node(self, node_hash: bytes) -> bytes | None:
        """NodeReader over pending blocks' nodes, then the database."""
        node = self._pending_nodes.get(node_hash)
        return node if node is not None else self.db.get_node(node_hash)

    def _working_state(self, parent: Header) -> StateDB:
        if self._live is not None and self._live_root == parent.state_root:
            state = self._live
        else:
            state = StateDB(self, parent.state_root)
        self._live = None  # until this execution commits, nobody else may reuse it
        return state

    def next_env(self, parent: Header, slot: int, coinbase: bytes) -> BlockEnv:
        """The environment of the block after ``parent`` at ``slot``.

        Its epoch counts blocks, not slots (``chain.timing``): an outage of many slots
        without blocks does not advance it, so it cannot shorten unbonding.
        """
        number = parent.number + 1
        return BlockEnv(
            number=number,
            slot=slot,
            coinbase=coinbase,
            base_fee=compute_next_base_fee(
                parent.base_fee_per_gas, parent.gas_used, parent.gas_limit,
                self.params.min_base_fee,
            ),
            gas_limit=self.params.gas_limit,
            epoch=compute_block_epoch(number, self.params.epoch_length),
        )  # fmt: skip

    # -- building -------------------------------------------------------------------------

    def build_block(
        self,
        parent: Header,
        slot: int,
        proposer_key: PrivateKey | SealSigner,
        candidates: Iterable[Transaction],
        evidence: Sequence[bytes] = (),
    ) -> ExecutedBlock:
        """Execute the best candidates that fit on ``parent`` and seal a signed block.

        Candidates that cannot be included (stale nonce, funds, ...) are skipped. The node
        passes a :class:`SealSigner` that signs through slashing protection; tests and tools
        may pass a bare key.

        Raises:
            InvalidBlock: the proposer key is not a registered, active validator's.
        """
        draft = self.draft_block(parent, slot, proposer_key.address, candidates, evidence)
        if isinstance(proposer_key, PrivateKey):
            epoch = compute_block_epoch(draft.header.number, self.params.epoch_length)
            digest = vote_digest(
                self.params.chain_id, self.genesis_hash, VoteKind.PROPOSE, epoch, slot,
                draft.seal_hash,
            )  # fmt: skip
            signature = proposer_key.sign(digest)
        else:
            signature = proposer_key.sign_seal(slot, draft.seal_hash)
        return self.seal_block(draft, signature)

    def draft_block(
        self,
        parent: Header,
        slot: int,
        proposer: bytes,
        candidates: Iterable[Transaction],
        evidence: Sequence[bytes] = (),
    ) -> BlockDraft:
        """The CPU-heavy half of :meth:`build_block`: execute and hash, but do not sign.

        The node runs this in a worker thread and signs the seal hash on the event loop
        (signing goes through slashing protection, which is not thread-safe).

        Raises:
            InvalidBlock: ``proposer`` is not a registered, active validator's consensus key.
        """
        if slot <= parent.slot:
            raise InvalidBlock(f"slot {slot} is not after the parent's slot {parent.slot}")
        state = self._working_state(parent)
        record = get_validator_by_id(state, proposer)
        if record is None or record.jailed:
            raise InvalidBlock("the proposer key is not an active validator's consensus key")
        env = self.next_env(parent, slot, record.address)
        evidence = tuple(evidence)
        self._apply_evidence(state, evidence, env.epoch)
        txs, receipts = execute_transactions(
            state, candidates, env, self.params, skip_rejected=True
        )
        pay_block_reward(state, env.coinbase, self.params)
        commit = state.commit()
        unsigned = Header(
            parent_hash=parent.hash,
            coinbase=env.coinbase,
            state_root=commit.root,
            transactions_root=compute_transactions_root(txs),
            receipts_root=ordered_trie_root([r.consensus_encoding() for r in receipts]),
            number=env.number,
            gas_limit=env.gas_limit,
            gas_used=receipts[-1].cumulative_gas_used if receipts else 0,
            timestamp=self.timestamp_of(slot),
            base_fee_per_gas=env.base_fee,
            slot=slot,
            proposer=proposer,
            evidence_root=compute_evidence_root(evidence),
        )
        return BlockDraft(unsigned, tuple(txs), evidence, tuple(receipts), commit, state)

    def seal_block(self, draft: BlockDraft, signature: Signature) -> ExecutedBlock:
        """Attach the proposer's signature over ``draft.seal_hash``; the block becomes pending
        (executed, not committed) like one imported with :meth:`execute_block`."""
        header = attrs.evolve(draft.header, proposer_signature=signature.to_bytes())
        self._stash(draft.state, draft.commit.root)
        executed = ExecutedBlock(
            Block(header, draft.transactions, draft.evidence), draft.receipts, draft.commit
        )
        self._add_pending(executed)
        return executed

    # -- importing ------------------------------------------------------------------------

    def execute_block(self, block: Block) -> ExecutedBlock:
        """Check ``block`` against its parent and re-execute it.

        Raises:
            MissingParent: the parent is neither committed nor executed here.
            InvalidBlock: naming the first rule it breaks.
        """
        header = block.header
        parent = self.get_header(header.parent_hash)
        if parent is None:
            raise MissingParent(block.hash, header.number, header.parent_hash)
        self._check_header(header, parent)
        state = self._working_state(parent)
        proposer = get_validator_by_id(state, header.proposer)
        if proposer is None or proposer.jailed:
            raise InvalidBlock("proposer is not an active validator", block.hash)
        if header.coinbase != proposer.address:
            raise InvalidBlock("coinbase is not the proposer's registered address", block.hash)
        env = self.next_env(parent, header.slot, header.coinbase)
        if header.base_fee_per_gas != env.base_fee:
            raise InvalidBlock(
                f"base fee {header.base_fee_per_gas}, expected {env.base_fee}", block.hash
            )
        if compute_transactions_root(block.transactions) != header.transactions_root:
            raise InvalidBlock("transactions root mismatch", block.hash)
        if compute_evidence_root(block.evidence) != header.evidence_root:
            raise InvalidBlock("evidence root mismatch", block.hash)
        self._apply_evidence(state, block.evidence, env.epoch)
        try:
            _, receipts = execute_transactions(state, block.transactions, env, self.params)
        except TransactionRejected as exc:
            raise InvalidBlock(
                f"transaction 0x{exc.tx_hash.hex()} cannot be included: {exc.message}",
                block.hash,
                header.number,
            ) from None
        pay_block_reward(state, env.coinbase, self.params)
        gas_used = receipts[-1].cumulative_gas_used if receipts else 0
        if gas_used != header.gas_used:
            raise InvalidBlock(f"gas used {header.gas_used}, executed {gas_used}", block.hash)
        root = ordered_trie_root([r.consensus_encoding() for r in receipts])
        if root != header.receipts_root:
            raise InvalidBlock("receipts root mismatch", block.hash)
        commit = state.commit()
        if commit.root != header.state_root:
            raise InvalidBlock(
                f"state root 0x{header.state_root.hex()}, executed 0x{commit.root.hex()}",
                block.hash,
                header.number,
            )
        self._stash(state, commit.root)
        executed = ExecutedBlock(block, tuple(receipts), commit)
        self._add_pending(executed)
        return executed

    def _check_header(self, header: Header, parent: Header) -> None:
        h = header.hash
        if header.number != parent.number + 1:
            raise InvalidBlock(f"number {header.number} does not follow {parent.number}", h)
        if header.slot <= parent.slot:
            raise InvalidBlock(f"slot {header.slot} is not after {parent.slot}", h)
        if header.timestamp != self.timestamp_of(header.slot):
            raise InvalidBlock(f"timestamp {header.timestamp} is not its slot's start", h)
        if header.gas_limit != self.params.gas_limit:
            raise InvalidBlock(f"gas limit {header.gas_limit} != {self.params.gas_limit}", h)
        if header.gas_used > header.gas_limit:
            raise InvalidBlock("gas used above the gas limit", h)
        if len(header.proposer_signature) != 65:
            raise InvalidBlock("missing proposer signature", h)
        # The proposer signed PROPOSE in the round (epoch of this height, slot).
        epoch = compute_block_epoch(header.number, self.params.epoch_length)
        digest = vote_digest(
            self.params.chain_id, self.genesis_hash, VoteKind.PROPOSE, epoch, header.slot,
            header.seal_hash,
        )  # fmt: skip
        try:
            signer = recover_address(digest, Signature.from_bytes(header.proposer_signature))
        except InvalidSignature as exc:
            raise InvalidBlock(f"bad proposer signature: {exc}", h) from None
        if signer != header.proposer:
            raise InvalidBlock("proposer signature is not the proposer's", h)

    # -- evidence -------------------------------------------------------------------------

    def select_evidence(
        self, parent: Header, items: Sequence[bytes], limit: int
    ) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """Split evidence offered for the block after ``parent`` into what it can include and
        what no block on this fork ever can; pure (reads ``parent``'s state, changes nothing).

        Each item is judged on its own, in order, by the rules :meth:`execute_block` applies:
        it decodes, proves an offence (:func:`verify_evidence`) by a registered validator,
        that offence's :func:`evidence_id` is not used on this fork, it is not too old, and
        no item selected before it proves the same offence. So one bad item never costs the
        others their place, and the usable ones never make the block invalid. Selection
        stops after ``limit`` usable items; the items after that are in neither tuple (a
        later block may take them), nor are byte-for-byte copies of a selected item (the
        block includes them). A jailed offender's evidence is usable: the block records the
        offence without slashing again (see :meth:`_apply_evidence`).

        Returns:
            ``(usable, dropped)``: the items to include, in their order, and the items that
            can never be included on this fork (malformed, proving nothing, not a
            validator's, already used, too old, or a second proof of a selected offence).

        Raises:
            ValueError: ``limit`` is not in 0..MAX_BLOCK_EVIDENCE.
        """
        state = StateDB(self, parent.state_root)  # a private view: the live state is untouched
        block_epoch = compute_block_epoch(parent.number + 1, self.params.epoch_length)
        return select_evidence(state, items, limit, self._evidence_rules(block_epoch))

    def _evidence_rules(self, block_epoch: int) -> EvidenceRules:
        return EvidenceRules(
            self.params.chain_id,
            self.genesis_hash,
            block_epoch,
            self.params.evidence_epochs,
            self.params.slash_fraction_bps,
        )

    def _apply_evidence(self, state: StateDB, evidence: Sequence[bytes], block_epoch: int) -> None:
        """Record each offence as used and slash its offender, once per jail.

        Raises:
            InvalidBlock: too many items, or an item :meth:`select_evidence` would drop.
        """
        try:
            apply_evidence(state, evidence, self._evidence_rules(block_epoch))
        except UnusableEvidence as exc:
            raise InvalidBlock(str(exc)) from None

    def _stash(self, state: StateDB, root: bytes) -> None:
        self._live, self._live_root = state, root

    def _add_pending(self, executed: ExecutedBlock) -> None:
        self._pending[executed.block.hash] = executed
        self._pending_nodes.update(executed.state.nodes)

    def prune_pending(self, keep_above: int) -> None:
        """Forget executed blocks at or below height ``keep_above`` that were not committed
        (forks that lost); called after a finalization."""
        stale = [h for h, e in self._pending.items() if e.block.number <= keep_above]
        if not stale:
            return
        for h in stale:
            del self._pending[h]
        self._pending_nodes = {}
        for executed in self._pending.values():
            self._pending_nodes.update(executed.state.nodes)

    # -- committing -----------------------------------------------------------------------

    def commit(
        self,
        executed: ExecutedBlock,
        *,
        finalized: bool = False,
        extra: Sequence[tuple[Column, bytes, bytes | None]] = (),
    ) -> None:
        """Store the block atomically and make it the head; ``extra`` writes (a None value
        deletes) go in the same batch (e.g. the block's finalization certificate)."""
        self.chaindb.commit_block(
            executed.block, executed.receipts, executed.state.nodes, finalized=finalized,
            extra=extra,
        )  # fmt: skip
        self.head = executed.block.header
        self._pending.pop(executed.block.hash, None)
        if not self._pending:
            self._pending_nodes = {}

    def import_block(self, block: Block, *, finalized: bool = False) -> ExecutedBlock:
        """Execute and commit a block received from elsewhere.

        Raises:
            InvalidBlock: as :meth:`execute_block`.
        """
        executed = self.execute_block(block)
        self.commit(executed, finalized=finalized)
        return executed
