"""mt_* methods: chain facts from the service, consensus facts from the node's typed status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moderntensor.chain.timing import compute_block_epoch
from moderntensor.crypto import checksum_address
from moderntensor.node._status import ConsensusStatus
from moderntensor.node.devnet import DEV_STAKE
from moderntensor.rpc import RpcApp, RpcConfig
from moderntensor.service import ChainService
from tests.rpc.conftest import RawClient
from tests.rpc.devnode import KEYS, VALIDATOR_KEY, VALIDATOR_OWNER, DevNode


def test_mt_from_chain_state(rpc: RawClient) -> None:
    validators = rpc.call("mt_validators")
    assert validators == [
        {
            "address": checksum_address(VALIDATOR_OWNER.address),
            "validatorId": checksum_address(VALIDATOR_KEY.address),
            "consensusPubkey": "0x" + VALIDATOR_KEY.public_key_bytes.hex(),
            "name": KEYS.validator.name,
            "stake": hex(DEV_STAKE),
            "status": "active",
            "jailed": False,
            "unbonding": "0x0",
            "unbondingEpoch": 0,
            "registeredEpoch": 0,
        }
    ]
    epoch = rpc.call("mt_epoch")
    # epochs count blocks: the node votes in the epoch of the block after the finalized one
    assert epoch["boundaryHeight"] == (epoch["epoch"] + 1) * epoch["epochLength"]
    assert epoch["slot"] >= epoch["headSlot"] >= epoch["finalizedSlot"]
    schedule = rpc.call("mt_leaderSchedule", ["0x5"])
    assert 1 <= len(schedule) <= 5
    assert [s["slot"] for s in schedule] == list(
        range(schedule[0]["slot"], schedule[0]["slot"] + len(schedule))
    )
    assert {s["leader"] for s in schedule} == {checksum_address(VALIDATOR_KEY.address)}
    finality = rpc.call("mt_finality")
    assert (
        int(finality["headNumber"], 16) - int(finality["finalizedNumber"], 16)
        == finality["lag"]
        >= 0
    )
    assert rpc.call("mt_evidence") == {"slashedTotal": "0x0", "evidence": []}
    assert rpc.call("mt_peers") == {"count": 0, "peers": []}
    status = rpc.call("mt_status")
    assert status["chainId"] == "0x539" and status["validators"] == validators


class FakeConsensus:
    def status(self) -> ConsensusStatus:
        return ConsensusStatus(
            slot=61, epoch=0, view=59, synced=False, finalized_slot=58, last_finality_ms=120,
            evidence_pending=2,
        )  # fmt: skip


def _dispatcher(node: DevNode, consensus: Any) -> Callable[..., Any]:
    def build() -> Any:
        base = node.service
        service = ChainService(base.chain, base.pool, consensus=consensus, peer_count=lambda: 1)
        return RpcApp(service, RpcConfig(port=0)).dispatcher

    dispatcher = node.call(build)

    def call(method: str, params: list[Any] | None = None) -> Any:
        answer = node.call(
            lambda: dispatcher.handle_message(
                {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
            )
        )
        assert isinstance(answer, dict) and "result" in answer, answer
        return answer["result"]

    return call


def test_mt_from_a_consensus_view(node: DevNode) -> None:
    """The typed status supplies what only consensus knows; the rest is chain state."""
    call = _dispatcher(node, FakeConsensus())
    assert call("mt_validators")[0]["validatorId"] == checksum_address(VALIDATOR_KEY.address)
    epoch = call("mt_epoch")
    assert (epoch["epoch"], epoch["slot"], epoch["boundaryHeight"]) == (0, 61, 32)
    schedule = call("mt_leaderSchedule", ["0x3"])
    assert [(s["slot"], s["epoch"]) for s in schedule] == [(61, 0), (62, 0), (63, 0)]
    assert {s["leader"] for s in schedule} == {checksum_address(VALIDATOR_KEY.address)}
    finality = call("mt_finality")
    assert finality["view"] == 59 and finality["synced"] is False
    assert finality["consensusFinalizedSlot"] == 58
    assert (finality["lastFinalityMs"], finality["evidencePending"]) == (120, 2)
    assert call("mt_peers") == {"count": 1, "peers": []}


def test_mt_without_a_consensus_view(node: DevNode) -> None:
    """A chain alone: the slot from the clock, the epoch from the finalized head."""
    call = _dispatcher(node, None)
    epoch = call("mt_epoch")
    finality = call("mt_finality")
    finalized = int(finality["finalizedNumber"], 16)
    assert epoch["epoch"] <= compute_block_epoch(finalized + 1, epoch["epochLength"])
    assert epoch["slot"] >= epoch["headSlot"]
    assert "view" not in finality
