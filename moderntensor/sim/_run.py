"""One simulation from its settings to its result: the links, the nodes, the faults on their
schedule, transactions, the checks, and a digest of every frame delivered (its time, ends and
bytes; handshake frames, which carry fresh random nonces, are left out)."""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from moderntensor import offload
from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import build_genesis
from moderntensor.chain.staking import get_validators
from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.codec import DecodeError
from moderntensor.crypto import keccak256
from moderntensor.network import MessageType, peek_type
from moderntensor.network.faultrelay import LinkModel
from moderntensor.sim._byzantine import make_actor
from moderntensor.sim._checks import Checker, Violation
from moderntensor.sim._cluster import STAKE, USER_BALANCE, Cluster, SimNode
from moderntensor.sim._network import SimNetwork, link_config
from moderntensor.sim._spec import CrashMode, SimConfig
from moderntensor.sim._speed import shared_recovery
from moderntensor.sim._trio import deterministic_scheduling

__all__ = ["SimResult", "run_simulation", "simulate"]

_HANDSHAKE = (MessageType.HELLO, MessageType.HELLO_ACK)
CHECK_EVERY_S = 0.25
"""Virtual seconds between two passes of the chain checks."""


@attrs.frozen(slots=True, kw_only=True)
class SimResult:
    digest: str
    slots: int
    finalized: int
    """The lowest finalized height among the honest nodes running at the end."""
    views: int
    messages: int
    dropped: int
    evidence: int
    evidence_against: dict[str, int]
    """Validator (0x id) -> evidence items against it in finalized blocks."""
    slashed_by_node: dict[int, int]
    """Node index -> slash fractions its stake lost (from the final state of an honest node:
    0, 1, 2 ... cuts, or -1 if its stake fits no whole number of cuts)."""
    checks: int
    certificates: int
    notarizations: int
    """Honest NOTARIZE votes checked for a well-founded parent (``_founded``)."""
    transactions: int
    """Transactions accepted by a node's pool."""
    finality_by_slot: tuple[int, ...]
    """Per slot, the lowest finalized height among the honest nodes running."""
    violation: str | None
    wall_s: float

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class _Digest:
    def __init__(self) -> None:
        self.value = keccak256(b"moderntensor sim")

    def add(self, at: float, to: int, frm: int, fid: bytes, kind: MessageType | None) -> None:
        """Chain in a frame delivered (``fid``: its keccak256; ``kind``: its type, if any)."""
        if kind in _HANDSHAKE:
            return
        item = b"%d:%d:%d:" % (round(at * 1_000_000), frm, to) + fid
        self.value = keccak256(self.value + item)


def run_simulation(
    config: SimConfig, root: Path, *, progress: Callable[[int, int, int], None] | None = None
) -> SimResult:
    """:func:`simulate` in a fresh Trio run on a mock clock with seeded scheduling.

    Garbage is collected first: objects left by earlier Trio runs in this process (abandoned
    async generators above all) would otherwise be finalized *during* this run -- each node
    collects when it starts -- and their finalizer tasks would shift the schedule, so two runs
    of one seed in a long-lived process (a test session) could differ.
    """
    gc.collect()
    with deterministic_scheduling(config.seed):
        return trio.run(partial(simulate, progress=progress), config, root,
                        clock=trio.testing.MockClock(autojump_threshold=0))  # fmt: skip


