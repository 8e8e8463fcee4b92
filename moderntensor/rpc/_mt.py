"""``mt_*`` methods: validators, epoch and slot, leader schedule, finality, evidence, peers.

With a consensus view (``service.consensus``) its ``status()`` is the source: the keys read are
``validators``, ``epoch``, ``slot``, ``leader_schedule``, ``finality``, ``evidence`` and
``peers`` (any missing key falls back below; bytes are shown as 0x hex). Without one (a chain
replaying blocks, or tests) the answers come from the chain itself: validator records from the
staking state at the head, slots from the clock and genesis, the leader schedule from the
consensus rule over the finalized chain, evidence from the blocks that carried it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from moderntensor.chain.blocks import Header, compute_evidence_root
from moderntensor.chain.staking import get_total, get_validators, validator_id
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.chain.votes import (
    InvalidEvidence,
    decode_evidence,
    evidence_id,
    verify_evidence,
)
from moderntensor.codec import DecodeError
from moderntensor.consensus import compute_epoch_seed, compute_leader, compute_validator_set
from moderntensor.crypto import checksum_address
from moderntensor.service import ChainService

from ._chainview import ChainView
from ._methods import Method, Param
from ._params import parse_quantity

__all__ = ["MtApi", "to_json"]

MAX_SCHEDULE = 1024
EVIDENCE_SCAN_BLOCKS = 1024
_EMPTY_EVIDENCE_ROOT = compute_evidence_root(())


def to_json(value: Any) -> Any:
    """Consensus data as JSON: bytes as 0x hex, attrs/tuples/sets as lists, keys as strings."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if hasattr(value, "__attrs_attrs__"):
        return {a.name: to_json(getattr(value, a.name)) for a in value.__attrs_attrs__}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)  # JavaScript clients would lose precision
    return value


def _validator_json(record: ValidatorRecord) -> dict[str, Any]:
    if record.jailed:
        status = "jailed"
    elif record.stake == 0 and record.unbonding:
        status = "unbonding"
    elif record.stake == 0:
        status = "exited"
    else:
        status = "active"
    return {
        "address": checksum_address(record.address),
        "validatorId": checksum_address(validator_id(record.consensus_pubkey)),
        "consensusPubkey": "0x" + record.consensus_pubkey.hex(),
        "name": record.name,
        "stake": hex(record.stake),
        "status": status,
        "jailed": record.jailed,
        "unbonding": hex(record.unbonding),
        "unbondingEpoch": record.unbonding_epoch,
        "registeredEpoch": record.registered_epoch,
    }


