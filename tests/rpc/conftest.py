"""Fixtures: one dev node for the session (real RocksDB, real HTTP/WebSocket on 127.0.0.1),
a web3.py client, and a raw JSON-RPC client whose every eth_* result is schema-checked."""

from __future__ import annotations

import http.client
import itertools
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from web3 import Web3

from tests.rpc.devnode import DevNode
from tests.rpc.schema import check_result, spec_methods

_ids = itertools.count(1)


class RpcFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = str(error.get("message"))


class RawClient:
    """http.client keep-alive JSON-RPC; ``call`` validates eth_* results against the spec."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        try:
            self.conn.request(
                "POST", "/", body, {"content-type": "application/json", **(headers or {})}
            )
            response = self.conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, ConnectionError):
            self.conn.close()
            raise

    def call(self, method: str, params: list[Any] | None = None, *, exists: bool = False) -> Any:
        status, body = self.post(
            orjson.dumps(
                {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or []}
            )
        )
        assert status == 200, (status, body)
        answer = orjson.loads(body)
        if "error" in answer:
            raise RpcFailed(answer["error"])
        if method in spec_methods():
            check_result(method, answer["result"], exists=exists)
        return answer["result"]

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.conn.request("GET", path, headers=headers or {})
        response = self.conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    with DevNode(tmp_path_factory.mktemp("rpc-node")) as dev:
        yield dev


@pytest.fixture
def rpc(node: DevNode) -> Iterator[RawClient]:
    client = RawClient(node.port)
    yield client
    client.conn.close()


@pytest.fixture
def w3(node: DevNode) -> Web3:
    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
