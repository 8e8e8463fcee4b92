"""The faucet page in headless Chromium: solve the proof of work, claim, see it finalized.

Playwright for Python drives Debian's chromium (``apt-get install chromium``; Playwright's own
browser download is never used). Skipped, with the reason, when either is missing; CI
installs both. Screenshots go to ``$TEST_ARTIFACTS`` (default ``test-artifacts/``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import ARTIFACTS, chromium
from tests.faucet.harness import balance, new_address
from tests.rpc.devnode import DevNode


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def test_page_claims_and_shows_the_finalized_tx(node: DevNode, start_faucet, browser) -> None:
    run = start_faucet(amount=10**18 // 10, pow_difficulty=14, symbol="MTT")
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{run.faucet.port}/")
    page.wait_for_function("document.getElementById('info-amount').textContent.includes('MTT')")
    assert page.text_content("#info-amount") == "0.1 MTT"
    to = new_address()
    page.fill("#address", to)
    page.click("#claim")
    page.wait_for_selector("#status.final", timeout=60_000)
    text = page.text_content("#status") or ""
    assert text.startswith("Finalized in block ")
    tx_hash = text.split(": ", 1)[1].split()[0]
    final = run.client.get(f"/api/tx/{tx_hash}")[1]
    assert final["status"] == "final" and f"block {final['blockNumber']}:" in text
    assert balance(node.url, to) == 10**17
    page.wait_for_function(
        "document.getElementById('info-paid').textContent.startsWith('1 claim,')"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "faucet-finalized.png"), full_page=True)
    # a second claim for the same address: the page shows the refusal and the wait
    page.click("#claim")
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "Try again in" in (page.text_content("#status") or "")
    page.screenshot(path=str(ARTIFACTS / "faucet-cooldown.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than it
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "faucet-phone.png"), full_page=True)
    page.close()


def test_page_sha256_matches_and_costs_about_a_second(start_faucet, browser) -> None:
    run = start_faucet()
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{run.faucet.port}/")
    for text in ("", "abc", "x" * 55, "y" * 56, "z" * 130):
        assert (
            page.evaluate("(t) => sha256Hex(t)", text) == hashlib.sha256(text.encode()).hexdigest()
        )
    # the time for difficulty 18, the documented setting (2**18 hashes expected)
    started = time.monotonic()
    found = page.evaluate("async () => (await solve('00112233445566778899aabbccddeeff', 18)).ms")
    elapsed = time.monotonic() - started
    print(f"proof of work at difficulty 18 in headless Chromium: {found:.0f} ms")
    assert found < 20_000 and elapsed < 30
    page.close()
