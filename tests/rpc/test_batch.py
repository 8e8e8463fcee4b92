"""JSON-RPC batches: answered a slice at a time (``Dispatcher.answer``) exactly as one by one.

Against the dev node (real HTTP and WebSocket on 127.0.0.1, real RocksDB, real signatures): a
300-request batch of reads, notifications and invalid requests gets, in order, what each
request gets alone; a batch of signed transfers gets one answer per request and is mined.
The dispatcher alone: ``answer`` equals ``handle_body`` for any body, yields between slices,
and hands ``prepare`` exactly the raw transactions a batch submits (from 8 of them).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
import orjson
import trio
import trio.testing
from hypothesis import given, settings
from trio_websocket import open_websocket_url

from moderntensor.chain.transactions import DynamicFeeTransaction, Transaction, sign_transaction
from moderntensor.crypto import PrivateKey, checksum_address, keccak256
from moderntensor.rpc._dispatch import BATCH_SLICE, PREPARE_MIN, Dispatcher
from moderntensor.rpc._errors import RpcError
from moderntensor.rpc._methods import Method, Param
from moderntensor.rpc._params import parse_data
from tests.rpc.conftest import RawClient
from tests.rpc.devnode import CHAIN_ID, DEV_KEYS, DevNode

GWEI = 10**9
# accounts no other rpc test sends from (0 must keep nonce 0; 1-6 are taken)
SENDERS = DEV_KEYS[7:10]
RECEIVER = bytes.fromhex("7777777777777777777777777777777777777777")


def one_by_one(rpc: RawClient, items: list[Any]) -> list[Any]:
    """What each request gets on its own (204 and no body for a notification)."""
    answers = []
    for item in items:
        status, body = rpc.post(orjson.dumps(item))
        if status == 204:
            assert body == b""
            continue
        assert status == 200, (status, body)
        answers.append(orjson.loads(body))
    return answers


def mixed_requests(count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    dev = checksum_address(DEV_KEYS[0].address)
    stranger = "0x" + bytes(rng.randrange(256) for _ in range(20)).hex()
    makers: list[Callable[[int], Any]] = [
        lambda i: {"jsonrpc": "2.0", "id": i, "method": "eth_chainId"},
        lambda i: {"jsonrpc": "2.0", "id": f"s{i}", "method": "eth_chainId", "params": []},
        lambda i: {"jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": [dev, "0x0"]},
        lambda i: {
            "jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": [stranger, "latest"]
        },
        lambda i: {"jsonrpc": "2.0", "id": None, "method": "net_version"},
        lambda i: {"jsonrpc": "2.0", "method": "eth_chainId"},  # notification: no answer
        lambda i: {"jsonrpc": "2.0", "method": "eth_getBalance", "params": ["0xzz"]},  # ditto
        lambda i: i,  # not an object
        lambda i: {"id": i, "method": "eth_chainId"},  # no "jsonrpc"
        lambda i: {"jsonrpc": "1.0", "method": "eth_chainId"},  # invalid even without an id
        lambda i: {"jsonrpc": "2.0", "id": {"x": i}, "method": "eth_chainId"},  # bad id
        lambda i: {"jsonrpc": "2.0", "id": i, "method": "eth_noSuchMethod"},
        lambda i: {"jsonrpc": "2.0", "id": i, "method": 7},
        lambda i: {"jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": ["0xzz"]},
        lambda i: {"jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": {"a": 1}},
        lambda i: {"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": [1, 2]},
    ]  # fmt: skip
    return [rng.choice(makers)(i) for i in range(count)]


def test_a_large_batch_answers_as_one_request_at_a_time(rpc: RawClient) -> None:
    items = mixed_requests(300, seed=300)
    assert len(items) > 4 * BATCH_SLICE
    status, body = rpc.post(orjson.dumps(items))
    assert status == 200
    batch = orjson.loads(body)
    alone = one_by_one(rpc, items)
    notifications = sum(isinstance(i, dict) and "id" not in i and i.get("jsonrpc") == "2.0"
                        for i in items)  # fmt: skip
    assert notifications > 0
    assert len(batch) == len(items) - notifications
    assert batch == alone
    # spot checks of the kinds of answer
    kinds = {orjson.dumps(a.get("error", {}).get("code")) for a in batch}
    assert {b"null", b"-32600", b"-32601", b"-32602"} <= kinds
    assert {"jsonrpc": "2.0", "id": None, "result": str(CHAIN_ID)} in batch


async def test_websocket_batch_answers_as_over_http(node: DevNode, rpc: RawClient) -> None:
    items = mixed_requests(200, seed=200)
    _, body = rpc.post(orjson.dumps(items))
    async with open_websocket_url(node.ws_url) as ws:
        await ws.send_message(orjson.dumps(items).decode())
        with trio.fail_after(10):
            reply = orjson.loads(await ws.get_message())
        # nothing but notifications: no message at all, so the next answer is the next call's
        await ws.send_message(orjson.dumps([{"jsonrpc": "2.0", "method": "eth_chainId"}] * 3))
        await ws.send_message(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}))
        with trio.fail_after(10):
            after = orjson.loads(await ws.get_message())
    assert reply == orjson.loads(body)
    assert after == {"jsonrpc": "2.0", "id": 1, "result": hex(CHAIN_ID)}


# -- a batch of transfers ---------------------------------------------------------------------


def signed_transfer(key: PrivateKey, nonce: int, max_fee: int, value: int = 1) -> Transaction:
    tx = DynamicFeeTransaction(
        chain_id=CHAIN_ID,
        nonce=nonce,
        max_priority_fee_per_gas=GWEI,
        max_fee_per_gas=max_fee,
        gas=21_000,
        to=RECEIVER,
        value=value,
    )
    return sign_transaction(tx, key)


def send_raw(i: object, raw: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]}


def wait_for_receipts(rpc: RawClient, hashes: list[str], timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch = [
            {"jsonrpc": "2.0", "id": i, "method": "eth_getTransactionReceipt", "params": [h]}
            for i, h in enumerate(hashes)
        ]
        _, body = rpc.post(orjson.dumps(batch))
        receipts = [answer["result"] for answer in orjson.loads(body)]
        if all(r is not None for r in receipts):
            return receipts
        assert time.monotonic() < deadline, (
            f"{sum(r is None for r in receipts)} of {len(hashes)} not mined in {timeout} s"
        )
        time.sleep(0.05)


def test_a_batch_of_transfers_gets_hashes_and_errors_in_order_and_is_mined(
    node: DevNode, rpc: RawClient
) -> None:
    latest = rpc.call("eth_getBlockByNumber", ["latest", False])
    max_fee = 4 * int(latest["baseFeePerGas"], 16) + GWEI
    nonces = {key.address: int(rpc.call("eth_getTransactionCount",
                                        [checksum_address(key.address), "pending"]), 16)
              for key in SENDERS}  # fmt: skip
    # one of ours mined first, so that its nonce is too low for a second one
    first = signed_transfer(SENDERS[2], nonces[SENDERS[2].address], max_fee)
    wait_for_receipts(rpc, [rpc.call("eth_sendRawTransaction", ["0x" + first.raw.hex()])])
    nonces[SENDERS[2].address] += 1

    valid: list[Transaction] = []
    for key, count in zip(SENDERS, (20, 20, 3), strict=True):
        start = nonces[key.address]
        valid += [signed_transfer(key, start + n, max_fee) for n in range(count)]
    too_low = signed_transfer(SENDERS[2], first.nonce, max_fee, value=2)  # not `first` itself
    raws: list[tuple[str, object]] = [("0x" + tx.raw.hex(), tx) for tx in valid]
    invalid: list[tuple[str, object]] = [
        ("0xzz", -32602),  # not hex
        ("0x123", -32602),  # odd length
        ("deadbeef", -32602),  # no 0x
        ("0xdeadbeef", -32602),  # hex, but not a transaction
        ("0x" + too_low.raw.hex(), "nonce too low"),
    ]
    rng = random.Random(50)
    for entry in invalid:
        raws.insert(rng.randrange(len(raws) + 1), entry)
    # a duplicate of a transfer already in the batch, after it
    dup_of = rng.randrange(len(raws) - 1)
    while not isinstance(raws[dup_of][1], Transaction):
        dup_of += 1
    raws.insert(rng.randrange(dup_of + 1, len(raws) + 1), (raws[dup_of][0], "already known"))
    raws.append(("0x" + first.raw.hex(), "nonce too low"))  # the mined one itself
    assert len(raws) == 50

    status, body = rpc.post(orjson.dumps([send_raw(i, raw) for i, (raw, _) in enumerate(raws)]))
    assert status == 200
    answers = orjson.loads(body)

    assert [a["id"] for a in answers] == list(range(len(raws)))
    for answer, (raw, expected) in zip(answers, raws, strict=True):
        if isinstance(expected, Transaction):
            assert answer.get("result") == "0x" + expected.hash.hex(), (raw[:12], answer)
        elif isinstance(expected, int):
            assert answer["error"]["code"] == expected, (raw[:12], answer)
            assert answer["error"]["message"].startswith("invalid argument 0"), answer
        else:
            assert answer["error"]["code"] == -32000, (raw[:12], answer)
            assert answer["error"]["message"].startswith(str(expected)), answer
    assert node.call(lambda: len(node.service._predecoded)) == 0, "every predecoded one taken"

    receipts = wait_for_receipts(rpc, ["0x" + tx.hash.hex() for tx in valid])
    assert all(r["status"] == "0x1" for r in receipts)
    for key in SENDERS:
        mine = [tx for tx in valid if tx.sender == key.address]
        count = rpc.call("eth_getTransactionCount", [checksum_address(key.address), "latest"])
        assert int(count, 16) == mine[-1].nonce + 1
    assert rpc.call("eth_getTransactionByHash", ["0x" + too_low.hash.hex()]) is None


# -- the dispatcher alone ---------------------------------------------------------------------


def _send(raw: bytes) -> str:
    if not raw:
        raise RpcError(-32000, "empty transaction")
    return "0x" + keccak256(raw).hex()


def _boom() -> str:
    raise ValueError("a handler bug: answered with -32603")


METHODS = {
    "eth_chainId": Method(lambda: hex(CHAIN_ID)),
    "eth_sendRawTransaction": Method(_send, (Param("transaction", parse_data),)),
    "test_boom": Method(_boom),
}


class Recorder:
    """A stand-in for ``ChainService.predecode``: it records what it is given."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []

    async def __call__(self, raws: list[bytes]) -> None:
        self.calls.append(list(raws))
        await trio.lowlevel.checkpoint()  # as the real one does (it waits for a thread)


