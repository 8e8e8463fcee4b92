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


@attrs.frozen(slots=True)
class RpcConfig:
    """Where to listen and how much one request may ask for.

    ``cors_origins`` lists the browser origins allowed to call us (``"*"``: any, which is what
    MetaMask and dapps on other hosts need for a local dev node); an empty tuple sends no CORS
    headers, so browsers block cross-origin pages.
    """

    addr: str = "127.0.0.1"
    port: int = attrs.field(default=8545, validator=_port)
    cors_origins: tuple[str, ...] = attrs.field(default=("*",), converter=tuple)
    max_body_bytes: int = attrs.field(default=5_000_000, validator=_positive)
    max_batch: int = attrs.field(default=1000, validator=_positive)
    ws_enabled: bool = True


@attrs.frozen(slots=True)
class MetricsConfig:
    """Where the metrics listener binds (the ``[metrics]`` section when enabled)."""

    addr: str = "127.0.0.1"
    port: int = attrs.field(default=6060, validator=_port)
