"""Building, importing and committing blocks on real RocksDB; every block rule can fail."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from moderntensor.chain.blocks import decode_block, encode_block
from moderntensor.chain.chain import Chain, ChainMismatch, ExecutedBlock, InvalidBlock
from moderntensor.chain.constants import STAKING_ADDRESS
from moderntensor.chain.staking import (
    StakingOp,
    encode_staking_op,
    get_total,
    get_validator,
    get_validators,
)
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.chain.votes import Evidence, VoteKind, encode_evidence, sign_vote
from moderntensor.crypto import PrivateKey
from moderntensor.state.store import Database
from tests.factories import (
    ETHER,
    USERS,
    VALIDATOR_CONSENSUS,
    VALIDATOR_OWNER,
    key,
    make_genesis,
    transfer,
)

GENESIS = make_genesis(users=4, extra_validators=1)


@pytest.fixture
def chains(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two nodes on one genesis: a producer and a follower that re-executes."""
    dbs = [Database.open(tmp_path / "a"), Database.open(tmp_path / "b")]
    yield Chain(dbs[0], GENESIS), Chain(dbs[1], GENESIS)
    for db in dbs:
        db.close()


def produce(
    chain: Chain, slot: int, txs=(), evidence=(), proposer: PrivateKey = VALIDATOR_CONSENSUS
):  # type: ignore[no-untyped-def]
    executed = chain.build_block(chain.head, slot, proposer, list(txs), evidence)
    chain.commit(executed)
    return executed


def holdings(chain: Chain) -> int:
    state = chain.state_at(chain.head)
    addresses = {u.address for u in USERS} | {VALIDATOR_OWNER.address, key(2000).address}
    balances = sum(state.get_balance(a) for a in addresses)
    stakes = sum(v.stake + v.unbonding for v in get_validators(state))
    return balances + stakes + get_total(state, "burned") + get_total(state, "slashed")


def test_follower_re_executes_to_identical_blocks(chains) -> None:  # type: ignore[no-untyped-def]
    a, b = chains
    assert a.genesis_hash == b.genesis_hash
    for slot in range(1, 5):
        txs = [transfer(USERS[i], slot - 1, USERS[(i + 1) % 4].address, slot) for i in range(4)]
        executed = produce(a, slot, txs)
        assert len(executed.block.transactions) == 4
        imported = b.import_block(decode_block(encode_block(executed.block)))
        assert imported.state.root == executed.block.header.state_root
        assert b.head.hash == a.head.hash
    assert holdings(b) == GENESIS.genesis_supply + get_total(b.state_at(b.head), "minted")
    first = b.chaindb.get_canonical_hash(1)
    block = b.chaindb.get_block(first)  # type: ignore[arg-type]
    assert block is not None
    assert b.chaindb.get_tx_location(block.transactions[2].hash) == (first, 2)
    stale = transfer(USERS[0], 0, USERS[1].address, 1)  # nonce 0 was used in slot 1
    assert produce(a, 9, [stale]).block.transactions == ()  # the builder leaves it out


def tamper(executed: ExecutedBlock, **changes) -> ExecutedBlock:  # type: ignore[no-untyped-def]
    header = attrs.evolve(executed.block.header, **changes)
    return attrs.evolve(executed, block=attrs.evolve(executed.block, header=header))