# params[0] of an eth_sendRawTransaction call, well-formed or not (``bytes.fromhex`` would
# accept the blanks that ``parse_data`` refuses)
raw_params = st.one_of(
    st.binary(max_size=40).map(lambda b: "0x" + b.hex()),
    st.binary(min_size=1, max_size=40).map(lambda b: "0X" + b.hex().upper()),
    st.sampled_from(["0x", "0xzz", "0x123", "deadbeef", "", "0x0g", "0xab cd", "0x 0a"]),
    st.integers(0, 5),
    st.none(),
)


@st.composite
def requests(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["send", "send", "send", "chain", "boom", "odd", "note"]))
    request_id = draw(st.integers(0, 10**6) | st.text(max_size=3))
    if kind == "send":
        params = draw(st.lists(raw_params, max_size=2) | st.just({"a": 1}))
        request: dict[str, Any] = send_raw(request_id, "")
        request["params"] = params
        if draw(st.integers(0, 9)) == 0:
            del request["id"]  # a notification still submits
        if draw(st.integers(0, 9)) == 0:
            request["jsonrpc"] = "1.0"  # invalid, though its params are well-formed
        return request
    if kind == "chain":
        return {"jsonrpc": "2.0", "id": request_id, "method": "eth_chainId"}
    if kind == "boom":
        return {"jsonrpc": "2.0", "id": request_id, "method": "test_boom"}
    if kind == "note":
        return {"jsonrpc": "2.0", "method": "eth_chainId"}
    return draw(st.sampled_from([3, "x", None, [], {"jsonrpc": "2.0", "id": 1}]))


