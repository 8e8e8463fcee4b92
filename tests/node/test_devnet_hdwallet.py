"""BIP-39/BIP-32 derivation: the keys Hardhat and Anvil fund, cross-checked with eth-account."""

from __future__ import annotations

import pytest
from eth_account import Account

from moderntensor.crypto import checksum_address
from moderntensor.node.hdwallet import (
    DEV_MNEMONIC,
    HDWalletError,
    derive_dev_keys,
    derive_private_key,
    mnemonic_to_seed,
    parse_path,
)

Account.enable_unaudited_hdwallet_features()


def test_first_dev_account_is_hardhats() -> None:
    key = derive_dev_keys(DEV_MNEMONIC, 1)[0]
    assert checksum_address(key.address) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert key.secret.hex() == "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def test_bip39_seed_vector() -> None:
    # BIP-39's first English test vector (passphrase "TREZOR")
    mnemonic = " ".join(["abandon"] * 11 + ["about"])
    assert mnemonic_to_seed(mnemonic, "TREZOR").hex() == (
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c9"
        "2f2cf141630c7a3c4ab7c81b2f001698e7463b04"
    )


def test_bip32_vector_1() -> None:
    # BIP-32 test vector 1, chain m/0H/1/2H/2/1000000000
    seed = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    key = derive_private_key(seed, "m/0H/1/2H/2/1000000000")
    assert key.secret.hex() == "471b76e389e528d6de6d816857e012c5455051cad6660850e58372a6c3e6e7c8"


@pytest.mark.parametrize(
    ("mnemonic", "passphrase", "indices"),
    [
        (DEV_MNEMONIC, "", [0, 1, 5, 9, 10, 11, 19]),
        ("legal winner thank year wave sausage worth useful legal winner thank yellow", "", [0, 3]),
        (DEV_MNEMONIC, "correct horse", [0, 2]),
    ],
)
def test_matches_eth_account(mnemonic: str, passphrase: str, indices: list[int]) -> None:
    for index in indices:
        ours = derive_dev_keys(mnemonic, 1, start=index, passphrase=passphrase)[0]
        theirs = Account.from_mnemonic(
            mnemonic, passphrase=passphrase, account_path=f"m/44'/60'/0'/0/{index}"
        )
        assert ours.secret == bytes(theirs.key)
        assert checksum_address(ours.address) == theirs.address


def test_bad_inputs_are_named() -> None:
    with pytest.raises(HDWalletError, match="12, 15, 18, 21 or 24 words, got 3"):
        mnemonic_to_seed("test test junk")
    with pytest.raises(HDWalletError, match="must start with 'm'"):
        parse_path("44'/60'")
    with pytest.raises(HDWalletError, match="bad step 'x'"):
        parse_path("m/44'/x")
    with pytest.raises(HDWalletError, match="bad step '2147483648'"):
        parse_path("m/2147483648")
    assert parse_path("m/44'/60h/0") == [44 + 2**31, 60 + 2**31, 0]
