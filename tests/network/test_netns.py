"""Several hosts: four validators, each an OS process in a network namespace of its own, with
every connection through the fault-injecting relay in the root namespace (no netem here).

The test makes four namespaces ``mt<pid>n<i>``, each joined to the root namespace by a veth
pair on a /30 of its own (``10.X.Y.4i+1`` on the root side, ``.4i+2`` inside) and no other
route: a node can reach only the root namespace, where the relay listens, so no connection can
bypass it (peer exchange is off as well, ``[p2p] discover = false``). Each node listens on its
namespace's address, all on the same ports (each namespace has its own). The relay is the
command-line one (``python -m moderntensor.network.faultrelay``) with latency and jitter, and
the test cuts and heals the network through its standard input.

The namespaces and links are removed in the fixture's teardown, whatever happened. Without the
privilege to make a namespace (not root, or EPERM) the test is skipped, saying so; any other
failure of ``ip`` is a failure.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import pytest

from moderntensor.cli import main
from tests.network.test_processes import ROOT, SLOT_S, LocalTestnet, Node, rpc

pytestmark = pytest.mark.slow

VALIDATORS = 4
P2P_PORT = 30303
RPC_PORT = 8545
RELAY_BASE_PORT = 31000


@attrs.frozen(slots=True)
class Host:
    """One namespace: its name, the root side of its veth pair, and both addresses."""

    ns: str
    veth: str
    root_ip: str
    ns_ip: str


def _ip(*args: str) -> None:
    """Run ``ip ARGS``.

    Raises:
        AssertionError: it failed (with what it said).
    """
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


def _skip_without_privilege(pid: int) -> None:
    """Make and remove a probe namespace; skip the test if that is not allowed here."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to make network namespaces")
    probe = f"mt{pid}probe"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        said = done.stderr.strip()
        if os.geteuid() != 0 or "not permitted" in said or "Permission denied" in said:
            pytest.skip(f"making a network namespace needs root (CAP_SYS_ADMIN): {said}")
        raise AssertionError(f"ip netns add {probe}: {said}")
    _ip("netns", "del", probe)


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    """Four namespaces with a veth pair each to the root namespace; removed afterwards."""
    pid = os.getpid()
    _skip_without_privilege(pid)
    prefix = f"10.{64 + (pid >> 8) % 128}.{pid % 256}"
    made: list[Host] = []
    try:
        for i in range(VALIDATORS):
            host = Host(f"mt{pid}n{i}", f"mt{pid}v{i}", f"{prefix}.{4 * i + 1}",
                        f"{prefix}.{4 * i + 2}")  # fmt: skip
            _ip("netns", "add", host.ns)
            made.append(host)
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
            _ip("addr", "add", f"{host.root_ip}/30", "dev", host.veth)
            _ip("link", "set", host.veth, "up")
            _ip("-n", host.ns, "addr", "add", f"{host.ns_ip}/30", "dev", "eth0")
            _ip("-n", host.ns, "link", "set", "eth0", "up")
            _ip("-n", host.ns, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:  # deleting a namespace deletes its end of the pair, and so the pair
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True, timeout=20)
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True, timeout=20)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not [h.ns for h in made if h.ns in left.split()], f"namespaces left: {left}"


class NamespacedNode(Node):
    """A testnet node started inside its namespace (``ip netns exec``)."""

    def __init__(self, entry: dict[str, Any], ns: str) -> None:
        super().__init__(entry)
        self.ns = ns

    def start(self) -> None:
        with open(self.log, "ab") as out:
            command = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "moderntensor.node",
                       "--config", str(self.config)]  # fmt: skip
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )


