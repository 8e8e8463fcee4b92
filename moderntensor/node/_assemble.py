"""Wiring: every object of one node and the channels between them, built but not running.

:func:`assemble_node` is the one place that knows how the parts fit (the supervisor starts
them as tasks; tests step them by hand, several nodes in one process). Channel sizes, and
why each is bounded as it is:

* driver inbox, 256: a burst of votes from many validators; every sender awaits ``send``;
* build requests, 1: the producer has at most one request waiting while it builds (the
  driver uses ``send_nowait`` and skips the slot when it is full);
* new heads, 4: the mempool service collapses them into the newest;
* fetch requests, 16: the driver uses ``send_nowait``; a request that finds the channel full
  is asked for again at a later tick.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from moderntensor import __version__
from moderntensor.chain.blocks import Header
from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import Genesis
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.consensus import (
    BlockRef,
    ConsensusConfig,
    DatabaseStore,
    Preset,
    ProtectedSigner,
    SignatureVerifier,
    SimplexCore,
    SlashingProtection,
    is_quorum,
)
from moderntensor.crypto import PrivateKey
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.node._driver import ConsensusDriver
from moderntensor.node._events import DriverEvent, NetworkMessage, wall_clock_ms
from moderntensor.node._fetch import (
    BlockFetcher,
    BlockFetchService,
    BlocksFetched,
    CertificateRequest,
    CertificatesFetched,
    FetchFailed,
    FetchRequest,
)
from moderntensor.node._journal import ConsensusJournal
from moderntensor.node._pool_service import MempoolService
from moderntensor.node._producer import BlockBuilt, BlockProducer, BuildRequest
from moderntensor.node._ticker import Ticker
from moderntensor.service import ChainService
from moderntensor.state.store import Database

__all__ = ["NodeParts", "assemble_node", "consensus_config_for"]

INBOX_SIZE = 256
DRAFT_BUDGET = 0.3
"""The share of a slot a proposer spends executing its block's transactions (see
``_producer``); hashing the state and the lists comes on top."""
FETCH_QUEUE_SIZE = 16


def consensus_config_for(genesis: Genesis, genesis_hash: bytes) -> ConsensusConfig:
    """The consensus parameters of a network, from its genesis (timeout: two slots)."""
    slot_ms = genesis.consensus.slot_duration_ms
    preset = Preset(
        slot_duration_ms=slot_ms,
        epoch_length=genesis.consensus.epoch_length,
        timeout_ms=max(2 * slot_ms, 200),
        max_validators=genesis.consensus.max_validators,
        evidence_window=max(64, 2 * genesis.consensus.epoch_length),
        max_future_slots=64,
    )
    return ConsensusConfig(genesis.chain_id, genesis_hash, genesis.genesis_time * 1000, preset)


@attrs.define
class NodeParts:
    """One node's objects and the channel ends its tasks use (see the module docstring)."""

    chain: Chain
    config: ConsensusConfig
    pool: Mempool
    service: ChainService
    core: SimplexCore
    protection: SlashingProtection | None
    journal: ConsensusJournal
    chain_lock: trio.CapacityLimiter
    ticker: Ticker
    pool_service: MempoolService
    producer: BlockProducer
    driver: ConsensusDriver
    fetch_service: BlockFetchService | None
    inbox_send: trio.MemorySendChannel[DriverEvent]
    inbox: trio.MemoryReceiveChannel[DriverEvent]
    build_receive: trio.MemoryReceiveChannel[BuildRequest]
    built_send: trio.MemorySendChannel[BlockBuilt]
    heads_receive: trio.MemoryReceiveChannel[Header]
    fetch_receive: trio.MemoryReceiveChannel[FetchRequest | CertificateRequest]
    fetched_send: trio.MemorySendChannel[BlocksFetched | FetchFailed | CertificatesFetched]
    verifier: SignatureVerifier
    """The core's signature cache; the network checks gossiped votes through it, so the
    core finds them recovered already."""


def assemble_node(
    db: Database,
    genesis: Genesis,
    consensus_key: PrivateKey | None,
    *,
    mempool: MempoolConfig | None = None,
    clock: Callable[[], int] = wall_clock_ms,
    fetcher: BlockFetcher | None = None,
    outbound: trio.MemorySendChannel[NetworkMessage] | None = None,
) -> NodeParts:
    """Build a node's parts over an open database (nothing runs yet).

    Raises:
        moderntensor.chain.chain.ChainMismatch: the database holds another chain.
    """
    chain = Chain(db, genesis)
    head = chain.head
    config = consensus_config_for(genesis, chain.genesis_hash)
    pool = Mempool(chain.params, chain.state_at(head), head.base_fee_per_gas, mempool)
    signer = protection = None
    if consensus_key is not None:
        protection = SlashingProtection(DatabaseStore(db), consensus_key.address)
        signer = ProtectedSigner(consensus_key, protection, config.chain_id, config.genesis_hash)
    service = ChainService(chain, pool, client_version=f"moderntensor/v{__version__}")
    journal = ConsensusJournal(db)
    verifier = SignatureVerifier(config.chain_id, config.genesis_hash)
    core = SimplexCore(
        config, [], BlockRef(head.slot, head.hash), signer, verifier,
        finalized_height=head.number, synced=_own_quorum(service, head.number, signer),
        finalization=journal.finalization(head.number),
    )  # fmt: skip
    chain_lock = trio.CapacityLimiter(1)  # chain work: one worker thread at a time
    ticker = Ticker(config, clock)
    inbox_send, inbox = trio.open_memory_channel[DriverEvent](INBOX_SIZE)
    build_send, build_receive = trio.open_memory_channel[BuildRequest](1)
    heads_send, heads_receive = trio.open_memory_channel[Header](4)
    fetch_send, fetch_receive = trio.open_memory_channel[FetchRequest | CertificateRequest](
        FETCH_QUEUE_SIZE
    )
    fetch_service = None
    if fetcher is not None:
        fetch_service = BlockFetchService(chain, journal, chain_lock, fetcher)
    pool_service = MempoolService(chain, pool, service)
    producer = BlockProducer(
        chain, pool, core, chain_lock, pool_service,
        catch_up_s=config.preset.slot_duration_ms / 4000,  # a quarter of a slot at most
        draft_budget_s=config.preset.slot_duration_ms * DRAFT_BUDGET / 1000,
    )  # fmt: skip
    driver = ConsensusDriver(
        chain, service, core, ticker, chain_lock, journal,
        build_requests=build_send, new_heads=heads_send,
        fetch_requests=fetch_send if fetcher is not None else None, outbound=outbound,
        clock=clock,
    )  # fmt: skip
    return NodeParts(
        chain, config, pool, service, core, protection, journal, chain_lock, ticker, pool_service,
        producer, driver, fetch_service, inbox_send, inbox, build_receive,
        inbox_send.clone(), heads_receive, fetch_receive, inbox_send.clone(), verifier,
    )  # fmt: skip


def _own_quorum(service: ChainService, head_number: int, signer: ProtectedSigner | None) -> bool:
    """Whether this validator's own stake is a quorum of its epoch's set (a one-validator dev
    chain): then it knows where the network is without asking anyone (sync before sign)."""
    epoch = compute_block_epoch(head_number + 1, service.chain.params.epoch_length)
    vset = service.validator_set(epoch)
    if signer is None or vset is None:
        return False
    return is_quorum(vset.stake_of(signer.validator_id), vset.total_stake)
