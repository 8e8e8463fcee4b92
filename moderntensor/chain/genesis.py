"""The genesis file: parsed, validated (every error at once) and turned into state and block 0.

Format (JSON)::

    {
      "chain_id": 7777, "network_name": "moderntensor-testnet", "genesis_time": 1767225600,
      "consensus": {"slot_duration": 2, "epoch_length": 900, "min_stake": "1000000000000000000000",
                    "max_validators": 100, "evidence_epochs": 48, "unbonding_epochs": 144,
                    "slash_fraction": "0.05", "block_reward": "2000000000000000000"},
      "network": {"p2p_port": 30303, "rpc_port": 8545, "max_peers": 50},
      "block": {"gas_limit": 30000000, "base_fee": 1000000000, "min_gas_price": 1000000000},
      "total_supply": "1000000000000000000000000000", "decimals": 18,
      "validators": [{"address": "0x..", "consensus_pubkey": "0x02..", "stake": "..",
                      "name": "validator-0"}],
      "alloc": {"0x..": {"balance": "0x.. or decimal", "nonce": "0x0"}}
    }

Amounts are integers in the smallest unit, given as JSON integers or as decimal or 0x-hex
strings (JSON numbers cannot hold 10^27 exactly in every tool). ``slot_duration`` is in seconds
and may be fractional (dev and test chains use short slots); ``slash_fraction`` is a decimal in
[0, 1] with at most four decimal places (it becomes basis points).

Epochs count blocks: ``epoch_length`` blocks each (``chain.timing``), so an outage (slots
without blocks) moves no epoch forward. ``evidence_epochs`` (optional, at least 1, default 2)
is how many epochs evidence of an offence stays includable. ``unbonding_epochs`` is how many
epochs unstaked stake waits before it can be withdrawn, and must be at least
``2 + evidence_epochs + 1``: stake unstaked in epoch ``e`` still votes in the sets fixed before
(the validator-set delay of 2 epochs), an offence from its last voting epoch may be included as
evidence for ``evidence_epochs`` more, and one epoch more is margin. Shorter, and a validator
could withdraw stake before its offences can be slashed ("nothing at stake").
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import attrs

from moderntensor.chain._alloc import (
    GenesisAccount,
    GenesisError,
    _check_keys,
    _Errors,
    _int,
    alloc_state_root,
    apply_alloc,
    parse_alloc,
)
from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.constants import VALIDATOR_SET_DELAY_EPOCHS
from moderntensor.chain.execution import ChainParams
from moderntensor.chain.staking import put_validator, validator_id
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.crypto import checksum_address, keccak256, parse_address
from moderntensor.state.account import EMPTY_ROOT
from moderntensor.state.statedb import StateCommit, StateDB
from moderntensor.state.trie import MemoryNodeStore, NodeReader

__all__ = [
    "DEFAULT_EVIDENCE_EPOCHS",
    "MAX_CHAIN_ID",
    "ConsensusConfig",
    "Genesis",
    "GenesisAccount",
    "GenesisError",
    "GenesisValidator",
    "alloc_state_root",
    "build_genesis",
    "compute_min_unbonding_epochs",
    "load_genesis",
    "parse_genesis",
]

_MAX_GENESIS_TIME = 2**40  # far beyond any real date, and safely inside u64 slot arithmetic

MAX_CHAIN_ID = 2**63 - 37
"""EIP-2294's "max range": ``floor(MAX_UINT64 / 2) - 36`` = 9,223,372,036,854,775,771, so an
EIP-155 ``v = chain_id * 2 + 36`` still fits in 64 bits, which wallets, hardware signers and
clients assume. (Its "safe range", for JavaScript numbers, ends at 2**31 - 1; MetaMask accepts
up to 4,503,599,627,370,476.)"""

DEFAULT_EVIDENCE_EPOCHS = 2
"""``consensus.evidence_epochs`` when the genesis file leaves it out."""


def compute_min_unbonding_epochs(evidence_epochs: int) -> int:
    """The least ``unbonding_epochs`` a genesis may set: the validator-set delay (unstaked stake
    votes that much longer), plus the evidence age limit, plus one epoch of margin (see the
    module docstring)."""
    return VALIDATOR_SET_DELAY_EPOCHS + evidence_epochs + 1


@attrs.frozen(slots=True)
class ConsensusConfig:
    slot_duration_ms: int
    epoch_length: int
    min_stake: int
    max_validators: int
    unbonding_epochs: int
    evidence_epochs: int
    slash_fraction_bps: int
    block_reward: int


@attrs.frozen(slots=True)
class NetworkConfig:
    p2p_port: int = 30303
    rpc_port: int = 8545
    max_peers: int = 50


@attrs.frozen(slots=True)
class BlockConfig:
    gas_limit: int
    base_fee: int
    min_gas_price: int


@attrs.frozen(slots=True)
class GenesisValidator:
    address: bytes
    consensus_pubkey: bytes
    stake: int
    name: str


@attrs.frozen(slots=True)
class Genesis:
    chain_id: int
    network_name: str
    genesis_time: int
    consensus: ConsensusConfig
    network: NetworkConfig
    block: BlockConfig
    total_supply: int
    decimals: int
    validators: tuple[GenesisValidator, ...]
    alloc: tuple[tuple[bytes, GenesisAccount], ...]

    @property
    def params(self) -> ChainParams:
        return ChainParams(
            chain_id=self.chain_id,
            gas_limit=self.block.gas_limit,
            min_base_fee=self.block.min_gas_price,
            block_reward=self.consensus.block_reward,
            epoch_length=self.consensus.epoch_length,
            min_stake=self.consensus.min_stake,
            unbonding_epochs=self.consensus.unbonding_epochs,
            evidence_epochs=self.consensus.evidence_epochs,
            slash_fraction_bps=self.consensus.slash_fraction_bps,
        )

    @property
    def genesis_supply(self) -> int:
        """What exists at block 0: allocations plus validator stakes."""
        return sum(a.balance for _, a in self.alloc) + sum(v.stake for v in self.validators)

    def params_digest(self) -> bytes:
        """keccak256 of the protocol parameters; goes in block 0's extra data so that two
        networks with different rules never share a genesis hash."""
        doc = {
            "chain_id": self.chain_id,
            "network_name": self.network_name,
            "consensus": attrs.asdict(self.consensus),
            "block": attrs.asdict(self.block),
            "total_supply": str(self.total_supply),
            "decimals": self.decimals,
        }
        return keccak256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def _section(doc: dict[str, Any], key: str, errs: _Errors) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        errs.add(key, "missing or not an object")
        return {}
    return value


def parse_genesis(doc: Any, source: str = "genesis") -> Genesis:
    """Build a :class:`Genesis` from parsed JSON.

    Raises:
        GenesisError: with every problem found (duplicate addresses, stake below the minimum,
            stake plus allocations over the supply, bad keys, bad times, bad types...).
    """
    errs = _Errors()
    if not isinstance(doc, dict):
        raise GenesisError(["<root>: expected a JSON object"], source)
    _check_keys(
        doc,
        {"chain_id", "network_name", "genesis_time", "consensus", "network", "block",
         "total_supply", "decimals", "validators", "alloc"},
        "",
        errs,
    )  # fmt: skip
    chain_id = _int(doc, "chain_id", "chain_id", errs, minimum=1)
    if chain_id > MAX_CHAIN_ID:
        errs.add("chain_id", f"{chain_id} is above {MAX_CHAIN_ID}, the largest EIP-2294 allows")
    name = doc.get("network_name")
    if not isinstance(name, str) or not name:
        errs.add("network_name", "missing or not a non-empty string")
        name = ""
    genesis_time = _int(doc, "genesis_time", "genesis_time", errs)
    if genesis_time > _MAX_GENESIS_TIME:
        errs.add("genesis_time", f"{genesis_time} is not a plausible unix time in seconds")
    consensus = _parse_consensus(_section(doc, "consensus", errs), errs)
    network = _parse_network(doc.get("network", {}), errs)
    block_doc = _section(doc, "block", errs)
    _check_keys(block_doc, {"gas_limit", "base_fee", "min_gas_price"}, "block.", errs)
    block = BlockConfig(
        gas_limit=_int(block_doc, "gas_limit", "block.gas_limit", errs, minimum=21_000),
        base_fee=_int(block_doc, "base_fee", "block.base_fee", errs),
        min_gas_price=_int(block_doc, "min_gas_price", "block.min_gas_price", errs),
    )
    if block.base_fee < block.min_gas_price:
        errs.add("block.base_fee", "must be at least block.min_gas_price")
    total_supply = _int(doc, "total_supply", "total_supply", errs, minimum=1)
    decimals = _int(doc, "decimals", "decimals", errs) if "decimals" in doc else 18
    if decimals > 36:
        errs.add("decimals", f"{decimals} is more than 36")
    validators = _parse_validators(doc.get("validators"), consensus, errs)
    alloc = parse_alloc(doc.get("alloc", {}), errs)
    seen: dict[bytes, str] = {}
    for i, v in enumerate(validators):
        where = f"validators[{i}].address"
        if v.address in seen:
            errs.add(where, f"duplicate of {seen[v.address]}")
        seen.setdefault(v.address, where)
    if not validators:
        errs.add("validators", "at least one validator is required")
    elif consensus.max_validators and len(validators) > consensus.max_validators:
        errs.add(
            "validators",
            f"{len(validators)} listed but consensus.max_validators is "
            f"{consensus.max_validators}: {len(validators) - consensus.max_validators} of them "
            "could never be active",
        )
    genesis = Genesis(
        chain_id, name, genesis_time, consensus, network, block, total_supply, decimals,
        tuple(validators), tuple(alloc),
    )  # fmt: skip
    if genesis.genesis_supply > total_supply:
        errs.add(
            "total_supply",
            f"stakes + alloc = {genesis.genesis_supply} exceed total_supply {total_supply}",
        )
    if errs.items:
        raise GenesisError(errs.items, source)
    return genesis


def _parse_consensus(doc: dict[str, Any], errs: _Errors) -> ConsensusConfig:
    _check_keys(
        doc,
        {"slot_duration", "epoch_length", "min_stake", "max_validators", "unbonding_epochs",
         "evidence_epochs", "slash_fraction", "block_reward"},
        "consensus.",
        errs,
    )  # fmt: skip
    slot_ms = 0
    raw = doc.get("slot_duration")
    try:
        seconds = Decimal(str(raw))
        slot_ms = int(seconds * 1000)
        if seconds * 1000 != slot_ms or slot_ms <= 0:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errs.add(
            "consensus.slot_duration", f"expected positive seconds (ms precision), got {raw!r}"
        )
    bps = 0
    raw = doc.get("slash_fraction")
    try:
        fraction = Decimal(str(raw))
        bps = int(fraction * 10_000)
        if fraction * 10_000 != bps or not 0 <= bps <= 10_000:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errs.add("consensus.slash_fraction", f"expected a decimal in [0, 1], got {raw!r}")
    before = len(errs.items)
    evidence_epochs = DEFAULT_EVIDENCE_EPOCHS
    if "evidence_epochs" in doc:
        evidence_epochs = _int(doc, "evidence_epochs", "consensus.evidence_epochs", errs, minimum=1)
    unbonding_epochs = _int(doc, "unbonding_epochs", "consensus.unbonding_epochs", errs)
    least = compute_min_unbonding_epochs(evidence_epochs)
    if len(errs.items) == before and unbonding_epochs < least:  # both numbers are sound
        errs.add(
            "consensus.unbonding_epochs",
            f"{unbonding_epochs} is too short: it must be at least {VALIDATOR_SET_DELAY_EPOCHS} "
            f"(validator-set delay) + evidence_epochs {evidence_epochs} + 1 = {least}, so "
            "stake cannot be withdrawn while an offence of its own can still be proven",
        )
    return ConsensusConfig(
        slot_duration_ms=slot_ms,
        epoch_length=_int(doc, "epoch_length", "consensus.epoch_length", errs, minimum=1),
        min_stake=_int(doc, "min_stake", "consensus.min_stake", errs, minimum=1),
        max_validators=_int(doc, "max_validators", "consensus.max_validators", errs, minimum=1),
        unbonding_epochs=unbonding_epochs,
        evidence_epochs=evidence_epochs,
        slash_fraction_bps=bps,
        block_reward=_int(doc, "block_reward", "consensus.block_reward", errs),
    )


def _parse_network(doc: Any, errs: _Errors) -> NetworkConfig:
    if not isinstance(doc, dict):
        errs.add("network", "not an object")
        return NetworkConfig()
    _check_keys(doc, {"p2p_port", "rpc_port", "max_peers"}, "network.", errs)
    values = {}
    for key, default in (("p2p_port", 30303), ("rpc_port", 8545), ("max_peers", 50)):
        values[key] = _int(doc, key, f"network.{key}", errs) if key in doc else default
    for key in ("p2p_port", "rpc_port"):
        if not 0 < values[key] < 65536:
            errs.add(f"network.{key}", f"{values[key]} is not a TCP port")
    return NetworkConfig(**values)


def _parse_validators(
    raw: Any, consensus: ConsensusConfig, errs: _Errors
) -> list[GenesisValidator]:
    if not isinstance(raw, list):
        errs.add("validators", "missing or not a list")
        return []
    out = []
    keys_seen: dict[bytes, int] = {}
    for i, item in enumerate(raw):
        where = f"validators[{i}]"
        if not isinstance(item, dict):
            errs.add(where, "not an object")
            continue
        _check_keys(item, {"address", "consensus_pubkey", "stake", "name"}, f"{where}.", errs)
        address = bytes(20)
        try:
            address = parse_address(item.get("address"))  # type: ignore[arg-type]
        except ValueError as exc:
            errs.add(f"{where}.address", str(exc))
        pubkey = b""
        try:
            text = item.get("consensus_pubkey")
            if not isinstance(text, str) or not text.startswith("0x"):
                raise ValueError("expected 0x-hex of a 33-byte compressed secp256k1 key")
            pubkey = bytes.fromhex(text[2:])
            if len(pubkey) != 33:
                raise ValueError(f"{len(pubkey)} bytes, expected a 33-byte compressed key")
            validator_id(pubkey)
        except ValueError as exc:
            errs.add(f"{where}.consensus_pubkey", str(exc))
            pubkey = b""
        if pubkey:
            if pubkey in keys_seen:
                errs.add(
                    f"{where}.consensus_pubkey", f"duplicate of validators[{keys_seen[pubkey]}]"
                )
            keys_seen.setdefault(pubkey, i)
        stake = _int(item, "stake", f"{where}.stake", errs)
        if consensus.min_stake and stake < consensus.min_stake:
            errs.add(
                f"{where}.stake", f"{stake} is below consensus.min_stake {consensus.min_stake}"
            )
        name = item.get("name", f"validator-{i}")
        if not isinstance(name, str) or len(name.encode()) > 64:
            errs.add(f"{where}.name", "must be a string of at most 64 bytes")
            name = ""
        out.append(GenesisValidator(address, pubkey, stake, name))
    return out


def load_genesis(path: str | Path) -> Genesis:
    """Read and validate a genesis file.

    Raises:
        GenesisError: unreadable, not JSON, or invalid; the message names the file.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise GenesisError(["is a directory, expected the genesis JSON file"], source) from None
    except OSError as exc:
        raise GenesisError([f"cannot read: {exc.strerror}"], source) from None
    except UnicodeDecodeError:
        raise GenesisError(["not a UTF-8 text file (expected genesis JSON)"], source) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError([f"not JSON: {exc}"], source) from None
    return parse_genesis(doc, source)


