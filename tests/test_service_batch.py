"""Batch submission through the chain service, over a real chain on RocksDB.

``submit_raw_transactions`` decodes a batch in a worker thread and admits it in order, a
slice per event-loop step: each position must get exactly what ``submit_raw_transaction``
one at a time gives (a hash, or the same error with the same message), and the pool must end
up the same. ``predecode`` fills a cache that ``submit_raw_transaction`` takes from.
"""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis.strategies as st
import orjson
import pytest
import trio
from hypothesis import event, given, settings

import moderntensor.service as service_module
from moderntensor.chain import _tx_decode
from moderntensor.chain.chain import Chain
from moderntensor.chain.execution import TransactionRejected
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.transactions import Transaction
from moderntensor.codec import DecodeError
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.rpc import RpcApp, RpcConfig
from moderntensor.service import ADMIT_SLICE, ChainService
from moderntensor.state.store import Database
from tests.mempool.test_pool_chain import GWEI, VALIDATOR, genesis_doc, next_base_fee, transfer

Outcome = bytes | tuple[type[Exception], str]

MINED = transfer(0, 0, GWEI)  # in block 1: user 0's next nonce is 1
GARBAGE = [
    b"",
    b"\x02",
    b"\xff" * 40,
    b"not a transaction",
    MINED.raw[:-1],  # truncated
    transfer(3, 0, GWEI).raw + b"\x00",  # trailing byte
]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with Database.open(tmp_path_factory.mktemp("service") / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        chain.commit(chain.build_block(chain.head, 1, VALIDATOR, [MINED]))
        yield chain


def new_service(chain: Chain, account_queue: int = 64) -> ChainService:
    config = MempoolConfig(account_slots=account_queue, account_queue=account_queue)
    pool = Mempool(chain.params, chain.state_at(chain.head), next_base_fee(chain), config)
    return ChainService(chain, pool)


def outcome(result: bytes | Exception) -> Outcome:
    if isinstance(result, bytes):
        return result
    message = result.message if isinstance(result, TransactionRejected) else str(result)
    return type(result), message


def one_at_a_time(service: ChainService, raws: list[bytes]) -> list[Outcome]:
    out: list[Outcome] = []
    for raw in raws:
        try:
            out.append(service.submit_raw_transaction(raw))
        except (DecodeError, TransactionRejected) as exc:
            out.append(outcome(exc))
    return out


def held(service: ChainService) -> list[bytes]:
    pool = service.pool
    assert isinstance(pool, Mempool)
    return [tx.hash for tx in pool]


async def test_batch_answers_each_position_and_admits_only_the_valid(chain: Chain) -> None:
    service = new_service(chain)
    pending = service.subscribe_pending_transactions()
    valid = [transfer(0, 1, GWEI), transfer(1, 0, GWEI), transfer(1, 1, GWEI), transfer(2, 0, GWEI)]
    too_low = transfer(0, 0, 2 * GWEI)  # not the mined one, but its nonce
    underpriced = transfer(2, 0, GWEI + 1)  # the same nonce as a held one, barely more
    raws = [
        valid[0].raw,
        b"\xde\xad\xbe\xef",
        too_low.raw,
        valid[1].raw,
        valid[1].raw,  # already known
        MINED.raw,  # already included: its nonce is too low
        valid[2].raw,
        GARBAGE[4],
        valid[3].raw,
        underpriced.raw,
    ]

    results = await service.submit_raw_transactions(raws)

    assert len(results) == len(raws)
    assert results[0] == valid[0].hash
    assert results[3] == valid[1].hash
    assert results[6] == valid[2].hash
    assert results[8] == valid[3].hash
    assert isinstance(results[1], DecodeError) and isinstance(results[7], DecodeError)
    for i, message in [
        (2, "nonce too low"),
        (4, "already known"),
        (5, "nonce too low"),
        (9, "replacement transaction underpriced"),
    ]:
        error = results[i]
        assert isinstance(error, TransactionRejected), (i, error)
        assert error.message.startswith(message), (i, error.message)
    assert held(service) == [tx.hash for tx in valid]
    announced = []
    while True:
        try:
            announced.append(pending.receive_nowait())
        except trio.WouldBlock:
            break
    assert announced == [tx.hash for tx in valid], "each admitted one announced once, in order"
    assert await service.submit_raw_transactions([]) == []


raw_choices = st.sampled_from(
    [
        *(transfer(u, n, GWEI).raw for u in range(1, 4) for n in range(3)),
        *(transfer(u, n, 3 * GWEI, 12 * GWEI).raw for u in range(1, 3) for n in range(2)),
        transfer(0, 0, 2 * GWEI).raw,  # nonce too low
        transfer(0, 1, GWEI).raw,
        MINED.raw,
        *GARBAGE,
    ]
)


@settings(max_examples=max(settings().max_examples // 2, 10))
@given(raws=st.lists(raw_choices, max_size=24))
async def test_batch_agrees_with_one_at_a_time(chain: Chain, raws: list[bytes]) -> None:
    batched, single = new_service(chain, account_queue=2), new_service(chain, account_queue=2)
    results = await batched.submit_raw_transactions(raws)
    expected = one_at_a_time(single, raws)
    assert [outcome(r) for r in results] == expected
    assert held(batched) == held(single)
    for got in expected:
        if isinstance(got, bytes):
            event("admitted")
        else:
            event(got[0].__name__ if got[0] is DecodeError else got[1].split(":")[0])


class PoolSizeAtYield(trio.abc.Instrument):
    """Trio's own hook: the pool's size each time ``task`` hands control back to the loop."""

    def __init__(self, task: trio.lowlevel.Task, pool: Mempool) -> None:
        self.task = task
        self.pool = pool
        self.sizes: list[int] = []

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.sizes.append(len(self.pool))


async def test_a_large_batch_yields_to_the_loop_between_slices(chain: Chain) -> None:
    service = new_service(chain)
    assert isinstance(service.pool, Mempool)
    txs = [transfer(u, n, GWEI) for u in range(1, 5) for n in range(64)]  # 256
    txs += [transfer(0, n, GWEI) for n in range(1, 45)]  # 300 in all
    assert len(txs) > ADMIT_SLICE
    probe = PoolSizeAtYield(trio.lowlevel.current_task(), service.pool)
    trio.lowlevel.add_instrument(probe)
    try:
        results = await service.submit_raw_transactions([tx.raw for tx in txs])
    finally:
        trio.lowlevel.remove_instrument(probe)
    assert results == [tx.hash for tx in txs]
    assert len(service.pool) == len(txs)
    assert 0 in probe.sizes, "decoding (in a thread) came before any admission"
    between = [n for n in probe.sizes if 0 < n < len(txs)]
    assert between == [ADMIT_SLICE - 1], f"yielded with {sorted(set(probe.sizes))} admitted"


async def test_predecode_is_taken_by_submit_raw_transaction(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = new_service(chain)
    txs = [transfer(1, n, GWEI) for n in range(3)]
    too_low = transfer(0, 0, 2 * GWEI)
    raws = [tx.raw for tx in txs] + [too_low.raw, GARBAGE[2]]

    await service.predecode(raws)

    cached = dict(service._predecoded)
    assert set(cached) == {tx.raw for tx in [*txs, too_low]}, "only what decodes is kept"
    for tx in txs:
        assert cached[tx.raw].hash == tx.hash
        assert service.submit_raw_transaction(tx.raw) == tx.hash
        pool = service.pool
        assert isinstance(pool, Mempool)
        # the pool holds the very object decoded in the worker thread: nothing decoded again
        assert pool.get(tx.hash) is cached[tx.raw]
    with pytest.raises(TransactionRejected) as rejected:
        service.submit_raw_transaction(too_low.raw)
    assert rejected.value.message.startswith("nonce too low")
    with pytest.raises(DecodeError):
        service.submit_raw_transaction(GARBAGE[2])
    assert service._predecoded == {}, "every submission took its entry"
    assert held(service) == [tx.hash for tx in txs]
    # without a predecode, the same bytes decode inline: to the object decoded lately
    # (decode_transaction keeps recent results), else to an equal one
    other = new_service(chain)
    assert other.submit_raw_transaction(txs[0].raw) == txs[0].hash
    assert other.pool.get(txs[0].hash) is cached[txs[0].raw]
    monkeypatch.setattr(_tx_decode, "_recent", {})
    third = new_service(chain)
    assert third.submit_raw_transaction(txs[1].raw) == txs[1].hash
    assert third.pool.get(txs[1].hash) == cached[txs[1].raw]
    assert third.pool.get(txs[1].hash) is not cached[txs[1].raw]


async def test_predecode_cache_is_bounded_in_bytes(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    txs: list[Transaction] = [transfer(2, n, GWEI) for n in range(4)]
    size = len(txs[0].raw)
    monkeypatch.setattr(service_module, "PREDECODE_MAX_BYTES", 3 * size)
    service = new_service(chain)
    await service.predecode([txs[0].raw, txs[1].raw])
    assert set(service._predecoded) == {txs[0].raw, txs[1].raw}
    await service.predecode([txs[2].raw, txs[3].raw])  # 4 entries > 3 entries' bytes
    assert set(service._predecoded) == {txs[1].raw, txs[2].raw, txs[3].raw}, "oldest first"
    assert service.statistics()["predecoded_bytes"] == 3 * size
    # a dropped entry still submits, decoded inline
    assert [service.submit_raw_transaction(tx.raw) for tx in txs] == [tx.hash for tx in txs]
    assert service._predecoded == {}
    assert service.statistics()["predecoded_bytes"] == 0


async def test_a_batch_leaves_nothing_predecoded_that_it_did_not_submit(chain: Chain) -> None:
    """The review's H3: valid raw transactions in requests with a bad envelope (never
    submitted) were kept for ever. Now the batch's leftovers go when it is answered."""
    service = new_service(chain)
    dispatcher = RpcApp(service, RpcConfig(port=0)).dispatcher
    txs = [transfer(3, n, GWEI) for n in range(12)]
    batch = [
        {
            "jsonrpc": "1.0" if i % 3 == 0 else "2.0",  # every third: an invalid envelope
            "id": i,
            "method": "eth_sendRawTransaction",
            "params": ["0x" + tx.raw.hex()] + (["extra"] if i % 3 == 1 else []),
        }
        for i, tx in enumerate(txs)
    ]
    answer = orjson.loads(await dispatcher.answer(orjson.dumps(batch)) or b"[]")
    admitted = [a["id"] for a in answer if "result" in a]
    assert admitted == [2, 5, 8, 11]  # queued behind the refused ones' nonces
    assert len(service.pool) == 4
    assert service._predecoded == {}, "refused envelopes left decoded transactions behind"
    assert service.statistics()["predecoded_bytes"] == 0