def resign(
    chain: Chain, executed: ExecutedBlock, key_: PrivateKey = VALIDATOR_CONSENSUS
) -> ExecutedBlock:
    from moderntensor.chain.votes import vote_digest

    header = executed.block.header
    epoch = compute_block_epoch(header.number, chain.params.epoch_length)
    digest = vote_digest(
        chain.params.chain_id, chain.genesis_hash, VoteKind.PROPOSE, epoch, header.slot,
        header.seal_hash,
    )  # fmt: skip
    return tamper(executed, proposer_signature=key_.sign(digest).to_bytes())


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"state_root": b"\x11" * 32}, "state root"),
        ({"gas_used": 1}, "gas used"),
        ({"base_fee_per_gas": 7}, "base fee"),
        ({"timestamp": 1}, "timestamp"),
        ({"number": 5}, "number"),
        ({"receipts_root": b"\x22" * 32}, "receipts root"),
        ({"transactions_root": b"\x33" * 32}, "transactions root"),
        ({"coinbase": b"\x44" * 20}, "coinbase"),
        ({"gas_limit": 1}, "gas limit"),
    ],
)
def test_follower_rejects_a_tampered_block(chains, changes, reason) -> None:  # type: ignore[no-untyped-def]
    a, b = chains
    executed = a.build_block(
        a.head, 1, VALIDATOR_CONSENSUS, [transfer(USERS[0], 0, USERS[1].address, 1)]
    )
    with pytest.raises(InvalidBlock, match=reason):
        b.execute_block(resign(a, tamper(executed, **changes)).block)
    b.import_block(executed.block)  # the honest block still imports afterwards
    assert b.head.hash == executed.block.hash


def test_signature_rules(chains) -> None:  # type: ignore[no-untyped-def]
    a, b = chains
    executed = a.build_block(a.head, 1, VALIDATOR_CONSENSUS, [])
    with pytest.raises(InvalidBlock, match="not the proposer's"):
        b.execute_block(resign(a, executed, key(77)).block)
    with pytest.raises(InvalidBlock, match="missing proposer signature"):
        b.execute_block(tamper(executed, proposer_signature=b"").block)
    outsider = key(77)
    forged = resign(a, tamper(executed, proposer=outsider.address), outsider)
    with pytest.raises(InvalidBlock, match="not an active validator"):
        b.execute_block(forged.block)


def test_block_with_an_unincludable_transaction_is_invalid(chains) -> None:  # type: ignore[no-untyped-def]
    a, b = chains
    from moderntensor.chain.blocks import compute_transactions_root

    executed = a.build_block(a.head, 1, VALIDATOR_CONSENSUS, [])
    bad_tx = transfer(USERS[0], 3, USERS[1].address, 1)  # nonce gap
    block = attrs.evolve(executed.block, transactions=(bad_tx,))
    header = attrs.evolve(block.header, transactions_root=compute_transactions_root([bad_tx]))
    forged = resign(a, attrs.evolve(executed, block=attrs.evolve(block, header=header)))
    with pytest.raises(InvalidBlock, match="nonce too high"):
        b.execute_block(forged.block)


def test_unknown_parent_and_reopen(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, GENESIS)
        for slot in (1, 2, 3):
            produce(chain, slot, [transfer(USERS[0], slot - 1, USERS[1].address, 10)])
        head = chain.head
        orphan = attrs.evolve(chain.build_block(head, 4, VALIDATOR_CONSENSUS, []).block)
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, GENESIS)
        assert chain.head == head
        assert chain.state_at(head).get_nonce(USERS[0].address) == 3
        stray = attrs.evolve(orphan.header, parent_hash=b"\x99" * 32)
        with pytest.raises(InvalidBlock, match="unknown parent"):
            chain.execute_block(attrs.evolve(orphan, header=stray))
        other = make_genesis(users=2)
        with pytest.raises(ChainMismatch, match="another data directory"):
            Chain(db, other)


