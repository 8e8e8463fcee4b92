"""The faucet against a live dev node: payouts, every limit, blocks, history, proxies, input.

Real parts throughout: the node (consensus, mempool, RocksDB) in a thread, the faucet's Trio
HTTP server and SQLite store in another, http.client as the user. Cooldowns and days pass by
moving the faucet's clock (tests/faucet/harness.py ShiftClock), not by sleeping.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import threading
import time

import pytest

from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.faucet import FaucetConfig, pow_hash
from moderntensor.faucet._pow import count_leading_zero_bits
from tests.faucet.conftest import FAUCET_KEY, TOKEN
from tests.faucet.harness import (
    Client,
    FaucetThread,
    ShiftClock,
    balance,
    new_address,
    rpc_call,
)
from tests.rpc.devnode import DevNode

ETH = 10**18


def test_claim_pays_and_finalizes(node: DevNode, start_faucet) -> None:
    run = start_faucet(amount=ETH // 2)
    to = new_address()
    status, doc, _ = run.client.claim(to)
    assert status == 200, doc
    assert doc["address"] == checksum_address(bytes.fromhex(to[2:]))
    final = run.client.wait_final(doc["txHash"])
    assert final["status"] == "final" and final["blockNumber"] >= 1
    assert balance(node.url, to) == ETH // 2
    receipt = rpc_call(node.url, "eth_getTransactionReceipt", [doc["txHash"]])
    assert receipt["status"] == "0x1" and receipt["to"].lower() == to
    status, info, _ = run.client.get("/api/info")
    assert status == 200 and info["address"] == checksum_address(FAUCET_KEY.address)
    assert info["chainId"] == 1337 and info["amount"] == str(ETH // 2)
    status, stats, _ = run.client.get("/api/stats")
    assert stats["claimsPaid"] == 1 and stats["weiPaid"] == str(ETH // 2)
    assert stats["byStatus"]["final"] == 1 and stats["payer"]["inFlight"] == 0
    status, page, _ = run.client.get("/")
    assert status == 200 and b"/api/claim" not in page and b"faucet.js" in page
    assert run.client.get("/static/faucet.js")[1].count(b"/api/claim") == 1


def test_address_cooldown(start_faucet) -> None:
    run = start_faucet(address_claims=1, address_window=3_600.0, proxy_count=1, ip_claims=100)
    to = new_address()
    assert run.client.claim(to, xff="10.0.0.1")[0] == 200
    status, doc, headers = run.client.claim(to, xff="10.0.0.2")  # another IP does not help
    assert status == 429 and doc["error"] == "address_cooldown"
    assert 3_590 <= int(headers["retry-after"]) <= 3_600 and doc["retryAfter"] > 3_590
    assert run.client.claim(to.upper().replace("0X", "0x"), xff="10.0.0.3")[0] == 429
    run.clock.advance(3_000)
    assert run.client.claim(to, xff="10.0.0.4")[0] == 429
    run.clock.advance(601)
    assert run.client.claim(to, xff="10.0.0.5")[0] == 200


def test_ip_limit(start_faucet) -> None:
    run = start_faucet(ip_claims=2, ip_window=600.0, proxy_count=1)
    assert run.client.claim(new_address(), xff="10.1.1.1")[0] == 200
    assert run.client.claim(new_address(), xff="10.1.1.1")[0] == 200
    status, doc, headers = run.client.claim(new_address(), xff="10.1.1.1")
    assert status == 429 and doc["error"] == "ip_cooldown" and int(headers["retry-after"]) <= 600
    assert run.client.claim(new_address(), xff="10.1.1.2")[0] == 200
    run.clock.advance(601)
    assert run.client.claim(new_address(), xff="10.1.1.1")[0] == 200


def test_daily_cap(start_faucet) -> None:
    run = start_faucet(amount=ETH, daily_cap=3 * ETH, proxy_count=1, ip_claims=100)
    for i in range(3):
        assert run.client.claim(new_address(), xff=f"10.2.0.{i}")[0] == 200
    status, doc, headers = run.client.claim(new_address(), xff="10.2.0.9")
    assert status == 429 and doc["error"] == "daily_cap"
    assert 43_100 < int(headers["retry-after"]) <= 43_200  # the clock starts at a UTC noon
    status, stats, _ = run.client.get("/api/stats")
    assert stats["paidToday"] == str(3 * ETH)
    run.clock.advance(43_201)  # past midnight UTC
    assert run.client.claim(new_address(), xff="10.2.0.9")[0] == 200


def test_block_and_unblock(start_faucet) -> None:
    blocked_in_config = new_address()
    run = start_faucet(proxy_count=1, ip_claims=100, blocked_addresses=(blocked_in_config,))
    c = run.client
    assert c.claim(blocked_in_config, xff="10.3.0.1")[1]["error"] == "address_blocked"
    to = new_address()
    assert c.admin("block", {"kind": "address", "value": to}, "wrong")[0] == 401
    assert c.admin("block", {"kind": "address", "value": to, "reason": "bot"}, TOKEN)[0] == 200
    status, doc, _ = c.claim(to, xff="10.3.0.1")
    assert status == 403 and doc["error"] == "address_blocked"
    assert c.admin("block", {"kind": "ip", "value": "10.9.0.0/16"}, TOKEN)[0] == 200
    status, doc, _ = c.claim(new_address(), xff="10.9.200.7")
    assert status == 403 and doc["error"] == "ip_blocked"
    assert c.claim(new_address(), xff="10.10.0.1")[0] == 200
    status, doc, _ = c.get("/api/admin/blocks", TOKEN)
    assert {(b["kind"], b["value"]) for b in doc["blocks"]} == {
        ("address", to),
        ("ip", "10.9.0.0/16"),
    }
    assert c.admin("unblock", {"kind": "address", "value": to}, TOKEN)[0] == 200
    assert c.admin("unblock", {"kind": "ip", "value": "10.9.0.0/16"}, TOKEN)[0] == 200
    assert c.admin("unblock", {"kind": "ip", "value": "10.9.0.0/16"}, TOKEN)[0] == 404
    assert c.claim(to, xff="10.9.200.7")[0] == 200
    assert c.admin("block", {"kind": "ip", "value": "not-an-ip"}, TOKEN)[0] == 400
    assert c.admin("block", {"kind": "user", "value": "x"}, TOKEN)[0] == 400


def test_admin_off_without_token(start_faucet) -> None:
    run = start_faucet(admin_token="")
    assert run.client.get("/api/admin/blocks", "anything")[0] == 404


def test_history_and_cleanup(start_faucet) -> None:
    run = start_faucet(proxy_count=1, ip_claims=100, history_retention=2 * 86_400.0)
    c = run.client
    old = [c.claim(new_address(), xff="10.4.0.1")[1]["txHash"] for _ in range(3)]
    for tx in old:
        c.wait_final(tx)
    run.clock.advance(86_400 + 100)
    recent = c.claim(new_address(), xff="10.4.0.1")[1]["txHash"]
    c.wait_final(recent)
    status, doc, _ = c.get("/api/admin/history?limit=10", TOKEN)
    assert status == 200 and [r["txHash"] for r in doc["claims"]] == [recent, *reversed(old)]
    assert c.admin("cleanup", {}, TOKEN)[1] == {"removed": 0}  # all within retention
    run.clock.advance(86_400)  # the first three are now older than 2 days, the last is not
    assert c.admin("cleanup", {}, TOKEN)[1] == {"removed": 3}
    status, doc, _ = c.get("/api/admin/history?limit=10", TOKEN)
    assert [r["txHash"] for r in doc["claims"]] == [recent]
    assert c.get(f"/api/tx/{old[0]}")[0] == 404
    stats = c.get("/api/stats")[1]
    assert stats["claimsPaid"] == 4 and stats["historyRows"] == 1  # totals outlive the rows


def test_forwarded_for_ignored_without_trusted_proxy(start_faucet) -> None:
    run = start_faucet(proxy_count=0, ip_claims=1)
    assert run.client.claim(new_address(), xff="203.0.113.1")[0] == 200
    status, doc, _ = run.client.claim(new_address(), xff="203.0.113.2")  # spoofed: ignored
    assert status == 429 and doc["error"] == "ip_cooldown"
    history = run.client.get("/api/admin/history", TOKEN)[1]["claims"]
    assert {r["ip"] for r in history} == {"127.0.0.1"}


def test_forwarded_for_with_one_trusted_proxy(start_faucet) -> None:
    run = start_faucet(proxy_count=1, ip_claims=1)
    # The client forges a first entry; the proxy appends the address it saw (198.51.100.7).
    assert run.client.claim(new_address(), xff="1.2.3.4, 198.51.100.7")[0] == 200
    status, doc, _ = run.client.claim(new_address(), xff="5.6.7.8, 198.51.100.7")
    assert status == 429 and doc["error"] == "ip_cooldown"
    assert run.client.claim(new_address(), xff="1.2.3.4, 198.51.100.8")[0] == 200
    status, doc, _ = run.client.claim(new_address(), xff="1.2.3.4, not-an-ip")
    assert status == 400 and doc["error"] == "bad_forwarded_for"


def test_forwarded_for_with_two_trusted_proxies(start_faucet) -> None:
    run = start_faucet(proxy_count=2, ip_claims=1)
    assert run.client.claim(new_address(), xff="9.9.9.9, 198.51.100.20, 10.0.0.1")[0] == 200
    status, _, _ = run.client.claim(new_address(), xff="8.8.8.8, 198.51.100.20, 10.0.0.1")
    assert status == 429
    history = run.client.get("/api/admin/history", TOKEN)[1]["claims"]
    assert {r["ip"] for r in history} == {"198.51.100.20"}


def test_bad_input(start_faucet) -> None:
    run = start_faucet(max_body_bytes=1_024)
    c = run.client
    json_header = {"content-type": "application/json"}

    def refused(body: bytes, headers: dict[str, str], status: int, error: str) -> None:
        got, doc, _ = c.request("POST", "/api/claim", body, headers)
        assert (got, doc.get("error")) == (status, error), doc

    refused(b'{"address": "0x1234"}', json_header, 400, "bad_address")
    refused(b'{"address": "0xZZ' + b"0" * 38 + b'"}', json_header, 400, "bad_address")
    refused(
        b'{"address": "f39fd6e51aad88f6f4ce6ab8827279cfffb92266"}', json_header, 400, "bad_address"
    )
    bad_checksum = "0xF39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    refused(b'{"address": "%s"}' % bad_checksum.encode(), json_header, 400, "bad_address")
    refused(b'{"address": "0x' + b"0" * 40 + b'"}', json_header, 400, "zero_address")
    own = checksum_address(FAUCET_KEY.address).encode()
    refused(b'{"address": "%s"}' % own, json_header, 400, "faucet_address")
    refused(b'{"address": 5}', json_header, 400, "bad_address")
    refused(b"[1, 2]", json_header, 400, "bad_json")
    refused(b"{not json", json_header, 400, "bad_json")
    refused(
        b'{"address": "0x' + b"1" * 40 + b'"}', {"content-type": "text/plain"}, 415, "content_type"
    )
    refused(b'{"address": "0x' + b"1" * 40 + b'"}', {}, 415, "content_type")
    huge = b'{"address": "0x' + b"1" * 40 + b'", "pad": "' + b"x" * 100_000 + b'"}'
    status, doc, _ = c.request("POST", "/api/claim", huge, json_header)
    assert status == 413 and "1024" in doc["message"]
    status, doc, _ = c.request("POST", "/api/claim", b"{}", {"x-junk": "j" * 20_000})
    assert status == 431 and doc["message"] == "head too large"
    assert c.request("GET", "/api/claim")[0] == 405
    assert c.request("DELETE", "/api/info")[0] == 405
    assert c.get("/nope")[0] == 404
    assert c.get("/api/tx/0x" + "ab" * 32)[0] == 404
    assert c.get("/api/challenge")[0] == 404  # no proof of work configured
    assert c.get("/api/stats")[1]["claimsPaid"] == 0  # nothing of the above paid


def test_fifty_concurrent_claims_all_paid(node: DevNode, start_faucet) -> None:
    run = start_faucet(proxy_count=1, ip_claims=1, max_in_flight=16)
    nonce_before = int(  # "pending": an earlier test's transaction may still wait in the pool
        rpc_call(node.url, "eth_getTransactionCount", ["0x" + FAUCET_KEY.address.hex(), "pending"]),
        16,
    )
    addresses = [new_address() for _ in range(50)]

    def one(i: int) -> tuple[int, dict]:
        status, doc, _ = run.client.claim(addresses[i], xff=f"10.50.{i // 250}.{i % 250}")
        return status, doc

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    assert [s for s, _ in answers] == [200] * 50, [d for s, d in answers if s != 200]
    hashes = [d["txHash"] for _, d in answers]
    assert len(set(hashes)) == 50
    finals = [run.client.wait_final(h, timeout=60) for h in hashes]
    assert {f["status"] for f in finals} == {"final"}
    assert sorted(f["nonce"] for f in finals) == list(range(nonce_before, nonce_before + 50))
    assert all(balance(node.url, a) == run.config.amount for a in addresses)
    payer = run.faucet.handle.payer
    assert payer.resigned == 0 and payer.nonce_resyncs == 1  # no nonce error, no resync
    assert payer.in_flight == 0


def test_proof_of_work(start_faucet) -> None:
    run = start_faucet(pow_difficulty=10, proxy_count=1, ip_claims=100)
    c = run.client
    assert c.claim(new_address(), xff="10.6.0.1")[1]["error"] == "pow"
    challenge = c.get("/api/challenge")[1]
    assert challenge["difficulty"] == 10 and len(challenge["challenge"]) == 32
    nonce = next(
        n
        for n in range(1 << 20)
        if count_leading_zero_bits(pow_hash(challenge["challenge"], str(n))) >= 10
    )
    wrong = next(
        n
        for n in range(1 << 20)
        if count_leading_zero_bits(pow_hash(challenge["challenge"], str(n))) < 10
    )
    to = new_address()
    status, doc, _ = c.claim(to, xff="10.6.0.1", challenge=challenge["challenge"], nonce=str(wrong))
    assert status == 403 and "difficulty" in doc["message"]
    status, doc, _ = c.claim(to, xff="10.6.0.1", challenge=challenge["challenge"], nonce=str(nonce))
    assert status == 200, doc
    status, doc, _ = c.claim(
        new_address(), xff="10.6.0.2", challenge=challenge["challenge"], nonce=str(nonce)
    )
    assert status == 403 and "already used" in doc["message"]  # single use


def test_refuses_validator_sized_amount(node: DevNode, start_faucet) -> None:
    from moderntensor.faucet import ConfigError

    with pytest.raises(ConfigError, match="validator stake"):
        start_faucet(amount=100 * ETH)  # the dev validator stakes 1,000 ETH
    with pytest.raises(ConfigError, match="validator-sized"):
        start_faucet(amount=101 * ETH)


@pytest.mark.parametrize("fee_factor", [1, 100])
def test_another_spender_takes_a_nonce(node: DevNode, start_faucet, fee_factor: int) -> None:
    """Someone else spends from the faucet's key: the faucet's next payout meets ``nonce too
    low`` (theirs mined) or ``replacement transaction underpriced`` (theirs pending with a
    higher fee), resyncs its counter and signs again; both transfers land, the claim once."""
    run = start_faucet(proxy_count=1, ip_claims=100)
    c = run.client
    c.wait_final(c.claim(new_address(), xff="10.11.0.1")[1]["txHash"])  # the counter is set
    sender = "0x" + FAUCET_KEY.address.hex()
    nonce = int(rpc_call(node.url, "eth_getTransactionCount", [sender, "pending"]), 16)
    price = int(rpc_call(node.url, "eth_gasPrice", []), 16)
    other = new_address()
    tx = sign_transaction(
        DynamicFeeTransaction(
            chain_id=1337,
            nonce=nonce,
            max_priority_fee_per_gas=price * fee_factor,
            max_fee_per_gas=price * fee_factor * 3,
            gas=21_000,
            to=bytes.fromhex(other[2:]),
            value=12345,
        ),
        FAUCET_KEY,
    )
    rpc_call(node.url, "eth_sendRawTransaction", ["0x" + tx.raw.hex()])
    if fee_factor == 1:  # let it be mined first: the faucet then meets "nonce too low"
        deadline = time.monotonic() + 20
        while rpc_call(node.url, "eth_getTransactionReceipt", ["0x" + tx.hash.hex()]) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    to = new_address()
    status, doc, _ = c.claim(to, xff="10.11.0.2")
    assert status == 200, doc
    final = c.wait_final(doc["txHash"])
    assert final["status"] == "final" and final["nonce"] == nonce + 1
    assert balance(node.url, to) == run.config.amount and balance(node.url, other) == 12345
    assert run.faucet.handle.payer.resigned == 1


class SwitchableProxy:
    """A TCP relay to the node that can be cut: while down, every connection is dropped."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.down = True
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.open.clear()

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_payout_while_the_node_is_unreachable_is_reported_and_resent(
    node: DevNode, tmp_path, request
) -> None:
    """The node drops away before the payout is sent: the claim still answers with its hash
    (recorded as signed), is reported stuck after ``stuck_after``, and once the node is back
    the watcher sends the same bytes."""
    proxy = SwitchableProxy(node.port)
    request.addfinalizer(proxy.close)
    config = FaucetConfig(
        port=0,
        database=str(tmp_path / "f.sqlite3"),
        poll_interval=0.1,
        gas_price_refresh=3_600.0,
        proxy_count=1,
        ip_claims=100,
    )
    with FaucetThread(config, FAUCET_KEY, f"http://127.0.0.1:{proxy.port}", ShiftClock()) as f:
        c = Client(f.port)
        c.wait_final(c.claim(new_address(), xff="10.12.0.1")[1]["txHash"])  # nonce, gas price
        proxy.cut()
        to = new_address()
        status, doc, _ = c.claim(to, xff="10.12.0.2")
        assert status == 200, doc
        assert c.get(f"/api/tx/{doc['txHash']}")[1]["status"] == "signed"
        assert rpc_call(node.url, "eth_getTransactionByHash", [doc["txHash"]]) is None
        assert c.get("/api/stats")[1]["payer"]["stuck"] == 0
        f.clock.advance(config.stuck_after + 1)  # not final 10 minutes after signing
        deadline = time.monotonic() + 10
        while c.get("/api/stats")[1]["payer"]["stuck"] != 1:  # reported with the node down
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proxy.restore()
        final = c.wait_final(doc["txHash"])
        assert final["status"] == "final" and final["attempts"] >= 1
        assert balance(node.url, to) == config.amount
        assert c.get("/api/stats")[1]["payer"]["stuck"] == 0


