"""The HTTP/1.1 fast path: the common JSON-RPC request parsed without h11, and its response.

h11 costs ~170 µs of CPU per request on our 2-core machine, more than the JSON-RPC work for
``eth_blockNumber`` and most of ``eth_sendRawTransaction``'s. Nearly every request a client
library sends is the same shape: ``POST <target> HTTP/1.1``, well-formed ``\\r\\n`` lines, one
``Host``, one ``Content-Length`` within the body limit, no ``Transfer-Encoding``, ``Expect``
or ``Upgrade``, keep-alive. :func:`parse_request` recognises exactly that shape with h11's own
grammar (same token, target and field-value patterns) and says :data:`FALLBACK` for anything
else, so h11 still decides every other case (400, 413, 431, chunked bodies, 100-continue,
HTTP/1.0, WebSocket upgrades): the malformed-input guarantees are h11's.

Like h11, the parser is sans-I/O: it only looks at the bytes received so far, and it waits
for the head exactly when h11 would (h11 answers early only for a buffer over the head limit
or a first byte that cannot start a request line: both are :data:`FALLBACK` here).
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = [
    "FALLBACK",
    "MAX_HEAD_BYTES",
    "Fallback",
    "FastRequest",
    "blank_line_search_start",
    "parse_request",
    "response_bytes",
]

MAX_HEAD_BYTES = 16 * 1024

# h11's grammar (h11/_abnf.py): token, request-target (vchar+), field-value with OWS
_REQUEST_LINE = re.compile(rb"POST ([\x21-\x7e]+) HTTP/1\.1")
_HEADER = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*"
)
_BLANK_LINE = re.compile(rb"\n\r?\n")  # where h11's ReceiveBuffer ends a head
_NOT_FAST = frozenset((b"transfer-encoding", b"expect", b"upgrade", b"te", b"trailer"))


class Fallback:
    """Marker: let h11 handle this request (and whatever follows it)."""

    def __repr__(self) -> str:
        return "FALLBACK"


FALLBACK: Final = Fallback()


class FastRequest(NamedTuple):
    """A request head the fast path serves: the body is ``buf[head_end:body_end]``."""

    head_end: int
    body_end: int
    target: bytes
    origin: bytes | None
    close: bool


def blank_line_search_start(previous_size: int) -> int:
    """Where to resume looking for the end of a head after ``previous_size`` bytes did not
    contain it (a terminator may straddle the old end), so byte-at-a-time clients cost
    linear time, not quadratic."""
    return max(0, previous_size - 3)


def parse_request(
    buf: bytes | bytearray, max_body: int, search_from: int = 0
) -> FastRequest | Fallback | None:
    """Classify the bytes at the start of ``buf``.

    Returns a :class:`FastRequest` when a complete head of the common shape is there (the
    body may still be incomplete: compare ``body_end`` with ``len(buf)``), ``None`` when
    more bytes are needed and h11 would wait too, :data:`FALLBACK` otherwise.
    """
    if not buf:
        return None
    if buf[0] < 0x21:
        return FALLBACK  # h11: "illegal request line", answered before the head is complete
    found = _BLANK_LINE.search(buf, search_from)
    if found is None:
        return FALLBACK if len(buf) > MAX_HEAD_BYTES else None
    start = found.start()
    if found.end() - start != 3 or start == 0 or buf[start - 1] != 0x0D:
        return FALLBACK  # a bare "\n" ends the head: legal for h11, not our shape
    if start > MAX_HEAD_BYTES:
        return FALLBACK
    head = bytes(buf[: start - 1])
    shape = _shapes.get(head)
    if shape is None:
        shape = _parse_head(head)
        if len(_shapes) >= _SHAPE_CACHE_SIZE:
            _shapes.clear()
        _shapes[head] = shape
    if isinstance(shape, Fallback) or shape[0] > max_body:
        return FALLBACK
    head_end = found.end()
    return FastRequest(head_end, head_end + shape[0], shape[1], shape[2], shape[3])


# A client sends the same head again and again (only the body changes): the classification
# of a head is a pure function of its bytes, so it is cached (bounded, cleared when full).
_SHAPE_CACHE_SIZE = 512
_Shape = tuple[int, bytes, bytes | None, bool]  # content length, target, origin, close
_shapes: dict[bytes, _Shape | Fallback] = {}


def _parse_head(head: bytes) -> _Shape | Fallback:
    """A head without its final CRLF: the common shape, or FALLBACK."""
    if head.count(b"\n") != head.count(b"\r\n"):
        return FALLBACK
    lines = head.split(b"\r\n")
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    if request_line is None:
        return FALLBACK
    length: int | None = None
    hosts = 0
    origin: bytes | None = None
    close = False
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None:
            return FALLBACK  # includes obsolete line folding (a line starting with OWS)
        name = header[1].lower()
        value = header[2]
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return FALLBACK  # h11 merges or rejects repeats and lists: let it
            length = int(value)
        elif name == b"host":
            hosts += 1
        elif name == b"origin":
            origin = value
        elif name == b"connection":
            for token in value.lower().split(b","):
                token = token.strip(b" \t")
                if token == b"close":
                    close = True
                elif token not in (b"keep-alive", b""):
                    return FALLBACK
        elif name in _NOT_FAST:
            return FALLBACK
    if hosts != 1 or length is None:
        return FALLBACK
    return length, request_line[1], origin, close


_STATUS_LINES = {200: b"HTTP/1.1 200 \r\n", 204: b"HTTP/1.1 204 \r\n"}


def response_bytes(status: int, headers: bytes, body: bytes, close: bool) -> bytes:
    """The whole response as h11 would write it (no reason phrase, like h11 given none; no
    Content-Length on a 204). ``headers`` is complete header lines."""
    parts = [_STATUS_LINES[status], headers]
    if status != 204:
        parts.append(b"content-length: %d\r\n" % len(body))
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)
