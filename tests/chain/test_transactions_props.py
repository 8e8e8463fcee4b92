"""Property tests: round trips, total decoding, canonical acceptance, eth-account agreement."""

from __future__ import annotations

import warnings
from typing import Any

import attrs
from eth_account import Account  # imported here: it raises the recursion limit on import
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain.transactions import (
    AccessListTransaction,
    DynamicFeeTransaction,
    LegacyTransaction,
    Transaction,
    decode_transaction,
    sign_transaction,
)
from moderntensor.codec import DecodeError
from moderntensor.crypto import SECP256K1_N, PrivateKey, checksum_address, keccak256
from tests.factories import MUTATIONS as MUTATION_KINDS
from tests.factories import mutate

U64 = st.integers(0, 2**64 - 1)
U256 = st.integers(0, 2**256 - 1)
# Mostly small values (the common case, and the RLP single-byte edge), sometimes anything.
QUANTITY = st.one_of(st.integers(0, 300), U256)
ADDRESS = st.binary(min_size=20, max_size=20)
TO = st.one_of(st.none(), ADDRESS)
DATA = st.binary(max_size=80)
ACCESS_LIST = st.lists(
    st.tuples(ADDRESS, st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple)),
    max_size=3,
).map(tuple)
KEYS = st.integers(1, SECP256K1_N - 1).map(lambda k: PrivateKey(k.to_bytes(32, "big")))


@st.composite
def unsigned_transactions(draw: st.DrawFn) -> Transaction:
    kind = draw(st.sampled_from([0, 1, 2]))
    common: dict[str, Any] = {
        "nonce": draw(st.one_of(st.integers(0, 300), U64)),
        "gas": draw(st.one_of(st.integers(21_000, 100_000), U64)),
        "to": draw(TO),
        "value": draw(QUANTITY),
        "data": draw(DATA),
    }
    if kind == 0:
        chain_id = draw(st.one_of(st.none(), st.integers(1, 2**64)))
        return LegacyTransaction(chain_id=chain_id, gas_price=draw(QUANTITY), **common)
    chain_id = draw(st.one_of(st.integers(0, 300), U256))
    if kind == 1:
        return AccessListTransaction(
            chain_id=chain_id, gas_price=draw(QUANTITY), access_list=draw(ACCESS_LIST), **common
        )
    return DynamicFeeTransaction(
        chain_id=chain_id,
        max_priority_fee_per_gas=draw(QUANTITY),
        max_fee_per_gas=draw(QUANTITY),
        access_list=draw(ACCESS_LIST),
        **common,
    )


@given(unsigned_transactions(), KEYS)
def test_sign_encode_decode_round_trip(unsigned: Transaction, key: PrivateKey) -> None:
    signed = sign_transaction(unsigned, key)
    decoded = decode_transaction(signed.raw)
    assert decoded == signed
    assert type(decoded) is type(unsigned)
    assert decoded.sender == key.address
    assert decoded.hash == keccak256(signed.raw)
    assert decoded.raw == signed.raw


def _decode_or_error(raw: bytes) -> Transaction | DecodeError:
    try:
        return decode_transaction(raw)
    except DecodeError as exc:
        assert exc.what and exc.problem
        return exc


@given(st.binary(max_size=300))
def test_decode_is_total_on_any_bytes(raw: bytes) -> None:
    _decode_or_error(raw)


@given(st.sampled_from([b"\x01", b"\x02", b"\x03", b""]), st.binary(min_size=1, max_size=200))
def test_decode_is_total_on_typed_looking_bytes(prefix: bytes, body: bytes) -> None:
    _decode_or_error(prefix + b"\xf8" + body)


MUTATIONS = st.sampled_from(MUTATION_KINDS)


@given(unsigned_transactions(), KEYS, MUTATIONS, st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_encodings_decode_canonically_or_fail(
    unsigned: Transaction, key: PrivateKey, mutation: str, where: int, byte: int
) -> None:
    """Whatever a mutation gives, decoding returns a DecodeError or a transaction whose own
    encoding is exactly the mutated bytes (only canonical encodings are ever accepted)."""
    raw = sign_transaction(unsigned, key).raw
    raw = mutate(raw, mutation, where % len(raw), byte)
    result = _decode_or_error(raw)
    if not isinstance(result, DecodeError):
        # a copy without caches re-encodes from its fields to exactly the accepted bytes
        assert attrs.evolve(result).raw == bytes(raw)


def _eth_account_dict(tx: Transaction) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "nonce": tx.nonce,
        "gas": tx.gas,
        "value": tx.value,
        "data": tx.data,
    }
    if tx.to is not None:
        fields["to"] = checksum_address(tx.to)
    if isinstance(tx, LegacyTransaction):
        fields["gasPrice"] = tx.gas_price
        if tx.chain_id is not None:
            fields["chainId"] = tx.chain_id
        return fields
    fields["chainId"] = tx.chain_id
    fields["accessList"] = [
        {"address": checksum_address(a), "storageKeys": ["0x" + k.hex() for k in keys]}
        for a, keys in tx.access_list
    ]
    if isinstance(tx, AccessListTransaction):
        fields["type"] = 1
        fields["gasPrice"] = tx.gas_price
    else:
        fields["type"] = 2
        fields["maxFeePerGas"] = tx.max_fee_per_gas
        fields["maxPriorityFeePerGas"] = tx.max_priority_fee_per_gas
    return fields


@given(unsigned_transactions(), KEYS)
def test_agrees_with_eth_account(unsigned: Transaction, key: PrivateKey) -> None:
    """eth-account signs; we decode the same fields, sender and hash, and our own signature
    over the same fields is byte-identical (both use RFC 6979 nonces)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = Account.from_key(key.secret).sign_transaction(_eth_account_dict(unsigned))
    raw = bytes(theirs.raw_transaction)
    decoded = decode_transaction(raw)
    ours = sign_transaction(unsigned, key)
    assert decoded == ours
    assert ours.raw == raw
    assert decoded.sender == key.address
    assert decoded.hash == bytes(theirs.hash) == ours.hash
