"""web3.py over real HTTP against the dev node: identity, balances, EIP-1559 and legacy
transfers signed by eth-account, receipts, exact balance changes, finality, rejections."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import Web3RPCError

from moderntensor.crypto import PrivateKey, checksum_address
from tests.rpc.conftest import RawClient, RpcFailed
from tests.rpc.devnode import CHAIN_ID, DEV_BALANCE, DEV_KEYS, DevNode

GWEI = 10**9


def _account(i: int) -> Account:
    return Account.from_key(DEV_KEYS[i].secret)


def _wait_receipt(w3: Web3, tx_hash: bytes) -> dict:
    return dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=15, poll_latency=0.05))


def _wait_finalized(w3: Web3, number: int) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        finalized = w3.eth.get_block("finalized")["number"]
        if finalized >= number:
            return finalized
        time.sleep(0.05)
    raise AssertionError(f"block {number} not finalized within 15 s")


def test_identity_and_dev_balances(w3: Web3, rpc: RawClient) -> None:
    assert w3.eth.chain_id == CHAIN_ID
    assert rpc.call("eth_chainId") == hex(CHAIN_ID)
    assert rpc.call("net_version") == str(CHAIN_ID)
    assert rpc.call("web3_clientVersion").startswith("moderntensor")
    assert rpc.call("net_listening") is True
    assert rpc.call("net_peerCount") == "0x0"
    assert rpc.call("eth_accounts") == []
    assert rpc.call("eth_syncing") is False
    for key in DEV_KEYS:
        address = checksum_address(key.address)
        assert w3.eth.get_balance(address, block_identifier=0) == DEV_BALANCE
        assert rpc.call("eth_getBalance", [address, "earliest"]) == hex(DEV_BALANCE)
    assert _account(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def _check_transfer(
    w3: Web3, rpc: RawClient, sender: str, to: str, value: int, tx_hash: bytes
) -> dict:
    receipt = _wait_receipt(w3, tx_hash)
    number = receipt["blockNumber"]
    block = w3.eth.get_block(number)
    raw_receipt = rpc.call("eth_getTransactionReceipt", ["0x" + tx_hash.hex()], exists=True)
    assert raw_receipt["status"] == "0x1" and receipt["status"] == 1
    assert (
        receipt["gasUsed"]
        == 21_000
        == receipt["cumulativeGasUsed"]
        - sum(
            r["gasUsed"]
            for r in rpc.call("eth_getBlockReceipts", [hex(number)])
            if int(r["transactionIndex"], 16) < receipt["transactionIndex"]
        )
    )
    tx = w3.eth.get_transaction(tx_hash)
    tip_cap = tx.get("maxPriorityFeePerGas", tx["gasPrice"])
    fee_cap = tx.get("maxFeePerGas", tx["gasPrice"])
    assert receipt["effectiveGasPrice"] == min(fee_cap, block["baseFeePerGas"] + tip_cap)
    assert raw_receipt["type"] == hex(tx["type"])
    assert raw_receipt["logs"] == [] and int(raw_receipt["logsBloom"], 16) == 0
    cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    before = w3.eth.get_balance(sender, block_identifier=number - 1)
    after = w3.eth.get_balance(sender, block_identifier=number)
    assert before - after == value + cost
    assert (
        w3.eth.get_balance(to, block_identifier=number)
        - w3.eth.get_balance(to, block_identifier=number - 1)
        == value
    )
    assert (
        w3.eth.get_transaction_count(sender, number)
        == w3.eth.get_transaction_count(sender, number - 1) + 1
    )
    rpc.call("eth_getTransactionByHash", ["0x" + tx_hash.hex()], exists=True)
    rpc.call("eth_getBlockByNumber", [hex(number), True], exists=True)
    rpc.call("eth_getBlockByHash", [block["hash"].to_0x_hex(), False], exists=True)
    index = hex(receipt["transactionIndex"])
    found = rpc.call("eth_getTransactionByBlockNumberAndIndex", [hex(number), index], exists=True)
    assert found["hash"] == "0x" + tx_hash.hex()
    rpc.call(
        "eth_getTransactionByBlockHashAndIndex", [block["hash"].to_0x_hex(), index], exists=True
    )
    count = rpc.call("eth_getBlockTransactionCountByNumber", [hex(number)], exists=True)
    assert int(count, 16) == len(block["transactions"]) >= 1
    return receipt


def test_eip1559_transfer(w3: Web3, rpc: RawClient) -> None:
    sender, to, value = _account(1), Account.create().address, 12345 * GWEI
    nonce = w3.eth.get_transaction_count(sender.address, "pending")
    tip = w3.eth.max_priority_fee
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    signed = sender.sign_transaction(
        {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": nonce,
            "to": to,
            "value": value,
            "gas": 21_000,
            "maxPriorityFeePerGas": tip,
            "maxFeePerGas": 2 * base + tip,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert tx_hash == signed.hash
    receipt = _check_transfer(w3, rpc, sender.address, to, value, tx_hash)
    assert w3.eth.get_transaction_count(sender.address) == nonce + 1
    assert w3.eth.get_balance(to) == value
    assert _wait_finalized(w3, receipt["blockNumber"]) >= receipt["blockNumber"]
    assert rpc.call("eth_getBlockByNumber", ["finalized", False], exists=True)
    assert rpc.call("eth_getBalance", [to, "finalized"]) == hex(value)

    with pytest.raises(Web3RPCError) as replay:
        w3.eth.send_raw_transaction(signed.raw_transaction)
    assert "nonce too low" in str(replay.value) or "already known" in str(replay.value)


def test_legacy_transfer(w3: Web3, rpc: RawClient) -> None:
    sender, to, value = _account(2), Account.create().address, 7 * GWEI
    nonce = w3.eth.get_transaction_count(sender.address, "pending")
    signed = sender.sign_transaction(
        {
            "chainId": CHAIN_ID,
            "nonce": nonce,
            "to": to,
            "value": value,
            "gas": 21_000,
            "gasPrice": w3.eth.gas_price,
        }
    )
    assert signed.raw_transaction[0] >= 0xC0  # a legacy RLP list, not a typed envelope
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = _check_transfer(w3, rpc, sender.address, to, value, tx_hash)
    assert receipt["type"] == 0
    assert w3.eth.get_transaction(tx_hash)["v"] in (2 * CHAIN_ID + 35, 2 * CHAIN_ID + 36)


def test_web3_builds_fills_and_sends(w3: Web3) -> None:
    """web3.py's own gas and fee filling (eth_estimateGas, eth_maxPriorityFeePerGas,
    eth_getBlockByNumber's baseFeePerGas) gives a transaction that is accepted."""
    sender, to = _account(3), Account.create().address
    tx = {
        "from": sender.address,
        "to": to,
        "value": 1,
        "chainId": CHAIN_ID,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
    }
    tx["gas"] = w3.eth.estimate_gas(tx)
    assert tx["gas"] == 21_000
    tx["maxPriorityFeePerGas"] = w3.eth.max_priority_fee
    tx["maxFeePerGas"] = (
        2 * w3.eth.get_block("latest")["baseFeePerGas"] + tx["maxPriorityFeePerGas"]
    )
    signed = sender.sign_transaction(tx)
    assert _wait_receipt(w3, w3.eth.send_raw_transaction(signed.raw_transaction))["status"] == 1
    history = w3.eth.fee_history(4, "latest", [10, 50, 90])
    assert len(history["baseFeePerGas"]) == len(history["gasUsedRatio"]) + 1


