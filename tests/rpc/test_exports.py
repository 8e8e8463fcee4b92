"""STYLE rule 10: the package's public names, each exported exactly once."""

from __future__ import annotations

import moderntensor.rpc as rpc


def test_public_surface() -> None:
    assert sorted(rpc.__all__) == [
        "Dispatcher",
        "MetricsConfig",
        "RpcApp",
        "RpcConfig",
        "RpcError",
        "RpcMetrics",
        "serve_metrics",
        "serve_rpc",
    ]
    assert len(set(rpc.__all__)) == len(rpc.__all__)
    for name in rpc.__all__:
        assert getattr(rpc, name).__module__.startswith("moderntensor.rpc._")


def test_config_defaults_and_validation() -> None:
    config = rpc.RpcConfig()
    assert (config.addr, config.port, config.cors_origins) == ("127.0.0.1", 8545, ("*",))
    assert (config.max_body_bytes, config.max_batch, config.ws_enabled) == (5_000_000, 1000, True)
    for bad in ({"port": 70000}, {"max_batch": 0}, {"max_body_bytes": -1}):
        try:
            rpc.RpcConfig(**bad)  # type: ignore[arg-type]
        except ValueError as exc:
            assert next(iter(bad)) in str(exc) or "port" in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")