def build_genesis(genesis: Genesis, db: NodeReader | None = None) -> tuple[Block, StateCommit]:
    """Block 0 and its state: allocations, then validators in file order."""
    state = StateDB(db if db is not None else MemoryNodeStore())
    apply_alloc(state, genesis.alloc)
    for v in genesis.validators:
        put_validator(
            state,
            ValidatorRecord(address=v.address, consensus_pubkey=v.consensus_pubkey,
                            stake=v.stake, name=v.name),
        )  # fmt: skip
    commit = state.commit()
    header = Header(
        parent_hash=bytes(32),
        coinbase=bytes(20),
        state_root=commit.root,
        transactions_root=EMPTY_ROOT,
        receipts_root=EMPTY_ROOT,
        number=0,
        gas_limit=genesis.block.gas_limit,
        gas_used=0,
        timestamp=genesis.genesis_time,
        base_fee_per_gas=genesis.block.base_fee,
        slot=0,
        extra_data=genesis.params_digest(),
    )
    return Block(header), commit


def describe(genesis: Genesis, block: Block) -> dict[str, Any]:
    """The summary ``moderntensor genesis inspect`` prints."""
    return {
        "network_name": genesis.network_name,
        "chain_id": genesis.chain_id,
        "hash": "0x" + block.hash.hex(),
        "state_root": "0x" + block.header.state_root.hex(),
        "genesis_time": genesis.genesis_time,
        "total_supply": str(genesis.total_supply),
        "genesis_supply": str(genesis.genesis_supply),
        "accounts": len(genesis.alloc),
        "validators": [
            {
                "name": v.name,
                "address": checksum_address(v.address),
                "validator_id": checksum_address(validator_id(v.consensus_pubkey)),
                "consensus_pubkey": "0x" + v.consensus_pubkey.hex(),
                "stake": str(v.stake),
            }
            for v in genesis.validators
        ],
    }
