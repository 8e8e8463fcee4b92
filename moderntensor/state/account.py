"""Ethereum's account record, ``rlp([nonce, balance, storage_root, code_hash])``."""

from __future__ import annotations

import attrs

from moderntensor.codec import (
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_fixed,
    expect_list,
    expect_uint,
)
from moderntensor.crypto import keccak256

__all__ = [
    "EMPTY_CODE_HASH",
    "EMPTY_ROOT",
    "Account",
    "decode_account",
    "encode_account",
]

EMPTY_ROOT = keccak256(b"\x80")
EMPTY_CODE_HASH = keccak256(b"")


@attrs.frozen(slots=True)
class Account:
    nonce: int = 0
    balance: int = 0
    storage_root: bytes = EMPTY_ROOT
    code_hash: bytes = EMPTY_CODE_HASH

    @property
    def is_empty(self) -> bool:
        """EIP-161 emptiness: no nonce, no balance, no code (storage is checked too, for us)."""
        return (
            self.nonce == 0
            and self.balance == 0
            and self.code_hash == EMPTY_CODE_HASH
            and self.storage_root == EMPTY_ROOT
        )


EMPTY_ACCOUNT = Account()


def encode_account(account: Account) -> bytes:
    return encode_rlp(
        [
            encode_uint(account.nonce),
            encode_uint(account.balance),
            account.storage_root,
            account.code_hash,
        ]
    )


def decode_account(raw: bytes) -> Account:
    """Parse an account RLP.

    Raises:
        moderntensor.codec.DecodeError: not a canonical 4-field account record.
    """
    fields = expect_list(decode_rlp(raw, "account"), "account", 4)
    return Account(
        expect_uint(fields[0], "account.nonce", 64),
        expect_uint(fields[1], "account.balance"),
        expect_fixed(fields[2], "account.storage_root", 32),
        expect_fixed(fields[3], "account.code_hash", 32),
    )
