"""The fast type-2 parser against the generic decoder: whenever it accepts bytes, the generic
decoder accepts them too with the same fields and signing payload; the decoder with it gives
the same transaction (or the same error) as without it, on valid and mutated encodings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moderntensor.chain import _tx_decode
from moderntensor.chain._tx_fast import parse_dynamic_fee
from moderntensor.chain.transactions import DynamicFeeTransaction, Transaction, sign_transaction
from moderntensor.codec import DecodeError, decode_rlp, encode_rlp
from moderntensor.crypto import SECP256K1_N, PrivateKey
from tests.factories import MUTATIONS as MUTATION_KINDS
from tests.factories import mutate

U64 = st.one_of(st.integers(0, 300), st.integers(0, 2**64 - 1))
QUANTITY = st.one_of(st.integers(0, 300), st.integers(0, 2**256 - 1))
KEYS = st.integers(1, SECP256K1_N - 1).map(lambda k: PrivateKey(k.to_bytes(32, "big")))


@st.composite
def type2(draw: st.DrawFn) -> DynamicFeeTransaction:
    return DynamicFeeTransaction(
        chain_id=draw(QUANTITY),
        nonce=draw(U64),
        max_priority_fee_per_gas=draw(QUANTITY),
        max_fee_per_gas=draw(QUANTITY),
        gas=draw(U64),
        to=draw(st.one_of(st.none(), st.binary(min_size=20, max_size=20))),
        value=draw(QUANTITY),
        data=draw(st.one_of(st.binary(max_size=60), st.binary(max_size=300))),
        access_list=draw(
            st.one_of(
                st.just(()),
                st.lists(
                    st.tuples(st.binary(min_size=20, max_size=20), st.just(())), max_size=2
                ).map(tuple),
            )
        ),
    )


def generic(raw: bytes) -> Transaction | str:
    """The decoder without the fast path."""
    try:
        return _tx_decode._decode_generic_dynamic_fee(raw, True)
    except DecodeError as exc:
        return str(exc)


def with_fast(raw: bytes) -> Transaction | str:
    try:
        return _tx_decode._decode_dynamic_fee(raw, True)
    except DecodeError as exc:
        return str(exc)


def same(a: Transaction | str, b: Transaction | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a == b and a.raw == b.raw and a.hash == b.hash and a.sender == b.sender


def check(raw: bytes) -> None:
    fast = parse_dynamic_fee(raw)
    if fast is not None:
        items = decode_rlp(raw[1:])
        assert isinstance(items, list)
        assert fast[-1] == b"\x02" + encode_rlp(items[:9])
        reference = _tx_decode._decode_generic_dynamic_fee(raw, False)  # must not raise
        fields = (
            reference.chain_id, reference.nonce, reference.max_priority_fee_per_gas,
            reference.max_fee_per_gas, reference.gas, reference.to, reference.value,
            reference.data, reference.y_parity, reference.r, reference.s,
        )  # fmt: skip
        assert fast[:-1] == fields
    assert same(with_fast(raw), generic(raw))


@given(type2(), KEYS)
def test_valid_encodings(unsigned: DynamicFeeTransaction, key: PrivateKey) -> None:
    signed = sign_transaction(unsigned, key)
    check(signed.raw)
    if not unsigned.access_list and len(unsigned.data) <= 55:
        assert parse_dynamic_fee(signed.raw) is not None  # the path is taken when it should


MUTATIONS = st.sampled_from(MUTATION_KINDS)


@given(type2(), KEYS, MUTATIONS, st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_encodings(
    unsigned: DynamicFeeTransaction, key: PrivateKey, mutation: str, where: int, byte: int
) -> None:
    raw = sign_transaction(unsigned, key).raw
    raw = mutate(raw, mutation, 1 + where % (len(raw) - 1), byte)  # keep the type byte
    check(raw)


def field(value: bytes) -> bytes:
    return encode_rlp(value)


@pytest.mark.parametrize(
    ("index", "encoded"),
    [
        (1, b"\x00"),  # nonce with a leading zero
        (1, b"\x81\x05"),  # a single low byte given a prefix
        (1, b"\x89" + b"\x01" * 9),  # nonce above 64 bits
        (5, b"\x93" + b"\x11" * 19),  # a 19-byte address
        (9, b"\x02"),  # y_parity 2
        (9, b"\x00"),  # y_parity with a leading zero
        (10, b"\xa1" + b"\x01" * 33),  # r of 33 bytes
    ],
)
def test_irregular_fields_leave_the_fast_path(index: int, encoded: bytes) -> None:
    base: list[Any] = [b"\x01", b"", b"\x01", b"\x02", b"\x52\x08", b"\x11" * 20, b"", b"", [],
                       b"", b"\x05", b"\x06"]  # fmt: skip
    good = b"\x02" + encode_rlp(base)
    assert parse_dynamic_fee(good) is not None
    items = [field(x) if isinstance(x, bytes) else b"\xc0" for x in base]
    items[index] = encoded
    payload = b"".join(items)
    n = len(payload)
    raw = b"\x02" + (bytes((0xC0 + n,)) if n < 56 else bytes((0xF8, n))) + payload
    assert parse_dynamic_fee(raw) is None
    check(raw)
