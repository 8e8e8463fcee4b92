"""``bench_net.py gossip``: two nodes' NetworkService joined by a real trio-websocket
connection on 127.0.0.1, in one process; one side pushes gossip, the other counts what it
delivers.

* votes: signed NOTARIZE votes through the sender's outbound channel (the driver's path:
  encode, mark seen, copy to the peer's queue); the receiver checks each signature (the
  network recovers every vote's signer before relaying it) and hands it to its link, which
  counts it (no consensus core behind it: this is the network's own rate).
* transaction batches: frames of up to 1,024 pre-signed transfers (``build_tx_frames``, what
  ``_gossip_transactions`` sends) put on the peer's queue; the receiver decodes them,
  recovers every sender (worker thread) and admits them to a real mempool
  (``ChainService.submit_raw_transactions``), so a batch counts once admitted.

* copies: the same transfers once more in differently cut batches, as a node gets them
  again from the other peers that relay them, all already in the receiver's pool: the CPU
  time (this process, both sides) per transfer.

The sender keeps at most a window of messages in flight (sent, not yet delivered): a peer's
queue drops frames beyond ``peer_queue``, so an open-loop sender would measure drops. The
per-peer frame rate limit (2,000 frames/s by default, ``max_frames_per_s``) is raised here:
the point is the capacity, not the policy.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from _bench_net_common import print_table, sender_key, sign_transfers

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import Genesis, parse_genesis
from moderntensor.chain.votes import SignedVote, VoteKind, sign_vote
from moderntensor.consensus import Round
from moderntensor.crypto import PrivateKey, checksum_address, keccak256
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.network import (
    ChainIdentity,
    ConsensusMessage,
    GossipVerdict,
    LocalStatus,
    NetworkConfig,
    NetworkService,
    make_multiaddr,
)
from moderntensor.network._gossip import build_tx_frames
from moderntensor.node.devnet import dev_genesis_doc, dev_keys
from moderntensor.service import ChainService
from moderntensor.state.store import Database

VOTE_WINDOW = 512
TX_FRAME_WINDOW = 4


class CountingLink:
    """A ConsensusLink that counts deliveries (its view is far ahead: no vote is 'future')."""

    validator_id = None

    def __init__(self, genesis_hash: bytes) -> None:
        self.status = LocalStatus(0, genesis_hash, 0, 0, 2**62, None)
        self.delivered = 0
        self.changed = trio.Event()

    def local_status(self) -> LocalStatus:
        return self.status

    def clock_slot(self) -> int:
        return self.status.view

    def screen(self, message: ConsensusMessage) -> tuple[GossipVerdict, str]:
        return GossipVerdict.ACCEPT, ""  # the consensus core's checks are not measured here

    def votes_of(self, validator_id: bytes) -> list[SignedVote]:
        return []

    def certificates_of(self, epoch: int, slot: int) -> list[Any]:
        return []

    def finalization(self, number: int) -> None:
        return None

    async def deliver(self, message: ConsensusMessage) -> None:
        self.delivered += 1
        self.changed.set()

    async def peer_status(self, certified: Round | None, own_votes: tuple[SignedVote, ...]) -> None:
        return None


class Side:
    """One node's network over its own RocksDB, chain and mempool."""

    def __init__(self, root: Path, genesis: Genesis, key: PrivateKey, pool_size: int) -> None:
        self.db = Database.open(root / "chaindb")
        self.chain = Chain(self.db, genesis)
        head = self.chain.head
        limits = MempoolConfig(global_slots=pool_size, account_slots=pool_size)
        pool = Mempool(self.chain.params, self.chain.state_at(head), head.base_fee_per_gas, limits)
        self.service = ChainService(self.chain, pool, client_version="bench")
        self.link = CountingLink(self.chain.genesis_hash)
        self.identity = ChainIdentity(key, genesis.chain_id, self.chain.genesis_hash)
        self.key = key
        self.admitted_txs = self.tx_frames = 0
        submit = self.service.submit_raw_transactions

        async def counting_submit(raws: Any) -> Any:
            result = await submit(raws)
            self.tx_frames += 1
            self.admitted_txs += sum(isinstance(r, bytes) for r in result)
            self.link.changed.set()
            return result

        self.service.submit_raw_transactions = counting_submit  # type: ignore[method-assign]

    def network(self, bootstrap: list[Any]) -> NetworkService:
        config = NetworkConfig(listen_addr="127.0.0.1", port=0, bootstrap=tuple(bootstrap),
                               max_frames_per_s=1e9, frame_burst=1e9, seen_ttl_s=60.0,
                               discover=False)  # fmt: skip
        return NetworkService(config, self.identity, self.service, self.link)


async def _wait(link: CountingLink, done: Any, deadline: float) -> None:
    while not done():
        if trio.current_time() > deadline:
            raise TimeoutError("gossip bench: timed out")
        link.changed = trio.Event()
        with trio.move_on_after(0.5):
            await link.changed.wait()


