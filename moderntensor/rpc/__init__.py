"""Ethereum-compatible JSON-RPC over HTTP and WebSocket, plus ``mt_*``, ``/health`` and
``/metrics`` (DESIGN.md §2, layer 6: it talks only to the chain service).

Start it in the node's nursery::

    port = await nursery.start(serve_rpc, service, RpcConfig(port=8545))

See docs/rpc.md for the methods, their deviations from Ethereum and the error codes.
"""

from __future__ import annotations

from moderntensor.rpc._config import MetricsConfig, RpcConfig
from moderntensor.rpc._dispatch import Dispatcher
from moderntensor.rpc._errors import RpcError
from moderntensor.rpc._metrics import RpcMetrics
from moderntensor.rpc._metrics_server import serve_metrics
from moderntensor.rpc._server import RpcApp, serve_rpc

__all__ = [
    "Dispatcher",
    "MetricsConfig",
    "RpcApp",
    "RpcConfig",
    "RpcError",
    "RpcMetrics",
    "serve_metrics",
    "serve_rpc",
]
