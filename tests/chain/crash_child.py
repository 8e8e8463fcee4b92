"""Child process for test_crash: commits blocks of transfers in a loop until it is killed.

Prints ``committed <number>`` after each commit returns, so the parent knows which blocks
must survive the kill.
"""

from __future__ import annotations

import json
import sys

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.state.store import Database
from tests.factories import USERS, VALIDATOR_CONSENSUS, transfer


def main(db_path: str, genesis_path: str, max_blocks: int) -> None:
    with open(genesis_path, encoding="utf-8") as handle:
        genesis = parse_genesis(json.load(handle))
    db = Database.open(db_path)
    chain = Chain(db, genesis)
    start = chain.head.number
    nonce = chain.state_at(chain.head).get_nonce(USERS[0].address)
    for step in range(max_blocks):
        txs = [transfer(USERS[i], nonce, USERS[(i + 1) % 4].address, 1 + step) for i in range(4)]
        executed = chain.build_block(chain.head, chain.head.slot + 1, VALIDATOR_CONSENSUS, txs)
        chain.commit(executed)
        nonce += 1
        print(f"committed {executed.block.number}", flush=True)
    print(f"done {start}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
