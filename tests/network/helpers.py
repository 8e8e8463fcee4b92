"""Shared builders for the network tests: keys, identities, statuses, signed objects."""

from __future__ import annotations

import attrs

from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.votes import SignedVote, VoteKind, sign_vote
from moderntensor.crypto import PrivateKey, keccak256
from moderntensor.network import ChainIdentity, LocalStatus

CHAIN_ID = 1337
GENESIS = b"\x11" * 32
NODE_KEYS = [PrivateKey(keccak256(b"node key %d" % i)) for i in range(8)]
CONSENSUS_KEY = PrivateKey(keccak256(b"consensus key"))
STATUS = LocalStatus(7, b"\x22" * 32, 12, 1, 13, (1, 12))


def identity(i: int = 0, **changes: object) -> ChainIdentity:
    return attrs.evolve(ChainIdentity(NODE_KEYS[i], CHAIN_ID, GENESIS), **changes)


def vote(kind: VoteKind = VoteKind.NOTARIZE, slot: int = 5, epoch: int = 1) -> SignedVote:
    block_hash = bytes(32) if kind is VoteKind.NULLIFY else b"\x33" * 32
    return sign_vote(CONSENSUS_KEY, CHAIN_ID, GENESIS, kind, epoch, slot, block_hash)


def signed_block(number: int = 3, slot: int = 9, key: PrivateKey = CONSENSUS_KEY) -> Block:
    """A block whose header carries a real proposer signature over its seal hash."""
    header = Header(
        parent_hash=b"\x01" * 32, coinbase=b"\x02" * 20, state_root=b"\x03" * 32,
        transactions_root=b"\x04" * 32, receipts_root=b"\x05" * 32, number=number,
        gas_limit=30_000_000, gas_used=0, timestamp=1_700_000_000 + slot,
        base_fee_per_gas=10**9, slot=slot, proposer=key.address,
    )  # fmt: skip
    sig = key.sign(header.seal_hash).to_bytes()
    return Block(attrs.evolve(header, proposer_signature=sig), (), ())
