"""Answers to peers' requests, from what this node holds (pure reads, no I/O of its own).

* ``GetStatus``: where the node stands (``ConsensusLink.local_status``);
* ``GetBlock``: an executed (pending) block, else a committed one, else ``NotFound``;
* ``GetCertificates``: the journal's certificates of that round (at most 8);
* ``GetVotes``: the votes of that validator the core holds (the newest 1,024);
* ``GetPeers``: up to 64 known addresses, a random sample.
* ``GetBlockRange``: committed canonical blocks from ``start`` on, each with the finalization
  certificate committed with it (if any), up to the count asked and ``MAX_RANGE_BYTES``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

from moderntensor.chain.blocks import Block, encode_block
from moderntensor.consensus import Certificate
from moderntensor.network._link import ConsensusLink
from moderntensor.network._messages import (
    MAX_CERTIFICATES_REPLY,
    MAX_PEERS_REPLY,
    MAX_RANGE_BYTES,
    MAX_VOTES_REPLY,
    BlockRange,
    BlockReply,
    Certificates,
    GetBlock,
    GetBlockRange,
    GetCertificates,
    GetStatus,
    GetVotes,
    NotFound,
    Peers,
    Request,
    Response,
    Status,
    Votes,
)
from moderntensor.network._multiaddr import Multiaddr

__all__ = ["BlockSource", "answer_request"]


class BlockSource(Protocol):
    """The chain's block reads (``moderntensor.chain.chain.Chain``)."""

    def get_pending(self, block_hash: bytes) -> Any:
        """The executed, uncommitted block (``.block``) with this hash, or None."""

    @property
    def chaindb(self) -> Any:
        """The committed chain (``get_block(hash)``)."""


def get_block(chain: BlockSource, block_hash: bytes) -> Block | None:
    """An executed block, else a committed one."""
    executed = chain.get_pending(block_hash)
    if executed is not None:
        block: Block = executed.block
        return block
    committed: Block | None = chain.chaindb.get_block(block_hash)
    return committed


def block_range(chain: BlockSource, link: ConsensusLink, request: GetBlockRange) -> BlockRange:
    """The committed canonical blocks asked for (see the module docstring)."""
    blocks: list[tuple[Block, Certificate | None]] = []
    size = 0
    for number in range(request.start, request.start + request.count):
        block_hash = chain.chaindb.get_canonical_hash(number)
        block: Block | None = None if block_hash is None else chain.chaindb.get_block(block_hash)
        if block is None:
            break
        size += len(encode_block(block))
        if blocks and size > MAX_RANGE_BYTES:
            break
        blocks.append((block, link.finalization(number)))
    return BlockRange(request.request_id, tuple(blocks))


def answer_request(
    request: Request,
    link: ConsensusLink,
    chain: BlockSource,
    addrs: Sequence[Multiaddr],
    rng: random.Random,
) -> Response:
    """The response to ``request`` (``addrs``: the known addresses, the asker's left out)."""
    rid = request.request_id
    if isinstance(request, GetStatus):
        s = link.local_status()
        return Status(rid, s.head_number, s.head_hash, s.finalized_slot, s.epoch, s.view,
                      s.certified)  # fmt: skip
    if isinstance(request, GetBlock):
        block = get_block(chain, request.block_hash)
        return NotFound(rid) if block is None else BlockReply(rid, block)
    if isinstance(request, GetCertificates):
        certs = link.certificates_of(request.epoch, request.slot)
        return Certificates(rid, tuple(certs[:MAX_CERTIFICATES_REPLY]))
    if isinstance(request, GetBlockRange):
        return block_range(chain, link, request)
    if isinstance(request, GetVotes):
        votes = link.votes_of(request.validator_id)
        return Votes(rid, tuple(votes[-MAX_VOTES_REPLY:]))
    return Peers(rid, tuple(rng.sample(list(addrs), min(len(addrs), MAX_PEERS_REPLY))))
