"""One signature recovery per distinct (signature, digest) in the whole simulation.

Every node recovers the signer of every vote, proposal and handshake it checks, and each
keeps its own cache; in one process N nodes recover the same signature N times. Recovery is
a pure function of the signature and the digest, so while a simulation runs libsecp256k1's
recovery (``coincurve.PublicKey.from_signature_and_message``, which ``moderntensor.crypto``
calls) is answered from one process-wide table: the same keys, the same bytes, the same
outcomes, nothing scheduled differently -- the trace digest does not change. Failures are
not remembered (they raise, as before). The table is bounded (oldest entries go first).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import coincurve

__all__ = ["shared_recovery"]

CAPACITY = 1 << 18
"""Entries kept (about 70 MB at most)."""
_NAME = "from_signature_and_message"


@contextmanager
def shared_recovery() -> Iterator[dict[tuple[bytes, bytes], Any]]:
    """Recover each (signature, digest) once while the block runs; yields the table."""
    original = coincurve.PublicKey.__dict__[_NAME]
    recover = getattr(coincurve.PublicKey, _NAME)
    table: dict[tuple[bytes, bytes], Any] = {}

    def cached(cls: type, signature: bytes, message: bytes, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs != {"hasher": None}:  # only what moderntensor.crypto asks
            return recover(signature, message, *args, **kwargs)
        key = (bytes(signature), bytes(message))
        found = table.get(key)
        if found is None:
            found = recover(signature, message, None)
            if len(table) >= CAPACITY:
                del table[next(iter(table))]
            table[key] = found
        return found

    setattr(coincurve.PublicKey, _NAME, classmethod(cached))
    try:
        yield table
    finally:
        setattr(coincurve.PublicKey, _NAME, original)
