"""ChainService.validator_set: the one home of the set rule outside the pure functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.staking import get_validators
from moderntensor.consensus import compute_epoch_seed, compute_validator_set
from moderntensor.service import ChainService
from moderntensor.state.store import Database
from tests.factories import VALIDATOR_CONSENSUS, genesis_doc

GENESIS = parse_genesis(genesis_doc(extra_validators=2, epoch_length=2))


def test_sets_come_from_the_snapshot_block_once_it_is_committed(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, GENESIS)
        unused: Any = None
        service = ChainService(chain, unused)
        genesis = chain.head
        first, second = service.validator_set(0), service.validator_set(1)
        assert first is not None and second is not None
        assert len(first) == 3 and first.validators == second.validators
        assert first.seed == compute_epoch_seed(chain.genesis_hash, 0, genesis.hash)
        assert service.validator_set(2) is None  # its snapshot is height 2: not final yet
        for slot in (1, 2):
            chain.commit(
                chain.build_block(chain.head, slot, VALIDATOR_CONSENSUS, []), finalized=True
            )
        third = service.validator_set(2)
        snapshot = chain.chaindb.get_header_by_number(2)
        assert third is not None and snapshot is not None
        records = get_validators(chain.state_at(snapshot))
        seed = compute_epoch_seed(chain.genesis_hash, 2, snapshot.hash)
        assert third == compute_validator_set(records, 2, seed, 10, GENESIS.consensus.min_stake)
        assert service.validator_set(2) is third  # cached
        assert service.validator_set(3) is None
