"""Benchmark the pure consensus core (no network): votes verified/s and slots finalized/s.

    python scripts/bench_consensus.py [--sizes 4,32,100] [--slots N]

Three figures per validator count n:

* ``verify/s``: signer recoveries per second through :class:`SignatureVerifier` (cache misses).
* ``node slots/s``: one node's core fed every vote of a slot (n NOTARIZE + n FINALIZE from
  distinct validators, all fresh signatures) until it finalizes: the per-node ceiling.
* ``network slots/s``: n validator cores in one process on a FIFO in-memory network, sharing
  one signature cache (each signature recovered once per process), end to end including
  proposals, block verdicts, certificates and their re-broadcast.
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import attrs

from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.chain.votes import SignedVote, VoteKind, sign_vote
from moderntensor.consensus import (
    MINIMAL,
    BlockRef,
    Broadcast,
    BuildBlock,
    Certificate,
    ConsensusConfig,
    ExecuteBlock,
    Finalized,
    MemoryStore,
    Proposal,
    ProtectedSigner,
    SignatureVerifier,
    SimplexCore,
    SlashingProtection,
    Verdict,
    compute_block_epoch,
    compute_validator_set,
)
from moderntensor.crypto import PrivateKey, keccak256

CHAIN_ID = 1
GENESIS = BlockRef(0, keccak256(b"bench genesis"))
CONFIG = ConsensusConfig(CHAIN_ID, GENESIS.hash, 0, MINIMAL)
# One epoch for the single-node figure: an observer fed only votes never sees block heights.
ONE_EPOCH = ConsensusConfig(CHAIN_ID, GENESIS.hash, 0, attrs.evolve(MINIMAL, epoch_length=10**6))


def keys(n: int) -> list[PrivateKey]:
    return [PrivateKey(keccak256(b"bench key %d" % i)) for i in range(n)]


def validator_sets(ks: list[PrivateKey], epochs: int):  # type: ignore[no-untyped-def]
    records = [ValidatorRecord(k.address, k.public_key_bytes, 100 + i) for i, k in enumerate(ks)]
    return [
        compute_validator_set(records, e, keccak256(b"seed %d" % e), 1_000) for e in range(epochs)
    ]


def bench_verify(n_votes: int) -> float:
    k = keys(1)[0]
    votes = [
        sign_vote(k, CHAIN_ID, GENESIS.hash, VoteKind.NOTARIZE, 0, s, keccak256(b"%d" % s))
        for s in range(n_votes)
    ]
    verifier = SignatureVerifier(CHAIN_ID, GENESIS.hash)
    start = time.perf_counter()
    for v in votes:
        verifier.signer_of(v)
    return n_votes / (time.perf_counter() - start)


def bench_node(n: int, slots: int) -> float:
    """One observer core, fed n NOTARIZE then n FINALIZE votes per slot (fresh signatures)."""
    ks = keys(n)
    sets = validator_sets(ks, 1)
    verifier = SignatureVerifier(CHAIN_ID, GENESIS.hash)
    core = SimplexCore(ONE_EPOCH, sets, GENESIS, None, verifier)
    messages: list[SignedVote] = []
    for slot in range(1, slots + 1):
        h = keccak256(b"block %d" % slot)
        for kind in (VoteKind.NOTARIZE, VoteKind.FINALIZE):
            messages += [sign_vote(k, CHAIN_ID, GENESIS.hash, kind, 0, slot, h) for k in ks]
    start = time.perf_counter()
    for vote in messages:
        core.on_vote(vote, 0)
    elapsed = time.perf_counter() - start
    if core.finalized.slot != slots:
        raise SystemExit(f"bench_node: finalized {core.finalized.slot}, expected {slots}")
    return slots / elapsed


def bench_network(n: int, slots: int) -> tuple[float, int]:
    ks = keys(n)
    by_id = {k.address: k for k in ks}
    sets = validator_sets(ks, slots // MINIMAL.epoch_length + 3)
    verifier = SignatureVerifier(CHAIN_ID, GENESIS.hash)
    cores = {}
    heights = {GENESIS.hash: 0}
    for k in ks:
        signer = ProtectedSigner(
            k, SlashingProtection(MemoryStore(), k.address), CHAIN_ID, GENESIS.hash
        )
        cores[k.address] = SimplexCore(CONFIG, sets, GENESIS, signer, verifier, synced=True)
    queue: deque[tuple[bytes, object]] = deque()
    finalized = dict.fromkeys(cores, 0)
    deliveries = 0

    def handle(vid: bytes, actions: list[object], now: int) -> None:
        core = cores[vid]
        for action in actions:
            if isinstance(action, Broadcast):
                for other in cores:
                    if other != vid:
                        queue.append((other, action.message))
            elif isinstance(action, ExecuteBlock):
                queue.append((vid, ("verdict", action.proposal.block_hash)))
            elif isinstance(action, BuildBlock):
                height = heights[action.parent.hash] + 1
                assert compute_block_epoch(height, MINIMAL.epoch_length) == action.epoch
                zero = b"\x00" * 32
                header = Header(
                    action.parent.hash, by_id[vid].address, zero, zero, zero, height,
                    30_000_000, 0, action.slot, 0, action.slot, vid,
                )  # fmt: skip
                vote = core.sign_proposal(action.slot, header.seal_hash)
                block = Block(attrs.evolve(header, proposer_signature=vote.signature.to_bytes()))
                heights[block.hash] = height
                proposal = Proposal(block)
                for other in cores:
                    queue.append((other, proposal))
            elif isinstance(action, Finalized):
                finalized[vid] = heights[action.block.hash]

    start = time.perf_counter()
    now = 0
    for vid, core in cores.items():
        handle(vid, core.start(now), now)
    for _ in range(slots):
        now += MINIMAL.slot_duration_ms
        for vid, core in cores.items():
            handle(vid, core.on_tick(now), now)
        while queue:
            vid, message = queue.popleft()
            deliveries += 1
            core = cores[vid]
            if isinstance(message, Proposal):
                handle(vid, core.on_proposal(message, now), now)
            elif isinstance(message, SignedVote):
                handle(vid, core.on_vote(message, now), now)
            elif isinstance(message, Certificate):
                handle(vid, core.on_certificate(message, now), now)
            else:
                verdict = core.on_verdict(message[1], Verdict.VALID, now)  # type: ignore[index]
                handle(vid, verdict, now)
    elapsed = time.perf_counter() - start
    done = min(finalized.values())  # heights: one block per slot on this perfect network
    if done < slots:
        raise SystemExit(f"bench_network: only {done} of {slots} slots finalized")
    return done / elapsed, deliveries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4,32,100")
    parser.add_argument("--slots", type=int, default=0, help="slots per run (0: by size)")
    args = parser.parse_args()
    print(f"signer recovery: {bench_verify(3_000):,.0f} verify/s (one core, cache misses)")
    print(
        f"{'n':>4} {'node slots/s':>13} {'node votes/s':>13} {'net slots/s':>12} {'deliveries':>11}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        slots = args.slots or max(4, 400 // n)
        node = bench_node(n, slots)
        net, deliveries = bench_network(n, max(3, slots // 2))
        print(f"{n:>4} {node:>13,.1f} {node * 2 * n:>13,.0f} {net:>12,.2f} {deliveries:>11,}")


if __name__ == "__main__":
    main()
