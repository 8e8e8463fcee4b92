"""The review's H2 on a running node: 100 funded keys x 64 gapped transactions at 50 gwei, sent
over JSON-RPC to a node with the default (production) pool limits. Honest transfers at the
minimum price sent afterwards are still accepted and mined; the junk stays within the queue's
limit and none of it is ever mined."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from moderntensor.chain.transactions import DynamicFeeTransaction, Transaction, sign_transaction
from moderntensor.crypto import PrivateKey
from moderntensor.mempool import MempoolConfig
from tests.rpc.devnode import CHAIN_ID, DEV_KEYS, DevNode

GWEI = 10**9
ATTACKERS = [PrivateKey((5000 + i).to_bytes(32, "big")) for i in range(100)]


def signed(key: PrivateKey, nonce: int, max_fee: int, tip: int) -> Transaction:
    return sign_transaction(
        DynamicFeeTransaction(
            chain_id=CHAIN_ID, nonce=nonce, max_priority_fee_per_gas=tip,
            max_fee_per_gas=max_fee, gas=21_000, to=DEV_KEYS[9].address, value=1,
        ),
        key,
    )  # fmt: skip


def send(port: int, txs: list[Transaction]) -> list[dict[str, Any]]:
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction",
         "params": ["0x" + tx.raw.hex()]}
        for i, tx in enumerate(txs)
    ]  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/", orjson.dumps(batch), {"Content-Type": "application/json"})
        answers: list[dict[str, Any]] = orjson.loads(conn.getresponse().read())
    finally:
        conn.close()
    return sorted(answers, key=lambda a: a["id"])


@pytest.fixture
def jam_node(tmp_path: Path) -> Iterator[DevNode]:
    with DevNode(
        tmp_path / "jam",
        extra_accounts=[k.address for k in ATTACKERS],
        pool_config=MempoolConfig(),  # the production limits, not --dev's
    ) as node:
        yield node


def test_a_queue_jam_never_keeps_honest_transfers_out(jam_node: DevNode) -> None:
    junk = [signed(k, n, 50 * GWEI, 10 * GWEI) for k in ATTACKERS for n in range(1, 65)]
    refused = 0
    for start in range(0, len(junk), 640):
        answers = send(jam_node.port, junk[start : start + 640])
        for answer in answers:
            if "error" in answer:
                assert answer["error"]["message"].startswith("txpool is full"), answer
                refused += 1
    stats = jam_node.call(lambda: jam_node.node.pool.statistics())  # type: ignore[union-attr]
    assert (stats.pending, stats.queued) == (0, 1024)
    assert refused > 0  # the rest was taken and later gave way to other attackers' (fair share)

    # honest senders at the minimum price (base fee floor, a 1 wei tip): all get in
    honest = [signed(DEV_KEYS[i], n, GWEI, 1) for i in range(4) for n in range(5)]
    answers = send(jam_node.port, honest)
    assert [a.get("result") for a in answers] == ["0x" + tx.hash.hex() for tx in honest]
    deadline = time.monotonic() + 30
    pending = set(honest)
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} honest transfers not mined"
        pending = {
            tx for tx in pending if jam_node.service.chain.chaindb.get_tx_location(tx.hash) is None
        }
        time.sleep(0.1)
    chaindb = jam_node.service.chain.chaindb
    assert not any(chaindb.get_tx_location(tx.hash) for tx in junk[::37]), "junk was mined"
