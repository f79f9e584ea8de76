"""The libp2p backend at a few dozen real hosts: 20 py-libp2p nodes over the worker processes.

Runs the shipped ``examples/scenarios/libp2p100.toml`` cut down to 20 nodes and a short
workload (with its kill-and-restart fault), and asserts the simulator's invariants on real
libp2p: no accepted task lost, none delivered twice, every ledger verifies, and the work
really ran (tasks ok, results on the executors' ledgers, probes delivered by gossip).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from simnet import load_scenario, run_scenario, write_report
from simnet._swarm import make_backend
from tests.simnet._checks import assert_invariants_hold

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / "libp2p100.toml"


def test_libp2p100_scenario_settings_suit_real_libp2p() -> None:
    sc = load_scenario(SCENARIO)
    assert sc.swarm.transport == "libp2p" and sc.swarm.nodes == 100
    # the settings that keep per-host gossip bounded (see docs/simnet.md, "libp2p")
    assert not sc.swarm.replicate and not sc.swarm.follow_adverts
    assert sc.swarm.advert_s >= 5.0


@pytest.mark.slow
@pytest.mark.integration
async def test_twenty_libp2p_nodes_complete_the_workload(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIO).with_overrides(nodes=20, duration_s=15.0)
    sc = dataclasses.replace(sc, faults=tuple(dataclasses.replace(f, at_s=5.0, duration_s=5.0) for f in sc.faults))
    res = await run_scenario(sc, make_backend(sc, tmp_path / "swarm"))
    write_report(res, tmp_path / "report")
    assert_invariants_hold(res, nodes=20, ok_share=0.9)
    assert res.figure("simnet.gossip_delivery_ratio") > 0.8
    assert any("20 nodes in" in n for n in res.notes)
