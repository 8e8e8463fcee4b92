"""A faucet in a background thread against a dev node, and a blocking HTTP client for it.

:class:`FaucetThread` runs ``serve_faucet`` in its own ``trio.run`` (like tests/rpc/devnode.py
runs the node) so plain tests can drive it with http.client from many threads. Its wall clock
is a :class:`ShiftClock`: real time plus an offset a test moves forward to pass cooldowns and
days without sleeping (the node keeps real time; only the faucet's bookkeeping jumps).
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from typing import Any

import orjson
import trio

from moderntensor.crypto import PrivateKey
from moderntensor.faucet import FaucetConfig, FaucetHandle, serve_faucet

NOON = 1_795_000_000 - 1_795_000_000 % 86_400 + 43_200  # a UTC noon in 2026


class ShiftClock:
    def __init__(self, start: float = NOON) -> None:
        self.offset = start - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class FaucetThread:
    def __init__(
        self, config: FaucetConfig, key: PrivateKey, rpc_url: str, clock: ShiftClock
    ) -> None:
        self.config = config
        self.key = key
        self.rpc_url = rpc_url
        self.clock = clock
        self.handle: FaucetHandle | None = None
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faucet", daemon=True)

    @property
    def port(self) -> int:
        assert self.handle is not None
        return self.handle.port

    def start(self) -> FaucetThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the faucet did not start within 30 s")
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the starting thread (one error unwrapped)
            while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                self.handle = await nursery.start(
                    lambda task_status: serve_faucet(
                        self.config,
                        self.key,
                        self.rpc_url,
                        clock=self.clock,
                        task_status=task_status,
                    )
                )
                self._ready.set()

    def call(self, fn: Any) -> Any:
        """Run ``fn`` on the faucet's Trio thread."""
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(30)

    def __enter__(self) -> FaucetThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Client:
    """http.client to a faucet: ``request`` answers (status, JSON or bytes, headers)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            data = response.read()
            found = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        doc: Any = data
        if found.get("content-type", "").startswith("application/json"):
            doc = orjson.loads(data)
        return response.status, doc, found

    def claim(
        self, address: str, xff: str | None = None, **extra: Any
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {"content-type": "application/json"}
        if xff is not None:
            headers["x-forwarded-for"] = xff
        return self.request(
            "POST", "/api/claim", orjson.dumps({"address": address, **extra}), headers
        )

    def get(self, path: str, token: str | None = None) -> tuple[int, Any, dict[str, str]]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.request("GET", path, headers=headers)

    def admin(self, action: str, doc: Any, token: str) -> tuple[int, Any, dict[str, str]]:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        return self.request("POST", f"/api/admin/{action}", orjson.dumps(doc), headers)

    def wait_final(self, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, doc, _ = self.get(f"/api/tx/{tx_hash}")
            if status == 200 and doc["status"] in ("final", "failed"):
                return dict(doc)
            time.sleep(0.1)
        raise AssertionError(f"{tx_hash} not final within {timeout} s: {doc}")


def rpc_call(url: str, method: str, params: list[Any]) -> Any:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        conn.request("POST", "/", body, {"content-type": "application/json"})
        answer = orjson.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert "error" not in answer, answer
    return answer["result"]


def balance(url: str, address: str) -> int:
    return int(rpc_call(url, "eth_getBalance", [address, "latest"]), 16)


def new_address() -> str:
    return "0x" + PrivateKey.generate().address.hex()
