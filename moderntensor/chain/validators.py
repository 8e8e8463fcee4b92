"""The record of one validator as the staking state keeps it.

Lives in the chain layer because execution writes it (staking transactions, slashing) and the
consensus layer reads snapshots of it to fix each epoch's validator set.
"""

from __future__ import annotations

import attrs

__all__ = ["ValidatorRecord"]


@attrs.frozen(slots=True)
class ValidatorRecord:
    """A registered validator.

    ``consensus_pubkey`` is a 33-byte compressed secp256k1 key that signs votes and proposals;
    ``address`` is the account that registered and owns the stake. ``unbonding`` is stake on
    its way out (not counted for consensus), released at ``unbonding_epoch``.
    """

    address: bytes
    consensus_pubkey: bytes
    stake: int
    jailed: bool = False
    name: str = ""
    unbonding: int = 0
    unbonding_epoch: int = 0
    registered_epoch: int = 0
