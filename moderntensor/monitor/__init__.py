"""The network monitor: node health, chain progress and alerts over the nodes' JSON-RPC.

``moderntensor monitor --nodes URL... | --testnet DIR`` (docs/monitor.md). The pieces:

* ``_model``: frozen facts (what a node answered), thresholds, alerts and status views.
* ``_core``: the pure state machine: rounds of observations and ``now`` in, status per node
  and alert raise/resolve events out, with a bounded history.
* ``_slots``: missed slots per validator from the leader schedule and finalized blocks (pure).
* ``_poll``: the calls to one node (``mt_status``, ``eth_syncing``, ``/health``, blocks,
  schedule, evidence) on the faucet's JSON-RPC client; ``_http``: one-shot GET/POST.
* ``_service``: the Trio loop, the webhook sender, the metrics listener.
* ``_render``: the rich dashboard and JSON lines; ``_metrics``: Prometheus on a private
  registry; ``_targets``: the node list from URLs or a testnet directory.
"""

from moderntensor.monitor._core import MonitorCore
from moderntensor.monitor._http import HttpFailed, http_request
from moderntensor.monitor._metrics import MonitorMetrics
from moderntensor.monitor._model import (
    Alert,
    AlertEvent,
    AlertKind,
    BlockFacts,
    ChainFacts,
    EvidenceFacts,
    Failure,
    NetworkStatus,
    NodeStatus,
    Observation,
    ProcessFacts,
    SyncFacts,
    Thresholds,
    ValidatorFacts,
)
from moderntensor.monitor._poll import NodeClient, parse_status
from moderntensor.monitor._render import JsonLines, render_dashboard, status_line
from moderntensor.monitor._service import MonitorSettings, Output, run_monitor
from moderntensor.monitor._slots import SlotBook
from moderntensor.monitor._targets import (
    MonitorTargetError,
    targets_from_testnet,
    targets_from_urls,
)

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertKind",
    "BlockFacts",
    "ChainFacts",
    "EvidenceFacts",
    "Failure",
    "HttpFailed",
    "JsonLines",
    "MonitorCore",
    "MonitorMetrics",
    "MonitorSettings",
    "MonitorTargetError",
    "NetworkStatus",
    "NodeClient",
    "NodeStatus",
    "Observation",
    "Output",
    "ProcessFacts",
    "SlotBook",
    "SyncFacts",
    "Thresholds",
    "ValidatorFacts",
    "http_request",
    "parse_status",
    "render_dashboard",
    "run_monitor",
    "status_line",
    "targets_from_testnet",
    "targets_from_urls",
]
