"""mt_* methods: from the staking state without a consensus view, and from one when given."""

from __future__ import annotations

from typing import Any

from moderntensor.crypto import checksum_address
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
    assert epoch["epoch"] == epoch["slot"] // epoch["epochLength"]
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
    def status(self) -> dict[str, Any]:
        return {
            "epoch": 7,
            "slot": 61,
            "validators": [{"id": b"\x01" * 20, "stake": 5, "status": "jailed"}],
            "leader_schedule": [{"slot": 61 + i, "leader": b"\x02" * 20} for i in range(10)],
            "finality": {"finalizedSlot": 60},
            "evidence": [{"offender": b"\x01" * 20, "slot": 12, "kinds": ["NOTARIZE", "NOTARIZE"]}],
            "peers": [{"id": "16Uiu2", "address": "/ip4/127.0.0.1/tcp/30303/ws"}],
        }


def test_mt_from_a_consensus_view(node: DevNode) -> None:
    def build() -> Any:
        base = node.service
        service = ChainService(
            base.chain, base.pool, consensus=FakeConsensus(), peer_count=lambda: 1
        )
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

    assert call("mt_validators") == [{"id": "0x" + "01" * 20, "stake": 5, "status": "jailed"}]
    assert call("mt_epoch")["epoch"] == 7 and call("mt_epoch")["slot"] == 61
    assert len(call("mt_leaderSchedule", ["0x3"])) == 3
    assert call("mt_finality")["finalizedSlot"] == 60
    assert call("mt_evidence")["evidence"][0]["offender"] == "0x" + "01" * 20
    assert call("mt_peers") == {"count": 1, "peers": FakeConsensus().status()["peers"]}
