"""Fixtures: one dev node per test module (real RocksDB, real RPC on 127.0.0.1) and a factory
of faucets on it, each with its own SQLite file and shifted clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from moderntensor.faucet import FaucetConfig
from tests.faucet.harness import Client, FaucetThread, ShiftClock
from tests.rpc.devnode import DEV_KEYS, DevNode

FAUCET_KEY = DEV_KEYS[3]
TOKEN = "s3cret-admin-token"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    with DevNode(tmp_path_factory.mktemp("faucet-node")) as dev:
        yield dev


@attrs.define
class Running:
    faucet: FaucetThread
    client: Client
    clock: ShiftClock
    config: FaucetConfig


@pytest.fixture
def start_faucet(node: DevNode, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[FaucetThread] = []

    def start(**settings: Any) -> Running:
        settings.setdefault("database", str(tmp_path / f"faucet{len(started)}.sqlite3"))
        settings.setdefault("port", 0)
        settings.setdefault("poll_interval", 0.1)
        settings.setdefault("admin_token", TOKEN)
        config = FaucetConfig(**settings)
        clock = ShiftClock()
        faucet = FaucetThread(config, FAUCET_KEY, node.url, clock).start()
        started.append(faucet)
        return Running(faucet, Client(faucet.port), clock, config)

    yield start
    for faucet in started:
        faucet.stop()
