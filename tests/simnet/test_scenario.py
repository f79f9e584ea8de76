"""Scenario files: parsing, validation errors that name the key, the shipped examples."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simnet import ScenarioError, default_scenario, load_scenario, parse_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def test_default_scenario_is_the_demo() -> None:
    sc = default_scenario()
    assert sc.swarm.name == "demo"
    assert set(sc.profiles) == {"pi4", "pi5", "jetson-orin", "laptop"}
    assert sc.profiles["jetson-orin"].providers == ("cuda", "cpu")
    assert {f.kind for f in sc.faults} == {"kill", "partition", "degrade", "byzantine"}
    assert sc.fl.enabled and sc.fl.rounds >= 1
    assert len(sc.workload.mix) == 3


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_examples_load(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.swarm.nodes >= 1


def test_examples_exist() -> None:
    assert len(list(EXAMPLES.glob("*.toml"))) >= 3


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"swarm": {"nodes": "ten"}}, "scenario.swarm.nodes"),
        ({"swarm": {"nodez": 3}}, "nodez"),
        ({"workload": {"rate_per_s": "x"}}, "scenario.workload.rate_per_s"),
        ({"links": {"lan": {"loss": 1.5}}}, "scenario.links.lan.loss"),
        ({"profiles": {"pi4": {"link": "nowhere"}}}, "scenario.profiles.pi4.link"),
        ({"faults": [{"kind": "meteor"}]}, "scenario.faults[0].kind"),
        ({"faults": [{"kind": "byzantine", "behaviour": "rude"}]}, "scenario.faults[0].behaviour"),
        ({"faults": [{"kind": "kill", "nodes": [99]}]}, "scenario.faults[0].nodes"),
        ({"workload": {"mix": [{"task": "echo", "sla": "fast"}]}}, "scenario.workload.mix[0].sla"),
        ({"fl": {"enabled": True, "participants": 500}}, "scenario.fl.participants"),
        ({"nonsense": {}}, "nonsense"),
        ({"faults": {"kind": "kill"}}, "scenario.faults"),
    ],
)
def test_errors_name_the_bad_key(table: dict[str, Any], needle: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(table)
    assert needle in str(info.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[swarm\nnodes = 3")
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_overrides_apply_and_validate() -> None:
    sc = default_scenario().with_overrides(nodes=12, seed=3, duration_s=4.0, transport="libp2p")
    assert (sc.swarm.nodes, sc.swarm.seed, sc.swarm.duration_s, sc.swarm.transport) == (12, 3, 4.0, "libp2p")
    with pytest.raises(ScenarioError, match=r"fl\.participants"):
        default_scenario().with_overrides(nodes=3)


def test_ints_are_accepted_for_floats() -> None:
    sc = parse_scenario(tomllib.loads("[links.lan]\nbandwidth_bps = 1000000\nlatency_ms = 2\n"))
    assert sc.links["lan"].bandwidth_bps == 1e6
    assert sc.links["lan"].latency_ms == 2.0


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(-2, 50, allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)
_keys = st.sampled_from(["swarm", "links", "profiles", "workload", "fl", "faults", "x"])
_section_keys = st.sampled_from(
    ["nodes", "seed", "kind", "count", "at_s", "lan", "pi4", "rate_per_s", "mix", "loss", "enabled", "rounds", "y"]
)


@given(st.dictionaries(_keys, st.dictionaries(_section_keys, _values, max_size=4) | _values, max_size=4))
def test_any_table_parses_or_raises_scenario_error(table: dict[str, Any]) -> None:
    try:
        sc = parse_scenario(table)
    except ScenarioError:
        return
    assert sc.swarm.nodes >= 1
