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
from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.mempool import MempoolConfig
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.rpc import RpcConfig
from moderntensor.service import ChainService

T = TypeVar("T")

CHAIN_ID = 1337
DEV_KEYS = [
    PrivateKey.from_hex(k)
    for k in (
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
        "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
        "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
        "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
        "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
        "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    )
]
DEV_BALANCE = 10_000 * 10**18
VALIDATOR_KEY = PrivateKey(b"\x11" * 32)
VALIDATOR_OWNER = PrivateKey(b"\x12" * 32)
BASE_FEE = 1_000_000_000


def dev_genesis(
    genesis_time: int,
    slot_duration: str = "0.2",
    gas_limit: int = 30_000_000,
    extra_accounts: Sequence[bytes] = (),
) -> Genesis:
    alloc = {checksum_address(k.address): {"balance": str(DEV_BALANCE)} for k in DEV_KEYS}
    for address in extra_accounts:
        alloc[checksum_address(address)] = {"balance": str(DEV_BALANCE)}
    return parse_genesis(
        {
            "chain_id": CHAIN_ID,
            "network_name": "rpc-dev",
            "genesis_time": genesis_time,
            "consensus": {
                "slot_duration": slot_duration,
                "epoch_length": 8,
                "min_stake": "1000",
                "max_validators": 10,
                "unbonding_epochs": 1,
                "slash_fraction": "0.05",
                "block_reward": str(2 * 10**18),
            },
            "block": {"gas_limit": gas_limit, "base_fee": BASE_FEE, "min_gas_price": BASE_FEE},
            "total_supply": str(10**30),
            "validators": [
                {
                    "address": checksum_address(VALIDATOR_OWNER.address),
                    "consensus_pubkey": "0x" + VALIDATOR_KEY.public_key_bytes.hex(),
                    "stake": str(32 * 10**18),
                    "name": "dev-validator",
                }
            ],
            "alloc": alloc,
        }
    )


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
