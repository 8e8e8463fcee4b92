"""A fast path for decoding the common transaction: EIP-1559, empty access list, short fields.

Every node decodes every transaction at least once; after the sender's recovery, the generic
decoder's RLP parse and per-field checks were most of the cost. This parser reads the fields
straight out of the bytes, and accepts only what it fully checks: a canonical list of twelve
short byte strings (the ninth the empty list), integers without leading zeros and in range,
``to`` of 20 bytes, ``y_parity`` 0 or 1. Anything else -- a long data field, an access list,
any irregularity -- gives None, and the generic decoder decides (and names the error), so
the fast path never accepts what the generic one refuses, nor reads a field differently.
"""

from __future__ import annotations

__all__ = ["FastFields", "parse_dynamic_fee"]

FastFields = tuple[int, int, int, int, int, bytes | None, int, bytes, int, int, int, bytes]
"""chain_id, nonce, max_priority_fee, max_fee, gas, to, value, data, y_parity, r, s and the
signing payload (``0x02 || rlp(the first nine fields)``)."""

_INT_BYTES = (32, 8, 32, 32, 8, 20, 32, 55, 1, 32, 32)
"""Most bytes each field may take here (index 5 is ``to``, 7 ``data``: any short string)."""


def parse_dynamic_fee(raw: bytes) -> FastFields | None:
    """The fields of a type-2 transaction ``raw`` (``0x02 || rlp([...])``), or None when it
    is not of the shape this path handles (the generic decoder then decides)."""
    size = len(raw)
    if size < 2:
        return None
    head = raw[1]
    if 0xC0 <= head <= 0xF7:
        pos = 2
        length = head - 0xC0
    elif head == 0xF8 and size > 2:
        pos = 3
        length = raw[2]
        if length < 56:
            return None
    elif head == 0xF9 and size > 3:
        pos = 4
        length = (raw[2] << 8) | raw[3]
        if raw[2] == 0 or length < 256:
            return None
    else:
        return None
    if pos + length != size:
        return None
    start = pos
    fields: list[bytes] = []
    unsigned_end = 0
    for index in range(12):
        if pos >= size:
            return None
        prefix = raw[pos]
        if index == 8:  # the access list: only the empty one here
            if prefix != 0xC0:
                return None
            pos += 1
            unsigned_end = pos
            continue
        if prefix < 0x80:
            field = raw[pos : pos + 1]
            pos += 1
        elif prefix <= 0xB7:
            n = prefix - 0x80
            field = raw[pos + 1 : pos + 1 + n]
            if len(field) != n or (n == 1 and field[0] < 0x80):
                return None  # truncated, or a single low byte given a prefix
            pos += 1 + n
        else:
            return None
        limit = _INT_BYTES[index if index < 8 else index - 1]
        if len(field) > limit:
            return None
        if index != 5 and index != 7 and field[:1] == b"\x00":
            return None  # an integer with a leading zero
        fields.append(field)
    if pos != size:
        return None
    to = fields[5]
    if len(to) not in (0, 20):
        return None
    y_parity = int.from_bytes(fields[8], "big")
    if y_parity > 1:
        return None
    body = raw[start:unsigned_end]  # the first nine fields' encodings, as rlp() gives them
    n = len(body)
    if n < 56:
        header = bytes((0xC0 + n,))
    elif n < 256:
        header = bytes((0xF8, n))
    else:
        header = bytes((0xF9, n >> 8, n & 0xFF))
    return (
        int.from_bytes(fields[0], "big"),
        int.from_bytes(fields[1], "big"),
        int.from_bytes(fields[2], "big"),
        int.from_bytes(fields[3], "big"),
        int.from_bytes(fields[4], "big"),
        to or None,
        int.from_bytes(fields[6], "big"),
        fields[7],
        y_parity,
        int.from_bytes(fields[9], "big"),
        int.from_bytes(fields[10], "big"),
        b"\x02" + header + body,
    )