def well_formed_raws(batch: list[Any]) -> list[bytes]:
    """The oracle: the one parameter of each eth_sendRawTransaction call with a valid
    envelope that parse_data accepts (an invalid request never submits: nothing may be
    decoded and cached for it, review H3)."""
    out = []
    for item in batch:
        if (
            isinstance(item, dict)
            and item.get("method") == "eth_sendRawTransaction"
            and item.get("jsonrpc") == "2.0"
        ):
            params = item.get("params")
            if isinstance(params, list) and len(params) == 1:
                with contextlib.suppress(ValueError):
                    out.append(parse_data(params[0]))
    return out


@settings(max_examples=max(settings().max_examples, 50))
@given(batch=st.lists(requests(), min_size=1, max_size=3 * BATCH_SLICE))
async def test_answer_equals_handle_body_and_prepares_the_raw_transactions(
    batch: list[Any],
) -> None:
    recorder = Recorder()
    sliced = Dispatcher(METHODS, max_batch=1000, prepare=recorder)
    plain = Dispatcher(METHODS, max_batch=1000)
    body = orjson.dumps(batch)
    expected = plain.handle_body(body)
    if len(batch) >= BATCH_SLICE:
        with trio.testing.assert_checkpoints():
            got = await sliced.answer(body)
    else:
        got = await sliced.answer(body)
    assert got == expected
    assert (sliced.calls, sliced.errors) == (plain.calls, plain.errors)
    raws = well_formed_raws(batch)
    if len(raws) >= PREPARE_MIN:
        assert recorder.calls == [raws]
    else:
        assert recorder.calls == []


