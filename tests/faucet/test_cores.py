"""The pure cores: limit decisions, request parsing, client IP, proof of work, config, store."""

from __future__ import annotations

import pytest

from moderntensor.crypto import PrivateKey
from moderntensor.faucet import (
    Allowed,
    BadRequest,
    ConfigError,
    FaucetConfig,
    PowBook,
    Refused,
    Usage,
    compute_client_ip,
    count_leading_zero_bits,
    decide_claim,
    is_ip_blocked,
    load_config,
    open_store,
    parse_claim,
    parse_ether,
    pow_hash,
)
from moderntensor.faucet._config import check_amount_against_stake

ETH = 10**18
NOON = 1_795_000_000 - 1_795_000_000 % 86_400 + 43_200
CONFIG = FaucetConfig(
    address_claims=2, address_window=100.0, ip_claims=3, ip_window=50.0, daily_cap=5 * ETH
)


def decide(usage: Usage, now: float = NOON, **blocked: bool) -> Allowed | Refused:
    return decide_claim(
        CONFIG,
        address_blocked=blocked.get("address", False),
        ip_blocked=blocked.get("ip", False),
        usage=usage,
        now=now,
    )


def test_limits_in_order() -> None:
    empty = Usage((), (), 0)
    assert decide(empty) == Allowed(ETH)
    assert decide(empty, address=True).status == 403  # type: ignore[union-attr]
    assert decide(empty, ip=True).reason == "ip_blocked"  # type: ignore[union-attr]
    two = Usage((NOON - 90, NOON - 10), (), 0)
    refused = decide(two)
    assert isinstance(refused, Refused) and refused.reason == "address_cooldown"
    assert refused.retry_at == NOON - 90 + 100  # the oldest leaves the window
    assert decide(two, now=NOON + 11) == Allowed(ETH)
    ips = Usage((), (NOON - 40, NOON - 30, NOON - 20), 0)
    refused = decide(ips)
    assert isinstance(refused, Refused) and refused.reason == "ip_cooldown"
    assert refused.retry_at == NOON - 40 + 50
    capped = decide(Usage((), (), 4 * ETH + 1))
    assert isinstance(capped, Refused) and capped.reason == "daily_cap"
    assert capped.retry_at == NOON + 43_200
    assert decide(Usage((), (), 4 * ETH)) == Allowed(ETH)  # exactly the cap is fine


def test_ip_block_lists() -> None:
    assert is_ip_blocked("10.1.2.3", ["10.0.0.0/8"])
    assert is_ip_blocked("2001:db8::1", ["2001:db8::/32"])
    assert not is_ip_blocked("11.0.0.1", ["10.0.0.0/8", "garbage"])
    assert not is_ip_blocked("not-an-ip", ["0.0.0.0/0"])


def test_client_ip_per_proxy_count() -> None:
    assert compute_client_ip("192.0.2.1", ["1.1.1.1"], 0) == "192.0.2.1"
    assert compute_client_ip("192.0.2.1", [], 1) == "192.0.2.1"
    assert compute_client_ip("192.0.2.1", ["6.6.6.6, 1.1.1.1"], 1) == "1.1.1.1"
    assert compute_client_ip("192.0.2.1", ["6.6.6.6", "1.1.1.1, 2.2.2.2"], 2) == "1.1.1.1"
    assert compute_client_ip("192.0.2.1", ["3.3.3.3"], 3) == "3.3.3.3"  # leftmost
    with pytest.raises(BadRequest) as info:
        compute_client_ip("192.0.2.1", ["1.1.1.1, bogus"], 1)
    assert info.value.status == 400


FAUCET = PrivateKey(b"\x01" * 32).address


