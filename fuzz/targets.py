"""Hypothesis fuzz targets: any bytes give a value or the one decode error, never a crash."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain.blocks import decode_block, decode_header
from moderntensor.chain.receipts import decode_receipt
from moderntensor.chain.transactions import decode_transaction
from moderntensor.chain.votes import decode_evidence, decode_vote
from moderntensor.codec import DecodeError, decode_rlp
from moderntensor.consensus import InvalidCertificate, decode_certificate
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


TARGETS = {"decoders": fuzz_decoders, "proof": fuzz_verify_proof}