async def test_prepare_threshold_and_single_requests() -> None:
    recorder = Recorder()
    dispatcher = Dispatcher(METHODS, max_batch=100, prepare=recorder)
    raws = [bytes([i]) * (i + 1) for i in range(PREPARE_MIN)]
    sends = [send_raw(i, "0x" + raw.hex()) for i, raw in enumerate(raws)]
    noise = [{"jsonrpc": "2.0", "id": 99, "method": "eth_chainId"}, send_raw(98, "0xzz")]

    answer = await dispatcher.answer(orjson.dumps([*noise, *sends[:-1]]))  # one too few
    assert answer is not None and len(orjson.loads(answer)) == PREPARE_MIN + 1
    assert recorder.calls == []

    with trio.testing.assert_checkpoints():
        answer = await dispatcher.answer(orjson.dumps([*sends[:4], *noise, *sends[4:]]))
    assert recorder.calls == [raws]
    assert [a.get("result") for a in orjson.loads(answer or b"")] == (
        [_send(r) for r in raws[:4]] + ["0x539", None] + [_send(r) for r in raws[4:]]
    )

    recorder.calls.clear()
    for body in [
        orjson.dumps(sends[0]),  # a single request: straight to handle_body
        b"  " + orjson.dumps(sends),  # whitespace first is still a batch
        b"[",  # not JSON
        b"[]",  # empty batch
        orjson.dumps(sends * 13),  # over max_batch: one error, nothing prepared
        orjson.dumps([{"jsonrpc": "2.0", "method": "eth_chainId"}] * 70),  # all notifications
    ]:
        plain = Dispatcher(METHODS, max_batch=100)
        assert await dispatcher.answer(body) == plain.handle_body(body), body[:20]
    assert recorder.calls == [raws], "only the well-formed batch of 8 was prepared"
    with trio.testing.assert_no_checkpoints():
        await dispatcher.answer(orjson.dumps(sends[0]))
        await dispatcher.answer(orjson.dumps(noise * 10))  # small batch, nothing to prepare


async def test_prepare_gets_only_what_parse_data_accepts() -> None:
    """``bytes.fromhex`` would skip the blank in "0xab cd"; the request itself is refused with
    -32602, so nothing may be decoded and cached for it."""
    recorder = Recorder()
    dispatcher = Dispatcher(METHODS, max_batch=100, prepare=recorder)
    answer = await dispatcher.answer(
        orjson.dumps([send_raw(i, "0xab cd") for i in range(PREPARE_MIN)])
    )
    assert recorder.calls == []
    assert answer is not None
    assert {a["error"]["code"] for a in orjson.loads(answer)} == {-32602}
