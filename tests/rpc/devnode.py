"""A real dev node (the node's supervisor: consensus driver, mempool, RPC) for client tests.

Chain id 1337, the ten Hardhat/Anvil dev accounts ("test test ... junk") funded with 10,000
ETH each, one validator, a block every slot (0.2 s by default), final as soon as it is
notarized (one validator is a quorum), so ``latest`` and ``finalized`` coincide.

:class:`DevNode` runs the node in a background thread's ``trio.run`` so that blocking
clients (web3.py, ethers.js in a subprocess, http.client) can drive it from plain tests; the
benchmark script uses it too. Stop it with :meth:`DevNode.stop` (or use it as a context
manager): the Trio run is cancelled and the database closed after every writer stopped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import trio

from moderntensor.chain.genesis import Genesis, parse_genesis
from moderntensor.crypto import checksum_address
from moderntensor.mempool import MempoolConfig
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import DEV_BALANCE, DEV_CHAIN_ID, dev_genesis_doc, dev_keys
from moderntensor.rpc import RpcConfig
from moderntensor.service import ChainService

T = TypeVar("T")

KEYS = dev_keys()
CHAIN_ID = DEV_CHAIN_ID
DEV_KEYS = list(KEYS.accounts)
VALIDATOR_KEY = KEYS.validator.consensus
VALIDATOR_OWNER = KEYS.validator.account


def dev_genesis(
    genesis_time: int,
    slot_duration: str = "0.2",
    gas_limit: int = 30_000_000,
    extra_accounts: Sequence[bytes] = (),
) -> Genesis:
    """The node's dev genesis (moderntensor.node.devnet), with room for benchmark senders."""
    doc = dev_genesis_doc(genesis_time, float(slot_duration), KEYS)
    doc["block"]["gas_limit"] = gas_limit
    for address in extra_accounts:
        doc["alloc"][checksum_address(address)] = {"balance": str(DEV_BALANCE)}
    return parse_genesis(doc, "rpc test genesis")


class DevNode:
    """A :class:`DevChain` with ``serve_rpc`` in a background thread."""

    def __init__(
        self,
        data_dir: Path,
        *,
        slot_duration: str = "0.2",
        gas_limit: int = 30_000_000,
        extra_accounts: Sequence[bytes] = (),
        pool_config: MempoolConfig | None = None,
        rpc_config: RpcConfig | None = None,
        seal: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.genesis = dev_genesis(int(time.time()), slot_duration, gas_limit, extra_accounts)
        self.pool_config = pool_config
        self.rpc_config = rpc_config or RpcConfig(port=0)
        self.seal = seal
        self.port = 0
        self.node: NodeHandle | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="devnode", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def service(self) -> ChainService:
        if self.node is None:
            raise RuntimeError("the dev node is not running")
        return self.node.service

    def start(self) -> DevNode:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("dev node did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("dev node failed to start") from self._error
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the starting thread, then re-raised
            self._error = exc
            self._ready.set()
            raise

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        settings = NodeSettings(
            self.data_dir,
            self.genesis,
            VALIDATOR_KEY if self.seal else None,
            self.rpc_config,
            self.pool_config or MempoolConfig(),
        )
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                self.node = await nursery.start(open_node, settings)
                self.port = self.node.rpc_port or 0
                self._ready.set()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the node's Trio thread (to read or poke the service safely)."""
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            cancel = self._cancel
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(cancel.cancel, trio_token=self._token)
        self._thread.join(30)

    def __enter__(self) -> DevNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
