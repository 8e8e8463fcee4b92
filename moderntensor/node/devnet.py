"""The single-validator dev chain (``python -m moderntensor.node --dev``): genesis, keys, banner.

What a dapp developer expects from Anvil or Hardhat, on our chain:

* the ten accounts of the well-known mnemonic ``test test ... junk`` at ``m/44'/60'/0'/0/0..9``
  (0xf39F...2266 first), each funded with 10,000 ETH (10**22 wei), their private keys printed at
  start (:func:`format_dev_banner`);
* chain id 1337 (Ganache's, and MetaMask's "Localhost 8545" default; Anvil and Hardhat use
  31337);
* a 30,000,000 gas limit and a 1 gwei base fee, as Anvil; unlike Anvil the base fee never falls
  below 1 gwei (``min_gas_price``), so an idle dev chain quotes a stable price;
* no block reward, so a dev account's balance changes only by its own transactions (Anvil mints
  nothing either); tips go to the validator's owner.

The one validator's keys come from the same mnemonic, past the funded accounts, so they are
reproducible and obviously public: owner (stake, rewards, tips) ``m/44'/60'/0'/0/10``,
consensus key (signs blocks and votes) ``m/44'/60'/0'/0/11``. Its stake (1,000 ETH) is created
at genesis and does not come out of a dev account.

These keys are known to everyone: never use them on a network with anything of value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from moderntensor.chain.genesis import Genesis, parse_genesis
from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.keys import ValidatorKeys
from moderntensor.node.hdwallet import DEV_MNEMONIC, ETHEREUM_PATH_PREFIX, derive_dev_keys

__all__ = [
    "DEV_ACCOUNT_COUNT",
    "DEV_BALANCE",
    "DEV_CHAIN_ID",
    "DEV_CONSENSUS_INDEX",
    "DEV_OWNER_INDEX",
    "DevKeys",
    "dev_genesis",
    "dev_genesis_doc",
    "dev_keys",
    "format_dev_banner",
]

DEV_CHAIN_ID = 1337
DEV_ACCOUNT_COUNT = 10
DEV_BALANCE = 10**22  # 10,000 ETH
DEV_OWNER_INDEX = 10
DEV_CONSENSUS_INDEX = 11
DEV_STAKE = 10**21  # 1,000 ETH
GWEI = 10**9


@attrs.frozen(slots=True)
class DevKeys:
    """The dev chain's well-known keys: funded accounts and the validator's two keys."""

    mnemonic: str
    accounts: tuple[PrivateKey, ...]
    validator: ValidatorKeys


def dev_keys(mnemonic: str = DEV_MNEMONIC) -> DevKeys:
    """Derive the dev accounts and validator keys (12 BIP-32 derivations; a few ms)."""
    keys = derive_dev_keys(mnemonic, DEV_CONSENSUS_INDEX + 1)
    return DevKeys(
        mnemonic=mnemonic,
        accounts=tuple(keys[:DEV_ACCOUNT_COUNT]),
        validator=ValidatorKeys("dev-validator", keys[DEV_OWNER_INDEX], keys[DEV_CONSENSUS_INDEX]),
    )


def dev_genesis_doc(genesis_time: int, slot_duration: float, keys: DevKeys) -> dict[str, Any]:
    """The dev genesis as a genesis JSON document (what ``dev_genesis`` parses; the node may
    write it into the data directory so the chain can be restarted or inspected)."""
    return {
        "chain_id": DEV_CHAIN_ID,
        "network_name": "moderntensor-dev",
        "genesis_time": genesis_time,
        "consensus": {
            "slot_duration": str(Decimal(str(slot_duration))),
            "epoch_length": 32,
            "min_stake": str(10**18),
            "max_validators": 100,
            "evidence_epochs": 1,  # the least the rules allow: a dev chain has no stake at risk
            "unbonding_epochs": 4,  # 2 (set delay) + evidence_epochs + 1, the least allowed
            "slash_fraction": "0.05",
            "block_reward": "0",
        },
        "block": {"gas_limit": 30_000_000, "base_fee": GWEI, "min_gas_price": GWEI},
        "total_supply": str(10**27),
        "decimals": 18,
        "validators": [
            {
                "address": checksum_address(keys.validator.account.address),
                "consensus_pubkey": "0x" + keys.validator.consensus.public_key_bytes.hex(),
                "stake": str(DEV_STAKE),
                "name": keys.validator.name,
            }
        ],
        "alloc": {
            checksum_address(key.address): {"balance": str(DEV_BALANCE)} for key in keys.accounts
        },
    }


def dev_genesis(genesis_time: int, slot_duration: float = 1.0) -> tuple[Genesis, DevKeys]:
    """The dev chain starting at ``genesis_time`` (unix seconds) with slots of ``slot_duration``
    seconds (millisecond precision).

    Raises:
        moderntensor.chain.genesis.GenesisError: a genesis time or slot duration out of range.
    """
    keys = dev_keys()
    doc = dev_genesis_doc(genesis_time, slot_duration, keys)
    return parse_genesis(doc, source="dev genesis"), keys


def _ether(wei: int) -> str:
    return f"{wei // 10**18}.{wei % 10**18:018d}"


def format_dev_banner(
    keys: DevKeys, *, chain_id: int = DEV_CHAIN_ID, balance: int = DEV_BALANCE
) -> str:
    """The text the node prints at start in dev mode, laid out as Anvil's."""
    lines = ["", "Available Accounts", "==================", ""]
    for i, key in enumerate(keys.accounts):
        lines.append(f"({i}) {checksum_address(key.address)} ({_ether(balance)} ETH)")
    lines += ["", "Private Keys", "==================", ""]
    for i, key in enumerate(keys.accounts):
        lines.append(f"({i}) 0x{key.secret.hex()}")
    lines += [
        "",
        "Wallet",
        "==================",
        f"Mnemonic:          {keys.mnemonic}",
        f"Derivation path:   {ETHEREUM_PATH_PREFIX}",
        "",
        "Validator",
        "==================",
        f"Owner:             {checksum_address(keys.validator.account.address)} "
        f"({ETHEREUM_PATH_PREFIX}{DEV_OWNER_INDEX})",
        f"Validator id:      {checksum_address(keys.validator.consensus.address)} "
        f"({ETHEREUM_PATH_PREFIX}{DEV_CONSENSUS_INDEX})",
        "",
        "Chain ID",
        "==================",
        "",
        str(chain_id),
        "",
        "WARNING: these keys are public. Never send real funds to them or use them elsewhere.",
        "",
    ]
    return "\n".join(lines)
