"""Every eth_* method against the spec's result schemas, and Ethereum's edge semantics."""

from __future__ import annotations

import pytest
from eth_account import Account

from moderntensor.chain.constants import STAKING_ADDRESS
from moderntensor.chain.execution import NO_CONTRACT_CALLS
from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.crypto import checksum_address, keccak256
from moderntensor.state.account import EMPTY_CODE_HASH, EMPTY_ROOT
from moderntensor.state.trie import HexaryTrie, MemoryNodeStore
from tests.rpc.conftest import RawClient, RpcFailed
from tests.rpc.devnode import DEV_BALANCE, DEV_KEYS

DEV0 = checksum_address(DEV_KEYS[0].address)
UNKNOWN_HASH = "0x" + "ab" * 32


def test_state_reads(rpc: RawClient) -> None:
    assert rpc.call("eth_getBalance", [DEV0, "0x0"]) == hex(DEV_BALANCE)
    assert rpc.call("eth_getTransactionCount", [DEV0, "latest"]) == "0x0"
    assert rpc.call("eth_getTransactionCount", [DEV0, "pending"]) == "0x0"
    assert rpc.call("eth_getCode", [DEV0, "latest"]) == "0x"
    assert rpc.call("eth_getStorageAt", [DEV0, "0x0", "latest"]) == "0x" + "00" * 32
    for tag in ("latest", "earliest", "pending", "safe", "finalized"):
        rpc.call("eth_getBalance", [DEV0, tag])
    rpc.call("eth_getBalance", [DEV0, {"blockNumber": "0x0"}])
    genesis = rpc.call("eth_getBlockByNumber", ["0x0", False], exists=True)
    assert rpc.call("eth_getBalance", [DEV0, genesis["hash"]]) == hex(DEV_BALANCE)
    with pytest.raises(RpcFailed) as beyond:
        rpc.call("eth_getBalance", [DEV0, "0xffffffff"])
    assert beyond.value.code == -32000 and "header not found" in beyond.value.message


def test_get_proof_verifies_against_the_state_root(rpc: RawClient) -> None:
    block = rpc.call("eth_getBlockByNumber", ["latest", False], exists=True)
    proof = rpc.call("eth_getProof", [DEV0, ["0x0", "0x" + "01" * 32], block["number"]])
    assert proof["balance"] == hex(DEV_BALANCE) or int(proof["balance"], 16) < DEV_BALANCE
    assert proof["codeHash"] == "0x" + EMPTY_CODE_HASH.hex()
    assert proof["storageHash"] == "0x" + EMPTY_ROOT.hex()
    assert [p["value"] for p in proof["storageProof"]] == ["0x0", "0x0"]
    # the first node hashes to the state root and the path leads to the account
    nodes = [bytes.fromhex(n[2:]) for n in proof["accountProof"]]
    assert keccak256(nodes[0]).hex() == block["stateRoot"][2:]
    trie = HexaryTrie(MemoryNodeStore({keccak256(n): n for n in nodes}), keccak256(nodes[0]))
    assert trie.get(keccak256(DEV_KEYS[0].address)) is not None


def test_fee_methods(rpc: RawClient) -> None:
    base = int(
        rpc.call("eth_getBlockByNumber", ["latest", False], exists=True)["baseFeePerGas"], 16
    )
    tip = int(rpc.call("eth_maxPriorityFeePerGas"), 16)
    assert int(rpc.call("eth_gasPrice"), 16) >= base
    assert tip >= 0
    history = rpc.call("eth_feeHistory", ["0x5", "latest", [0, 25, 50, 75, 100]])
    assert len(history["baseFeePerGas"]) == len(history["gasUsedRatio"]) + 1
    assert all(len(r) == 5 for r in history["reward"])
    assert "reward" not in rpc.call("eth_feeHistory", ["0x2", "latest", []])
    assert rpc.call("eth_feeHistory", [3, "0x0", []])["oldestBlock"] == "0x0"
    with pytest.raises(RpcFailed) as bad:
        rpc.call("eth_feeHistory", ["0x2", "latest", [50, 10]])
    assert bad.value.code == -32602 and "rewardPercentiles" in bad.value.message