class RelayProcess:
    """``python -m moderntensor.network.faultrelay`` in the root namespace, driven through its
    standard input (one command, one line of answer)."""

    def __init__(self, routes: list[str], log: Path, *flags: str) -> None:
        command = [sys.executable, "-m", "moderntensor.network.faultrelay", *flags]
        for route in routes:
            command += ["--route", route]
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
                text=True, start_new_session=True,
            )  # fmt: skip
        self._answers: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._answers.put(line.strip())

    def command(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.poll() is None, self.tail()
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        try:
            return self._answers.get(timeout=10)
        except queue.Empty:
            raise AssertionError(f"the relay did not answer {line!r}\n{self.tail()}") from None

    def statistics(self) -> dict[str, int]:
        stats = ast.literal_eval(self.command("stats"))
        assert isinstance(stats, dict), stats
        return stats

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def write_node_toml(node: Node, host: Host, bootstrap: list[str]) -> None:
    """The node listens (p2p and RPC) on its namespace's address; it dials only ``bootstrap``."""
    generated = tomllib.loads(node.config.read_text())
    lines = [
        "[node]", 'data_dir = "data"', 'genesis = "../genesis.json"', "",
        "[validator]", f"key_file = {json.dumps(generated['validator']['key_file'])}", "",
        "[rpc]", f'addr = "{host.ns_ip}"', f"port = {RPC_PORT}", "",
        "[p2p]", f'listen_addr = "{host.ns_ip}"', f"port = {P2P_PORT}",
        f"node_key_file = {json.dumps(generated['p2p']['node_key_file'])}",
        "discover = false", f"bootstrap = {json.dumps(bootstrap)}", "",
    ]  # fmt: skip
    node.config.write_text("\n".join(lines))


def max_finalized(net: LocalTestnet) -> int:
    return max(h or 0 for h in net.finalized(net.validators))


def test_four_validators_in_namespaces_through_the_relay(hosts: list[Host], tmp_path: Path) -> None:
    out = tmp_path / "net"
    args = ["testnet", "init", "--validators", str(VALIDATORS), "--out", str(out),
            "--start-in", "6", "--slot-duration", str(SLOT_S)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "testnet.json").read_text())
    entries = [e for e in summary["nodes"] if e["validator"]]
    names = [e["name"] for e in entries]
    peer_ids = [e["p2p"].rsplit("/", 1)[1] for e in entries]
    routes, bootstraps = [], []
    for i, host in enumerate(hosts):
        bootstrap = []
        for j in range(i):  # node i dials node j through the relay, on i's side of the relay
            port = RELAY_BASE_PORT + 10 * i + j
            routes.append(
                f"{names[i]}@{host.root_ip}:{port}={names[j]}@{hosts[j].ns_ip}:{P2P_PORT}"
            )
            bootstrap.append(f"/ip4/{host.root_ip}/tcp/{port}/ws/p2p/{peer_ids[j]}")
        bootstraps.append(bootstrap)

    net = LocalTestnet(out)
    nodes = [NamespacedNode(dict(e, rpc=f"http://{h.ns_ip}:{RPC_PORT}"), h.ns)
             for e, h in zip(entries, hosts, strict=True)]  # fmt: skip
    net.nodes = net.validators = list(nodes)
    for node, host, bootstrap in zip(nodes, hosts, bootstraps, strict=True):
        write_node_toml(node, host, bootstrap)
    relay = RelayProcess(routes, tmp_path / "relay.log", "--latency-ms", "15", "--jitter-ms",
                         "10", "--drop", "0.01", "--seed", "7")  # fmt: skip
    try:
        for node in nodes:
            node.start()
        net.wait(lambda: all(rpc(n.url, "mt_finality") is not None for n in nodes), 30,
                 "every node's RPC in its namespace")  # fmt: skip
        for node in nodes:  # each runs in its own namespace
            assert node.proc is not None
            where = subprocess.run(["ip", "netns", "identify", str(node.proc.pid)],
                                   capture_output=True, text=True).stdout.split()  # fmt: skip
            assert where == [node.ns], (node.name, where)

        net.wait_finalized(nodes, 4, 60)
        assert net.assert_same_chain(nodes) >= 4
        stats = relay.statistics()
        assert stats["connections"] >= len(routes) and stats["forwarded"] > 0, stats

        assert relay.command(f"partition {','.join(names[:2])} {','.join(names[2:])}") == (
            "partitioned"
        )
        time.sleep(4 * SLOT_S)  # what was decided before the cut lands
        top = max_finalized(net)
        before = relay.statistics()["partitioned"]
        deadline = time.monotonic() + 8 * SLOT_S
        while time.monotonic() < deadline:  # a bounded window in which nothing may finalize
            assert max_finalized(net) == top, f"finalized across a 2|2 split\n{net.logs()}"
            time.sleep(0.2)
        assert relay.statistics()["partitioned"] > before  # they kept trying

        assert relay.command("heal") == "healed"
        net.wait_finalized(nodes, top + 3, 60)
        assert net.assert_same_chain(nodes) >= top + 3
        assert all(n.alive() for n in nodes), net.logs()
    finally:
        for node in nodes:
            try:
                node.stop()
            except Exception:  # the next node must still be stopped
                node.kill()
        relay.stop()
