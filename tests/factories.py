"""Small builders shared by tests: deterministic keys, a genesis, signed transfers."""

from __future__ import annotations

from typing import Any

from moderntensor.chain.genesis import Genesis, parse_genesis
from moderntensor.chain.transactions import (
    DynamicFeeTransaction,
    LegacyTransaction,
    sign_transaction,
)
from moderntensor.crypto import PrivateKey, checksum_address

CHAIN_ID = 1337
GWEI = 10**9
ETHER = 10**18


def key(i: int) -> PrivateKey:
    """A deterministic key per index (never all-zero)."""
    return PrivateKey((i + 1).to_bytes(32, "big"))


VALIDATOR_CONSENSUS = key(1000)
VALIDATOR_OWNER = key(1001)
USERS = [key(i) for i in range(16)]


def genesis_doc(
    users: int = 4,
    balance: int = 1_000 * ETHER,
    *,
    block_reward: int = 2 * ETHER,
    min_stake: int = 100 * ETHER,
    stake: int = 1_000 * ETHER,
    epoch_length: int = 4,
    evidence_epochs: int = 1,
    unbonding_epochs: int = 4,
    extra_validators: int = 0,
) -> dict[str, Any]:
    validators = [
        {
            "address": checksum_address(VALIDATOR_OWNER.address),
            "consensus_pubkey": "0x" + VALIDATOR_CONSENSUS.public_key_bytes.hex(),
            "stake": str(stake),
            "name": "v0",
        }
    ]
    for i in range(extra_validators):
        validators.append(
            {
                "address": checksum_address(key(2000 + i).address),
                "consensus_pubkey": "0x" + key(3000 + i).public_key_bytes.hex(),
                "stake": str(stake),
                "name": f"v{i + 1}",
            }
        )
    return {
        "chain_id": CHAIN_ID,
        "network_name": "test",
        "genesis_time": 1_700_000_000,
        "consensus": {
            "slot_duration": 1,
            "epoch_length": epoch_length,
            "min_stake": str(min_stake),
            "max_validators": 10,
            "evidence_epochs": evidence_epochs,
            "unbonding_epochs": unbonding_epochs,
            "slash_fraction": "0.05",
            "block_reward": str(block_reward),
        },
        "block": {"gas_limit": 30_000_000, "base_fee": GWEI, "min_gas_price": GWEI},
        "total_supply": str(10**30),
        "decimals": 18,
        "validators": validators,
        "alloc": {checksum_address(u.address): {"balance": str(balance)} for u in USERS[:users]},
    }


def make_genesis(users: int = 4, **kwargs: Any) -> Genesis:
    return parse_genesis(genesis_doc(users, **kwargs))


def transfer(
    sender: PrivateKey,
    nonce: int,
    to: bytes,
    value: int,
    *,
    tip: int = 2 * GWEI,
    max_fee: int = 10 * GWEI,
    gas: int = 21_000,
    chain_id: int = CHAIN_ID,
    data: bytes = b"",
) -> DynamicFeeTransaction:
    return sign_transaction(
        DynamicFeeTransaction(
            chain_id=chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=max_fee,
            gas=gas,
            to=to,
            value=value,
            data=data,
        ),
        sender,
    )


def legacy_transfer(
    sender: PrivateKey, nonce: int, to: bytes, value: int, gas_price: int = 5 * GWEI
) -> LegacyTransaction:
    return sign_transaction(
        LegacyTransaction(
            chain_id=CHAIN_ID, nonce=nonce, gas_price=gas_price, gas=21_000, to=to, value=value
        ),
        sender,
    )


MUTATIONS = ("flip", "insert", "delete", "truncate", "append", "set")


def mutate(raw: bytes, mutation: str, at: int, byte: int) -> bytes:
    """``raw`` with one of :data:`MUTATIONS` applied at index ``at`` (``at < len(raw)``)."""
    out = bytearray(raw)
    if mutation == "flip":
        out[at] ^= 1 << (byte % 8)
    elif mutation == "insert":
        out.insert(at, byte)
    elif mutation == "delete":
        del out[at]
    elif mutation == "truncate":
        del out[at:]
    elif mutation == "append":
        out.append(byte)
    else:
        out[at] = byte
    return bytes(out)