def test_rejections(w3: Web3, node: DevNode) -> None:
    sender = _account(4)
    nonce = w3.eth.get_transaction_count(sender.address, "pending")
    base = {
        "nonce": nonce,
        "to": Account.create().address,
        "value": 1,
        "gas": 21_000,
        "maxPriorityFeePerGas": GWEI,
        "maxFeePerGas": 10 * GWEI,
    }

    other_chain = sender.sign_transaction({**base, "chainId": 1})
    with pytest.raises(Web3RPCError) as wrong_chain:
        w3.eth.send_raw_transaction(other_chain.raw_transaction)
    assert "chain id" in str(wrong_chain.value)

    pauper = Account.from_key(PrivateKey.generate().secret)
    unfunded = pauper.sign_transaction({**base, "nonce": 0, "chainId": CHAIN_ID})
    with pytest.raises(Web3RPCError) as broke:
        w3.eth.send_raw_transaction(unfunded.raw_transaction)
    assert "insufficient funds" in str(broke.value)

    pending = sender.sign_transaction({**base, "chainId": CHAIN_ID})
    w3.eth.send_raw_transaction(pending.raw_transaction)
    with pytest.raises(Web3RPCError) as again:
        w3.eth.send_raw_transaction(pending.raw_transaction)
    assert "already known" in str(again.value) or "nonce too low" in str(again.value)
    _wait_receipt(w3, pending.hash)


def test_error_codes_for_rejections(rpc: RawClient) -> None:
    pauper = Account.from_key(PrivateKey.generate().secret)
    signed = pauper.sign_transaction(
        {
            "nonce": 0,
            "to": pauper.address,
            "value": 1,
            "gas": 21_000,
            "chainId": CHAIN_ID,
            "maxPriorityFeePerGas": GWEI,
            "maxFeePerGas": 10 * GWEI,
        }
    )
    with pytest.raises(RpcFailed) as exc:
        rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
    assert exc.value.code == -32000
    assert exc.value.message.startswith("insufficient funds for gas * price + value")
    with pytest.raises(RpcFailed) as garbage:
        rpc.call("eth_sendRawTransaction", ["0x02c0"])
    assert garbage.value.code == -32602 and "transaction" in garbage.value.message
