"""The Prometheus endpoint and JSON logs."""

from __future__ import annotations

import json
import logging
import urllib.request

from edgenode.metrics import JsonFormatter, NodeMetrics


def test_metrics_endpoint_on_loopback() -> None:
    m = NodeMetrics()
    m.task_done("wasm", "ok", 12.0)
    m.task_done("wasm", "trap", 3.0)
    m.queue.set(4)
    m.set_transport_counters({"gossip_dropped_invalid": 2, "gossip_dropped_slow_subscriber": 1, "gossip_published": 9})
    port = m.serve(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        m.close()
    assert 'edgenode_tasks_total{kind="wasm",status="ok"} 1.0' in text
    assert 'edgenode_tasks_total{kind="wasm",status="trap"} 1.0' in text
    assert 'edgenode_task_seconds_count{kind="wasm"} 2.0' in text
    assert "edgenode_queue_length 4.0" in text
    assert "edgenode_gossip_drops 3.0" in text


def test_json_log_lines() -> None:
    rec = logging.LogRecord("edgenode.node", logging.INFO, __file__, 1, "node %s", ("started",), None)
    rec.peer_id = "12D3KooWx"
    out = json.loads(JsonFormatter().format(rec))
    assert out["msg"] == "node started" and out["peer_id"] == "12D3KooWx" and out["level"] == "info"
