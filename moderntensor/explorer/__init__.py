"""The block explorer the node serves (``[explorer] enabled = true``): static pages plus the
node's JSON-RPC, read-only, on a port of its own. See docs/explorer.md.

Start it in the node's nursery with the node's :class:`~moderntensor.rpc.RpcApp`::

    port = await nursery.start(serve_explorer, ExplorerApp(rpc_app, ExplorerConfig()))
"""

from __future__ import annotations

from moderntensor.explorer._config import ExplorerConfig
from moderntensor.explorer._index import AccountIndex
from moderntensor.explorer._methods import READ_ONLY
from moderntensor.explorer._server import ExplorerApp, serve_explorer

__all__ = ["READ_ONLY", "AccountIndex", "ExplorerApp", "ExplorerConfig", "serve_explorer"]
