"""A testnet faucet on the node's JSON-RPC: limits, block lists, durable payouts, a web page.

``moderntensor faucet --rpc URL --key-file K [--config faucet.toml]`` serves an HTTP API and a
small page (docs/faucet.md). The pieces, each one idea:

* ``_config``: faucet.toml, validated (amounts far below a validator's stake).
* ``_request``: a claim's body and the client's IP (X-Forwarded-For behind N trusted proxies).
* ``_limits``: block lists, per-address and per-IP cooldowns, the daily cap (pure, ``now`` in).
* ``_pow``: the optional proof-of-work challenge (pure).
* ``_store``: SQLite: claims with their signed payouts written before sending, blocks, totals.
* ``_rpc``: a JSON-RPC client on Trio and h11.
* ``_payer``: nonces, signing, sending, watching to finality, re-sending, crash recovery.
* ``_api``: the routes; ``_http``: h11 server loop; ``_service``: start-up and the tasks.
"""

from moderntensor.faucet._api import FaucetApi
from moderntensor.faucet._config import ConfigError, FaucetConfig, load_config, parse_ether
from moderntensor.faucet._limits import Allowed, Refused, Usage, decide_claim, is_ip_blocked
from moderntensor.faucet._payer import CRASH_ENV, Payer, PayoutFailed
from moderntensor.faucet._pow import PowBook, count_leading_zero_bits, pow_hash
from moderntensor.faucet._request import BadRequest, ClaimRequest, compute_client_ip, parse_claim
from moderntensor.faucet._rpc import NodeError, NodeUnavailable, RpcClient
from moderntensor.faucet._service import FaucetHandle, serve_faucet
from moderntensor.faucet._store import ClaimRow, Store, open_store

__all__ = [
    "CRASH_ENV",
    "Allowed",
    "BadRequest",
    "ClaimRequest",
    "ClaimRow",
    "ConfigError",
    "FaucetApi",
    "FaucetConfig",
    "FaucetHandle",
    "NodeError",
    "NodeUnavailable",
    "Payer",
    "PayoutFailed",
    "PowBook",
    "Refused",
    "RpcClient",
    "Store",
    "Usage",
    "compute_client_ip",
    "count_leading_zero_bits",
    "decide_claim",
    "is_ip_blocked",
    "load_config",
    "open_store",
    "parse_claim",
    "parse_ether",
    "pow_hash",
    "serve_faucet",
]
