"""Hypothesis fuzz targets: any bytes give a value or the one decode error, never a crash;
the consensus core's stateful machine keeps its invariants; a whole simulation under any
fault schedule keeps every invariant (``moderntensor.sim``)."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moderntensor.chain.blocks import decode_block, decode_header
from moderntensor.chain.receipts import decode_receipt
from moderntensor.chain.transactions import decode_transaction
from moderntensor.chain.votes import decode_evidence, decode_vote
from moderntensor.codec import DecodeError, RLPItem, decode_rlp, encode_rlp, encode_uint
from moderntensor.consensus import InvalidCertificate, decode_certificate
from moderntensor.crypto import PrivateKey, keccak256
from moderntensor.network import (
    ChainIdentity,
    Handshake,
    HandshakeFailed,
    LocalStatus,
    MessageType,
    NonceBook,
    decode_message,
)
from moderntensor.sim import SimConfig
from moderntensor.sim._search import run_once, schedules
from moderntensor.state.account import decode_account
from moderntensor.state.proof import InvalidProof, verify_proof

DECODERS = {
    "rlp": decode_rlp,
    "transaction": decode_transaction,
    "header": decode_header,
    "block": decode_block,
    "receipt": decode_receipt,
    "account": decode_account,
    "vote": decode_vote,
    "evidence": decode_evidence,
    "certificate": decode_certificate,
    "wire": decode_message,
}

# Bytes that look like RLP lists and typed transactions reach deeper than uniform noise.
rlp_like = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda t, b: bytes([t]) + b, st.sampled_from([1, 2, 3, 0xC0, 0xF8]), st.binary()),
)


@given(st.sampled_from(sorted(DECODERS)), rlp_like)
def fuzz_decoders(name: str, raw: bytes) -> None:
    with contextlib.suppress(DecodeError, InvalidCertificate):
        DECODERS[name](raw)


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.lists(rlp_like, max_size=6))
def fuzz_verify_proof(root: bytes, key: bytes, proof: list[bytes]) -> None:
    with contextlib.suppress(InvalidProof):
        verify_proof(root, key, proof)


def _frame(kind: int, fields: list[RLPItem]) -> bytes:
    return encode_rlp([encode_uint(kind), *fields])


# Frames with a real type byte and fields of plausible shapes reach the per-type decoders.
wire_frames = st.one_of(
    rlp_like,
    st.builds(
        _frame,
        st.sampled_from([int(t) for t in MessageType]),
        st.lists(st.one_of(st.binary(max_size=80), st.lists(rlp_like, max_size=3)), max_size=12),
    ),
)


@given(wire_frames)
def fuzz_wire(frame: bytes) -> None:
    """Any frame gives a wire message or DecodeError."""
    with contextlib.suppress(DecodeError):
        decode_message(frame)


_NODE_KEY = PrivateKey(keccak256(b"fuzz node key"))
_STATUS = LocalStatus(0, bytes(32), 0, 0, 1)


@given(st.lists(wire_frames, max_size=4))
def fuzz_handshake(frames: list[bytes]) -> None:
    """Whatever a peer sends, the handshake either goes on or fails with a reason code."""
    hs = Handshake(ChainIdentity(_NODE_KEY, 1, bytes(32)), _STATUS, b"\x01" * 32, NonceBook())
    hs.start()
    for frame in frames:
        try:
            hs.receive(decode_message(frame))
        except (DecodeError, HandshakeFailed):
            return


def fuzz_consensus(max_examples: int = 5) -> None:
    """The consensus core's stateful machine (tests/consensus/test_stateful.py): honest and
    byzantine validators, partitions, restarts, set changes; every invariant after each step."""
    from hypothesis.stateful import run_state_machine_as_test

    from tests.consensus.test_stateful import ConsensusMachine

    run_state_machine_as_test(ConsensusMachine, settings=settings(
        max_examples=max_examples, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))  # fmt: skip


@given(schedules(validators=4, slots=16))
def fuzz_simulation(config: SimConfig) -> None:
    """A whole simulation (real nodes, virtual time) under a drawn fault schedule."""
    problems = run_once(config)
    assert not problems, "\n".join([*config.events(), *problems])


TARGETS = {
    "decoders": fuzz_decoders,
    "proof": fuzz_verify_proof,
    "wire": fuzz_wire,
    "handshake": fuzz_handshake,
    "consensus": fuzz_consensus,
    "simulation": fuzz_simulation,
}
"""Each but ``consensus`` (a stateful machine: HypoFuzz runs ``tests/consensus/test_stateful.py``
itself) is a Hypothesis test; ``fuzz/test_hypofuzz.py`` names them for HypoFuzz."""