async def simulate(
    config: SimConfig, root: Path, *, progress: Callable[[int, int, int], None] | None = None
) -> SimResult:
    """Run ``config`` (on Trio's ``MockClock``: call it inside ``trio.run`` with one) with
    data directories under ``root``; ``progress(slot, finalized, messages)`` once a slot."""
    started = time.monotonic()
    slot_s = config.slot_ms / 1000
    digest = _Digest()
    checker: Checker | None = None

    def slot_now() -> int:
        return int(trio.current_time() // slot_s)

    sides = [(p.start, p.end, p.sides()) for p in config.partitions]

    def cut(a: int, b: int) -> bool:  # on every frame sent: no work that grows with N
        if not sides:
            return False
        slot = slot_now()
        for start, end, side in sides:
            if start <= slot < end and a in side and b in side and side[a] != side[b]:
                return True
        return False

    def observe(at: float, to: int, frm: int, frame: bytes) -> None:
        try:
            kind: MessageType | None = peek_type(frame)
        except DecodeError:
            kind = None
        fid = keccak256(frame)  # once, for the digest and the checks
        digest.add(at, to, frm, fid, kind)
        if checker is not None:
            checker.on_frame(at, to, frm, frame, kind, fid)

    link = link_config(config.latency_ms, config.jitter_ms, config.drop, config.duplicate,
                       config.reorder)  # fmt: skip
    net = SimNetwork(LinkModel(link, config.seed), cut=cut, observe=observe)
    violation: str | None = None
    finality: list[int] = []
    accepted = 0
    cluster: Cluster | None = None
    ids: list[bytes] = []
    views = 0
    slashes: dict[int, int] = {}
    try:
        with offload.inline(), shared_recovery():
            async with trio.open_nursery() as nursery:
                await nursery.start(net.run)
                cluster = Cluster(config, root, net, nursery)
                genesis = cluster.genesis
                ids = [k.address for k in cluster.keys.consensus]
                genesis_hash = _genesis_hash(cluster)
                epoch_length = genesis.consensus.epoch_length
                honest = frozenset(ids[n.index] for n in cluster.honest)
                checker = Checker(genesis.chain_id, genesis_hash, epoch_length,
                                  dict.fromkeys(ids, STAKE), honest)  # fmt: skip
                net.on_send = checker.on_send
                for node in cluster.nodes:
                    behaviour = config.behaviour_of(node.index)
                    if behaviour is None or behaviour == "doppelganger":
                        continue  # honest, a twin, or a doppelganger: no actor between
                    net.tamper[node.index] = make_actor(
                        behaviour, cluster.keys.consensus[node.index], genesis.chain_id,
                        genesis_hash, epoch_length, config.validators,
                        chain=partial(_chain_of, node),
                    )  # fmt: skip
                for node in cluster.nodes:
                    await cluster.start(node)
                accepted = await _drive(config, cluster, checker, finality, progress)
                slashes = _slashes(cluster)
                views = max((n.handle.driver.core.view for n in cluster.live() if n.handle),
                            default=0)  # fmt: skip
                nursery.cancel_scope.cancel()
    except* Violation as group:
        violation = str(group.exceptions[0])
    assert cluster is not None and checker is not None
    return SimResult(
        digest="0x" + digest.value.hex(),
        slots=config.slots,
        finalized=finality[-1] if finality else 0,
        views=views,
        messages=net.delivered,
        dropped=net.dropped,
        evidence=sum(checker.evidence_count.values()),
        evidence_against={"0x" + v.hex(): n for v, n in sorted(checker.evidence_count.items())},
        slashed_by_node=slashes,
        checks=checker.checks,
        certificates=checker.certificates,
        notarizations=checker.foundation.notarizations,
        transactions=accepted,
        finality_by_slot=tuple(finality),
        violation=violation,
        wall_s=round(time.monotonic() - started, 2),
    )


def _chain_of(node: SimNode) -> Chain | None:
    return None if node.handle is None else node.handle.chain


def _genesis_hash(cluster: Cluster) -> bytes:
    block, _commit = build_genesis(cluster.genesis)
    return block.hash


async def _drive(
    config: SimConfig, cluster: Cluster, checker: Checker, finality: list[int],
    progress: Callable[[int, int, int], None] | None,
) -> int:  # fmt: skip
    """Step through the slots: faults on schedule, transactions, the chain checks."""
    slot_s = config.slot_ms / 1000
    rng = random.Random(config.seed ^ 0x5EED)
    checked = dict.fromkeys(range(config.validators), 0)
    backups: dict[int, Path] = {}
    nonces = [0] * len(cluster.keys.users)
    accepted = 0
    tx_carry = 0.0
    for slot in range(config.slots):
        for crash in config.crashes:
            node = cluster.nodes[crash.node]
            if crash.slot == slot and node.handle is not None:
                if crash.mode is CrashMode.RESTORE_BACKUP:
                    backups[crash.node] = cluster.backup(node)
                await cluster.crash(node)
            if crash.restart == slot and node.handle is None:
                await cluster.restart(node, crash.mode, backups.get(crash.node))
        tx_carry += config.tx_rate * slot_s
        while tx_carry >= 1:
            tx_carry -= 1
            live = [n for n in cluster.honest if n.handle is not None]
            if not live:
                break
            u = rng.randrange(len(nonces))
            raw = _transfer(cluster, u, nonces[u], rng.randrange(len(nonces)))
            target = live[rng.randrange(len(live))]
            assert target.handle is not None
            results = await target.handle.service.submit_raw_transactions([raw])
            if results and not isinstance(results[0], Exception):
                nonces[u] += 1
                accepted += 1
        end = (slot + 1) * slot_s
        feed = [cluster.nodes[v] for v in config.doppelgangers()]
        while trio.current_time() < end:
            await trio.sleep_until(min(end, trio.current_time() + CHECK_EVERY_S))
            _check_chains(cluster, checker, checked)
            if feed and trio.current_time() >= end - slot_s / 2:
                accepted += await _feed(cluster, feed, nonces, slot)
                feed = []
        live = [n for n in cluster.honest if n.handle is not None]
        low = min((n.handle.service.finalized.number for n in live if n.handle), default=0)
        finality.append(low)
        if progress is not None:
            progress(slot, low, cluster.net.delivered)
    checker.raise_failed()
    for node in cluster.honest:
        if node.handle is not None:
            state = node.handle.service.state_at(node.handle.service.finalized)
            accounts = [k.address for k in cluster.keys.users]
            accounts += [k.address for k in cluster.keys.owners]
            accounts += [k.address for k in cluster.keys.consensus]
            checker.check_supply(node.index, state, _genesis_amount(cluster), accounts)
    return accepted


async def _feed(cluster: Cluster, nodes: list[SimNode], nonces: list[int], slot: int) -> int:
    """Mid-slot, a transfer into each doppelganger's pool (its twin's refuses it): when the
    validator leads the next slot, its two nodes build two different blocks."""
    accepted = 0
    for node in nodes:
        if node.handle is None:
            continue
        u = slot % len(nonces)
        raw = _transfer(cluster, u, nonces[u], (u + 1) % len(nonces))
        results = await node.handle.service.submit_raw_transactions([raw])
        if results and not isinstance(results[0], Exception):
            nonces[u] += 1
            accepted += 1
    return accepted


def _check_chains(cluster: Cluster, checker: Checker, checked: dict[int, int]) -> None:
    for node in cluster.honest:
        handle = node.handle
        if handle is None:
            continue
        top = handle.service.finalized.number
        chaindb = handle.chain.chaindb
        for height in range(min(checked[node.index], top) + 1, top + 1):
            block_hash = chaindb.get_canonical_hash(height)
            block = None if block_hash is None else chaindb.get_block(block_hash)
            if block is None:
                raise Violation(f"node {node.index} has no block at finalized height {height}")
            checker.on_final(node.index, height, block)
        checked[node.index] = top


def _slashes(cluster: Cluster) -> dict[int, int]:
    """Per validator, how many slash fractions its stake lost (read at an honest node)."""
    node = next((n for n in cluster.honest if n.handle is not None), None)
    if node is None or node.handle is None:
        return {}
    state = node.handle.service.state_at(node.handle.service.finalized)
    bps = cluster.genesis.params.slash_fraction_bps
    index = {k.address: i for i, k in enumerate(cluster.keys.owners)}
    out: dict[int, int] = {}
    for record in get_validators(state):
        stake, cuts = STAKE, 0
        while stake > record.stake + record.unbonding:
            stake -= stake * bps // 10_000
            cuts += 1
        if cuts:
            out[index[record.address]] = cuts if stake == record.stake + record.unbonding else -1
    return out


def _genesis_amount(cluster: Cluster) -> int:
    return len(cluster.keys.users) * USER_BALANCE + len(cluster.keys.owners) * STAKE


def _transfer(cluster: Cluster, sender: int, nonce: int, to: int) -> bytes:
    tx = DynamicFeeTransaction(
        chain_id=cluster.genesis.chain_id, nonce=nonce, max_priority_fee_per_gas=10**9,
        max_fee_per_gas=10 * 10**9, gas=21_000, to=cluster.keys.users[to].address,
        value=1_000 + nonce, data=b"",
    )  # fmt: skip
    return sign_transaction(tx, cluster.keys.users[sender]).raw
