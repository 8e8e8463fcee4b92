"""The single-validator dev chain (``python -m moderntensor.node --dev``): genesis, keys, banner.

What a dapp developer expects from Anvil or Hardhat, on our chain:

* the ten accounts of the well-known mnemonic ``test test ... junk`` at ``m/44'/60'/0'/0/0..9``
  (0xf39F...2266 first), each funded with 10,000 ETH (10**22 wei), their private keys printed at
  start (:func:`format_dev_banner`);
* chain id 1337 (Ganache's, and MetaMask's "Localhost 8545" default; Anvil and Hardhat use
  31337);
* a 30,000,000 gas limit and a 1 gwei base fee, as Anvil; unlike Anvil the base fee never falls
  below its starting value (``min_gas_price``), so an idle dev chain quotes a stable price;
* no block reward, so a dev account's balance changes only by its own transactions (Anvil mints
  nothing either); tips go to the validator's owner.

Each of these can be changed with Anvil's flag of the same name (:class:`DevOptions`:
``--accounts``, ``--balance``, ``--mnemonic``, ``--chain-id``, ``--gas-limit``, ``--base-fee``,
``--block-time``), so a script written for Anvil starts this chain unchanged. They shape the
genesis, so they apply to a new data directory; :func:`check_resume` compares them with the
genesis a resumed data directory holds.

The one validator's keys come from the same mnemonic, past the funded accounts, so they are
reproducible and obviously public: owner (stake, rewards, tips) ``m/44'/60'/0'/0/10``,
consensus key (signs blocks and votes) ``m/44'/60'/0'/0/11`` (with ``--accounts N`` above 10:
indices ``N`` and ``N + 1``, so no funded account is also the validator). Its stake (1,000 ETH)
is created at genesis and does not come out of a dev account.

These keys are known to everyone: never use them on a network with anything of value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from moderntensor.chain.genesis import MAX_CHAIN_ID, Genesis, parse_genesis
from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.keys import ValidatorKeys
from moderntensor.node.hdwallet import (
    DEV_MNEMONIC,
    ETHEREUM_PATH_PREFIX,
    HDWalletError,
    derive_dev_keys,
)

__all__ = [
    "DEV_ACCOUNT_COUNT",
    "DEV_BALANCE",
    "DEV_CHAIN_ID",
    "DEV_CONSENSUS_INDEX",
    "DEV_GAS_LIMIT",
    "DEV_OWNER_INDEX",
    "MAX_DEV_ACCOUNTS",
    "DevKeys",
    "DevOptions",
    "DevOptionsError",
    "check_resume",
    "dev_genesis",
    "dev_genesis_doc",
    "dev_genesis_for",
    "dev_keys",
    "format_dev_banner",
]

DEV_CHAIN_ID = 1337
DEV_ACCOUNT_COUNT = 10
DEV_BALANCE = 10**22  # 10,000 ETH
DEV_GAS_LIMIT = 30_000_000
DEV_OWNER_INDEX = 10
DEV_CONSENSUS_INDEX = 11
DEV_STAKE = 10**21  # 1,000 ETH
DEV_SUPPLY = 10**27
GWEI = 10**9
WEI_PER_ETH = 10**18
MAX_DEV_ACCOUNTS = 10_000
"""Anvil sets no limit; each account costs a BIP-32 derivation (~1 ms) and a banner line."""


class DevOptionsError(ValueError):
    """A dev flag out of range, or one that disagrees with the chain a data dir holds; the
    message names the flag and fits on one line."""


@attrs.frozen(slots=True, kw_only=True)
class DevOptions:
    """What Anvil's flags of the same names set, with this chain's defaults (the README lists
    where they differ from Anvil's: chain id 1337 rather than 31337, and a base fee that never
    falls below its starting value)."""

    accounts: int = DEV_ACCOUNT_COUNT
    balance: int = DEV_BALANCE
    """Wei per funded account (``--balance`` is in ETH)."""
    mnemonic: str = DEV_MNEMONIC
    chain_id: int = DEV_CHAIN_ID
    gas_limit: int = DEV_GAS_LIMIT
    base_fee: int = GWEI
    """The genesis base fee, and the floor the base fee never goes below."""
    slot_duration: Decimal = Decimal(1)
    """Seconds per slot (``--block-time``, alias ``--slot-duration``), millisecond precision."""

    def check(self) -> None:
        """Refuse values no chain can run with, before anything is derived or written.

        Raises:
            DevOptionsError: the first flag out of range, by name.
        """
        if not 0 <= self.accounts <= MAX_DEV_ACCOUNTS:
            raise DevOptionsError(
                f"--accounts: expected 0 to {MAX_DEV_ACCOUNTS}, got {self.accounts}"
            )
        if self.balance < 0:
            raise DevOptionsError("--balance: must not be negative")
        if not 1 <= self.chain_id <= MAX_CHAIN_ID:
            raise DevOptionsError(
                f"--chain-id: expected 1 to {MAX_CHAIN_ID} (EIP-2294), got {self.chain_id}"
            )
        if self.gas_limit < 21_000 or self.gas_limit >= 2**63:
            raise DevOptionsError(
                f"--gas-limit: expected at least 21000 (one transfer), got {self.gas_limit}"
            )
        if not 0 <= self.base_fee < 2**63:
            raise DevOptionsError(f"--base-fee: expected 0 to 2**63-1 wei, got {self.base_fee}")
        ms = self.slot_duration * 1000
        if ms != int(ms) or ms < 1 or ms > 3_600_000:
            raise DevOptionsError(
                f"--block-time: expected 0.001 to 3600 seconds in steps of 0.001, "
                f"got {self.slot_duration}"
            )


@attrs.frozen(slots=True)
class DevKeys:
    """The dev chain's well-known keys: funded accounts and the validator's two keys."""

    mnemonic: str
    accounts: tuple[PrivateKey, ...]
    validator: ValidatorKeys


def dev_keys(mnemonic: str = DEV_MNEMONIC, accounts: int = DEV_ACCOUNT_COUNT) -> DevKeys:
    """Derive the dev accounts and validator keys (one BIP-32 derivation each, about 1 ms).

    The validator's two keys follow the funded accounts, never before index 10, so the
    default chain keeps its well-known validator whatever the account count.

    Raises:
        DevOptionsError: the mnemonic does not have 12, 15, 18, 21 or 24 words.
    """
    owner = max(DEV_OWNER_INDEX, accounts)
    try:
        keys = derive_dev_keys(mnemonic, owner + 2)
    except HDWalletError as exc:
        raise DevOptionsError(f"--mnemonic: {exc}") from None
    return DevKeys(
        mnemonic=mnemonic,
        accounts=tuple(keys[:accounts]),
        validator=ValidatorKeys("dev-validator", keys[owner], keys[owner + 1]),
    )


def dev_genesis_doc(
    genesis_time: int,
    slot_duration: float | Decimal,
    keys: DevKeys,
    *,
    chain_id: int = DEV_CHAIN_ID,
    gas_limit: int = DEV_GAS_LIMIT,
    base_fee: int = GWEI,
    balance: int = DEV_BALANCE,
) -> dict[str, Any]:
    """The dev genesis as a genesis JSON document (what ``dev_genesis`` parses; the node
    writes it into the data directory so the chain can be restarted or inspected)."""
    funded = balance * len(keys.accounts) + DEV_STAKE
    return {
        "chain_id": chain_id,
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
        "block": {"gas_limit": gas_limit, "base_fee": base_fee, "min_gas_price": base_fee},
        "total_supply": str(max(DEV_SUPPLY, funded)),
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
            checksum_address(key.address): {"balance": str(balance)} for key in keys.accounts
        },
    }


def dev_genesis_for(genesis_time: int, options: DevOptions, keys: DevKeys) -> dict[str, Any]:
    """:func:`dev_genesis_doc` with every value from ``options``."""
    return dev_genesis_doc(
        genesis_time, options.slot_duration, keys, chain_id=options.chain_id,
        gas_limit=options.gas_limit, base_fee=options.base_fee, balance=options.balance,
    )  # fmt: skip


def dev_genesis(genesis_time: int, slot_duration: float = 1.0) -> tuple[Genesis, DevKeys]:
    """The dev chain starting at ``genesis_time`` (unix seconds) with slots of ``slot_duration``
    seconds (millisecond precision).

    Raises:
        moderntensor.chain.genesis.GenesisError: a genesis time or slot duration out of range.
    """
    keys = dev_keys()
    doc = dev_genesis_doc(genesis_time, slot_duration, keys)
    return parse_genesis(doc, source="dev genesis"), keys


def check_resume(genesis: Genesis, given: dict[str, Any], where: str) -> DevOptions:
    """The options of the dev chain ``genesis`` (read from a data directory), after checking
    that every flag the user ``given`` (``DevOptions`` field -> value) agrees with it.

    A genesis-shaping flag cannot change a chain that exists; silently ignoring it would leave
    the user believing, say, that blocks now come every 2 s. So a flag that agrees is accepted
    (a script can pass the same flags on every start) and one that does not is refused.

    Raises:
        DevOptionsError: the first flag that disagrees, naming both values.
    """
    balances = {account.balance for _, account in genesis.alloc}
    stored = DevOptions(
        accounts=len(genesis.alloc),
        balance=balances.pop() if len(balances) == 1 else given.get("balance", DEV_BALANCE),
        mnemonic=given.get("mnemonic", DEV_MNEMONIC),
        chain_id=genesis.chain_id,
        gas_limit=genesis.block.gas_limit,
        base_fee=genesis.block.min_gas_price,
        slot_duration=Decimal(genesis.consensus.slot_duration_ms) / 1000,
    )
    flags = {
        "accounts": "--accounts", "balance": "--balance", "chain_id": "--chain-id",
        "gas_limit": "--gas-limit", "base_fee": "--base-fee", "slot_duration": "--block-time",
    }  # fmt: skip
    for field, flag in flags.items():
        want, have = given.get(field), getattr(stored, field)
        if want is not None and want != have:
            raise DevOptionsError(
                f"{flag} {_show(field, want)}: the dev chain in {where} was created with "
                f"{_show(field, have)}; genesis flags apply only to a new data dir "
                "(drop the flag, or use another --data-dir)"
            )
    keys = dev_keys(stored.mnemonic, stored.accounts)
    funded = [address for address, _ in genesis.alloc]
    validator = genesis.validators[0].consensus_pubkey if genesis.validators else b""
    if (
        funded != [key.address for key in keys.accounts]
        or validator != keys.validator.consensus.public_key_bytes
    ):
        raise DevOptionsError(
            f"--mnemonic: the dev chain in {where} was created from another mnemonic; "
            "give the same --mnemonic (or use another --data-dir)"
        )
    return stored


def _show(field: str, value: Any) -> str:
    if field == "balance":
        return f"{Decimal(value) / WEI_PER_ETH:f} ETH"
    return f"{value} s" if field == "slot_duration" else str(value)


def _ether(wei: int) -> str:
    whole, frac = divmod(wei, WEI_PER_ETH)
    return f"{whole}.{frac:018d}"


def format_dev_banner(
    keys: DevKeys, *, chain_id: int = DEV_CHAIN_ID, balance: int = DEV_BALANCE
) -> str:
    """The text the node prints at start in dev mode, laid out as Anvil's."""
    owner = max(DEV_OWNER_INDEX, len(keys.accounts))
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
        f"({ETHEREUM_PATH_PREFIX}{owner})",
        f"Validator id:      {checksum_address(keys.validator.consensus.address)} "
        f"({ETHEREUM_PATH_PREFIX}{owner + 1})",
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
