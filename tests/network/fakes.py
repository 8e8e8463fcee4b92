"""Fakes for network tests: the node's consensus side (:class:`FakeLink`), a chain service
with a block store and a pool (:class:`FakeService`), and a mesh of network services over a
:class:`~moderntensor.network.MemoryNetwork` (:func:`running_mesh`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from moderntensor.chain.blocks import Block
from moderntensor.chain.transactions import Transaction, decode_transaction
from moderntensor.chain.votes import SignedVote
from moderntensor.consensus import Certificate, Round
from moderntensor.network import (
    ConsensusMessage,
    GossipVerdict,
    LocalStatus,
    MemoryNetwork,
    Multiaddr,
    NetworkConfig,
    NetworkService,
    make_multiaddr,
)
from tests.network.helpers import NODE_KEYS, STATUS, identity


class FakeLink:
    """Records what the network hands the node; answers from fixed data."""

    def __init__(self, validator_id: bytes | None = None, status: LocalStatus = STATUS) -> None:
        self.validator_id = validator_id
        self.status = status
        self.delivered: list[ConsensusMessage] = []
        self.statuses: list[tuple[Round | None, tuple[SignedVote, ...]]] = []
        self.votes: dict[bytes, list[SignedVote]] = {}
        self.certificates: dict[Round, list[Certificate]] = {}
        self.finalizations: dict[int, Certificate] = {}
        self.gate: trio.Event | None = None  # when set: deliver waits for it (a busy driver)
        self.verdicts: dict[str, tuple[GossipVerdict, str]] = {}  # by message class name

    def local_status(self) -> LocalStatus:
        return self.status

    def clock_slot(self) -> int:
        return self.status.view

    def votes_of(self, validator_id: bytes) -> Sequence[SignedVote]:
        return self.votes.get(validator_id, [])

    def certificates_of(self, epoch: int, slot: int) -> Sequence[Certificate]:
        return self.certificates.get((epoch, slot), [])

    def finalization(self, number: int) -> Certificate | None:
        return self.finalizations.get(number)

    def screen(self, message: ConsensusMessage) -> tuple[GossipVerdict, str]:
        return self.verdicts.get(type(message).__name__, (GossipVerdict.ACCEPT, ""))

    async def deliver(self, message: ConsensusMessage) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.delivered.append(message)

    async def peer_status(self, certified: Round | None, own_votes: tuple[SignedVote, ...]) -> None:
        self.statuses.append((certified, own_votes))


@attrs.define
class _Executed:
    block: Block


class FakeService:
    """The parts of ChainService the network uses."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, Block] = {}
        self.pending: dict[bytes, Block] = {}
        self.txs: dict[bytes, Transaction] = {}
        self.submitted: list[list[bytes]] = []
        self._subscribers: list[trio.MemorySendChannel[bytes]] = []
        self.chain = self
        self.chaindb = self
        self.pool = self

    # chain / chaindb / pool
    def get_pending(self, block_hash: bytes) -> _Executed | None:
        block = self.pending.get(block_hash)
        return None if block is None else _Executed(block)

    def get_block(self, block_hash: bytes) -> Block | None:
        return self.blocks.get(block_hash)

    def get_canonical_hash(self, number: int) -> bytes | None:
        for block in self.blocks.values():
            if block.number == number:
                return block.hash
        return None

    def get(self, tx_hash: bytes) -> Transaction | None:
        return self.txs.get(tx_hash)

    # service
    def subscribe_pending_transactions(self, buffer: int = 256) -> Any:
        send, receive = trio.open_memory_channel[bytes](buffer)
        self._subscribers.append(send)
        return receive

    def admit(self, tx: Transaction) -> bool:
        if tx.hash in self.txs:
            return False
        self.txs[tx.hash] = tx
        for channel in self._subscribers:
            channel.send_nowait(tx.hash)
        return True

    async def submit_raw_transactions(self, raws: Sequence[bytes]) -> list[object]:
        """Like ChainService's: per transaction its hash, or why it was refused."""
        self.submitted.append(list(raws))
        out: list[object] = []
        for raw in raws:
            tx = decode_transaction(raw)
            out.append(tx.hash if self.admit(tx) else ValueError("already known"))
        return out


@attrs.define
class Node:
    index: int
    service: NetworkService
    link: FakeLink
    chain: FakeService
    outbound: trio.MemorySendChannel[ConsensusMessage]
    scope: trio.CancelScope

    @property
    def addr(self) -> Multiaddr:
        return address(self.index)

    def connected(self) -> set[int]:
        ids = {k.public_key_bytes.hex(): i for i, k in enumerate(NODE_KEYS)}
        return {ids[pid] for pid in self.service.peers.peers}


def address(i: int) -> Multiaddr:
    return make_multiaddr(f"10.0.0.{i}", 30303, NODE_KEYS[i].public_key_bytes.hex())


def config(**changes: Any) -> NetworkConfig:
    base = NetworkConfig(listen_addr="", port=30303, request_timeout_s=1.0, seen_ttl_s=1.0)
    return attrs.evolve(base, **changes)


@asynccontextmanager
async def running_mesh(
    n: int,
    bootstrap: Callable[[int], list[int]],
    *,
    net: MemoryNetwork | None = None,
    links: list[FakeLink] | None = None,
    **changes: Any,
) -> AsyncIterator[list[Node]]:
    """Start ``n`` services (node i at 10.0.0.i:30303), node i dialing ``bootstrap(i)``."""
    net = net or MemoryNetwork()
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        for i in range(n):
            link = links[i] if links else FakeLink()
            chain = FakeService()
            cfg = config(
                listen_addr=f"10.0.0.{i}",
                bootstrap=tuple(address(j) for j in bootstrap(i)), **changes,
            )  # fmt: skip
            service = NetworkService(
                cfg, identity(i), chain, link,  # type: ignore[arg-type]
                transport=net.transport(f"10.0.0.{i}"),
            )  # fmt: skip
            send, receive = trio.open_memory_channel[ConsensusMessage](64)
            scope = trio.CancelScope()

            async def run(
                service: NetworkService = service,
                receive: Any = receive,
                scope: trio.CancelScope = scope,
                *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                with scope:
                    await service.run(receive, task_status=task_status)

            await nursery.start(run)
            nodes.append(Node(i, service, link, chain, send, scope))
        yield nodes
        nursery.cancel_scope.cancel()


async def wait_until(done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``done`` (virtual time with the autojump clock); fail after ``timeout_s``."""
    with trio.fail_after(timeout_s):
        while not done():
            await trio.sleep(0.01)
