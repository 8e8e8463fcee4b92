"""One dev node serving the explorer per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.explorer.harness import ExplorerNode


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExplorerNode]:
    with ExplorerNode(tmp_path_factory.mktemp("explorer-node")) as dev:
        yield dev
