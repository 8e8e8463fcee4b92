"""The driver's inbox under load (review §2 item 8): while the driver waits on chain work
(here: a commit waiting for the chain lock, as behind a long block execution), messages queue
in the bounded inbox; once it is full, senders wait in ``send``; nothing is dropped, and all
of it is handled once the driver is free again."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.votes import SignedVote, VoteKind, sign_vote
from moderntensor.crypto import PrivateKey, keccak256
from moderntensor.node._assemble import INBOX_SIZE, assemble_node
from moderntensor.state.store import Database
from tests.factories import VALIDATOR_CONSENSUS, genesis_doc
from tests.node.cluster import ManualClock


async def test_a_full_inbox_makes_senders_wait_and_loses_nothing(tmp_path: Path) -> None:
    genesis = parse_genesis(genesis_doc())
    clock = ManualClock(genesis.genesis_time * 1000 + 1000)  # slot 1 has started
    stranger = PrivateKey(keccak256(b"not a validator"))
    with Database.open(tmp_path / "db") as db:
        parts = assemble_node(db, genesis, VALIDATOR_CONSENSUS, clock=clock)
        config = parts.config

        def vote(n: int) -> SignedVote:
            return sign_vote(stranger, config.chain_id, config.genesis_hash, VoteKind.NOTARIZE,
                             0, 1, keccak256(n.to_bytes(4, "big")))  # fmt: skip

        async with trio.open_nursery() as nursery:
            nursery.start_soon(parts.pool_service.run, parts.heads_receive)
            await nursery.start(parts.driver.run, parts.inbox)
            request = parts.build_receive.receive_nowait()  # we lead slot 1
            built = await parts.producer.build(request)
            sent = trio.Event()

            async def one_more() -> None:
                await parts.inbox_send.send(vote(INBOX_SIZE))
                sent.set()

            async with parts.chain_lock:  # the driver's commit of our block waits for this
                await parts.inbox_send.send(built)
                with trio.fail_after(10):
                    while parts.chain_lock.statistics().tasks_waiting == 0:
                        await trio.sleep(0.005)
                for n in range(INBOX_SIZE):
                    parts.inbox_send.send_nowait(vote(n))
                with pytest.raises(trio.WouldBlock):
                    parts.inbox_send.send_nowait(vote(10**6))
                nursery.start_soon(one_more)
                await trio.testing.wait_all_tasks_blocked()
                assert not sent.is_set()  # the sender waits: back-pressure, not a drop
                assert parts.chain.head.number == 0
                assert parts.driver.rejected_messages == 0
            with trio.fail_after(10):
                await sent.wait()
                while parts.driver.rejected_messages < INBOX_SIZE + 1:
                    await trio.sleep(0.01)
            assert built.proposal is not None
            assert parts.chain.head.hash == built.proposal.block.hash
            assert parts.driver.rejected_messages == INBOX_SIZE + 1  # every one handled
            nursery.cancel_scope.cancel()
