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


def _encode_uint_item(value: int) -> bytes:
    """RLP of a non-negative integer below 2**256 (a string of at most 32 bytes)."""
    if value < 0x80:
        return bytes((value,)) if value else b"\x80"
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return _STRING_HEADERS[len(raw)] + raw


_STRING_HEADERS = [bytes((0x80 + n,)) for n in range(33)]


def encode_account(account: Account) -> bytes:
    """``rlp([nonce, balance, storage_root, code_hash])``.

    Raises:
        ValueError: a negative nonce or balance.
    """
    nonce = account.nonce
    balance = account.balance
    storage_root = account.storage_root
    code_hash = account.code_hash
    if (
        0 <= nonce < 1 << 64
        and 0 <= balance < 1 << 256
        and len(storage_root) == 32
        and len(code_hash) == 32
    ):
        payload = b"".join(
            (
                _encode_uint_item(nonce),
                _encode_uint_item(balance),
                b"\xa0",
                storage_root,
                b"\xa0",
                code_hash,
            )
        )
        return b"\xf8" + bytes((len(payload),)) + payload
    return encode_rlp(
        [
            encode_uint(account.nonce),
            encode_uint(account.balance),
            account.storage_root,
            account.code_hash,
        ]
    )


def _uint_at(raw: bytes, pos: int, max_len: int) -> tuple[int, int]:
    """The canonical RLP integer at ``raw[pos]`` and the position after it; (-1, 0) if the
    item is not one (a list, leading zeros, a non-canonical length, wider than ``max_len``
    bytes, or past the end)."""
    b = raw[pos]
    if b < 0x80:
        return (b, pos + 1) if b else (-1, 0)
    size = b - 0x80
    end = pos + 1 + size
    if size > max_len or end > len(raw):
        return -1, 0
    if size and (raw[pos + 1] == 0 or (size == 1 and raw[pos + 1] < 0x80)):
        return -1, 0
    return int.from_bytes(raw[pos + 1 : end], "big"), end


def decode_account(raw: bytes) -> Account:
    """Parse an account RLP.

    The common shape (a long-list header, two integers, two hashes) is read directly; any
    other input goes through the generic decoder, which gives the verdict and the error.

    Raises:
        moderntensor.codec.DecodeError: not a canonical 4-field account record.
    """
    n = len(raw)
    if 70 <= n < 258 and raw[0] == 0xF8 and raw[1] == n - 2:
        nonce, pos = _uint_at(raw, 2, 8)
        if nonce >= 0 and pos < n:
            balance, pos = _uint_at(raw, pos, 32)
            if balance >= 0 and pos + 66 == n and raw[pos] == 0xA0 and raw[pos + 33] == 0xA0:
                return Account(nonce, balance, raw[pos + 1 : pos + 33], raw[pos + 34 :])
    fields = expect_list(decode_rlp(raw, "account"), "account", 4)
    return Account(
        expect_uint(fields[0], "account.nonce", 64),
        expect_uint(fields[1], "account.balance"),
        expect_fixed(fields[2], "account.storage_root", 32),
        expect_fixed(fields[3], "account.code_hash", 32),
    )
