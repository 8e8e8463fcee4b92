"""The dev chain: its genesis validates, a chain opens on it and takes a transfer from account 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import GenesisError, build_genesis, parse_genesis
from moderntensor.chain.staking import get_validators
from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.crypto import checksum_address
from moderntensor.node.devnet import (
    DEV_BALANCE,
    DEV_CHAIN_ID,
    dev_genesis,
    dev_genesis_doc,
    dev_keys,
    format_dev_banner,
)
from moderntensor.node.hdwallet import derive_dev_keys
from moderntensor.state.store import Database

GWEI = 10**9
ANVIL_ADDRESSES = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
]


def test_dev_accounts_are_anvils() -> None:
    keys = dev_keys()
    assert [checksum_address(k.address) for k in keys.accounts] == ANVIL_ADDRESSES
    owner, consensus = derive_dev_keys(count=2, start=10)
    assert keys.validator.account.secret == owner.secret
    assert keys.validator.consensus.secret == consensus.secret


def test_dev_genesis_is_valid_and_funds_the_accounts() -> None:
    genesis, keys = dev_genesis(1_700_000_000, 0.25)
    assert genesis.chain_id == DEV_CHAIN_ID == 1337
    assert genesis.consensus.slot_duration_ms == 250
    assert genesis.block.gas_limit == 30_000_000
    assert genesis.block.base_fee == genesis.block.min_gas_price == GWEI
    assert dict(genesis.alloc).keys() == {k.address for k in keys.accounts}
    assert all(a.balance == DEV_BALANCE == 10**22 for _, a in genesis.alloc)
    assert [v.consensus_pubkey for v in genesis.validators] == [
        keys.validator.consensus.public_key_bytes
    ]
    # the document round-trips through the genesis parser unchanged (it is what a file holds)
    doc = dev_genesis_doc(1_700_000_000, 0.25, keys)
    assert parse_genesis(doc) == genesis
    block, _ = build_genesis(genesis)
    assert block.header.number == 0


def test_dev_genesis_refuses_a_nonsense_slot() -> None:
    with pytest.raises(GenesisError, match=r"consensus\.slot_duration"):
        dev_genesis(1_700_000_000, 0.0001)


def test_chain_on_dev_genesis_takes_a_transfer_from_account_0(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(1_700_000_000)
    sender, recipient = keys.accounts[0], keys.accounts[1]
    tx = sign_transaction(
        DynamicFeeTransaction(
            chain_id=DEV_CHAIN_ID,
            nonce=0,
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=3 * GWEI,
            gas=21_000,
            to=recipient.address,
            value=10**18,
        ),
        sender,
    )
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, genesis)
        state = chain.state_at(chain.head)
        assert [v.address for v in get_validators(state)] == [keys.validator.account.address]
        executed = chain.build_block(chain.head, 1, keys.validator.consensus, [tx])
        assert list(executed.block.transactions) == [tx]
        assert executed.receipts[0].status == 1
        chain.commit(executed)
        state = chain.state_at(chain.head)
        paid = 21_000 * (GWEI + GWEI)  # base fee 1 gwei + tip 1 gwei
        assert state.get_balance(sender.address) == DEV_BALANCE - 10**18 - paid
        assert state.get_balance(recipient.address) == DEV_BALANCE + 10**18
        assert state.get_balance(keys.validator.account.address) == 21_000 * GWEI  # the tip
        assert state.get_nonce(sender.address) == 1


def test_banner_lists_accounts_keys_and_mnemonic() -> None:
    keys = dev_keys()
    banner = format_dev_banner(keys)
    assert "(0) 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 (10000.000000000000000000 ETH)" in banner
    assert "(0) 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80" in banner
    assert f"(9) 0x{keys.accounts[9].secret.hex()}" in banner
    assert "(10)" not in banner
    assert (
        "Mnemonic:          test test test test test test test test test test test junk" in banner
    )
    assert "Derivation path:   m/44'/60'/0'/0/" in banner
    assert "\n1337\n" in banner
    assert keys.validator.consensus.secret.hex() not in banner  # the validator's keys stay out
