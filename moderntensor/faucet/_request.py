"""What a claim request says: its JSON body, the recipient, and the client's IP. Pure.

Every malformed input gets :class:`BadRequest` with a 4xx status and a message a person can
act on: 415 for a body that is not ``application/json``, 413 for one over the limit, 400 for
bad JSON, a missing or malformed address, the zero address or the faucet's own address.

The client's IP follows chainflag/eth-faucet: with ``proxy_count = 0`` X-Forwarded-For is
ignored (anyone can send one); with N trusted proxies each appended the address it saw, so
the client is the N-th entry from the right, and anything left of it may be forged. Fewer
entries than proxies (a request that bypassed a proxy) take the leftmost.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs
import orjson

from moderntensor.crypto import parse_address

__all__ = ["BadRequest", "ClaimRequest", "compute_client_ip", "parse_claim"]

ZERO_ADDRESS = bytes(20)


class BadRequest(ValueError):
    """A request the faucet refuses before looking at limits; ``status`` is the 4xx answer."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@attrs.frozen(slots=True)
class ClaimRequest:
    address: bytes
    pow_challenge: str | None
    pow_nonce: str | None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_claim(
    content_type: str | None, body: bytes, max_body: int, faucet_address: bytes
) -> ClaimRequest:
    """The claim in ``body``.

    Raises:
        BadRequest: naming the problem (see the module docstring).
    """
    if len(body) > max_body:
        raise BadRequest(413, "body_too_large", f"request body over {max_body} bytes")
    if _media_type(content_type) != "application/json":
        raise BadRequest(415, "content_type", "send the claim as Content-Type: application/json")
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "bad_json", 'expected a JSON object like {"address": "0x..."}')
    text = doc.get("address")
    if not isinstance(text, str):
        raise BadRequest(400, "bad_address", 'missing "address" (a 0x-prefixed string)')
    try:
        address = parse_address(text.strip())
    except ValueError as exc:
        raise BadRequest(400, "bad_address", str(exc)) from None
    if address == ZERO_ADDRESS:
        raise BadRequest(400, "zero_address", "the zero address cannot receive (burn) funds")
    if address == faucet_address:
        raise BadRequest(400, "faucet_address", "the faucet does not pay itself")
    challenge, nonce = doc.get("challenge"), doc.get("nonce")
    if challenge is not None and not isinstance(challenge, str):
        raise BadRequest(400, "bad_pow", '"challenge" must be a string')
    if nonce is not None and not isinstance(nonce, str | int):
        raise BadRequest(400, "bad_pow", '"nonce" must be a string or integer')
    return ClaimRequest(address, challenge, None if nonce is None else str(nonce))


def compute_client_ip(peer_ip: str, forwarded_for: list[str], proxy_count: int) -> str:
    """The client's IP per the module docstring (``forwarded_for``: every X-Forwarded-For
    header's value, in order).

    Raises:
        BadRequest: the chosen X-Forwarded-For entry is not an IP address.
    """
    if proxy_count <= 0 or not forwarded_for:
        return peer_ip
    parts = [p.strip() for value in forwarded_for for p in value.split(",")]
    chosen = parts[max(0, len(parts) - proxy_count)]
    try:
        return str(ipaddress.ip_address(chosen))
    except ValueError:
        raise BadRequest(400, "bad_forwarded_for", "X-Forwarded-For is not an IP list") from None
