"""Node metrics on a Prometheus endpoint (127.0.0.1 only) and JSON log lines.

Each :class:`NodeMetrics` has its own registry, so many nodes can live in one
process (the simulator) without clashing.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .net import DROP_COUNTERS

__all__ = ["NodeMetrics", "JsonFormatter", "setup_json_logging", "LATENCY_BUCKETS_S"]

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Histogram buckets of task run latency, in seconds."""


class NodeMetrics:
    """The node's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks = Counter("edgenode_tasks", "Tasks answered by this node, by kind and status",
                             ["kind", "status"], registry=r)
        self.refused = Counter("edgenode_tasks_refused", "Tasks refused, by reason class", ["reason"], registry=r)
        self.latency = Histogram("edgenode_task_seconds", "Task run time on this node (admission to receipt)",
                                 ["kind"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.queue = Gauge("edgenode_queue_length", "Tasks waiting for a slot", registry=r)
        self.running = Gauge("edgenode_running_tasks", "Tasks running now", registry=r)
        self.peers = Gauge("edgenode_peers", "Connected peers", registry=r)
        self.adverts = Gauge("edgenode_adverts", "Live adverts held", registry=r)
        self.ledger_height = Gauge("edgenode_ledger_height", "Length of this node's own chain", registry=r)
        self.replicated = Gauge("edgenode_ledger_replicated_authors", "Other authors whose chains are held",
                                registry=r)
        self.forks = Counter("edgenode_equivocations", "Equivocation proofs raised", registry=r)
        self.security = Counter("edgenode_security_refusals", "Peers, messages and tasks refused by the "
                                "zero-trust layer, by reason", ["reason"], registry=r)
        self.gossip_drops = Gauge("edgenode_gossip_drops", "Gossip messages dropped by the transport", registry=r)
        self.port: int | None = None
        self._server: Any = None

    def task_done(self, kind: str, status: str, ms: float) -> None:
        self.tasks.labels(kind=kind, status=status).inc()
        self.latency.labels(kind=kind).observe(ms / 1000.0)

    def set_transport_counters(self, counters: dict[str, int]) -> None:
        self.gossip_drops.set(sum(counters.get(k, 0) for k in DROP_COUNTERS if k.startswith("gossip_")))

    def serve(self, port: int) -> int:
        """Serve ``/metrics`` on 127.0.0.1:``port`` (0 picks a free port); return the port."""
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server = server
        self.port = int(server.server_port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: ts, level, logger, msg, plus any ``extra={...}`` fields."""

    _STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in self._STD:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, sort_keys=True)


def setup_json_logging(level: int = logging.INFO) -> None:
    """Send the ``edgenode`` loggers to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("edgenode")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.Formatter.converter = time.gmtime
