"""Headers, blocks, receipts and accounts: round trips and total decoders."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain.blocks import (
    Block,
    Header,
    decode_block,
    decode_header,
    encode_block,
    encode_header,
)
from moderntensor.chain.receipts import Receipt, decode_receipt, encode_receipt
from moderntensor.codec import DecodeError
from moderntensor.state.account import Account, decode_account, encode_account
from tests.factories import USERS, transfer

u64 = st.integers(0, 2**64 - 1)
u256 = st.integers(0, 2**256 - 1)
h32 = st.binary(min_size=32, max_size=32)
a20 = st.binary(min_size=20, max_size=20)

headers = st.builds(
    Header,
    parent_hash=h32,
    coinbase=a20,
    state_root=h32,
    transactions_root=h32,
    receipts_root=h32,
    number=u64,
    gas_limit=u64,
    gas_used=u64,
    timestamp=u64,
    base_fee_per_gas=u256,
    slot=u64,
    proposer=a20,
    evidence_root=h32,
    extra_data=st.binary(max_size=32),
    logs_bloom=st.binary(min_size=256, max_size=256),
    proposer_signature=st.one_of(st.just(b""), st.binary(min_size=65, max_size=65)),
)

TXS = [transfer(USERS[0], n, USERS[1].address, n) for n in range(3)]


@given(headers)
def test_header_round_trip(header: Header) -> None:
    raw = encode_header(header)
    decoded = decode_header(raw)
    assert decoded == header
    assert decoded.hash == header.hash


@given(headers, st.integers(0, 3), st.lists(st.binary(max_size=40), max_size=3))
def test_block_round_trip(header: Header, n_txs: int, evidence: list[bytes]) -> None:
    block = Block(header, tuple(TXS[:n_txs]), tuple(evidence))
    assert decode_block(encode_block(block)) == block


@given(
    st.builds(
        Receipt,
        tx_type=st.integers(0, 2),
        status=st.integers(0, 1),
        cumulative_gas_used=u64,
        gas_used=u64,
        effective_gas_price=u256,
        logs_bloom=st.binary(min_size=256, max_size=256),
        error=st.text(max_size=30),
    )
)
def test_receipt_round_trip(receipt: Receipt) -> None:
    assert decode_receipt(encode_receipt(receipt)) == receipt
    leaf = receipt.consensus_encoding()
    assert (leaf[0] == receipt.tx_type) if receipt.tx_type else leaf[0] >= 0xC0


@given(st.builds(Account, nonce=u64, balance=u256, storage_root=h32, code_hash=h32))
def test_account_round_trip(account: Account) -> None:
    assert decode_account(encode_account(account)) == account


@given(st.binary(max_size=400))
def test_decoders_are_total(raw: bytes) -> None:
    for decode in (decode_header, decode_block, decode_receipt, decode_account):
        with contextlib.suppress(DecodeError):
            decode(raw)


@given(headers, st.data())
def test_mutated_headers_decode_or_fail_cleanly(header: Header, data: st.DataObject) -> None:
    raw = bytearray(encode_header(header))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_header(bytes(raw))
    except DecodeError:
        return
    assert encode_header(decoded) == bytes(raw)  # anything accepted is canonical
