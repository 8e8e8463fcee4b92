"""The wire format: every message round-trips, the decoder is total, caps and trailing bytes
are rejected, and a proposal is always built from its block."""

from __future__ import annotations

import contextlib

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain.blocks import MAX_BLOCK_SIZE, encode_block
from moderntensor.chain.votes import Evidence, VoteKind
from moderntensor.codec import DecodeError, encode_rlp, encode_uint
from moderntensor.consensus import Certificate, Proposal, build_certificate
from moderntensor.crypto import keccak256
from moderntensor.network import (
    MAX_FRAME_SIZE,
    MAX_RANGE_BLOCKS,
    BlockRange,
    BlockReply,
    Certificates,
    Disconnect,
    DisconnectReason,
    GetBlock,
    GetBlockRange,
    GetCertificates,
    GetPeers,
    GetStatus,
    GetVotes,
    Hello,
    HelloAck,
    MessageType,
    NotFound,
    Peers,
    Status,
    Transactions,
    Votes,
    WireMessage,
    decode_message,
    encode_message,
    make_multiaddr,
    peek_type,
)
from moderntensor.network._gossip import build_tx_frames
from moderntensor.network._messages import MAX_SIZES, MAX_TX_BATCH
from tests.factories import USERS, transfer
from tests.network.helpers import CONSENSUS_KEY, GENESIS, NODE_KEYS, signed_block, vote

u64 = st.integers(0, 2**64 - 1)
h32 = st.binary(min_size=32, max_size=32)
rids = u64

VOTES = [vote(k, slot=s) for k in (VoteKind.NOTARIZE, VoteKind.NULLIFY) for s in (1, 2)]
BLOCK = signed_block()
CERT = build_certificate(VoteKind.NOTARIZE, 1, 5, b"\x33" * 32, [vote(VoteKind.NOTARIZE)])
EVIDENCE = Evidence(vote(VoteKind.NULLIFY), vote(VoteKind.FINALIZE))
ADDR = make_multiaddr("127.0.0.1", 30303, NODE_KEYS[1].public_key_bytes.hex())
TX = transfer(USERS[0], 0, USERS[1].address, 1).raw

hellos = st.builds(
    Hello, version=st.integers(0, 2**32 - 1), chain_id=u64, genesis_hash=h32,
    public_key=st.sampled_from([k.public_key_bytes for k in NODE_KEYS]),
    nonce=h32, listen_port=st.integers(0, 65535), head_number=u64, head_hash=h32,
    finalized_slot=u64, epoch=u64, view=u64,
)  # fmt: skip
rounds = st.one_of(st.none(), st.tuples(u64, u64))
messages: st.SearchStrategy[WireMessage] = st.one_of(
    hellos,
    st.builds(HelloAck, st.just(NODE_KEYS[0].sign(b"\x44" * 32))),
    st.builds(Disconnect, st.sampled_from(DisconnectReason)),
    st.builds(GetStatus, rids),
    st.builds(Status, rids, u64, h32, u64, u64, u64, rounds),
    st.builds(Transactions, st.lists(st.just(TX), max_size=3).map(tuple)),
    st.just(Proposal(BLOCK)),
    st.builds(
        lambda slot: Proposal.repropose(
            BLOCK, slot, CONSENSUS_KEY.address, CONSENSUS_KEY.sign(b"\x55" * 32)
        ),
        st.integers(BLOCK.header.slot + 1, 2**64 - 1),
    ),
    st.sampled_from(VOTES),
    st.just(CERT),
    st.just(EVIDENCE),
    st.builds(GetBlock, rids, h32),
    st.builds(BlockReply, rids, st.just(BLOCK)),
    st.builds(NotFound, rids),
    st.builds(GetCertificates, rids, u64, u64),
    st.builds(Certificates, rids, st.lists(st.just(CERT), max_size=3).map(tuple)),
    st.builds(GetVotes, rids, st.binary(min_size=20, max_size=20)),
    st.builds(Votes, rids, st.lists(st.sampled_from(VOTES), max_size=4).map(tuple)),
    st.builds(GetPeers, rids),
    st.builds(Peers, rids, st.lists(st.just(ADDR), max_size=3).map(tuple)),
    st.builds(GetBlockRange, rids, u64, st.integers(1, MAX_RANGE_BLOCKS)),
    st.builds(
        BlockRange,
        rids,
        st.lists(st.tuples(st.just(BLOCK), st.sampled_from([None, CERT])), max_size=3).map(tuple),
    ),
)


@given(messages)
def test_every_message_round_trips(message: WireMessage) -> None:
    frame = encode_message(message)
    assert decode_message(frame) == message
    assert len(frame) <= MAX_SIZES[peek_type(frame)] <= MAX_FRAME_SIZE
    assert encode_message(decode_message(frame)) == frame  # one encoding per message