async def run(args: Any) -> dict[str, Any]:
    keys = dev_keys()
    senders = [sender_key(i) for i in range(args.senders)]
    doc = dev_genesis_doc(int(time.time()), 1.0, keys)
    for k in senders:
        doc["alloc"][checksum_address(k.address)] = {"balance": str(10**21)}
    genesis = parse_genesis(doc, "bench genesis")
    per_sender = -(-args.txs // args.senders)
    t0 = time.perf_counter()
    raws = [raw for row in sign_transfers(genesis.chain_id, senders, per_sender)
            for raw in row][: args.txs]  # fmt: skip
    voter = PrivateKey(keccak256(b"bench-net-voter"))
    sign_s = time.perf_counter() - t0
    print(f"signed {len(raws)} transfers in {sign_s:.1f} s", flush=True)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mt-bench-gossip-") as tmp:
        a = Side(Path(tmp) / "a", genesis, PrivateKey(keccak256(b"bench-net-a")), len(raws) + 1)
        b = Side(Path(tmp) / "b", genesis, PrivateKey(keccak256(b"bench-net-b")), len(raws) + 1)
        votes = [sign_vote(voter, genesis.chain_id, a.chain.genesis_hash, VoteKind.NOTARIZE, 0,
                           i + 1, keccak256(i.to_bytes(8, "big")))
                 for i in range(args.votes)]  # fmt: skip
        try:
            async with trio.open_nursery() as nursery:
                net_a = a.network([])
                out_send, out_receive = trio.open_memory_channel[ConsensusMessage](1024)
                port = await nursery.start(net_a.run, out_receive)
                addr = make_multiaddr("127.0.0.1", port, a.key.public_key_bytes.hex())
                net_b = b.network([addr])
                _, idle = trio.open_memory_channel[ConsensusMessage](0)
                await nursery.start(net_b.run, idle)
                deadline = trio.current_time() + 10
                while not (len(net_a.peers) and len(net_b.peers)):
                    assert trio.current_time() < deadline, "the two nodes did not connect"
                    await trio.sleep(0.01)
                deadline = trio.current_time() + args.timeout
                # votes, closed loop
                start = trio.current_time()
                for i, v in enumerate(votes):
                    while i - b.link.delivered >= VOTE_WINDOW:
                        await _wait(b.link, lambda i=i: i - b.link.delivered < VOTE_WINDOW,
                                    deadline)  # fmt: skip
                    await out_send.send(v)
                await _wait(b.link, lambda: b.link.delivered >= len(votes), deadline)
                vote_s = trio.current_time() - start
                out["votes"] = len(votes)
                out["votes_per_s"] = len(votes) / vote_s
                # transaction batches, closed loop
                frames = build_tx_frames(raws)
                peer = next(iter(net_a.peers.peers.values()))
                start = trio.current_time()
                for i, frame in enumerate(frames):
                    if i - b.tx_frames >= TX_FRAME_WINDOW:
                        await _wait(b.link, lambda i=i: i - b.tx_frames < TX_FRAME_WINDOW,
                                    deadline)  # fmt: skip
                    peer.send_nowait(frame)
                await _wait(b.link, lambda: b.tx_frames >= len(frames), deadline)
                tx_s = trio.current_time() - start
                out["tx_frames"] = len(frames)
                out["tx_frame_bytes"] = sum(map(len, frames)) // len(frames)
                out["tx_frames_per_s"] = len(frames) / tx_s
                out["txs_admitted"] = b.admitted_txs
                out["txs_per_s"] = b.admitted_txs / tx_s
                # copies: the same transfers again, batched differently (as other peers' relays
                # come), every one already in the receiver's pool; CPU time of this process
                half = min(512, len(raws) // 2)
                copies = build_tx_frames(raws[half:] + raws[:half])
                base = net_b.received
                cpu0 = time.process_time()
                start = trio.current_time()
                for i, frame in enumerate(copies):
                    while net_b.received - base < i - TX_FRAME_WINDOW:
                        await trio.sleep(0.001)
                    peer.send_nowait(frame)
                while net_b.received - base < len(copies) or getattr(net_b, "_tx_queued_bytes", 0):
                    assert trio.current_time() < deadline, "gossip bench: copies timed out"
                    await trio.sleep(0.001)
                await trio.sleep(0.05)  # the last frame's handling
                out["copy_cpu_us"] = (time.process_time() - cpu0) / len(raws) * 1e6
                out["copy_s"] = trio.current_time() - start
                out["dropped"] = peer.dropped
                nursery.cancel_scope.cancel()
        finally:
            a.db.close()
            b.db.close()
    return out


def report(result: dict[str, Any]) -> None:
    print_table("gossip between two nodes (trio-websocket, 127.0.0.1, one process)", [
        ("votes pushed", result["votes"]),
        ("votes delivered/s (signature checked)", result["votes_per_s"]),
        ("tx batch frames pushed", result["tx_frames"]),
        ("bytes per frame", result["tx_frame_bytes"]),
        ("tx batch frames delivered/s", result["tx_frames_per_s"]),
        ("transfers admitted", result["txs_admitted"]),
        ("transfers admitted/s (decode, recover, mempool)", result["txs_per_s"]),
        ("copies: CPU per transfer already held (us, both sides)", result["copy_cpu_us"]),
        ("frames dropped at the sender's queue", result["dropped"]),
    ])  # fmt: skip
