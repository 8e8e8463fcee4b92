"""Strict RLP: one decode error type, canonical integers, bounded sizes.

Every decoder in the package (transactions, blocks, consensus and wire messages) builds on
these helpers, so "decoders are total" (STYLE rule 5) holds in one place: any bytes give a
value or :class:`DecodeError`, never another exception.
"""

from __future__ import annotations

from typing import TypeAlias

import rlp
import rusty_rlp

__all__ = [
    "MAX_RLP_DEPTH",
    "DecodeError",
    "RLPItem",
    "decode_rlp",
    "encode_rlp",
    "encode_uint",
    "expect_bytes",
    "expect_fixed",
    "expect_list",
    "expect_uint",
]

RLPItem: TypeAlias = bytes | list["RLPItem"]

MAX_RLP_DEPTH = 128
"""Deepest list nesting :func:`decode_rlp` accepts. rusty-rlp recurses natively and crashes
the process (SIGSEGV) on ~30,000 nested lists, which fit in under 100 KB: a remote crash.
Our formats nest a handful of levels."""

_BELOW_LIST_HEADERS = bytes(range(0xC0))


class DecodeError(ValueError):
    """Bytes that are not a valid encoding; ``what`` names the object or field at fault."""

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(f"{what}: {problem}")
        self.what = what
        self.problem = problem


def encode_uint(value: int) -> bytes:
    """Minimal big-endian bytes of a non-negative integer (0 -> b'')."""
    if value < 0:
        raise ValueError(f"cannot encode negative integer {value}")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


_encode_raw = rusty_rlp.encode_raw
_decode_raw = rusty_rlp.decode_raw


def encode_rlp(item: RLPItem) -> bytes:
    """RLP of nested bytes and lists (integers must go through :func:`encode_uint` first).

    The Rust encoder directly: ``rlp.encode`` calls the same one after checks for its
    ``Serializable`` objects (an ABC ``isinstance``, twice the encoding's own cost). What the
    Rust encoder refuses (a bytearray, a value that is not bytes or a list) goes through
    ``rlp.encode``, which converts or raises as before.
    """
    try:
        encoded: bytes = _encode_raw(item)
    except rusty_rlp.EncodingError:
        return bytes(rlp.encode(item, infer_serializer=False))
    return encoded


def decode_rlp(raw: bytes, what: str = "rlp", max_size: int | None = None) -> RLPItem:
    """Decode one canonical RLP item that spans all of ``raw``.

    Raises:
        DecodeError: oversize input, non-canonical lengths, truncation, trailing bytes.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise DecodeError(what, f"expected bytes, got {type(raw).__name__}")
    if max_size is not None and len(raw) > max_size:
        raise DecodeError(what, f"oversize: {len(raw)} bytes > limit {max_size}")
    if len(raw) == 0:
        raise DecodeError(what, "empty input")
    raw = bytes(raw)
    # Nesting depth <= the number of bytes >= 0xc0, so most inputs skip the exact scan.
    if len(raw.translate(None, _BELOW_LIST_HEADERS)) > MAX_RLP_DEPTH and _too_deep(raw):
        raise DecodeError(what, f"lists nested deeper than {MAX_RLP_DEPTH} levels")
    try:
        item: RLPItem = _decode_raw(raw, True, False)[0]  # what rlp.decode calls, no sedes
    except Exception:  # a backend error: let rlp.decode raise (and word) it as always
        try:
            item = rlp.decode(raw, strict=True)
        except Exception as exc:  # RLPException, or a backend error of another type
            raise DecodeError(what, f"invalid RLP: {_describe_rlp_error(exc)}") from None
    # rusty-rlp ends a list at a string whose length prefix overruns it (c3 01 b9 01 gives
    # [01]); every canonical encoding, and only it, is the encoding of what it decodes to.
    if _encode_raw(item) != raw:
        raise DecodeError(what, "invalid RLP: a list's payload is not a sequence of items")
    return item


_RUST_RLP_ERRORS = {
    "RlpIsTooShort": "ends before the length its prefix announces",
    "RlpIsTooBig": "longer than its prefix announces",
    "RlpInvalidIndirection": "a long-form length prefix for a short item, not canonical",
    "RlpDataLenWithZeroPrefix": "a length with a leading zero byte, not canonical",
    "RlpListLenWithZeroPrefix": "a list length with a leading zero byte, not canonical",
    "RlpInconsistentLengthAndData": "the length prefix disagrees with the data",
    "RlpInvalidLength": "an invalid length",
    "RlpExpectedToBeList": "expected a list",
    "RlpExpectedToBeData": "expected a byte string",
    "RlpIncorrectListLen": "a list of the wrong length",
}
"""The Rust backend's error names (its ``Debug`` output) in words a user can act on."""


