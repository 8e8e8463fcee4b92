"""STYLE rule 10: the network package's public names, each defined in an internal module and
exported once; and the layering rule: network never imports the node."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import moderntensor.network as network


def test_public_surface() -> None:
    assert len(set(network.__all__)) == len(network.__all__)
    for name in network.__all__:
        value = getattr(network, name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__.startswith("moderntensor.network._"), name


def test_network_never_imports_the_node_or_rpc() -> None:
    package = Path(network.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                assert not name.startswith(("moderntensor.node", "moderntensor.rpc")), (
                    f"{path.name} imports {name}"
                )
