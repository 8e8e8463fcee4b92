"""Transactions: signing, decoding errors by field, construction checks, caching, static rules."""

from __future__ import annotations

import attrs
import pytest

from moderntensor.chain.transactions import (
    MAX_INITCODE_SIZE,
    MAX_TX_SIZE,
    AccessListTransaction,
    DynamicFeeTransaction,
    InvalidReason,
    LegacyTransaction,
    Transaction,
    TransactionInvalid,
    decode_transaction,
    encode_transaction,
    intrinsic_gas,
    sign_transaction,
    signing_hash,
    validate_transaction_static,
)
from moderntensor.chain.tx_json import transaction_to_json
from moderntensor.codec import DecodeError, encode_rlp, encode_uint
from moderntensor.crypto import (
    SECP256K1_HALF_N,
    SECP256K1_N,
    InvalidSignature,
    PrivateKey,
    checksum_address,
    keccak256,
)

KEY = PrivateKey(bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"))
TO = bytes.fromhex("d3cda913deb6f67967b99d67acdfa1712c293601")
SLOT = bytes(range(32))


def legacy(**changes: object) -> LegacyTransaction:
    fields: dict[str, object] = dict(
        chain_id=1, nonce=7, gas_price=10**9, gas=21_000, to=TO, value=10**18
    )
    fields.update(changes)
    return LegacyTransaction(**fields)  # type: ignore[arg-type]


def type1(**changes: object) -> AccessListTransaction:
    fields: dict[str, object] = dict(
        chain_id=1,
        nonce=7,
        gas_price=10**9,
        gas=30_000,
        to=TO,
        value=5,
        data=b"\x00\x01",
        access_list=((TO, (SLOT,)),),
    )
    fields.update(changes)
    return AccessListTransaction(**fields)  # type: ignore[arg-type]


def type2(**changes: object) -> DynamicFeeTransaction:
    fields: dict[str, object] = dict(
        chain_id=1,
        nonce=7,
        max_priority_fee_per_gas=10**9,
        max_fee_per_gas=3 * 10**10,
        gas=21_000,
        to=TO,
        value=10**18,
    )
    fields.update(changes)
    return DynamicFeeTransaction(**fields)  # type: ignore[arg-type]


def signed_items(tx: Transaction) -> list[object]:
    """The RLP field list of a signed typed tx (payload) or legacy tx, to tamper with."""
    from moderntensor.codec import decode_rlp

    raw = tx.raw
    item = decode_rlp(raw[1:] if tx.type else raw)
    assert isinstance(item, list)
    return list(item)


def reencode(tx_type: int, items: list[object]) -> bytes:
    body = encode_rlp(items)  # type: ignore[arg-type]
    return body if tx_type == 0 else bytes([tx_type]) + body


# ---- signing and round trips -----------------------------------------------------------------


@pytest.mark.parametrize(
    "unsigned", [legacy(), legacy(chain_id=None), type1(), type2(), type2(to=None, data=b"\x60")]
)
def test_sign_then_decode_round_trips(unsigned: Transaction) -> None:
    signed = sign_transaction(unsigned, KEY)
    assert type(signed) is type(unsigned)
    assert signed.sender == KEY.address
    assert signed.hash == keccak256(signed.raw) == keccak256(encode_transaction(signed))
    decoded = decode_transaction(signed.raw)
    assert decoded == signed
    assert decoded.sender == KEY.address
    assert decoded.hash == signed.hash
    # The signature is over signing_hash and nothing else.
    assert attrs.evolve(signed, y_parity=0, r=0, s=0) == unsigned
    assert signing_hash(signed) == signing_hash(unsigned)


def test_legacy_v_follows_eip155() -> None:
    protected = sign_transaction(legacy(chain_id=5), KEY)
    assert protected.v == 35 + 2 * 5 + protected.y_parity
    unprotected = sign_transaction(legacy(chain_id=None), KEY)
    assert unprotected.v == 27 + unprotected.y_parity
    assert type2().v == 0


def test_types_and_fee_views() -> None:
    assert (legacy().type, type1().type, type2().type) == (0, 1, 2)
    assert legacy().max_fee_per_gas == legacy().max_priority_fee_per_gas == 10**9
    assert type1().max_fee_per_gas == type1().gas_price
    assert legacy().access_list == ()


def test_signing_hash_differs_by_chain_and_type() -> None:
    hashes = {
        signing_hash(legacy(chain_id=None)),
        signing_hash(legacy(chain_id=1)),
        signing_hash(legacy(chain_id=2)),
        signing_hash(type1(access_list=(), gas=21_000, data=b"")),
        signing_hash(type2()),
    }
    assert len(hashes) == 5


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = sign_transaction(type2(), KEY).raw
    assert decode_transaction(bytearray(raw)) == decode_transaction(memoryview(raw))


# ---- caching and equality --------------------------------------------------------------------


def test_fields_decide_equality_not_caches() -> None:
    signed = sign_transaction(type2(), KEY)
    rebuilt = attrs.evolve(signed)  # same fields, empty caches
    assert rebuilt == signed and hash(rebuilt) == hash(signed)
    assert rebuilt.sender == signed.sender
    assert rebuilt.hash == signed.hash
    assert len({signed, rebuilt, sign_transaction(type2(nonce=8), KEY)}) == 2


def test_sender_is_computed_once() -> None:
    tx = attrs.evolve(sign_transaction(legacy(), KEY))
    first = tx.sender
    assert tx.sender is first
    assert tx.hash is tx.hash
    assert tx.raw is tx.raw


def test_evolve_drops_caches() -> None:
    signed = sign_transaction(type2(), KEY)
    changed = attrs.evolve(signed, value=1)
    assert changed.hash != signed.hash
    assert changed.sender != KEY.address  # the old signature no longer matches these fields


def test_a_transaction_decoded_again_is_the_one_decoded_before() -> None:
    from moderntensor.chain import _tx_decode

    raw = sign_transaction(type2(nonce=4242), KEY).raw
    first = decode_transaction(raw)
    assert decode_transaction(bytearray(raw)) is first  # the sender is not recovered again
    assert _tx_decode._decode_uncached(raw) == first
    assert first.sender == KEY.address
    bad = raw[:-1] + bytes([raw[-1] ^ 1])  # another s: another sender, or none
    assert decode_transaction(bad) is not first


def test_the_decoded_transactions_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from moderntensor.chain import _tx_decode

    monkeypatch.setattr(_tx_decode, "RECENT_DECODED", 3)
    monkeypatch.setattr(_tx_decode, "_recent", {})
    raws = [sign_transaction(type2(nonce=n), KEY).raw for n in range(5)]
    decoded = [decode_transaction(raw) for raw in raws]
    assert list(_tx_decode._recent) == raws[2:]  # the oldest went first
    assert decode_transaction(raws[0]) == decoded[0]  # decoded again, equal
    assert decode_transaction(raws[0]) is not decoded[0]
    with pytest.raises(DecodeError):
        decode_transaction(b"\x02\xc0")  # errors are never kept
    assert len(_tx_decode._recent) == 3


def test_unsigned_transaction_has_no_sender() -> None:
    with pytest.raises(InvalidSignature):
        type2().sender  # noqa: B018


# ---- construction checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: legacy(nonce=-1), "nonce"),
        (lambda: legacy(nonce=2**64), "nonce"),
        (lambda: legacy(gas=2**64), "gas"),
        (lambda: legacy(value=2**256), "value"),
        (lambda: legacy(gas_price=2**256), "gas_price"),
        (lambda: legacy(to=b"\x01" * 19), "to"),
        (lambda: legacy(to=b""), "to"),
        (lambda: legacy(data="00"), "data"),
        (lambda: legacy(chain_id=0), "chain_id"),
        (lambda: legacy(y_parity=2), "y_parity"),
        (lambda: legacy(r=2**256), "r"),
        (lambda: legacy(nonce=True), "nonce"),
        (lambda: type1(chain_id=-1), "chain_id"),
        (lambda: type1(access_list=[(TO, (SLOT,))]), "access_list"),
        (lambda: type1(access_list=((TO[:19], ()),)), "access_list address"),
        (lambda: type1(access_list=((TO, (SLOT[:31],)),)), "storage key"),
        (lambda: type1(access_list=((TO, [SLOT]),)), "storage_keys"),
        (lambda: type1(access_list=((TO,),)), "access_list entry"),
        (lambda: type2(max_fee_per_gas=-5), "max_fee_per_gas"),
        (lambda: type2(max_priority_fee_per_gas=2**256), "max_priority_fee_per_gas"),
    ],
)
def test_construction_rejects_bad_fields(make: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()  # type: ignore[operator]


# ---- decode errors name the field ------------------------------------------------------------


def tamper(tx: Transaction, index: int, value: object) -> bytes:
    items = signed_items(sign_transaction(tx, KEY))
    items[index] = value
    return reencode(tx.type, items)


@pytest.mark.parametrize(
    ("raw", "what", "problem"),
    [
        (lambda: tamper(legacy(), 0, b"\x00\x07"), "legacy tx nonce", "leading zero"),
        (lambda: tamper(legacy(), 0, b"\x01" + bytes(8)), "legacy tx nonce", "64 bits"),
        (lambda: tamper(legacy(), 2, b"\x01" + bytes(8)), "legacy tx gas", "64 bits"),
        (lambda: tamper(legacy(), 4, b"\x01" + bytes(32)), "legacy tx value", "256 bits"),
        (lambda: tamper(legacy(), 3, TO[1:]), "legacy tx to", "19 bytes"),
        (lambda: tamper(legacy(), 3, [TO]), "legacy tx to", "list"),
        (lambda: tamper(legacy(), 5, [b""]), "legacy tx data", "list"),
        (lambda: tamper(legacy(), 6, b"\x1d"), "legacy tx v", "29 is not"),
        (lambda: tamper(legacy(), 6, b"\x23"), "legacy tx v", "35 is not"),
        (lambda: tamper(legacy(), 7, b""), "legacy tx signature", "r out of range"),
        (lambda: tamper(legacy(), 8, b""), "legacy tx signature", "s out of range"),
        (
            lambda: tamper(legacy(), 7, SECP256K1_N.to_bytes(32, "big")),
            "legacy tx signature",
            "r out of range",
        ),
        (
            lambda: tamper(legacy(), 8, (SECP256K1_HALF_N + 1).to_bytes(32, "big")),
            "legacy tx signature",
            "high",
        ),
        (lambda: tamper(type2(), 9, b"\x02"), "EIP-1559 tx y_parity", "0 or 1"),
        (lambda: tamper(type2(), 9, b"\x00"), "EIP-1559 tx y_parity", "leading zero"),
        (lambda: tamper(type2(), 3, b"\x00\x01"), "EIP-1559 tx max_fee_per_gas", "leading"),
        (lambda: tamper(type2(), 8, [[TO]]), "EIP-1559 tx access_list[0]", "field count 1"),
        (lambda: tamper(type2(), 8, b""), "EIP-1559 tx access_list", "byte string"),
        (
            lambda: tamper(type1(), 7, [[TO, [SLOT[1:]]]]),
            "EIP-2930 tx access_list[0].storage_keys[0]",
            "31 bytes",
        ),
        (
            lambda: tamper(type1(), 7, [[TO + b"\x00", []]]),
            "EIP-2930 tx access_list[0].address",
            "21 bytes",
        ),
        (lambda: tamper(type1(), 1, [b"\x07"]), "EIP-2930 tx nonce", "list"),
    ],
)
def test_decode_errors_name_field_and_problem(raw: object, what: str, problem: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_transaction(raw())  # type: ignore[operator]
    assert info.value.what == what
    assert problem in info.value.problem


def test_decode_rejects_unrecoverable_signature() -> None:
    # r = n - 1 (in range) has no point with that x coordinate on the curve.
    raw = tamper(legacy(), 7, (SECP256K1_N - 1).to_bytes(32, "big"))
    with pytest.raises(DecodeError) as info:
        decode_transaction(raw)
    assert "no public key recovers" in info.value.problem


def test_s_equal_to_half_n_is_accepted() -> None:
    """EIP-2 rejects s > n/2 only. Any s recovers *some* key for a valid r, so the tampered
    transaction decodes (to another sender)."""
    raw = tamper(legacy(), 8, SECP256K1_HALF_N.to_bytes(32, "big"))
    tx = decode_transaction(raw)
    assert tx.s == SECP256K1_HALF_N
    assert tx.sender != KEY.address


@pytest.mark.parametrize(
    ("count", "tx"), [(8, legacy()), (10, legacy()), (10, type1()), (12, type1()), (11, type2())]
)
def test_decode_rejects_wrong_field_count(count: int, tx: Transaction) -> None:
    items = signed_items(sign_transaction(tx, KEY))
    items = (items + [b""] * 3)[:count]
    with pytest.raises(DecodeError) as info:
        decode_transaction(reencode(tx.type, items))
    assert "field count" in info.value.problem


def test_decode_rejects_trailing_bytes_and_truncation() -> None:
    for tx in (legacy(), type1(), type2()):
        raw = sign_transaction(tx, KEY).raw
        for bad in (raw + b"\x00", raw[:-1], raw + raw):
            with pytest.raises(DecodeError):
                decode_transaction(bad)


@pytest.mark.parametrize("first", [0x00, 0x03, 0x04, 0x05, 0x7F])
def test_decode_rejects_unknown_types(first: int) -> None:
    payload = signed_items(sign_transaction(type2(), KEY))
    with pytest.raises(DecodeError) as info:
        decode_transaction(bytes([first]) + encode_rlp(payload))  # type: ignore[arg-type]
    assert f"{first:#04x}" in info.value.problem


@pytest.mark.parametrize("first", [0x80, 0x94, 0xB8, 0xBF])
def test_decode_rejects_byte_string_envelope(first: int) -> None:
    with pytest.raises(DecodeError, match="byte string"):
        decode_transaction(bytes([first]) + bytes(70))


def test_typed_payload_must_be_a_list() -> None:
    with pytest.raises(DecodeError) as info:
        decode_transaction(b"\x02" + encode_rlp(b"not a list"))
    assert info.value.what == "EIP-1559 tx payload"


def test_legacy_envelope_cannot_carry_a_type_byte() -> None:
    """A type byte in front of a legacy list is not a legacy transaction."""
    raw = sign_transaction(legacy(), KEY).raw
    for prefix in (b"\x00", b"\x01", b"\x02"):
        with pytest.raises(DecodeError):
            decode_transaction(prefix + raw)


def test_decode_rejects_empty_oversize_and_non_bytes() -> None:
    with pytest.raises(DecodeError, match="empty"):
        decode_transaction(b"")
    big = sign_transaction(legacy(data=bytes(MAX_TX_SIZE), gas=10**7), KEY).raw
    with pytest.raises(DecodeError, match="oversize"):
        decode_transaction(big)
    with pytest.raises(DecodeError, match="expected bytes"):
        decode_transaction("0x00")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", [b"", b"\x01", b"\x02"])
def test_deeply_nested_transaction_is_rejected_not_a_crash(prefix: bytes) -> None:
    """30,000 nested lists fit in 98 KB (under MAX_TX_SIZE) and used to SIGSEGV rusty-rlp."""
    item = b"\xc0"
    for _ in range(30_000):
        n = len(item)
        width = (n.bit_length() + 7) // 8
        head = bytes([0xC0 + n]) if n < 56 else bytes([0xF7 + width]) + n.to_bytes(width, "big")
        item = head + item
    assert len(prefix + item) < MAX_TX_SIZE
    with pytest.raises(DecodeError, match="nested deeper"):
        decode_transaction(prefix + item)


def test_decode_accepts_up_to_the_size_limit() -> None:
    tx = sign_transaction(legacy(data=bytes(MAX_TX_SIZE - 200), gas=10**7), KEY)
    assert len(tx.raw) <= MAX_TX_SIZE
    assert decode_transaction(tx.raw) == tx


# ---- intrinsic gas and static rules ------------------------------------------------------------


def test_intrinsic_gas_components() -> None:
    assert intrinsic_gas(legacy()) == 21_000
    assert intrinsic_gas(legacy(data=b"\x00\x01\x00")) == 21_000 + 4 + 16 + 4
    # creation: 32,000 more and 2 per 32-byte initcode word (33 bytes -> 2 words)
    assert intrinsic_gas(legacy(to=None, data=b"\x01" * 33)) == 21_000 + 32_000 + 4 + 33 * 16
    two = ((TO, (SLOT, SLOT)), (bytes(20), ()))
    assert intrinsic_gas(type2(access_list=two)) == 21_000 + 2 * 2_400 + 2 * 1_900


R = InvalidReason


@pytest.mark.parametrize(
    ("tx", "reason"),
    [
        (legacy(chain_id=None), InvalidReason.UNPROTECTED),
        (legacy(chain_id=2), InvalidReason.WRONG_CHAIN_ID),
        (type2(chain_id=0), InvalidReason.WRONG_CHAIN_ID),
        (type2(nonce=2**64 - 1), InvalidReason.NONCE_TOO_BIG),
        (type2(max_priority_fee_per_gas=2, max_fee_per_gas=1), R.PRIORITY_FEE_ABOVE_MAX_FEE),
        (type2(max_fee_per_gas=2**256 - 1, max_priority_fee_per_gas=0), R.FEE_PRODUCT_OVERFLOW),
        (legacy(gas_price=2**250, gas=2**6), InvalidReason.FEE_PRODUCT_OVERFLOW),
        (legacy(to=None, data=bytes(MAX_INITCODE_SIZE + 1), gas=10**7), R.INITCODE_TOO_LARGE),
        (legacy(gas=20_999), InvalidReason.INTRINSIC_GAS_TOO_LOW),
        (type1(gas=21_000), InvalidReason.INTRINSIC_GAS_TOO_LOW),
    ],
)  # fmt: skip
def test_static_rules(tx: Transaction, reason: InvalidReason) -> None:
    with pytest.raises(TransactionInvalid) as info:
        validate_transaction_static(tx, chain_id=1)
    assert info.value.reason is reason
    assert reason.value in str(info.value)


@pytest.mark.parametrize(
    "tx",
    [
        legacy(),
        type1(),
        type2(),
        type2(nonce=2**64 - 2),
        legacy(to=None, data=bytes(MAX_INITCODE_SIZE), gas=10**7),
        type2(max_fee_per_gas=(2**256 - 1) // 21_000, max_priority_fee_per_gas=0),
    ],
)
def test_static_rules_accept_limits(tx: Transaction) -> None:
    validate_transaction_static(tx, chain_id=1)


def test_unprotected_allowed_on_request() -> None:
    validate_transaction_static(legacy(chain_id=None), chain_id=1, allow_unprotected=True)
    with pytest.raises(TransactionInvalid):
        validate_transaction_static(legacy(chain_id=3), chain_id=1, allow_unprotected=True)


# ---- JSON view -------------------------------------------------------------------------------


def test_json_view_of_each_type() -> None:
    tx2 = sign_transaction(type2(access_list=((TO, (SLOT,)),)), KEY)
    out = transaction_to_json(tx2)
    assert out["type"] == "0x2"
    assert out["hash"] == "0x" + tx2.hash.hex()
    assert out["sender"] == checksum_address(KEY.address)
    assert out["to"] == checksum_address(TO) != "0x" + TO.hex()
    assert out["nonce"] == "0x7" and out["chain_id"] == "0x1"
    assert out["max_fee_per_gas"] == hex(3 * 10**10) and "gas_price" not in out
    assert out["access_list"] == [
        {"address": checksum_address(TO), "storage_keys": ["0x" + SLOT.hex()]}
    ]
    assert out["data"] == "0x" and out["value"] == hex(10**18)

    out0 = transaction_to_json(sign_transaction(legacy(chain_id=None, to=None), KEY))
    assert out0["type"] == "0x0" and out0["chain_id"] is None and out0["to"] is None
    assert out0["gas_price"] == hex(10**9) and "max_fee_per_gas" not in out0
    assert out0["v"] in ("0x1b", "0x1c")


def test_quantities_are_minimal_hex() -> None:
    out = transaction_to_json(sign_transaction(legacy(nonce=0, value=0), KEY))
    assert out["nonce"] == "0x0" and out["value"] == "0x0"


def test_encode_uint_matches_rlp_integers() -> None:
    """The integer convention our encoder relies on (0 is the empty string)."""
    assert encode_uint(0) == b"" and encode_uint(0x80) == b"\x80"
