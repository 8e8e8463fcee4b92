"""The optional proof-of-work challenge: an offline captcha that costs a browser about a second.

No third-party captcha service is reachable from a testnet host, so the page pays in CPU
instead: the server issues a random challenge with a difficulty ``d`` and an expiry; the page
finds a decimal ``nonce`` such that ``sha256(challenge + nonce)`` (ASCII text, concatenated)
starts with ``d`` zero bits (about ``2**d`` hashes: ``d = 18`` is ~0.3-1 s of JavaScript); the
claim carries both; the server checks the hash, that it issued the challenge, that it has not
expired and that it was not used before (each challenge pays at most once).

:class:`PowBook` is pure (randomness and ``now`` come in as arguments) and bounded: at most
``capacity`` outstanding challenges, the oldest dropped first. It lives in memory: a restart
only makes outstanding challenges invalid (the page asks for a new one).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import attrs

__all__ = ["Challenge", "PowBook", "count_leading_zero_bits", "pow_hash"]


@attrs.frozen(slots=True)
class Challenge:
    challenge: str
    difficulty: int
    expires_at: float


def pow_hash(challenge: str, nonce: str) -> bytes:
    return hashlib.sha256((challenge + nonce).encode("ascii")).digest()


def count_leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


class PowBook:
    """Outstanding challenges: issue, then redeem once."""

    def __init__(self, difficulty: int, ttl: float, capacity: int = 10_000) -> None:
        self.difficulty = difficulty
        self.ttl = ttl
        self.capacity = capacity
        self._open: OrderedDict[str, float] = OrderedDict()

    def issue(self, random_bytes: bytes, now: float) -> Challenge:
        self._expire(now)
        challenge = random_bytes.hex()
        self._open[challenge] = now + self.ttl
        while len(self._open) > self.capacity:
            self._open.popitem(last=False)
        return Challenge(challenge, self.difficulty, now + self.ttl)

    def redeem(self, challenge: str | None, nonce: str | None, now: float) -> str | None:
        """None if the solution is good (the challenge is then spent), else why not."""
        if not challenge or nonce is None:
            return "this faucet asks for a proof of work: fetch /api/challenge and solve it"
        if len(nonce) > 32 or not nonce.isdigit() or not nonce.isascii():
            return "the proof-of-work nonce must be a decimal number"
        expires = self._open.get(challenge)
        if expires is None:
            return "unknown or already used challenge: fetch a new one"
        if expires <= now:
            del self._open[challenge]
            return "the challenge expired: fetch a new one"
        if count_leading_zero_bits(pow_hash(challenge, nonce)) < self.difficulty:
            return "the proof of work does not meet the difficulty"
        del self._open[challenge]
        return None

    def _expire(self, now: float) -> None:
        while self._open:
            challenge, expires = next(iter(self._open.items()))
            if expires > now:
                break
            del self._open[challenge]

    def statistics(self) -> dict[str, int]:
        return {"outstanding": len(self._open), "difficulty": self.difficulty}