class MtApi:
    """Handlers for the ``mt_*`` namespace; ``now`` is injectable for tests."""

    def __init__(
        self,
        service: ChainService,
        view: ChainView | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.view = view if view is not None else ChainView(service)
        self.now = now
        genesis = service.chain.genesis
        self.epoch_length = genesis.consensus.epoch_length
        self.slot_ms = genesis.consensus.slot_duration_ms
        self.genesis_time = genesis.genesis_time

    def methods(self) -> dict[str, Method]:
        count = Param("count", parse_quantity, required=False, default=None)
        return {
            "mt_validators": Method(self.validators),
            "mt_epoch": Method(self.epoch),
            "mt_leaderSchedule": Method(self.leader_schedule, (count,)),
            "mt_finality": Method(self.finality),
            "mt_evidence": Method(self.evidence),
            "mt_peers": Method(self.peers),
            "mt_status": Method(self.status),
        }

    def _consensus(self, key: str) -> Any:
        consensus = self.service.consensus
        if consensus is None:
            return None
        return consensus.status().get(key)

    # -- methods --------------------------------------------------------------------------

    def validators(self) -> list[Any]:
        given = self._consensus("validators")
        if given is not None:
            return list(to_json(given))
        state = self.service.state_at(self.service.head)
        return [_validator_json(r) for r in get_validators(state)]

    def _current_slot(self) -> int:
        slot = self._consensus("slot")
        if isinstance(slot, int):
            return slot
        elapsed_ms = int(self.now() * 1000) - self.genesis_time * 1000
        return max(self.service.head.slot, elapsed_ms // self.slot_ms)

    def epoch(self) -> dict[str, Any]:
        slot = self._current_slot()
        epoch = self._consensus("epoch")
        return {
            "epoch": epoch if isinstance(epoch, int) else slot // self.epoch_length,
            "slot": slot,
            "epochLength": self.epoch_length,
            "slotDurationMs": self.slot_ms,
            "genesisTime": self.genesis_time,
            "headSlot": self.service.head.slot,
            "finalizedSlot": self.service.finalized.slot,
        }

    def leader_schedule(self, count: int | None) -> list[Any]:
        """Leaders of the next ``count`` slots from the current one (default: one epoch)."""
        n = min(self.epoch_length if count is None else count, MAX_SCHEDULE)
        given = self._consensus("leader_schedule")
        if given is not None:
            return list(to_json(given))[:n]
        start = self._current_slot()
        out: list[Any] = []
        sets: dict[int, Any] = {}
        for slot in range(start, start + n):
            epoch = slot // self.epoch_length
            if epoch not in sets:
                sets[epoch] = self._validator_set(epoch)
            vset = sets[epoch]
            if vset is None:
                break  # the epoch's snapshot is not final yet: its leaders are not known
            leader = compute_leader(vset, slot)
            out.append({"slot": slot, "epoch": epoch, "leader": checksum_address(leader)})
        return out

    def _validator_set(self, epoch: int) -> Any:
        """The epoch's set by the consensus rule: records at the last finalized block at or
        before the last slot of epoch ``epoch - 2`` (genesis for epochs 0 and 1)."""
        snapshot_slot = max(0, (epoch - 1) * self.epoch_length - 1)
        header: Header | None = self.service.finalized
        if header is not None and header.slot < snapshot_slot:
            return None
        for _ in range(4 * self.epoch_length + 64):
            if header is None or header.slot <= snapshot_slot:
                break
            header = self.service.header_by_hash(header.parent_hash)
        if header is None or header.slot > snapshot_slot:
            return None
        genesis = self.service.chain.genesis
        records = get_validators(self.service.state_at(header))
        seed = compute_epoch_seed(self.service.genesis_hash, epoch, header.hash)
        try:
            return compute_validator_set(
                records,
                epoch,
                seed,
                genesis.consensus.max_validators,
                genesis.consensus.min_stake,
            )
        except ValueError:
            return None

    def finality(self) -> dict[str, Any]:
        given = self._consensus("finality")
        head, final = self.service.head, self.service.finalized
        out = {
            "headNumber": hex(head.number),
            "headSlot": head.slot,
            "headHash": "0x" + head.hash.hex(),
            "finalizedNumber": hex(final.number),
            "finalizedSlot": final.slot,
            "finalizedHash": "0x" + final.hash.hex(),
            "lag": head.number - final.number,
        }
        if isinstance(given, dict):
            out.update(to_json(given))
        return out

    def evidence(self) -> dict[str, Any]:
        """Evidence included in recent blocks, and the total slashed so far."""
        state = self.service.state_at(self.service.head)
        given = self._consensus("evidence")
        items = list(to_json(given)) if given is not None else self._scan_evidence()
        return {"slashedTotal": hex(get_total(state, "slashed")), "evidence": items}

    def _scan_evidence(self) -> list[dict[str, Any]]:
        service = self.service
        out: list[dict[str, Any]] = []
        header: Header | None = service.head
        for _ in range(EVIDENCE_SCAN_BLOCKS):
            if header is None or header.number == 0:
                break
            if header.evidence_root != _EMPTY_EVIDENCE_ROOT:
                block = self.view.block(header)
                for raw in block.evidence if block is not None else ():
                    out.append(self._evidence_json(raw, header))
            header = service.header_by_hash(header.parent_hash)
        return out

    def _evidence_json(self, raw: bytes, header: Header) -> dict[str, Any]:
        item: dict[str, Any] = {
            "blockNumber": hex(header.number),
            "blockHash": "0x" + header.hash.hex(),
        }
        try:
            evidence = decode_evidence(raw)
            offender = verify_evidence(evidence, self.service.chain_id, self.service.genesis_hash)
        except (DecodeError, InvalidEvidence):
            return item  # a committed block's evidence was checked on import; defensive
        item.update(
            {
                "offender": checksum_address(offender),
                "slot": evidence.first.slot,
                "kinds": [evidence.first.kind.name, evidence.second.kind.name],
                "evidenceId": "0x" + evidence_id(evidence).hex(),
            }
        )
        return item

    def peers(self) -> dict[str, Any]:
        given = self._consensus("peers")
        peers = list(to_json(given)) if given is not None else []
        return {"count": self.service.peer_count(), "peers": peers}

    def status(self) -> dict[str, Any]:
        return {
            "chainId": hex(self.service.chain_id),
            "genesisHash": "0x" + self.service.genesis_hash.hex(),
            "epoch": self.epoch(),
            "finality": self.finality(),
            "validators": self.validators(),
            "peers": self.peers(),
            "syncing": self.service.syncing,
        }