def test_staking_lifecycle_conserves_and_respects_unbonding(chains) -> None:  # type: ignore[no-untyped-def]
    a, _ = chains
    user = USERS[2]
    ck = key(600)
    minted = lambda: get_total(a.state_at(a.head), "minted")  # noqa: E731

    def stake_tx(nonce: int, op: StakingOp, value: int, *args: bytes | int):  # type: ignore[no-untyped-def]
        data = encode_staking_op(op, *args)
        return transfer(user, nonce, STAKING_ADDRESS, value, gas=100_000, data=data)

    before = a.state_at(a.head).get_balance(user.address)
    r = produce(a, 1, [stake_tx(0, StakingOp.REGISTER, 200 * ETHER, ck.public_key_bytes, b"me")])
    assert [x.status for x in r.receipts] == [1]
    record = get_validator(a.state_at(a.head), user.address)
    assert record is not None and record.stake == 200 * ETHER and record.name == "me"
    gas_cost = r.receipts[0].gas_used * r.receipts[0].effective_gas_price
    assert a.state_at(a.head).get_balance(user.address) == before - 200 * ETHER - gas_cost
    assert holdings(a) == GENESIS.genesis_supply + minted()

    r = produce(
        a,
        2,
        [
            stake_tx(1, StakingOp.ADD_STAKE, 50 * ETHER),
            stake_tx(2, StakingOp.UNSTAKE, 0, 100 * ETHER),
        ],
    )
    assert [x.status for x in r.receipts] == [1, 1]
    record = get_validator(a.state_at(a.head), user.address)
    assert record is not None and (record.stake, record.unbonding) == (150 * ETHER, 100 * ETHER)
    length = GENESIS.consensus.epoch_length
    epoch = compute_block_epoch(r.block.number, length)  # of the block, not of slot 2
    assert record.unbonding_epoch == epoch + GENESIS.consensus.unbonding_epochs

    early = produce(a, 3, [stake_tx(3, StakingOp.WITHDRAW, 0)])
    assert early.receipts[0].status == 0 and "unbonds at epoch" in early.receipts[0].error
    assert holdings(a) == GENESIS.genesis_supply + minted()

    # An outage: thousands of slots without a block. Epochs count blocks, so the next block is
    # still in epoch 0 and the stake stays bonded however long the outage lasted.
    slot = 1_000 * length * (record.unbonding_epoch + 1)
    late = produce(a, slot, [stake_tx(4, StakingOp.WITHDRAW, 0)])
    assert late.block.number == 4 and late.receipts[0].status == 0
    assert f"unbonds at epoch {record.unbonding_epoch}, now 0" in late.receipts[0].error

    while compute_block_epoch(a.head.number + 1, length) < record.unbonding_epoch:
        slot += 1
        produce(a, slot)
    balance = a.state_at(a.head).get_balance(user.address)
    done = produce(a, slot + 1, [stake_tx(5, StakingOp.WITHDRAW, 0)])
    assert done.block.number == length * record.unbonding_epoch + 1  # the epoch's first block
    assert done.receipts[0].status == 1
    gas_cost = done.receipts[0].gas_used * done.receipts[0].effective_gas_price
    assert a.state_at(a.head).get_balance(user.address) == balance + 100 * ETHER - gas_cost
    assert holdings(a) == GENESIS.genesis_supply + minted()


def test_evidence_slashes_once_and_jails(chains) -> None:  # type: ignore[no-untyped-def]
    a, b = chains
    offender = key(3000)  # the consensus key of the second genesis validator
    first = sign_vote(
        offender, a.params.chain_id, a.genesis_hash, VoteKind.NOTARIZE, 0, 5, b"\x01" * 32
    )
    second = sign_vote(
        offender, a.params.chain_id, a.genesis_hash, VoteKind.NOTARIZE, 0, 5, b"\x02" * 32
    )
    evidence = encode_evidence(Evidence(first, second))
    owner = key(2000).address
    stake = get_validator(a.state_at(a.head), owner).stake  # type: ignore[union-attr]
    executed = produce(a, 1, evidence=[evidence])
    b.import_block(executed.block)
    record = get_validator(b.state_at(b.head), owner)
    assert record is not None and record.jailed
    assert record.stake == stake - stake * GENESIS.consensus.slash_fraction_bps // 10_000
    assert get_total(b.state_at(b.head), "slashed") == stake - record.stake
    assert holdings(b) == GENESIS.genesis_supply + get_total(b.state_at(b.head), "minted")
    swapped = encode_evidence(Evidence(second, first))
    with pytest.raises(InvalidBlock, match="already slashed"):
        a.build_block(a.head, 2, VALIDATOR_CONSENSUS, [], [swapped])
    other_chain = sign_vote(offender, 99, a.genesis_hash, VoteKind.NOTARIZE, 0, 5, b"\x03" * 32)
    with pytest.raises(InvalidBlock, match="evidence"):
        a.build_block(
            a.head, 2, VALIDATOR_CONSENSUS, [], [encode_evidence(Evidence(first, other_chain))]
        )
