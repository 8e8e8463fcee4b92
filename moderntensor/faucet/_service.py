"""Start the faucet: check the node and the config, recover, then serve and watch.

:func:`serve_faucet` is a Trio task started with ``nursery.start``: it reports a
:class:`FaucetHandle` (with the bound port) once the store is open, the payouts of a previous
run are resumed and the socket listens. Before that it refuses to start when the node's chain
id disagrees with ``chain_id`` (if given) or the amount is validator-sized against the node's
``mt_validators`` stakes (``_config.check_amount_against_stake``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.faucet._api import FaucetApi
from moderntensor.faucet._config import ConfigError, FaucetConfig, check_amount_against_stake
from moderntensor.faucet._http import serve_connection
from moderntensor.faucet._payer import Payer
from moderntensor.faucet._rpc import NodeError, RpcClient
from moderntensor.faucet._store import Store, open_store
from moderntensor.node._logging import event

__all__ = ["FaucetHandle", "serve_faucet"]

log = logging.getLogger("moderntensor.faucet")


@attrs.define(slots=True)
class FaucetHandle:
    port: int
    api: FaucetApi
    payer: Payer
    store: Store


async def _validator_stakes(rpc: RpcClient) -> list[int]:
    try:
        validators = await rpc.call("mt_validators")
    except NodeError:
        return []  # not a ModernTensor node (or an old one): HARD_MAX_AMOUNT still applies
    stakes = []
    for v in validators if isinstance(validators, list) else []:
        stake = v.get("stake") if isinstance(v, dict) else None
        if isinstance(stake, str):
            stakes.append(int(stake, 16) if stake.startswith("0x") else int(stake))
        elif isinstance(stake, int):
            stakes.append(stake)
    return stakes


async def serve_faucet(
    config: FaucetConfig,
    key: PrivateKey,
    rpc_url: str,
    *,
    clock: Callable[[], float] = time.time,
    chain_id: int | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the faucet until cancelled.

    Raises:
        ConfigError: the node's chain id or validator stakes rule the config out.
        NodeUnavailable: the node cannot be reached at start.
    """
    rpc = RpcClient(rpc_url)
    node_chain = int(await rpc.call("eth_chainId"), 16)
    if chain_id is not None and chain_id != node_chain:
        raise ConfigError(
            f"chain_id: the node at {rpc_url} is on chain {node_chain}, not {chain_id}"
        )
    check_amount_against_stake(config, await _validator_stakes(rpc))
    store = open_store(config.database)
    try:
        payer = Payer(config, key, rpc, store, node_chain, clock)
        await payer.recover()
        api = FaucetApi(config, store, payer, clock, trio.current_time)
        try:
            listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        except OSError as exc:  # an operator's mistake: one line, not a traceback
            reason = exc.strerror or str(exc)
            raise ConfigError(f"faucet.port {config.port} on {config.host}: {reason}") from None
        port = listeners[0].socket.getsockname()[1]
        limiter = trio.CapacityLimiter(config.max_connections)

        async def handler(stream: trio.SocketStream) -> None:
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                await trio.aclose_forcefully(stream)
                return
            try:
                await serve_connection(stream, api.handle, config.max_body_bytes)
            finally:
                limiter.release()

        async with trio.open_nursery() as nursery:
            await nursery.start(payer.watch)
            nursery.start_soon(_cleanup_loop, api, config.cleanup_interval)
            await nursery.start(trio.serve_listeners, handler, listeners)
            event(
                log,
                logging.INFO,
                "faucet.listening",
                port=port,
                address=checksum_address(key.address),
                chain=node_chain,
            )
            task_status.started(FaucetHandle(port, api, payer, store))
    finally:
        store.close()
        await rpc.aclose()


async def _cleanup_loop(api: FaucetApi, interval: float) -> None:
    while True:
        api.cleanup()
        await trio.sleep(interval)
