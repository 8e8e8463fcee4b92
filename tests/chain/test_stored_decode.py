"""Transactions read back from committed blocks: decoded without recovering the sender, which
is recovered (to the same address) when first asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderntensor.chain import _tx_decode
from moderntensor.chain._tx_decode import decode_stored_transaction
from moderntensor.chain.chain import Chain
from moderntensor.chain.transactions import (
    AccessListTransaction,
    LegacyTransaction,
    Transaction,
    decode_transaction,
    sign_transaction,
)
from moderntensor.codec import DecodeError
from moderntensor.state.store import Database
from tests.factories import CHAIN_ID, GWEI, USERS, VALIDATOR_CONSENSUS, make_genesis, transfer

GENESIS = make_genesis(users=3)


def samples() -> list[Transaction]:
    to = USERS[2].address
    return [
        transfer(USERS[0], 0, to, 5),
        sign_transaction(
            LegacyTransaction(chain_id=CHAIN_ID, nonce=1, gas_price=GWEI, gas=21_000, to=to),
            USERS[1],
        ),
        sign_transaction(  # pre-EIP-155
            LegacyTransaction(chain_id=None, nonce=2, gas_price=GWEI, gas=21_000, to=to),
            USERS[1],
        ),
        sign_transaction(
            AccessListTransaction(
                chain_id=CHAIN_ID,
                nonce=3,
                gas_price=GWEI,
                gas=30_000,
                to=to,
                access_list=((to, (bytes(32),)),),
            ),
            USERS[0],
        ),
    ]


@pytest.mark.parametrize("index", range(4))
def test_stored_decode_equals_decode_and_recovers_the_sender_later(index: int) -> None:
    signed = samples()[index]
    _tx_decode._recent.pop(signed.raw, None)  # not from the cache of full decodes
    stored = decode_stored_transaction(signed.raw)
    assert stored._sender is None  # not recovered yet
    assert stored == decode_transaction(signed.raw) == signed
    assert stored.raw == signed.raw
    assert stored.hash == signed.hash
    assert stored.sender == signed.sender  # recovered now


def test_stored_decode_takes_a_full_decode_from_the_cache() -> None:
    signed = samples()[0]
    full = decode_transaction(signed.raw)
    assert decode_stored_transaction(signed.raw) is full


def test_stored_decode_still_refuses_bad_bytes() -> None:
    raw = samples()[0].raw
    with pytest.raises(DecodeError):
        decode_stored_transaction(raw + b"\x00")
    with pytest.raises(DecodeError):
        decode_stored_transaction(b"\x03" + raw[1:])


def test_a_committed_block_reads_back_with_its_senders(tmp_path: Path) -> None:
    txs = [transfer(USERS[0], n, USERS[1].address, n + 1) for n in range(3)]
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, GENESIS)
        executed = chain.build_block(chain.head, 1, VALIDATOR_CONSENSUS, txs)
        chain.commit(executed)
        _tx_decode._recent.clear()
        block = chain.chaindb.get_block(executed.block.hash)
        assert block is not None
        assert block == executed.block
        assert [tx._sender for tx in block.transactions] == [None] * 3
        assert [tx.sender for tx in block.transactions] == [USERS[0].address] * 3
