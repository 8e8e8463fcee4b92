"""Explorer settings: the ``[explorer]`` part of node.toml maps onto :class:`ExplorerConfig`."""

from __future__ import annotations

import attrs

__all__ = ["ExplorerConfig"]


def _port(_instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ValueError(
            f"explorer port must be an integer in [0, 65535] (0: any free port), got {value!r}"
        )


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"explorer {attribute.name} must be a positive integer, got {value!r}")


def _seconds(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"explorer {attribute.name} must be a positive number, got {value!r}")


@attrs.frozen(slots=True)
class ExplorerConfig:
    """Where the explorer listens and what one client may hold.

    Requests: bodies up to ``max_body_bytes`` (a ``POST /rpc`` JSON-RPC call or a WebSocket
    message; 413 / close 1009 beyond), batches of at most ``max_batch`` calls, answers of at
    most ``max_response_bytes``. Connections: ``max_connections`` in all, at most
    ``max_http_connections_per_ip`` and ``max_ws_connections_per_ip`` from one address (the
    longest-idle keep-alive connection makes room when full, as on the RPC port). A connection
    that sends nothing is closed after ``first_request_timeout_s``, an idle one after
    ``idle_timeout_s``.

    Account history: an index of the transactions of the newest ``index_blocks`` blocks, at
    most ``index_max_transactions`` of them (the oldest blocks are dropped first); an account
    page lists its newest ``account_transactions``.
    """

    addr: str = "127.0.0.1"
    port: int = attrs.field(default=4000, validator=_port)
    max_body_bytes: int = attrs.field(default=64 * 1024, validator=_positive)
    max_batch: int = attrs.field(default=100, validator=_positive)
    max_response_bytes: int = attrs.field(default=5_000_000, validator=_positive)
    max_connections: int = attrs.field(default=256, validator=_positive)
    max_http_connections_per_ip: int = attrs.field(default=32, validator=_positive)
    max_ws_connections_per_ip: int = attrs.field(default=8, validator=_positive)
    first_request_timeout_s: float = attrs.field(default=10.0, validator=_seconds)
    idle_timeout_s: float = attrs.field(default=60.0, validator=_seconds)
    index_blocks: int = attrs.field(default=10_000, validator=_positive)
    index_max_transactions: int = attrs.field(default=50_000, validator=_positive)
    account_transactions: int = attrs.field(default=25, validator=_positive)
