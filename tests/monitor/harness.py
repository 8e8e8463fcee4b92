"""Real processes for the monitor's live tests: a dev node (``python -m moderntensor.node
--dev``) that can be killed, stopped (SIGSTOP) and restarted on its data dir, the monitor
itself (``moderntensor monitor --json``) with its JSON lines read by a thread into a queue,
and a tiny webhook receiver on 127.0.0.1. Every wait is bounded by a deadline."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
SLOT = "0.25"


def rpc(port: int, method: str, params: list[Any] | None = None, timeout: float = 5) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        conn.request("POST", "/", body, {"content-type": "application/json"})
        return orjson.loads(conn.getresponse().read())["result"]
    finally:
        conn.close()


def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class DevNodeProcess:
    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.data_dir = workdir / "data"
        self.log = workdir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "moderntensor.node", "--dev", "--rpc-port"]
        command += [str(self.port), "--block-time", SLOT, "--data-dir", str(self.data_dir)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            with contextlib.suppress(OSError, KeyError, ValueError):
                if int(rpc(self.port, "eth_blockNumber", timeout=1), 16) > 0:
                    return
            time.sleep(0.1)
        raise AssertionError("the dev node did not start: " + self.log.read_text()[-3000:])

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class MonitorProcess:
    """``moderntensor monitor --json``: its stdout lines parsed into ``lines``."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.log = workdir / "monitor.log"
        self.seen: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        command = [sys.executable, "-m", "moderntensor.cli", "monitor", "--json", *args]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, cwd=ROOT, env=dict(os.environ)
            )
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            self._queue.put(orjson.loads(line))
        self._queue.put(None)

    def wait_for(self, what: str, match: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
        """The first new line that ``match``es, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                doc = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if doc is None:
                raise AssertionError(f"the monitor ended: {self.log.read_text()[-3000:]}")
            self.seen.append(doc)
            if match(doc):
                return doc
        raise AssertionError(f"no {what} within {timeout} s; log: {self.log.read_text()[-2000:]}")

    def alert(self, event: str, kind: str, timeout: float, about: str = "") -> dict[str, Any]:
        """The first ``event`` of ``kind`` (whose message names ``about``), already seen or
        within ``timeout`` seconds."""

        def match(d: dict[str, Any]) -> bool:
            return (
                d["type"] == "alert"
                and d["event"] == event
                and d["kind"] == kind
                and about in d.get("message", "")
            )

        for doc in self.seen:
            if match(doc):
                return doc
        found: dict[str, Any] = self.wait_for(f"{event} {kind}", match, timeout)
        return found

    def alerts(self) -> list[tuple[str, str]]:
        return [(d["event"], d["kind"]) for d in self.seen if d["type"] == "alert"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        return self.proc.returncode


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps each POSTed JSON body and answers 204."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("content-length", "0"))
                received.append(orjson.loads(self.rfile.read(size)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, event: str, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for doc in list(self.received):
                if (doc["event"], doc["kind"]) == (event, kind):
                    return doc
            time.sleep(0.1)
        raise AssertionError(f"webhook: no {event} {kind} in {timeout} s: {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
