"""``mt_*`` methods: validators, epoch and slot, leader schedule, finality, evidence, peers.

Chain facts come from the chain service: validator records from the staking state at the
head, each epoch's validator set from :meth:`ChainService.validator_set` (the one home of the
set rule), evidence from the blocks that carried it, slots and epochs from ``chain.timing``.
With a consensus view (``service.consensus``, the running node) its typed status adds what
only consensus knows: the wall-clock slot, the epoch and view it votes in, whether it is
synced, the last finality time and the evidence waiting for a block. Without one (a chain
replaying blocks, or tests) the slot comes from the clock and the epoch from the finalized
head.

``mt_status`` also reports the node process's own figures for monitors (``process``: CPU
seconds, resident memory, bytes of the data directory and free bytes on its disk); the
data directory's size is a walk of its files, cached for ``DATA_DIR_CACHE_S`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moderntensor.chain.blocks import Header, compute_evidence_root
from moderntensor.chain.staking import get_total, get_validators, validator_id
from moderntensor.chain.timing import (
    compute_block_epoch,
    compute_boundary_height,
    compute_slot_at,
)
from moderntensor.chain.validators import ValidatorRecord
from moderntensor.chain.votes import (
    InvalidEvidence,
    decode_evidence,
    evidence_id,
    verify_evidence,
)
from moderntensor.codec import DecodeError
from moderntensor.consensus import ValidatorSet, compute_leader
from moderntensor.crypto import checksum_address
from moderntensor.service import ChainService, ConsensusFacts

from ._chainview import ChainView
from ._methods import Method, Param
from ._params import parse_block_id, parse_quantity

__all__ = ["MtApi"]

MAX_SCHEDULE = 1024
MAX_SLOTS = 1024
DEFAULT_SLOTS = 64
EVIDENCE_SCAN_BLOCKS = 1024
DATA_DIR_CACHE_S = 10.0
_EMPTY_EVIDENCE_ROOT = compute_evidence_root(())


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


def compute_tree_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (not following links; unreadable parts skip)."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue  # a file removed during the walk (RocksDB compaction)
        except OSError:
            continue
    return total


def _rss_bytes() -> int:
    """The process's resident memory now (Linux /proc), else its peak from getrusage."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class _ProcessProbe:
    """CPU, memory and disk figures of this node process; the data dir's size is cached."""

    def __init__(self, data_dir: Path | None, now: Callable[[], float]) -> None:
        self.data_dir = data_dir
        self.now = now
        self._size: tuple[float, int] | None = None

    def facts(self) -> dict[str, Any]:
        times = os.times()
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "cpuSeconds": round(times.user + times.system, 3),
            "rssBytes": _rss_bytes(),
            "dataDirBytes": None,
            "diskFreeBytes": None,
        }
        if self.data_dir is None:
            return out
        now = self.now()
        if self._size is None or not 0 <= now - self._size[0] < DATA_DIR_CACHE_S:
            self._size = (now, compute_tree_bytes(self.data_dir))
        out["dataDirBytes"] = self._size[1]
        with contextlib.suppress(OSError):
            out["diskFreeBytes"] = shutil.disk_usage(self.data_dir).free
        return out


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
        db_path = getattr(getattr(service.chain, "db", None), "path", None)
        data_dir = None if db_path is None else Path(db_path).parent  # <data_dir>/chaindb
        self.process = _ProcessProbe(data_dir, now)

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
            "mt_slots": Method(
                self.slots,
                (count, Param("block", parse_block_id, required=False, default="latest")),
            ),
        }

    def _status(self) -> ConsensusFacts | None:
        consensus = self.service.consensus
        return None if consensus is None else consensus.status()

    # -- methods --------------------------------------------------------------------------

    def validators(self) -> list[Any]:
        state = self.service.state_at(self.service.head)
        return [_validator_json(r) for r in get_validators(state)]

    def _slot_and_epoch(self) -> tuple[int, int]:
        """The wall-clock slot and the epoch votes are in (epochs count blocks: the epoch of
        the block after the newest finalized one)."""
        status = self._status()
        if status is not None:
            return status.slot, status.epoch
        now_ms = int(self.now() * 1000)
        slot = compute_slot_at(self.genesis_time * 1000, self.slot_ms, now_ms)
        epoch = compute_block_epoch(self.service.finalized.number + 1, self.epoch_length)
        return max(self.service.head.slot, slot), epoch

    def epoch(self) -> dict[str, Any]:
        slot, epoch = self._slot_and_epoch()
        return {
            "epoch": epoch,
            "slot": slot,
            "epochLength": self.epoch_length,
            "boundaryHeight": compute_boundary_height(epoch, self.epoch_length),
            "slotDurationMs": self.slot_ms,
            "genesisTime": self.genesis_time,
            "headSlot": self.service.head.slot,
            "finalizedSlot": self.service.finalized.slot,
        }

    def leader_schedule(self, count: int | None) -> list[Any]:
        """Leaders of the next ``count`` slots from the current one (default: one epoch's
        length) by the current epoch's set; an epoch ends when its boundary block is final,
        not at a slot, so slots after that would have the next epoch's leaders."""
        n = min(self.epoch_length if count is None else count, MAX_SCHEDULE)
        start, epoch = self._slot_and_epoch()
        vset = self._validator_set(epoch)
        if vset is None:
            return []  # the epoch's snapshot is not final here yet
        return [
            {"slot": slot, "epoch": epoch, "leader": checksum_address(compute_leader(vset, slot))}
            for slot in range(start, start + n)
        ]

    def slots(self, count: int | None, block_id: str | int) -> list[Any]:
        """What became of the ``count`` slots (default 64, at most 1024) up to the slot of
        ``block`` (default the head), newest first: each slot's leader by its epoch's set and
        the block that filled it, or none (a missed slot: nullified, or its proposal lost).

        Walking back from the block, the slots between a block's parent and the block belong
        to the block's epoch (epochs count blocks), so its set names their leaders too.
        """
        n = min(DEFAULT_SLOTS if count is None else count, MAX_SLOTS)
        header = self.view.header(block_id)
        out: list[dict[str, Any]] = []
        sets: dict[int, ValidatorSet | None] = {}
        while header is not None and header.number > 0 and len(out) < n:
            epoch = compute_block_epoch(header.number, self.epoch_length)
            if epoch not in sets:
                sets[epoch] = self._validator_set(epoch)
            vset = sets[epoch]
            parent = self.service.header_by_hash(header.parent_hash)
            low = parent.slot if parent is not None else header.slot - 1
            for slot in range(header.slot, max(low, header.slot - (n - len(out))), -1):
                filled = slot == header.slot
                leader = None if vset is None else checksum_address(compute_leader(vset, slot))
                out.append(
                    {
                        "slot": slot,
                        "epoch": epoch,
                        "leader": leader,
                        "blockNumber": hex(header.number) if filled else None,
                        "blockHash": "0x" + header.hash.hex() if filled else None,
                        "proposer": checksum_address(header.proposer) if filled else None,
                    }
                )
            header = parent
        return out

    def _validator_set(self, epoch: int) -> ValidatorSet | None:
        try:
            return self.service.validator_set(epoch)
        except ValueError:  # a malformed key in the snapshot state: nothing to show
            return None

    def finality(self) -> dict[str, Any]:
        head, final = self.service.head, self.service.finalized
        out: dict[str, Any] = {
            "headNumber": hex(head.number),
            "headSlot": head.slot,
            "headHash": "0x" + head.hash.hex(),
            "finalizedNumber": hex(final.number),
            "finalizedSlot": final.slot,
            "finalizedHash": "0x" + final.hash.hex(),
            "lag": head.number - final.number,
        }
        status = self._status()
        if status is not None:
            out.update(
                {
                    "view": status.view,
                    "synced": status.synced,
                    "consensusFinalizedSlot": status.finalized_slot,
                    "lastFinalityMs": status.last_finality_ms,
                    "evidencePending": status.evidence_pending,
                }
            )
        return out

    def evidence(self) -> dict[str, Any]:
        """Evidence included in recent blocks, and the total slashed so far."""
        state = self.service.state_at(self.service.head)
        items = self._scan_evidence()
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
                "epoch": evidence.first.epoch,
                "slot": evidence.first.slot,
                "kinds": [evidence.first.kind.name, evidence.second.kind.name],
                "evidenceId": "0x" + evidence_id(evidence).hex(),
            }
        )
        return item

    def peers(self) -> dict[str, Any]:
        """The connected peers (none without a network): id, address, direction, since when
        (unix seconds), score, and head and finalized slot as last known."""
        network = self.service.network
        facts = [] if network is None else network.peer_facts()
        peers = [
            {
                "peerId": p.peer_id,
                "address": p.address,
                "direction": p.direction,
                "connectedSince": int(p.connected_since),
                "score": round(p.score, 3),
                "headNumber": hex(p.head_number),
                "headHash": "0x" + p.head_hash.hex(),
                "finalizedSlot": p.finalized_slot,
                "protocolVersion": p.protocol_version,
            }
            for p in facts
        ]
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
            "process": self.process.facts(),
        }
