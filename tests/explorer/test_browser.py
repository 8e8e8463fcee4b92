"""The explorer's pages in headless Chromium against a live dev node: the right data appears.

Playwright for Python drives Debian's chromium (``apt-get install chromium``; Playwright's own
browser download is never used). Skipped, with the reason, when either is missing; CI
installs both. Screenshots go to ``$TEST_ARTIFACTS`` (default ``test-artifacts/``) as
``explorer-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from tests.browser import ARTIFACTS, chromium
from tests.explorer.harness import (
    ExplorerNode,
    node_rpc,
    send_transfer,
    signed_transfer,
    wait_final,
)
from tests.rpc.devnode import DEV_KEYS

WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def transfer(node: ExplorerNode) -> dict[str, Any]:
    """A finalized transfer of 0.25 ETH to a new address: its receipt, sender and recipient
    (after three other transfers)."""
    others = [  # a few more, so the lists have something to show
        send_transfer(DEV_KEYS[5], node.url, Account.create().address, value * 10**15)
        for value in (1500, 42, 7)
    ]
    to = Account.create().address
    tx_hash = send_transfer(DEV_KEYS[4], node.url, to, 25 * 10**16)
    receipt = wait_final(node.url, tx_hash)
    for other in others:
        wait_final(node.url, other)
    return {"hash": tx_hash, "receipt": receipt, "to": to, "from": receipt["from"]}


@pytest.fixture
def page(browser: Any, node: ExplorerNode) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.base = f"http://127.0.0.1:{node.explorer_port}/"  # type: ignore[attr-defined]
    yield page
    page.close()
    assert errors == []  # no uncaught script error on any page


def goto(page: Any, route: str) -> None:
    """Open ``route`` (a hash route, "" for home) and wait until the page shows it (the
    router marks ``main`` once a route is drawn; element ids repeat across pages)."""
    page.goto(page.base + route)
    page.wait_for_selector(f'main[data-rendered="{route}"]', timeout=WAIT_MS)


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"explorer-{name}.png"), full_page=True)


def number_in(page: Any, selector: str) -> int:
    return int((page.text_content(selector) or "").replace(",", ""))


def test_home_shows_the_head_updating_live(node: ExplorerNode, page: Any, transfer: Any) -> None:
    goto(page, "")
    first = number_in(page, "#stat-height")
    assert first >= int(transfer["receipt"]["blockNumber"], 16)
    # newHeads over /ws: the height and the newest row move on without a reload
    page.wait_for_function(
        "(n) => Number(document.getElementById('stat-height').textContent.replace(/,/g, '')) >= n",
        arg=first + 3,
        timeout=WAIT_MS,
    )
    assert "on" in (page.get_attribute("#live", "class") or "")
    head = int(node_rpc(node.url, "eth_blockNumber", []), 16)
    shown = number_in(page, "#stat-height")
    assert first + 3 <= shown <= head + 1
    rows = page.evaluate(
        "() => [...document.querySelectorAll('#latest-blocks tr')].map((r) => +r.dataset.number)"
    )
    assert rows[0] >= first + 2 and len(rows) == 10
    assert rows == list(range(rows[0], rows[0] - 10, -1))  # no head skipped, none twice
    assert page.text_content("#stat-validators") == "1 / 1"
    assert number_in(page, "#stat-finalized") <= shown
    assert transfer["hash"][:8] in (page.text_content("#latest-txs") or "")  # from the index
    shot(page, "home")


def test_block_page_shows_hash_txs_and_finality(
    node: ExplorerNode, page: Any, transfer: Any
) -> None:
    number = int(transfer["receipt"]["blockNumber"], 16)
    block = node_rpc(node.url, "eth_getBlockByNumber", [hex(number), False])
    goto(page, f"#/block/{number}")
    assert page.text_content("#block-hash") == block["hash"]
    assert page.text_content("#block-txcount") == str(len(block["transactions"]))
    assert page.text_content("#block-finality") == "Finalized"
    assert "dev-validator" in (page.text_content("#block-proposer") or "")
    assert transfer["hash"][:10] in (page.text_content("#block-txs") or "")
    shot(page, "block")


def test_tx_page_shows_receipt_and_finality(node: ExplorerNode, page: Any, transfer: Any) -> None:
    goto(page, f"#/tx/{transfer['hash']}")
    assert page.text_content("#tx-status") == "Success"
    assert page.text_content("#tx-finality") == "Finalized"
    assert page.text_content("#tx-gasused") == "21,000"
    assert page.text_content("#tx-value") == "0.25 ETH"
    assert page.text_content("#tx-logs") == "0"
    price = int(transfer["receipt"]["effectiveGasPrice"], 16)
    assert page.text_content("#tx-gasprice") == f"{price / 10**9:g} gwei"
    shot(page, "tx")
    # a transaction with a nonce gap waits in the pool: "Pending in pool"
    sender = DEV_KEYS[9]
    raw, queued = signed_transfer(sender, node.url, Account.create().address, 1, nonce_offset=3)
    assert node_rpc(node.url, "eth_sendRawTransaction", [raw]) == queued
    goto(page, f"#/tx/{queued}")
    assert page.text_content("#tx-finality") == "Pending in pool"
    assert page.text_content("#tx-status") == "Pending"
    goto(page, "#/tx/0x" + "ab" * 32)
    assert page.text_content("#tx-finality") == "Not found"


def test_account_page_matches_the_node(node: ExplorerNode, page: Any, transfer: Any) -> None:
    for address in (transfer["from"], transfer["to"]):
        goto(page, f"#/address/{address}")
        balance = int(node_rpc(node.url, "eth_getBalance", [address, "latest"]), 16)
        nonce = int(node_rpc(node.url, "eth_getTransactionCount", [address, "latest"]), 16)
        assert int(page.get_attribute("#account-balance span", "data-wei") or "-1") == balance
        assert number_in(page, "#account-nonce") == nonce
        assert transfer["hash"][:8] in (page.text_content("#account-txs") or "")
    assert page.text_content("#account-balance") == "0.25 ETH"  # the recipient's, shown last
    assert number_in(page, "#account-nonce") == 0
    shot(page, "account")


def test_validator_pages_show_stake_and_proposals(node: ExplorerNode, page: Any) -> None:
    validator = node_rpc(node.url, "mt_validators", [])[0]
    stake_eth = int(validator["stake"], 16) // 10**18
    goto(page, "#/validators")
    assert "dev-validator" in (page.text_content("#validators") or "")
    page.click("#validators a")
    page.wait_for_selector(f'main[data-rendered="#/validator/{validator["address"]}"]',
                           timeout=WAIT_MS)  # fmt: skip
    assert page.text_content("#validator-stake") == f"{stake_eth:,} ETH"
    assert page.text_content("#validator-status") == "active"
    assert page.text_content("#validator-jailed") == "no"
    assert number_in(page, "#validator-proposed") > 0
    assert validator["address"] in (page.text_content("#validator-address") or "")
    shot(page, "validator")


def search(page: Any, text: str) -> None:
    page.fill("#search-input", text)
    page.press("#search-input", "Enter")


def test_search_navigates_by_number_hash_and_address(
    node: ExplorerNode, page: Any, transfer: Any
) -> None:
    receipt = transfer["receipt"]
    number = int(receipt["blockNumber"], 16)
    goto(page, "")

    def lands(text: str, route: str) -> None:
        search(page, text)
        page.wait_for_selector(f'main[data-rendered="{route}"]', timeout=WAIT_MS)

    lands(f"{number:,}", f"#/block/{number}")
    assert page.text_content("#block-hash") == receipt["blockHash"]
    lands(receipt["blockHash"], f"#/block/{receipt['blockHash']}")  # a hash: block first
    assert number_in(page, "#block-number") == number
    lands(transfer["hash"][2:], f"#/tx/{transfer['hash']}")  # then a transaction; no 0x
    assert page.text_content("#tx-hash") == transfer["hash"]
    lands(transfer["to"].lower(), f"#/address/{transfer['to'].lower()}")
    assert page.text_content("#account-address") == transfer["to"]
    search(page, "no such thing")
    page.wait_for_selector("#not-found", timeout=WAIT_MS)
    assert "Search for a block number" in (page.text_content("#not-found") or "")
    search(page, "0x" + "cd" * 32)
    page.wait_for_function(
        "() => (document.getElementById('not-found') || {}).textContent"
        "?.includes('No block or transaction')",
        timeout=WAIT_MS,
    )


def test_pages_fit_a_phone(page: Any, transfer: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    for route in (
        "",
        f"#/tx/{transfer['hash']}",
        f"#/block/{int(transfer['receipt']['blockNumber'], 16)}",
        f"#/address/{transfer['to']}",
        "#/validators",
    ):
        goto(page, route)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{route or 'home'} is {width} px wide on a 390 px phone"
        if route == "":
            shot(page, "phone")
    shot(page, "phone-validators")
