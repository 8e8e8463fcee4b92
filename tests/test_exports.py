"""Each package's public surface (STYLE rule 10): every name in __all__ exists, is exported by
exactly one package, and no package exports a private name."""

from __future__ import annotations

import importlib
from collections import Counter

import pytest

PACKAGES = [
    "moderntensor.state",
    "moderntensor.chain",
    "moderntensor.crypto",
    "moderntensor.codec",
    "moderntensor.network",
    "moderntensor.network.faultrelay",
    "moderntensor.faucet",
    "moderntensor.explorer",
    "moderntensor.monitor",
    "moderntensor.sim",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_resolve(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "a name is listed twice"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"
        assert not attr.startswith("_") or attr == "__version__"


def test_each_name_is_exported_once() -> None:
    counts: Counter[str] = Counter()
    for name in PACKAGES:
        counts.update(importlib.import_module(name).__all__)
    assert [n for n, c in counts.items() if c > 1] == []