@given(messages, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(message: WireMessage, extra: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(encode_message(message) + extra)


@given(messages, st.data())
def test_truncated_frames_are_rejected(message: WireMessage, data: st.DataObject) -> None:
    frame = encode_message(message)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(DecodeError):
        decode_message(frame[:cut])


frame_like = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda t, body: encode_rlp([encode_uint(t), *body]),
        st.sampled_from([int(t) for t in MessageType] + [0, 6, 99, 127]),
        st.lists(st.one_of(st.binary(max_size=70), st.lists(st.binary(max_size=40), max_size=3))),
    ),
)


@given(frame_like)
def test_decoder_is_total(frame: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(frame)


def test_proposal_is_built_from_its_block() -> None:
    proposal = decode_message(encode_message(Proposal(BLOCK)))
    assert isinstance(proposal, Proposal)
    assert (proposal.slot, proposal.proposer, proposal.block_hash) == (
        BLOCK.header.slot, BLOCK.header.proposer, BLOCK.hash,
    )  # fmt: skip
    assert not proposal.is_reproposal


def test_a_reproposal_for_an_earlier_slot_is_rejected() -> None:
    sig = CONSENSUS_KEY.sign(b"\x55" * 32).to_bytes()
    frame = encode_rlp(
        [encode_uint(17), encode_block(BLOCK), encode_uint(BLOCK.header.slot), b"\x07" * 20, sig]
    )
    with pytest.raises(DecodeError, match="re-proposal slot"):
        decode_message(frame)


def test_a_proposal_with_a_malformed_header_signature_is_rejected() -> None:
    bad = signed_block()
    header = bad.header
    broken = attrs.evolve(bad, header=attrs.evolve(header, proposer_signature=b"\xff" * 65))
    with pytest.raises(DecodeError, match="proposer_signature"):
        decode_message(encode_rlp([encode_uint(17), encode_block(broken)]))


def test_each_type_has_a_cap_checked_before_parsing() -> None:
    vote_frame = encode_message(VOTES[0])
    padded = encode_rlp([encode_uint(int(MessageType.VOTE)), b"\x00" * MAX_SIZES[MessageType.VOTE]])
    with pytest.raises(DecodeError, match="oversize"):
        decode_message(padded)
    assert decode_message(vote_frame) == VOTES[0]
    assert MAX_SIZES[MessageType.PROPOSAL] > MAX_BLOCK_SIZE  # a full block fits


def test_unknown_type_and_non_list_are_rejected() -> None:
    for frame in (b"", b"\x01", encode_rlp([encode_uint(99)]), encode_rlp([b"\x00"])):
        with pytest.raises(DecodeError):
            decode_message(frame)


def test_oversized_batches_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="cap"):
        encode_message(Votes(1, tuple(VOTES) * 400))


def test_hello_is_pinned() -> None:
    """Format fixture (STYLE rule 17): a change to the handshake frame needs a review."""
    hello = Hello(1, 1337, GENESIS, NODE_KEYS[0].public_key_bytes, b"\x09" * 32, 30303,
                  7, b"\x22" * 32, 12, 1, 13)  # fmt: skip
    frame = encode_message(hello)
    assert frame[:7].hex() == "f8910101820539"  # list of 145 bytes: type 1, version 1, 1337
    assert len(frame) == 147
    assert keccak256(frame).hex() == (
        "4a803bfa6e71f448873f9cc13c3bff6e82f6f9644f643e90c25d2c05914c0855"
    )


def test_certificate_type_equality() -> None:
    decoded = decode_message(encode_message(CERT))
    assert isinstance(decoded, Certificate) and decoded == CERT


def test_transaction_batches_are_split_by_count_and_bytes() -> None:
    small = [TX] * (MAX_TX_BATCH + 5)
    frames = build_tx_frames(small)
    assert [len(decode_message(f).txs) for f in frames] == [MAX_TX_BATCH, 5]  # type: ignore[union-attr]
    big = [b"\x02" + b"\x00" * (100 * 1024)] * 25  # 2.5 MiB of (fake) transactions
    sizes = [len(decode_message(f).txs) for f in build_tx_frames(big)]  # type: ignore[union-attr]
    assert sizes == [10, 10, 5] and sum(sizes) == 25
    assert build_tx_frames([]) == []


@pytest.mark.parametrize("count", [0, MAX_RANGE_BLOCKS + 1])
def test_a_range_request_over_the_cap_is_refused(count: int) -> None:
    frame = encode_rlp([encode_uint(int(MessageType.GET_BLOCK_RANGE)), encode_uint(1),
                        encode_uint(5), encode_uint(count)])  # fmt: skip
    with pytest.raises(DecodeError):
        decode_message(frame)
    with pytest.raises(ValueError):
        encode_message(BlockRange(1, ((BLOCK, None),) * (MAX_RANGE_BLOCKS + 1)))