@pytest.mark.parametrize(
    ("content_type", "body", "status", "reason"),
    [
        ("text/plain", b'{"address": "0x' + b"1" * 40 + b'"}', 415, "content_type"),
        ("application/json", b"x" * 5000, 413, "body_too_large"),
        ("application/json", b"\xff", 400, "bad_json"),
        ("application/json", b'"0x11"', 400, "bad_json"),
        ("application/json", b"{}", 400, "bad_address"),
        ("application/json", b'{"address": "0x12"}', 400, "bad_address"),
        ("application/json", b'{"address": "0x' + b"0" * 40 + b'"}', 400, "zero_address"),
        (
            "application/json",
            b'{"address": "0x' + FAUCET.hex().encode() + b'"}',
            400,
            "faucet_address",
        ),
        ("application/json", b'{"address": "0x' + b"1" * 40 + b'", "nonce": []}', 400, "bad_pow"),
    ],
)
def test_bad_claims(content_type: str, body: bytes, status: int, reason: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_claim(content_type, body, 4096, FAUCET)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_good_claim() -> None:
    body = b'{"address": " 0x' + b"a" * 40 + b' ", "challenge": "c", "nonce": 7}'
    claim = parse_claim("application/json; charset=utf-8", body, 4096, FAUCET)
    assert claim.address == b"\xaa" * 20 and claim.pow_nonce == "7"


def test_proof_of_work_book() -> None:
    book = PowBook(difficulty=8, ttl=10.0, capacity=2)
    c = book.issue(b"\x00" * 16, now=0.0)
    good = next(
        n for n in range(10**6) if count_leading_zero_bits(pow_hash(c.challenge, str(n))) >= 8
    )
    assert book.redeem(c.challenge, None, 1.0) is not None
    assert book.redeem(c.challenge, "-1", 1.0) is not None
    assert book.redeem(c.challenge, str(good), 11.0) == "the challenge expired: fetch a new one"
    c = book.issue(b"\x01" * 16, now=20.0)
    good = next(
        n for n in range(10**6) if count_leading_zero_bits(pow_hash(c.challenge, str(n))) >= 8
    )
    assert book.redeem(c.challenge, str(good), 21.0) is None
    assert "already used" in str(book.redeem(c.challenge, str(good), 21.0))
    for i in range(3):  # bounded: the oldest goes first
        book.issue(bytes([i + 2]) * 16, now=22.0)
    assert book.statistics()["outstanding"] == 2
    assert count_leading_zero_bits(b"\x00\x0f" + b"\xff" * 30) == 12


def test_config_file_and_sanity(tmp_path) -> None:
    path = tmp_path / "faucet.toml"
    path.write_text(
        '[faucet]\namount = "0.5"\ndaily_cap = "10"\naddress_window = 60\n'
        'blocked_ips = ["10.0.0.0/8"]\n'
    )
    config = load_config(path, port=9000)
    assert config.amount == ETH // 2 and config.daily_cap == 10 * ETH
    assert config.address_window == 60.0 and config.port == 9000
    assert config.blocked_ips == ("10.0.0.0/8",)
    assert parse_ether("1.5", "x") == 3 * ETH // 2
    for text, match in [
        ('amount = "1000"', "validator-sized"),
        ('amount = "abc"', "not a number"),
        ("bogus = 1", "unknown key"),
        ('port = "80"', "expected int"),
        ('amount = "2"\ndaily_cap = "1"', "daily_cap"),
        ("history_retention = 10", "history_retention"),
    ]:
        path.write_text(f"[faucet]\n{text}\n")
        with pytest.raises(ConfigError, match=match):
            load_config(path)
    check_amount_against_stake(FaucetConfig(amount=ETH), [100 * ETH, 0])
    with pytest.raises(ConfigError, match="validator stake"):
        check_amount_against_stake(FaucetConfig(amount=10 * ETH), [100 * ETH, 0])


def test_store_usage_cleanup_and_totals(tmp_path) -> None:
    store = open_store(tmp_path / "s.sqlite3")
    a, b = "0x" + "aa" * 20, "0x" + "bb" * 20
    first = store.add_claim(a, "1.1.1.1", ETH, NOON - 86_400 * 3)
    second = store.add_claim(a, "1.1.1.1", ETH, NOON - 10)
    third = store.add_claim(b, "1.1.1.1", 2 * ETH, NOON - 5)
    store.set_failed(third, "insufficient funds")
    usage = store.get_usage(a, "1.1.1.1", (100.0, 100.0), NOON)
    assert usage.address_times == (NOON - 10,) and usage.ip_times == (NOON - 10,)
    assert usage.paid_today == ETH  # the failed claim does not count
    store.set_signed(first, 0, "0x01", b"raw", NOON)
    store.set_sent(first, NOON)
    store.set_final(first, 5, NOON)
    store.set_final(first, 5, NOON)  # idempotent: counted once
    assert [r.id for r in store.get_active()] == [second]
    assert store.cleanup(86_400.0, NOON) == 1  # the old final one; the failed one is recent
    assert store.get_claim(first) is None and store.get_claim(third) is not None
    stats = store.get_stats(NOON)
    assert stats["claimsPaid"] == 1 and stats["weiPaid"] == str(ETH) and stats["claimsFailed"] == 1
    store.close()
    reopened = open_store(tmp_path / "s.sqlite3")
    assert [r.id for r in reopened.get_active()] == [second]