def _describe_rlp_error(exc: BaseException) -> str:
    """What is wrong with an RLP input, without the backend's debug output (``Trailing bytes.
    Payload Info PayloadInfo { header_len: 2, value_len: 108 }``, ``RlpIsTooShort``)."""
    text = str(exc).strip()
    if text.startswith("Trailing bytes"):
        return "trailing bytes after the item"
    for name, words in _RUST_RLP_ERRORS.items():
        if name in text:
            return words
    if "as short string although single byte was possible" in text:
        return "a single byte below 0x80 given a length prefix, not canonical"
    text = text.split(". Payload Info", 1)[0].split(" PayloadInfo", 1)[0]
    return text or type(exc).__name__


def _too_deep(raw: bytes) -> bool:
    """Whether lists in ``raw`` nest deeper than MAX_RLP_DEPTH: walks the item headers with an
    explicit stack, skipping string payloads. Malformed lengths are left to the real decoder."""
    ends: list[int] = []  # end offsets of the open lists, innermost last
    pos, size = 0, len(raw)
    while pos < size:
        while ends and pos >= ends[-1]:
            ends.pop()
        prefix = raw[pos]
        if prefix < 0x80:
            pos += 1
        elif prefix < 0xB8:
            pos += 1 + prefix - 0x80
        elif prefix < 0xC0:
            width = prefix - 0xB7
            pos += 1 + width + int.from_bytes(raw[pos + 1 : pos + 1 + width], "big")
        else:
            if prefix < 0xF8:
                width, length = 0, prefix - 0xC0
            else:
                width = prefix - 0xF7
                length = int.from_bytes(raw[pos + 1 : pos + 1 + width], "big")
            pos += 1 + width
            ends.append(pos + length)
            if len(ends) > MAX_RLP_DEPTH:
                return True
    return False


def expect_list(item: RLPItem, what: str, length: int | None = None) -> list[RLPItem]:
    """The item as a list, optionally of an exact length.

    Raises:
        DecodeError: not a list, or the wrong field count.
    """
    if not isinstance(item, list):
        raise DecodeError(what, "expected an RLP list, got a byte string")
    if length is not None and len(item) != length:
        raise DecodeError(what, f"field count {len(item)}, expected {length}")
    return item


def expect_bytes(item: RLPItem, what: str, max_len: int | None = None) -> bytes:
    """The item as a byte string, optionally bounded in length.

    Raises:
        DecodeError: a list, or too long.
    """
    if not isinstance(item, bytes):
        raise DecodeError(what, "expected a byte string, got a list")
    if max_len is not None and len(item) > max_len:
        raise DecodeError(what, f"{len(item)} bytes > limit {max_len}")
    return item


def expect_fixed(item: RLPItem, what: str, length: int) -> bytes:
    """A byte string of exactly ``length`` bytes.

    Raises:
        DecodeError: a list, or another length.
    """
    raw = expect_bytes(item, what)
    if len(raw) != length:
        raise DecodeError(what, f"{len(raw)} bytes, expected {length}")
    return raw


def expect_uint(item: RLPItem, what: str, max_bits: int = 256) -> int:
    """A canonical unsigned integer: no leading zero bytes, at most ``max_bits`` wide.

    Raises:
        DecodeError: a list, leading zeros, or too wide.
    """
    raw = expect_bytes(item, what)
    if raw[:1] == b"\x00":
        raise DecodeError(what, "integer has leading zero bytes")
    if len(raw) * 8 > max_bits and int.from_bytes(raw, "big").bit_length() > max_bits:
        raise DecodeError(what, f"integer wider than {max_bits} bits")
    return int.from_bytes(raw, "big")
