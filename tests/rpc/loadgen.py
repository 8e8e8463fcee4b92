"""Load clients for ``test_load.py``, run as their own process (as real clients are).

``python -m tests.rpc.loadgen PORT SECONDS READERS SENDERS`` starts READERS threads that
hammer full blocks, block receipts, fee history and small batches of full blocks, and
SENDERS threads that each send transfers from their own key (:func:`sender_key`) to their
own recipient (:func:`recipient`), nonce after nonce, backing off when the pool refuses.
After SECONDS it prints one JSON line: every accepted transaction (sender index, hash,
value), read counts, errors by code and the slowest read. Each thread stops at the deadline;
every socket has a timeout.
"""

from __future__ import annotations

import http.client
import random
import sys
import threading
import time
from collections import Counter
from typing import Any

import orjson

from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.crypto import PrivateKey

CHAIN_ID = 1337
GWEI = 10**9
MAX_FEE = 200 * GWEI


def sender_key(i: int) -> PrivateKey:
    return PrivateKey(bytes([0x40 + i]) * 32)


def recipient(i: int) -> bytes:
    return PrivateKey(bytes([0xA0 + i]) * 32).address


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.ids = 0

    def post(self, payload: Any) -> Any:
        body = orjson.dumps(payload)
        try:
            self.conn.request("POST", "/", body, {"content-type": "application/json"})
            response = self.conn.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            raise
        return orjson.loads(data)

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.ids += 1
        return {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads = 0
        self.errors: Counter[str] = Counter()
        self.slowest = 0.0
        self.sent: list[tuple[int, str, int]] = []
        self.refused: Counter[str] = Counter()


def reader(port: int, deadline: float, tally: Tally, seed: int) -> None:
    client = Client(port)
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        kind = rng.randrange(4)
        if kind == 0:
            payload: Any = client.request("eth_getBlockByNumber", ["latest", True])
        elif kind == 1:
            payload = client.request("eth_getBlockReceipts", ["latest"])
        elif kind == 2:
            payload = client.request("eth_feeHistory", ["0x40", "latest", [10, 50, 90]])
        else:
            payload = [client.request("eth_getBlockByNumber", ["latest", True]) for _ in range(5)]
        started = time.monotonic()
        try:
            answer = client.post(payload)
        except (http.client.HTTPException, OSError) as exc:
            with tally.lock:
                tally.errors[type(exc).__name__] += 1
            time.sleep(0.05)
            continue
        took = time.monotonic() - started
        answers = answer if isinstance(answer, list) else [answer]
        with tally.lock:
            tally.reads += len(answers)
            tally.slowest = max(tally.slowest, took)
            for one in answers:
                if "error" in one:
                    tally.errors[str(one["error"].get("code"))] += 1


def sender(port: int, deadline: float, tally: Tally, index: int) -> None:
    client = Client(port)
    key = sender_key(index)
    to = recipient(index)
    rng = random.Random(index)
    nonce = 0
    tx = None
    while time.monotonic() < deadline:
        if tx is None:
            tx = sign_transaction(
                DynamicFeeTransaction(
                    chain_id=CHAIN_ID, nonce=nonce, max_priority_fee_per_gas=GWEI + index,
                    max_fee_per_gas=MAX_FEE, gas=21_000, to=to, value=rng.randrange(1, 10**9),
                ),
                key,
            )  # fmt: skip
        try:
            answer = client.post(client.request("eth_sendRawTransaction", ["0x" + tx.raw.hex()]))
        except (http.client.HTTPException, OSError) as exc:
            with tally.lock:
                tally.refused[type(exc).__name__] += 1
            time.sleep(0.05)
            continue  # unknown outcome: the same tx again ("already known" is fine)
        message = "" if "result" in answer else answer["error"]["message"]
        if not message or "already known" in message or "nonce too low" in message:
            # (already known / too low: an earlier try of this very tx was admitted and its
            # answer lost; the test checks that every recorded hash is in a block)
            with tally.lock:
                tally.sent.append((index, "0x" + tx.hash.hex(), tx.value))
            nonce += 1
            tx = None
        else:
            with tally.lock:
                tally.refused[answer["error"]["message"][:40]] += 1
            time.sleep(0.1)  # pool full for us: wait for a block


def main() -> None:
    port, seconds, readers, senders = (int(float(a)) for a in sys.argv[1:5])
    deadline = time.monotonic() + seconds
    tally = Tally()
    threads = [
        threading.Thread(target=reader, args=(port, deadline, tally, i), daemon=True)
        for i in range(readers)
    ] + [
        threading.Thread(target=sender, args=(port, deadline, tally, i), daemon=True)
        for i in range(senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 90)
    # a duplicate record can come from a lost answer then "already known": keep the first
    seen: set[str] = set()
    sent = [s for s in tally.sent if not (s[1] in seen or seen.add(s[1]))]
    sys.stdout.write(
        orjson.dumps(
            {
                "sent": sent,
                "reads": tally.reads,
                "errors": dict(tally.errors),
                "refused": dict(tally.refused),
                "slowest": tally.slowest,
                "alive": sum(t.is_alive() for t in threads),
            }
        ).decode()
        + "\n"
    )


if __name__ == "__main__":
    main()
