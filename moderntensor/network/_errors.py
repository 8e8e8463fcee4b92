"""Network errors, split by blame (STYLE rule 4).

A :class:`NetworkRemoteError` is the peer's fault: the connection is closed with its
:class:`~moderntensor.network.DisconnectReason` (a later version scores the peer down). A
:class:`NetworkLocalError` is ours (a misuse of the API). :class:`TransportError` is neither:
the connection could not be made, or it is gone.
"""

from __future__ import annotations

from moderntensor.network._messages import (
    DisconnectReason,
)

__all__ = [
    "ConnectionClosed",
    "DialError",
    "HandshakeFailed",
    "NetworkError",
    "NetworkLocalError",
    "NetworkRemoteError",
    "TransportError",
]


class NetworkError(Exception):
    """Base of every network error."""


class NetworkLocalError(NetworkError):
    """Our side: a misuse of the API."""


class NetworkRemoteError(NetworkError):
    """The peer broke the protocol; ``reason`` is sent to it before the connection closes."""

    def __init__(self, reason: DisconnectReason, detail: str) -> None:
        super().__init__(f"{reason.name}: {detail}")
        self.reason = reason
        self.detail = detail


class HandshakeFailed(NetworkRemoteError):
    """The handshake failed; ``remote_closed`` when the peer ended it with a Disconnect (then
    nothing is sent back)."""

    def __init__(self, reason: DisconnectReason, detail: str, *, remote_closed: bool = False):
        super().__init__(reason, detail)
        self.remote_closed = remote_closed


class TransportError(NetworkError):
    """The transport failed: a connection could not be made or is gone."""


class ConnectionClosed(TransportError):
    """The connection is closed (by either side, or the transport broke)."""


class DialError(TransportError):
    """A connection could not be opened; names the address and why."""
