"""Server settings: the ``[rpc]`` part of the node config maps onto :class:`RpcConfig`, the
``[metrics]`` part (when enabled) onto :class:`MetricsConfig`."""

from __future__ import annotations

import attrs

__all__ = ["MetricsConfig", "RpcConfig"]


def _port(instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        kind = "metrics" if isinstance(instance, MetricsConfig) else "rpc"
        raise ValueError(
            f"{kind} port must be an integer in [0, 65535] (0: any free port), got {value!r}"
        )


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"rpc {attribute.name} must be a positive integer, got {value!r}")


def _seconds(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"rpc {attribute.name} must be a positive number, got {value!r}")


@attrs.frozen(slots=True)
class RpcConfig:
    """Where to listen and how much one client may ask for.

    ``cors_origins`` lists the browser origins allowed to call us (``"*"``: any, which is what
    MetaMask and dapps on other hosts need for a local dev node); an empty tuple sends no CORS
    headers, so browsers block cross-origin pages.

    Connections: at most ``max_connections`` in all, ``max_http_connections_per_ip`` and
    ``max_ws_connections_per_ip`` from one address (so one address can never fill the total;
    when it is full, the longest-idle keep-alive connection makes room). A connection that
    sends nothing is closed after ``first_request_timeout_s``, an idle keep-alive one after
    ``idle_timeout_s``.

    Work: heavy reads (blocks, receipts, fee history, proofs) run in ``read_threads`` worker
    threads of their own, never the chain's. A response, single or batch, may be at most
    ``batch_response_max_bytes`` (geth's ``--rpc.batch-response-max-size``) and a batch may use
    ``batch_cpu_budget_s`` of worker CPU time; calls past either get -32005 naming the limit.
    ``health_max_unfinalized_slots``: ``/health`` answers 503 when the wall-clock slot is
    more than this many slots past the newest finalized block's.
    """

    addr: str = "127.0.0.1"
    port: int = attrs.field(default=8545, validator=_port)
    cors_origins: tuple[str, ...] = attrs.field(default=("*",), converter=tuple)
    max_body_bytes: int = attrs.field(default=5_000_000, validator=_positive)
    max_batch: int = attrs.field(default=1000, validator=_positive)
    ws_enabled: bool = True
    max_connections: int = attrs.field(default=1024, validator=_positive)
    max_http_connections_per_ip: int = attrs.field(default=64, validator=_positive)
    max_ws_connections_per_ip: int = attrs.field(default=32, validator=_positive)
    first_request_timeout_s: float = attrs.field(default=10.0, validator=_seconds)
    idle_timeout_s: float = attrs.field(default=120.0, validator=_seconds)
    batch_response_max_bytes: int = attrs.field(default=25_000_000, validator=_positive)
    batch_cpu_budget_s: float = attrs.field(default=5.0, validator=_seconds)
    read_threads: int = attrs.field(default=1, validator=_positive)
    health_max_unfinalized_slots: int = attrs.field(default=32, validator=_positive)


@attrs.frozen(slots=True)
class MetricsConfig:
    """Where the metrics listener binds (the ``[metrics]`` section when enabled)."""

    addr: str = "127.0.0.1"
    port: int = attrs.field(default=6060, validator=_port)
