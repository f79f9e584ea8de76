"""The live swarm dashboard: a read-only web page of peers, tasks, ledgers, learning and security.

* :class:`Feed` (``_feed``): the sans-IO data model -- events in, a JSON snapshot and deltas out;
* :class:`SwarmSource` (``_source``): feeds it from a live node or the dashboard's light peer;
  the simulator feeds it from its driver (``simnet._live``);
* :class:`DashboardServer` (``_server``): the page, its vendored assets, ``/api/snapshot`` and
  ``/api/events`` (server-sent events), on the caller's asyncio loop, bound to 127.0.0.1 unless
  told otherwise (:func:`check_bind`).

``edgenode dashboard``, ``edgenode run --dashboard-port`` and ``simnet run --live`` serve it.
"""

from ._embed import NodeDashboard
from ._feed import LATENCY_EDGES_MS, FaultMark, Feed, TaskRow, node_models
from ._server import CSP, STATIC_DIR, DashboardServer, check_bind, is_loopback
from ._source import SwarmSource, counter_by_label, counter_total

__all__ = [
    "CSP",
    "LATENCY_EDGES_MS",
    "STATIC_DIR",
    "DashboardServer",
    "FaultMark",
    "Feed",
    "NodeDashboard",
    "SwarmSource",
    "TaskRow",
    "check_bind",
    "counter_by_label",
    "counter_total",
    "is_loopback",
    "node_models",
]
