"""simnet's Ray backend on a real two-node Ray cluster on this machine.

A local cluster of two Ray nodes (two raylets with a CPU each, on 127.0.0.1, a small object
store, no dashboard, in a temporary directory removed afterwards) hosts the node groups of a
20-node real-libp2p swarm, one group per Ray node.  The run kills two nodes and partitions five
nodes hosted on both Ray nodes from the rest; the simulator's invariants hold: no accepted
task lost, none delivered twice, every ledger verifies.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")  # the dev extra installs it (edgenode[ray]); CI runs this test
from ray.cluster_utils import Cluster  # noqa: E402

from simnet import REPORT_JSON, Fault, load_scenario, run_scenario, write_report  # noqa: E402
from simnet._swarm import make_backend  # noqa: E402
from tests.simnet._checks import assert_invariants_hold  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / "libp2p100.toml"
UNRAISABLE = "pytest.PytestUnraisableExceptionWarning"
"""What pytest turns a warning raised in a finalizer into."""
RAY_NODE: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 100 * 1024 * 1024, "node_ip_address": "127.0.0.1"}


@pytest.fixture
def two_ray_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A head and a second Ray node, each a raylet with 1 CPU; yields the head's address."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    tmp = tempfile.mkdtemp(prefix="rayt-", dir="/tmp")  # short: Ray's socket paths live under it
    # Ray writes the cluster's address to $RAY_TMPDIR/ray/ray_current_cluster whatever temp_dir
    # says, and does not create that folder: keep it in our own temporary directory too
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    os.makedirs(os.path.join(tmp, "ray"), exist_ok=True)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**RAY_NODE, "include_dashboard": False, "temp_dir": tmp},
    )
    try:
        cluster.add_node(**RAY_NODE)
        cluster.wait_for_nodes(timeout=120)
        yield str(cluster.address)
    finally:
        if ray.is_initialized():
            ray.shutdown()  # type: ignore[no-untyped-call]
        cluster.shutdown()  # type: ignore[no-untyped-call]
        shutil.rmtree(tmp, ignore_errors=True)


# ray.cluster_utils leaves its raylets' /dev/null handles and Popen objects to the garbage collector
@pytest.mark.filterwarnings("ignore:unclosed file <_io.FileIO name='/dev/null':ResourceWarning")
@pytest.mark.filterwarnings(r"ignore:subprocess \d+ is still running:ResourceWarning")
@pytest.mark.filterwarnings(f"ignore:Exception ignored in. <_io.\\w+ name='/dev/null':{UNRAISABLE}")
@pytest.mark.filterwarnings(f"ignore:Exception ignored in. <function Popen.__del__:{UNRAISABLE}")
@pytest.mark.slow
@pytest.mark.integration
async def test_twenty_libp2p_nodes_over_two_ray_nodes_survive_kill_and_partition(
    two_ray_nodes: str, tmp_path: Path
) -> None:
    sc = load_scenario(SCENARIO).with_overrides(nodes=20, duration_s=15.0)
    sc = dataclasses.replace(
        sc,
        faults=(
            Fault(at_s=4.0, kind="kill", nodes=(6, 9), duration_s=5.0),
            Fault(at_s=5.0, kind="partition", nodes=(0, 1, 2, 3, 4), duration_s=5.0),
        ),
    )
    backend = make_backend(sc, tmp_path / "swarm", backend="ray", ray_address=two_ray_nodes)
    res = await run_scenario(sc, backend)
    write_report(res, tmp_path / "report")
    assert_invariants_hold(res, nodes=20, ok_share=0.8)

    # two groups, one on each Ray node, every node placed once
    placement = json.loads((tmp_path / "report" / REPORT_JSON).read_text())["placement"]
    assert len(placement) == 2 and {row["backend"] for row in placement} == {"ray"}
    ray_node_of = {i: row["ray_node"] for row in placement for i in row["nodes"]}
    assert sorted(ray_node_of) == list(range(20))
    assert len(set(ray_node_of.values())) == 2
    assert all(row["ip"] == "127.0.0.1" and row["peak_rss_mb"] > 0 for row in placement)
    # the partition's island and the rest both span the two Ray nodes, and the cut was enforced
    island = {0, 1, 2, 3, 4}
    assert {ray_node_of[i] for i in island} == {ray_node_of[i] for i in range(20) if i not in island}
    assert res.figure("simnet.drops", reason="partition_dropped_closed") > 0
    assert any("20 nodes in 2 Ray actors on 2 Ray nodes" in n for n in res.notes), res.notes
