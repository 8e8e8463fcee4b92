"""ethereum/tests TransactionTests and the ethers.js transaction vectors.

Every ethereum/tests entry at its newest fork: valid ones decode with the expected hash, sender
and intrinsic gas; invalid ones are rejected either by ``decode_transaction`` (DecodeError) or by
``validate_transaction_static`` (TransactionInvalid, chain id 1), and the test pins which layer
rejects which upstream exception.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest

from moderntensor.chain.transactions import (
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
from moderntensor.codec import DecodeError
from moderntensor.crypto import PrivateKey, keccak256, parse_address
from tests.conftest import VECTORS

TX = VECTORS / "transactions"
FORKS = ["Prague", "Cancun", "Shanghai", "Paris", "London", "Berlin", "Istanbul"]
CHAIN_ID = 1  # every ethereum/tests transaction vector is for chain 1

# Upstream exceptions that are stateless rules rather than encoding faults, and our reason.
STATIC_RULES = {
    "TransactionException.INTRINSIC_GAS_TOO_LOW": InvalidReason.INTRINSIC_GAS_TOO_LOW,
    "TransactionException.GASLIMIT_PRICE_PRODUCT_OVERFLOW": InvalidReason.FEE_PRODUCT_OVERFLOW,
    "TransactionException.INITCODE_SIZE_EXCEEDED": InvalidReason.INITCODE_TOO_LARGE,
    "TransactionException.NONCE_TOO_BIG": InvalidReason.NONCE_TOO_BIG,
    "TransactionException.PRIORITY_GREATER_THAN_MAX_FEE_PER_GAS_2": (
        InvalidReason.PRIORITY_FEE_ABOVE_MAX_FEE
    ),
}


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _ethereum_tests() -> dict[str, tuple[bytes, dict[str, Any]]]:
    """file key -> (txbytes, result at the newest fork present)."""
    data = json.loads((TX / "ethereum_tests_TransactionTests.json").read_text())
    out = {}
    for key, tests in data.items():
        for test in tests.values():
            fork = next(f for f in FORKS if f in test["result"])
            out[key] = (_unhex(test["txbytes"]), test["result"][fork])
    return out


ETH_TESTS = _ethereum_tests()
VALID = sorted(k for k, (_, res) in ETH_TESTS.items() if "exception" not in res)
INVALID = sorted(k for k, (_, res) in ETH_TESTS.items() if "exception" in res)


def _reject(raw: bytes) -> DecodeError | TransactionInvalid | None:
    """The error our node raises for ``raw`` on chain 1, or None if it accepts it."""
    try:
        tx = decode_transaction(raw)
    except DecodeError as exc:
        return exc
    try:
        validate_transaction_static(tx, chain_id=CHAIN_ID, allow_unprotected=True)
    except TransactionInvalid as exc:
        return exc
    return None


def test_counts_match_the_readme() -> None:
    assert (len(ETH_TESTS), len(VALID), len(INVALID)) == (210, 50, 160)


@pytest.mark.parametrize("key", VALID)
def test_valid_vector(key: str) -> None:
    raw, result = ETH_TESTS[key]
    tx = decode_transaction(raw)
    assert tx.hash == keccak256(raw) == _unhex(result["hash"])
    assert tx.sender == _unhex(result["sender"])
    assert intrinsic_gas(tx) == int(result["intrinsicGas"], 16)
    assert encode_transaction(tx) == raw
    validate_transaction_static(tx, chain_id=CHAIN_ID, allow_unprotected=True)
    # Rebuilt from its fields (no caches), the transaction encodes and recovers the same.
    fresh = _rebuild(tx)
    assert fresh == tx
    assert (fresh.raw, fresh.hash, fresh.sender) == (raw, tx.hash, tx.sender)


@pytest.mark.parametrize("key", INVALID)
def test_invalid_vector_is_rejected(key: str) -> None:
    raw, result = ETH_TESTS[key]
    error = _reject(raw)
    assert error is not None, f"accepted {result['exception']}"
    expected = STATIC_RULES.get(result["exception"])
    if expected is not None:
        assert isinstance(error, TransactionInvalid)
        assert error.reason is expected
    elif result["exception"] == "TransactionException.INVALID_CHAINID":
        # Either a v no chain id can give, or a valid EIP-155 v for another chain.
        assert isinstance(error, DecodeError) or error.reason is InvalidReason.WRONG_CHAIN_ID
    else:
        assert isinstance(error, DecodeError), error


def test_invalid_vectors_that_eth_account_accepts_are_still_rejected() -> None:
    """eth-account recovers a sender from 55 of the invalid vectors; the node rejects all."""
    from eth_account import Account

    accepted_by_eth_account = []
    for key in INVALID:
        raw, _ = ETH_TESTS[key]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                Account.recover_transaction(raw)
            except Exception:
                continue
        accepted_by_eth_account.append(key)
        assert _reject(raw) is not None, key
    assert len(accepted_by_eth_account) == 55


def test_unprotected_vectors_need_allow_unprotected() -> None:
    raw, _ = ETH_TESTS["ttSignature/RightVRSTest.json"]
    tx = decode_transaction(raw)
    assert tx.chain_id is None
    with pytest.raises(TransactionInvalid) as info:
        validate_transaction_static(tx, chain_id=CHAIN_ID)
    assert info.value.reason is InvalidReason.UNPROTECTED


def _rebuild(tx: Transaction) -> Transaction:
    """The same transaction constructed from its fields, with nothing cached."""
    if isinstance(tx, LegacyTransaction):
        return LegacyTransaction(
            chain_id=tx.chain_id,
            nonce=tx.nonce,
            gas_price=tx.gas_price,
            gas=tx.gas,
            to=tx.to,
            value=tx.value,
            data=tx.data,
            y_parity=tx.y_parity,
            r=tx.r,
            s=tx.s,
        )
    if isinstance(tx, AccessListTransaction):
        return AccessListTransaction(
            chain_id=tx.chain_id,
            nonce=tx.nonce,
            gas_price=tx.gas_price,
            gas=tx.gas,
            to=tx.to,
            value=tx.value,
            data=tx.data,
            access_list=tx.access_list,
            y_parity=tx.y_parity,
            r=tx.r,
            s=tx.s,
        )
    return DynamicFeeTransaction(
        chain_id=tx.chain_id,
        nonce=tx.nonce,
        max_priority_fee_per_gas=tx.max_priority_fee_per_gas,
        max_fee_per_gas=tx.max_fee_per_gas,
        gas=tx.gas,
        to=tx.to,
        value=tx.value,
        data=tx.data,
        access_list=tx.access_list,
        y_parity=tx.y_parity,
        r=tx.r,
        s=tx.s,
    )


# ---- ethers.js vectors ------------------------------------------------------------------------

ETHERS = json.loads((TX / "ethers_transactions_subset.json").read_text())
ETHERS_EXPECTED = {
    e["name"]: e
    for e in json.loads((TX / "ethers_transactions_subset.expected.json").read_text())["entries"]
}
FLAVOURS = ["Legacy", "Eip155", "Berlin", "London"]


def _int(fields: dict[str, Any], name: str) -> int:
    value = fields.get(name, 0)
    return value if isinstance(value, int) else int(value, 16)


def _unsigned(fields: dict[str, Any], flavour: str) -> Transaction:
    to = parse_address(fields["to"]) if fields.get("to") else None
    common: dict[str, Any] = {
        "nonce": _int(fields, "nonce"),
        "gas": _int(fields, "gasLimit"),
        "to": to,
        "value": _int(fields, "value"),
        "data": _unhex(fields.get("data", "0x")),
    }
    access_list = tuple(
        (parse_address(e["address"]), tuple(_unhex(k) for k in e["storageKeys"]))
        for e in fields.get("accessList", [])
    )
    chain_id = _int(fields, "chainId")
    if flavour == "Legacy":
        return LegacyTransaction(chain_id=None, gas_price=_int(fields, "gasPrice"), **common)
    if flavour == "Eip155":
        return LegacyTransaction(chain_id=chain_id, gas_price=_int(fields, "gasPrice"), **common)
    if flavour == "Berlin":
        return AccessListTransaction(
            chain_id=chain_id,
            gas_price=_int(fields, "gasPrice"),
            access_list=access_list,
            **common,
        )
    return DynamicFeeTransaction(
        chain_id=chain_id,
        max_priority_fee_per_gas=_int(fields, "maxPriorityFeePerGas"),
        max_fee_per_gas=_int(fields, "maxFeePerGas"),
        access_list=access_list,
        **common,
    )


ETHERS_CASES = [
    (entry["name"], flavour)
    for entry in ETHERS
    for flavour in FLAVOURS
    if entry[f"signed{flavour}"]
]
ETHERS_BY_NAME = {entry["name"]: entry for entry in ETHERS}


def test_ethers_case_count() -> None:
    assert len(ETHERS_CASES) == 480


@pytest.mark.parametrize(("name", "flavour"), ETHERS_CASES)
def test_ethers_vector(name: str, flavour: str) -> None:
    entry = ETHERS_BY_NAME[name]
    expected = ETHERS_EXPECTED[name]
    key = PrivateKey.from_hex(entry["privateKey"])
    signed_raw = _unhex(entry[f"signed{flavour}"])
    unsigned = _unsigned(entry["transaction"], flavour)

    assert signing_hash(unsigned) == keccak256(_unhex(entry[f"unsigned{flavour}"]))
    signed = sign_transaction(unsigned, key)
    assert signed.raw == signed_raw
    signature = entry[f"signature{flavour}"]
    assert (signed.r, signed.s, signed.v) == (
        int(signature["r"], 16),
        int(signature["s"], 16),
        int(signature["v"], 16),
    )

    decoded = decode_transaction(signed_raw)
    assert decoded == signed
    assert type(decoded) is type(unsigned)
    assert decoded.sender == key.address == _unhex(expected["sender"])
    assert decoded.hash == signed.hash == _unhex(expected["hashes"][f"signed{flavour}"])


@pytest.mark.parametrize("name", [e["name"] for e in ETHERS if e["signedCancun"]])
def test_ethers_blob_transaction_is_rejected(name: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_transaction(_unhex(ETHERS_BY_NAME[name]["signedCancun"]))
    assert "0x03" in info.value.problem