def test_connection_cap(start_faucet) -> None:
    run = start_faucet(max_connections=2)
    held = [socket.create_connection(("127.0.0.1", run.faucet.port)) for _ in range(2)]
    try:
        time.sleep(0.2)  # both accepted and waiting for a request
        extra = socket.create_connection(("127.0.0.1", run.faucet.port))
        extra.settimeout(10)
        extra.sendall(b"GET /api/info HTTP/1.1\r\nhost: x\r\n\r\n")
        try:
            answer = extra.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # closed on accept, unanswered
        extra.close()
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while True:  # the held connections' tasks notice the close and free their places
        try:
            if run.client.get("/api/info")[0] == 200:
                break
        except (ConnectionError, OSError):
            pass
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_empty_faucet_reports_503_and_counts_nothing(node: DevNode, tmp_path) -> None:
    config = FaucetConfig(port=0, database=str(tmp_path / "empty.sqlite3"), poll_interval=0.1)
    with FaucetThread(config, PrivateKey.generate(), node.url, ShiftClock()) as f:
        c = Client(f.port)
        to = new_address()
        status, doc, _ = c.claim(to)
        assert status == 503 and doc["error"] == "payout_failed"
        assert "insufficient funds" in doc["message"]
        stats = c.get("/api/stats")[1]
        assert stats["claimsFailed"] == 1 and stats["claimsPaid"] == 0
        assert stats["payer"]["inFlight"] == 0 and stats["paidToday"] == "0"
        status, doc, _ = c.claim(to)  # a failed payout does not count against the cooldown
        assert status == 503 and doc["error"] == "payout_failed"
        assert balance(node.url, to) == 0
