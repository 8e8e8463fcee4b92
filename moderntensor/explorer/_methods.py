"""The explorer's JSON-RPC: the node's own handlers behind a read-only allowlist.

The explorer answers ``POST /rpc`` and ``/ws`` with a :class:`Dispatcher` of its own over the
node's method table (the same handlers, the same heavy-read worker threads), restricted to
:data:`READ_ONLY`: reads of the ``eth_``, ``net_``, ``web3_`` and ``mt_`` namespaces, plus
``eth_subscribe``/``eth_unsubscribe`` on the WebSocket. Every other method of the node
(``eth_sendRawTransaction`` above all) is answered -32601 saying that the explorer is
read-only; a method the node does not have at all gets the dispatcher's usual -32601. A method
added to the node later stays off the explorer until it is listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from moderntensor.rpc import Dispatcher, RpcError
from moderntensor.rpc._errors import METHOD_NOT_FOUND
from moderntensor.rpc._methods import Method, Param

from ._config import ExplorerConfig

__all__ = ["READ_ONLY", "explorer_dispatcher"]

READ_ONLY = frozenset(
    {
        "web3_clientVersion",
        "web3_sha3",
        "net_version",
        "net_listening",
        "net_peerCount",
        "eth_chainId",
        "eth_syncing",
        "eth_blockNumber",
        "eth_accounts",
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_gasPrice",
        "eth_baseFee",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockTransactionCountByNumber",
        "eth_getBlockTransactionCountByHash",
        "eth_getTransactionByBlockNumberAndIndex",
        "eth_getTransactionByBlockHashAndIndex",
        "eth_getBlockReceipts",
        "eth_getLogs",
        "mt_validators",
        "mt_epoch",
        "mt_leaderSchedule",
        "mt_finality",
        "mt_evidence",
        "mt_peers",
        "mt_status",
        "mt_slots",
    }
)
"""Methods the explorer answers. Not here: ``eth_sendRawTransaction`` (writes), and the
costly ``eth_getProof``, ``eth_call`` and ``eth_estimateGas`` (no page needs them)."""

_ANY = tuple(Param(f"arg{i}", lambda value: value, required=False) for i in range(32))
"""A refused method takes any arguments (up to 32), so the refusal, not a parameter error,
is what its caller reads."""


def _refusal(name: str) -> Method:
    def refuse(*_args: Any) -> NoReturn:
        raise RpcError(
            METHOD_NOT_FOUND,
            f"{name} is not available on the explorer (read-only); use the node's RPC port",
        )

    return Method(refuse, _ANY)


def explorer_dispatcher(node: Dispatcher, config: ExplorerConfig) -> Dispatcher:
    """A dispatcher over ``node``'s handlers and worker, limited to :data:`READ_ONLY` and
    to the explorer's batch and response sizes."""
    methods: Mapping[str, Method] = node.methods
    table = {
        name: method if name in READ_ONLY else _refusal(name) for name, method in methods.items()
    }
    return Dispatcher(
        table,
        config.max_batch,
        None,  # nothing is submitted here: no raw transactions to decode ahead
        worker=node.worker,
        max_response_bytes=config.max_response_bytes,
        batch_cpu_budget_s=node.batch_cpu_budget_s,
    )