def test_call_and_estimate(rpc: RawClient) -> None:
    to = Account.create().address
    transfer = {"from": DEV0, "to": to, "value": "0x1"}
    assert rpc.call("eth_estimateGas", [transfer]) == hex(21_000)
    assert rpc.call("eth_call", [transfer, "latest"]) == "0x"
    staking = {"from": DEV0, "to": checksum_address(STAKING_ADDRESS), "data": "0xc102"}
    assert int(rpc.call("eth_estimateGas", [staking]), 16) > 21_000
    with pytest.raises(RpcFailed) as code_call:
        rpc.call("eth_call", [{"to": to, "data": "0x70a08231"}, "latest"])
    assert code_call.value.code == -32000 and "not supported" in code_call.value.message
    with pytest.raises(RpcFailed) as create:
        rpc.call("eth_estimateGas", [{"from": DEV0, "data": "0x6000"}])
    assert "contract creation" in create.value.message
    with pytest.raises(RpcFailed) as broke:
        rpc.call("eth_estimateGas", [{"from": to, "to": DEV0, "value": "0x1"}])
    assert "insufficient funds" in broke.value.message


def test_one_wording_for_the_no_contracts_refusal(rpc: RawClient) -> None:
    """eth_call, eth_estimateGas and eth_sendRawTransaction refuse data sent to an account
    other than the staking address with the same words."""
    to = Account.create().address
    call = {"from": DEV0, "to": to, "data": "0x70a08231"}
    messages = set()
    for method, params in (("eth_call", [call, "latest"]), ("eth_estimateGas", [call])):
        with pytest.raises(RpcFailed) as refused:
            rpc.call(method, params)
        messages.add(refused.value.message)
    tx = sign_transaction(
        DynamicFeeTransaction(
            chain_id=1337, nonce=0, max_priority_fee_per_gas=10**9, max_fee_per_gas=10**11,
            gas=100_000, to=bytes.fromhex(to[2:]), data=bytes.fromhex("70a08231"),
        ),
        DEV_KEYS[5],
    )  # fmt: skip
    with pytest.raises(RpcFailed) as sent:
        rpc.call("eth_sendRawTransaction", ["0x" + tx.raw.hex()])
    messages.add(sent.value.message)
    assert messages == {NO_CONTRACT_CALLS}


def test_unknown_things_are_null(rpc: RawClient) -> None:
    assert rpc.call("eth_getTransactionByHash", [UNKNOWN_HASH]) is None
    assert rpc.call("eth_getTransactionReceipt", [UNKNOWN_HASH]) is None
    assert rpc.call("eth_getBlockByHash", [UNKNOWN_HASH, False]) is None
    assert rpc.call("eth_getBlockByNumber", ["0xffffff", True]) is None
    assert rpc.call("eth_getBlockTransactionCountByHash", [UNKNOWN_HASH]) is None
    assert rpc.call("eth_getBlockTransactionCountByNumber", ["0xffffff"]) is None
    assert rpc.call("eth_getTransactionByBlockNumberAndIndex", ["0x0", "0x0"]) is None
    assert rpc.call("eth_getTransactionByBlockHashAndIndex", [UNKNOWN_HASH, "0x0"]) is None
    assert rpc.call("eth_getBlockReceipts", ["0xffffff"]) is None


def test_get_logs_is_empty_and_well_formed(rpc: RawClient) -> None:
    assert rpc.call("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}]) == []
    assert (
        rpc.call("eth_getLogs", [{"address": [DEV0], "topics": [None, ["0x" + "00" * 32]]}]) == []
    )
    genesis = rpc.call("eth_getBlockByNumber", ["0x0", False], exists=True)
    assert rpc.call("eth_getLogs", [{"blockHash": genesis["hash"]}]) == []
    with pytest.raises(RpcFailed) as unknown:
        rpc.call("eth_getLogs", [{"blockHash": UNKNOWN_HASH}])
    assert unknown.value.code == -32000
    with pytest.raises(RpcFailed) as both:
        rpc.call("eth_getLogs", [{"blockHash": genesis["hash"], "fromBlock": "0x0"}])
    assert both.value.code == -32602


def test_invalid_params_name_the_parameter(rpc: RawClient) -> None:
    cases = [
        ("eth_getBalance", ["0x1234", "latest"], "invalid argument 0 (address)"),
        ("eth_getBalance", [DEV0, "newest"], "invalid argument 1 (block)"),
        ("eth_getBlockByNumber", ["0x01", False], "leading zero"),
        ("eth_getBlockByNumber", ["latest"], "invalid argument 1 (hydrated)"),
        ("eth_getTransactionByHash", [123], "invalid argument 0 (hash)"),
        ("eth_chainId", [1], "too many arguments"),
        ("eth_getStorageAt", [DEV0, "0x" + "0" * 66, "latest"], "invalid argument 1 (slot)"),
    ]
    for method, params, text in cases:
        with pytest.raises(RpcFailed) as exc:
            rpc.call(method, params)
        assert exc.value.code == -32602, (method, exc.value.message)
        assert text in exc.value.message, (method, exc.value.message)
