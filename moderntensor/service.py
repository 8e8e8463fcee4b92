"""The chain service: the node's narrow read and submit interface (DESIGN.md §2, layer 5).

RPC and network talk to this, never to the supervisor: blocks, receipts and state at a tag,
transaction submission into the pool, subscriptions to new heads and pending transactions,
each epoch's validator set (the one home of the validator-set rule outside the pure
functions: the node's consensus driver and the ``mt_*`` methods both ask here), and the
consensus facts the ``mt_*`` methods show. The node (or a test) drives it by calling
:meth:`ChainService.on_block_committed` / :meth:`ChainService.on_finalized`.

Subscriptions are bounded memory channels; a subscriber too slow to keep up loses messages
(counted in ``statistics()``) instead of stalling block production.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
import trio

from moderntensor import offload
from moderntensor._notarized import NotarizedChain
from moderntensor._service_views import (
    ConsensusFacts,
    ConsensusView,
    NetworkFacts,
    NetworkView,
    PeerFacts,
    SyncProgress,
)
from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.chain import Chain, ExecutedBlock
from moderntensor.chain.execution import TransactionRejected, compute_next_base_fee
from moderntensor.chain.receipts import Receipt
from moderntensor.chain.staking import get_validators
from moderntensor.chain.timing import compute_snapshot_height
from moderntensor.chain.transactions import Transaction, decode_transaction
from moderntensor.codec import DecodeError
from moderntensor.consensus import ValidatorSet, compute_epoch_seed, compute_next_validator_set
from moderntensor.state.statedb import StateDB
from moderntensor.state.trie import NodeReader

__all__ = [
    "BlockTagError",
    "ChainService",
    "ConsensusFacts",
    "ConsensusView",
    "NetworkFacts",
    "NetworkView",
    "PeerFacts",
    "SyncProgress",
    "TxPool",
    "TxRef",
]


class TxPool(Protocol):
    """What the service needs of the mempool (moderntensor.mempool implements it)."""

    def add(self, tx: Transaction) -> Any:
        """Admit ``tx``; raises TransactionRejected (with Ethereum's wording) if refused."""

    def get(self, tx_hash: bytes) -> Transaction | None: ...
    def pending_nonce(self, address: bytes) -> int | None: ...
    def __len__(self) -> int: ...

    @property
    def min_tip(self) -> int:
        """The smallest tip admitted (the floor of the node's tip suggestion)."""


@attrs.frozen(slots=True)
class TxRef:
    """A transaction and where it is: ``block_hash`` None means pending in the pool."""

    tx: Transaction
    block_hash: bytes | None = None
    block_number: int | None = None
    index: int | None = None


class BlockTagError(ValueError):
    """A block tag or number that is not one of Ethereum's forms."""


ADMIT_SLICE = 256
"""Transactions admitted per event-loop step in a batch (a few ms of work)."""
PREDECODE_MAX_BYTES = 16 * 1024 * 1024
"""Raw bytes of pre-decoded transactions waiting for submission, all batches together (a
decoded one takes about twice its raw size); beyond it the oldest are dropped, and then
decoded again when submitted."""


def _decode_all(raws: Sequence[bytes]) -> list[Transaction | DecodeError]:
    """Runs in a worker thread: decode each, keeping the error of those that fail."""
    out: list[Transaction | DecodeError] = []
    for raw in raws:
        try:
            out.append(decode_transaction(raw))
        except DecodeError as exc:
            out.append(exc)
    return out


_SUBSCRIPTION_BUFFER = 256  # heads/txs a slow subscriber may lag behind before losing some
_SET_CACHE = 8  # validator sets kept (a node asks for the epochs around its own)


class ChainService:
    """Reads over a :class:`Chain`, submission to a pool, and event fan-out."""

    def __init__(
        self,
        chain: Chain,
        pool: TxPool,
        *,
        client_version: str = "moderntensor",
        peer_count: Callable[[], int] = lambda: 0,
        consensus: ConsensusView | None = None,
    ) -> None:
        self.chain = chain
        self.pool = pool
        self.client_version = client_version
        self.peer_count = peer_count
        self.consensus = consensus
        self.network: NetworkView | None = None
        """The running network (the node sets it); None: no network."""
        self._finalized: Header = self._load_finalized()
        self._head_subscribers: list[trio.MemorySendChannel[Header]] = []
        self._tx_subscribers: list[trio.MemorySendChannel[bytes]] = []
        self.dropped_events = 0
        self.sync_progress: SyncProgress | None = None
        """Set by range sync while the node catches up (``eth_syncing``, ``/health``)."""
        self._predecoded: dict[bytes, Transaction] = {}
        self._predecoded_bytes = 0
        self.on_local_transaction: Callable[[Transaction], None] | None = None
        """Told of each transaction admitted through :meth:`submit_raw_transaction` (this
        node's RPC; the node journals them), not of gossiped ones."""
        self.on_local_transactions: Callable[[list[Transaction]], None] | None = None
        """Told at once of the transactions of a :meth:`predecode` batch admitted through
        :meth:`submit_raw_transaction`, when the batch is released (answered, its response
        not yet written; without this hook they go to :attr:`on_local_transaction` one by
        one then). One journal write per batch, not one per transaction: each ``write``
        gives up the GIL, which a thread building a block then holds for up to the switch
        interval."""
        self._local_held: list[Transaction] = []
        self._sets: dict[int, ValidatorSet] = {}
        self._notarized = NotarizedChain()
        """Notarized, executed blocks above the committed head (``latest``): the driver
        replaces it whole (see moderntensor._notarized)."""

    @property
    def syncing(self) -> bool:
        return self.sync_progress is not None

    # -- identity -------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        return self.chain.params.chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self.chain.genesis_hash

    # -- heads ----------------------------------------------------------------------------

    def _load_finalized(self) -> Header:
        h = self.chain.chaindb.finalized_hash()
        header = self.chain.chaindb.get_header(h) if h else None
        return header if header is not None else self.chain.head

    @property
    def head(self) -> Header:
        """``latest``: the newest notarized block this node executed, else the committed
        head (the newest final block)."""
        tip = self._notarized.above(self.chain.head).tip
        return tip if tip is not None else self.chain.head

    @property
    def finalized(self) -> Header:
        return self._finalized

    def notarized(self) -> NotarizedChain:
        """The notarized blocks above the committed head, oldest first (may be empty)."""
        return self._notarized.above(self.chain.head)

    def set_notarized(self, blocks: Sequence[ExecutedBlock]) -> None:
        """The driver's view of the notarized chain (oldest first) changed: serve it.

        ``newHeads`` is not told: it announces blocks as they become final (the moment
        operators and benchmarks time), not as they are notarized.
        """
        current = self._notarized.blocks
        if len(blocks) == len(current) and all(
            a.block.hash == b.block.hash for a, b in zip(blocks, current, strict=True)
        ):
            return
        self._notarized = NotarizedChain(blocks)

    def resolve_tag(self, tag: str | int) -> Header | None:
        """A header by Ethereum block tag or number (None if there is no such block).

        ``latest`` and ``pending`` are :attr:`head` (the newest notarized block; blocks are
        built per slot, not continuously, so there is no pending block of its own); ``safe``
        and ``finalized`` the newest final block (a notarized block can still be abandoned
        if its slot is nullified too, so nothing short of final is safe). A number above the
        committed head names a notarized block.

        Raises:
            BlockTagError: not a tag, a non-negative int or a 0x-hex quantity.
        """
        if isinstance(tag, int) and not isinstance(tag, bool):
            if tag < 0:
                raise BlockTagError(f"negative block number {tag}")
            if tag > self.chain.head.number:
                return self.notarized().by_number(tag)
            return self.chain.chaindb.get_header_by_number(tag)
        if not isinstance(tag, str):
            raise BlockTagError(f"invalid block tag {tag!r}")
        if tag in ("latest", "pending"):
            return self.head
        if tag in ("finalized", "safe"):
            return self._finalized
        if tag == "earliest":
            return self.chain.chaindb.get_header_by_number(0)
        if tag.startswith("0x") and len(tag) > 2:
            try:
                return self.resolve_tag(int(tag, 16))
            except ValueError:
                pass
        raise BlockTagError(
            f"invalid block tag {tag!r}: use latest, earliest, pending, safe, finalized or a "
            "0x-hex block number"
        )

    def header_by_hash(self, block_hash: bytes) -> Header | None:
        header = self._notarized.header(block_hash)
        return header if header is not None else self.chain.chaindb.get_header(block_hash)

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        block = self._notarized.block(block_hash)
        return block if block is not None else self.chain.chaindb.get_block(block_hash)

    def block_by_header(self, header: Header) -> Block | None:
        return self.block_by_hash(header.hash)

    def receipts(self, block_hash: bytes) -> list[Receipt]:
        receipts = self._notarized.receipts(block_hash)
        return receipts if receipts is not None else self.chain.chaindb.get_receipts(block_hash)

    def is_canonical(self, header: Header) -> bool:
        """On the chain ``latest`` ends in: committed canonical, or notarized above it."""
        if header.number > self.chain.head.number:
            return self.notarized().header(header.hash) is not None
        return self.chain.chaindb.get_canonical_hash(header.number) == header.hash

    def node_reader(self, header: Header) -> NodeReader:
        """Where the state trie of ``header`` is read (a notarized block's nodes are in memory)."""
        notarized = self._notarized
        if notarized.header(header.hash) is not None:
            return notarized.reader(self.chain.db)
        return self.chain.db

    def state_at(self, header: Header) -> StateDB:
        return StateDB(self.node_reader(header), header.state_root)

    def next_base_fee(self) -> int:
        head = self.head
        return compute_next_base_fee(
            head.base_fee_per_gas, head.gas_used, head.gas_limit, self.chain.params.min_base_fee
        )

    # -- validator sets -------------------------------------------------------------------

    def validator_set(self, epoch: int) -> ValidatorSet | None:
        """The validator set of ``epoch`` by the rule (docs/consensus.md, "Epochs"), or None
        while its snapshot block is not committed (final) here yet.

        The records are read from the state of the canonical block at
        ``compute_snapshot_height(epoch)``; the seed binds the epoch to that block's hash; if
        nobody is eligible, the members of the previous epoch carry over
        (``compute_next_validator_set``). Sets are cached: a final block never changes.

        Raises:
            ValueError: the snapshot state holds a malformed consensus key (a chain-rule bug:
                staking refuses such keys).
        """
        cached = self._sets.get(epoch)
        if cached is not None:
            return cached
        height = compute_snapshot_height(epoch, self.chain.params.epoch_length)
        if height > self.chain.head.number:  # the committed head is the newest final block
            return None
        snapshot = self.chain.chaindb.get_header_by_number(height)
        if snapshot is None:
            return None
        records = get_validators(self.chain.state_at(snapshot))
        seed = compute_epoch_seed(self.genesis_hash, epoch, snapshot.hash)
        consensus = self.chain.genesis.consensus
        limits = (consensus.max_validators, consensus.min_stake)
        try:
            vset = compute_next_validator_set(records, epoch, seed, *limits, previous=None)
        except ValueError:
            if epoch == 0:
                raise
            # Nobody eligible: the previous epoch's members carry over (asked for only now,
            # so a node never walks back through epochs it does not need).
            previous = self.validator_set(epoch - 1)
            vset = compute_next_validator_set(records, epoch, seed, *limits, previous=previous)
        self._sets[epoch] = vset
        if len(self._sets) > _SET_CACHE:
            del self._sets[min(self._sets)]
        return vset

    # -- transactions ---------------------------------------------------------------------

    def transaction(self, tx_hash: bytes) -> TxRef | None:
        """A transaction in a committed or notarized block with its location, or a pending
        one from the pool."""
        location = self.chain.chaindb.get_tx_location(tx_hash)
        if location is not None:
            block_hash, index = location
            block = self.chain.chaindb.get_block(block_hash)
            if block is not None and index < len(block.transactions):
                return TxRef(block.transactions[index], block_hash, block.number, index)
        found = self.notarized().transaction(tx_hash)
        if found is not None:
            block, index = found
            return TxRef(block.transactions[index], block.hash, block.number, index)
        tx = self.pool.get(tx_hash)
        return TxRef(tx) if tx is not None else None

    def submit_raw_transaction(self, raw: bytes) -> bytes:
        """Decode and admit a transaction; returns its hash.

        Raises:
            moderntensor.codec.DecodeError: the bytes are not a valid signed transaction.
            TransactionRejected: the pool refuses it (message in Ethereum's wording).
        """
        tx = self._predecoded.pop(raw, None)
        batched = tx is not None  # an entry of a batch not yet released
        if tx is None:
            tx = decode_transaction(raw)
        else:
            self._predecoded_bytes -= len(raw)
        self.submit_transaction(tx)
        if batched and self.on_local_transactions is not None:
            self._local_held.append(tx)  # told when its batch is released
        elif self.on_local_transaction is not None:
            self.on_local_transaction(tx)
        return tx.hash

    async def submit_raw_transactions(
        self, raws: Sequence[bytes]
    ) -> list[bytes | DecodeError | TransactionRejected]:
        """Submit a batch (gossip, tools, benchmarks): senders are recovered in a worker
        thread, then each transaction is admitted in order, a slice per event-loop step.

        Returns:
            Per transaction, its hash or the error it got.
        """
        decoded = await offload.run_sync(_decode_all, raws)
        out: list[bytes | DecodeError | TransactionRejected] = []
        for i, item in enumerate(decoded):
            if i % ADMIT_SLICE == ADMIT_SLICE - 1:
                await trio.sleep(0)
            if isinstance(item, DecodeError):
                out.append(item)
                continue
            try:
                self.submit_transaction(item)
            except TransactionRejected as exc:
                out.append(exc)
            else:
                out.append(item.hash)
        return out

    async def predecode(self, raws: Sequence[bytes]) -> Callable[[], None]:
        """Decode (and so recover the senders of) transactions about to be submitted one by
        one, e.g. a JSON-RPC batch, in a worker thread; :meth:`submit_raw_transaction` then
        finds them decoded. Signature recovery is most of a submission's cost, and it
        releases the GIL, so the batch's recovery runs beside the event loop, not on it.

        Returns:
            A function to call once the batch is answered: it forgets this batch's entries
            that were never submitted (a request with a bad envelope, say), so nothing is
            kept that the pool did not take. The cache is also bounded by
            :data:`PREDECODE_MAX_BYTES`.
        """
        decoded = await offload.run_sync(_decode_all, raws)
        mine: list[bytes] = []
        cache = self._predecoded
        for raw, item in zip(raws, decoded, strict=True):
            if not isinstance(item, DecodeError) and raw not in cache:
                cache[raw] = item
                self._predecoded_bytes += len(raw)
                mine.append(raw)
        while self._predecoded_bytes > PREDECODE_MAX_BYTES and cache:
            oldest = next(iter(cache))  # insertion order: the oldest batch's first
            del cache[oldest]
            self._predecoded_bytes -= len(oldest)

        def release() -> None:
            for raw in mine:
                if cache.pop(raw, None) is not None:
                    self._predecoded_bytes -= len(raw)
            held, self._local_held = self._local_held, []
            if held:  # every open batch's so far, this one's among them
                if self.on_local_transactions is not None:
                    self.on_local_transactions(held)
                elif self.on_local_transaction is not None:
                    for tx in held:
                        self.on_local_transaction(tx)

        return release

    def submit_transaction(self, tx: Transaction) -> None:
        """Admit a decoded transaction and announce it.

        Raises:
            TransactionRejected: the pool refuses it.
        """
        self.pool.add(tx)  # MempoolRejected is a TransactionRejected
        self._publish(self._tx_subscribers, tx.hash)

    def pending_nonce(self, address: bytes) -> int:
        """The next nonce counting the pool (eth_getTransactionCount at ``pending``)."""
        pooled = self.pool.pending_nonce(address)
        state_nonce = self.state_at(self.head).get_nonce(address)
        return max(state_nonce, pooled) if pooled is not None else state_nonce

    # -- events from the node -------------------------------------------------------------

    def on_block_committed(self, executed: ExecutedBlock) -> None:
        self._publish(self._head_subscribers, executed.block.header)

    def on_finalized(self, header: Header) -> None:
        if header.number >= self._finalized.number:
            self._finalized = header

    def subscribe_heads(self) -> trio.MemoryReceiveChannel[Header]:
        send, receive = trio.open_memory_channel[Header](_SUBSCRIPTION_BUFFER)
        self._head_subscribers.append(send)
        return receive

    def subscribe_pending_transactions(
        self, buffer: int = _SUBSCRIPTION_BUFFER
    ) -> trio.MemoryReceiveChannel[bytes]:
        """Hashes of admitted transactions; ``buffer`` of them may wait (then some are lost,
        counted in ``dropped_events``)."""
        send, receive = trio.open_memory_channel[bytes](buffer)
        self._tx_subscribers.append(send)
        return receive

    def _publish(self, subscribers: Sequence[trio.MemorySendChannel[Any]], item: Any) -> None:
        closed = []
        for channel in subscribers:
            try:
                channel.send_nowait(item)
            except trio.WouldBlock:
                self.dropped_events += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                closed.append(channel)
        for channel in closed:
            if channel in self._head_subscribers:
                self._head_subscribers.remove(channel)
            if channel in self._tx_subscribers:
                self._tx_subscribers.remove(channel)

    def statistics(self) -> dict[str, int]:
        return {
            "head": self.head.number,
            "finalized": self._finalized.number,
            "pool": len(self.pool),
            "head_subscribers": len(self._head_subscribers),
            "tx_subscribers": len(self._tx_subscribers),
            "dropped_events": self.dropped_events,
            "predecoded": len(self._predecoded),
            "predecoded_bytes": self._predecoded_bytes,
        }
