"""``[node] drain_when``: battery and thermal conditions read from a (fake) sysfs tree; the
address ``edgenode drain`` finds for a node of a home."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgenode.config import NodeSection, from_table
from edgenode.errors import LocalError
from edgenode.identity import Identity
from edgenode.power import DrainCondition, PowerReading, parse_condition, read_power, watch_power


def _supply(sysfs: Path, name: str, **files: str) -> None:
    d = sysfs / "class" / "power_supply" / name
    d.mkdir(parents=True, exist_ok=True)
    for k, v in files.items():
        (d / k).write_text(v + "\n")


def _zone(sysfs: Path, n: int, millideg: str) -> None:
    d = sysfs / "class" / "thermal" / f"thermal_zone{n}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "temp").write_text(millideg + "\n")


@pytest.mark.parametrize(("text", "want"), [
    ("battery < 15", DrainCondition("battery", 15)),
    ("battery<5", DrainCondition("battery", 5)),
    (" thermal > 85000 ", DrainCondition("thermal", 85000)),
])
def test_conditions_parse(text: str, want: DrainCondition) -> None:
    assert parse_condition(text) == want


@pytest.mark.parametrize("text", ["battery > 15", "thermal < 10", "battery < 0", "battery < 101", "cpu > 3",
                                  "battery < 15%", "", "battery < -1"])
def test_bad_conditions_are_refused(text: str) -> None:
    with pytest.raises(LocalError, match="drain_when"):
        parse_condition(text)


def test_a_bad_condition_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(LocalError, match=r"config\.node: drain_when 'battery > 15'"):
        from_table(NodeSection, {"drain_when": ["battery > 15"]}, "config.node")
    with pytest.raises(LocalError, match="drain_poll_s"):
        from_table(NodeSection, {"drain_poll_s": 0}, "config.node")


def test_read_power_from_a_fake_sysfs(tmp_path: Path) -> None:
    _supply(tmp_path, "AC", type="Mains", online="1")
    _supply(tmp_path, "BAT0", type="Battery", capacity="12", status="Discharging")
    _supply(tmp_path, "BAT1", type="Battery", capacity="7", status="Charging")
    _supply(tmp_path, "ups", capacity="garbage")
    _zone(tmp_path, 0, "48000")
    _zone(tmp_path, 1, "91000")
    reading = read_power(tmp_path)
    assert reading == PowerReading((("BAT0", 12, "Discharging"), ("BAT1", 7, "Charging")),
                                   (("thermal_zone0", 48000), ("thermal_zone1", 91000)))
    assert read_power(tmp_path / "nowhere") == PowerReading()
    assert parse_condition("battery < 15").holds(reading) == "battery BAT0 at 12 % (drain_when battery < 15)"
    assert parse_condition("battery < 10").holds(reading) is None  # BAT1 is lower, but it is charging
    assert "thermal_zone1" in (parse_condition("thermal > 90000").holds(reading) or "")
    assert parse_condition("thermal > 95000").holds(reading) is None


async def test_watch_calls_back_once_when_a_condition_holds(tmp_path: Path) -> None:
    _supply(tmp_path, "BAT0", type="Battery", capacity="60", status="Discharging")
    calls: list[str] = []
    held = asyncio.Event()

    def on_hold(why: str) -> None:
        calls.append(why)
        held.set()

    conditions = [parse_condition("battery < 20"), parse_condition("thermal > 80000")]
    watcher = asyncio.create_task(watch_power(conditions, tmp_path, 0.01, on_hold))
    await asyncio.sleep(0.05)
    assert not calls and not watcher.done()
    _zone(tmp_path, 0, "81000")
    await asyncio.wait_for(held.wait(), 5)
    await asyncio.wait_for(watcher, 5)  # returns after its one call
    assert len(calls) == 1 and "thermal_zone0" in calls[0]


def test_drain_finds_the_node_of_a_home(tmp_path: Path) -> None:
    from edgenode.cli._order import node_address

    key = Identity.generate()
    assert node_address(tmp_path, key, None) == f"/ip4/127.0.0.1/tcp/4001/p2p/{key.peer_id}"  # the default listen
    assert node_address(tmp_path, key, "/ip4/10.0.0.2/tcp/9/p2p/X") == "/ip4/10.0.0.2/tcp/9/p2p/X"
    (tmp_path / "config.toml").write_text('[net]\nlisten = ["/ip4/0.0.0.0/udp/4001/quic-v1", "/ip6/::/tcp/4002"]\n')
    assert node_address(tmp_path, key, None) == f"/ip6/::1/tcp/4002/p2p/{key.peer_id}"
    (tmp_path / "config.toml").write_text('[net]\nlisten = ["/ip4/0.0.0.0/tcp/0"]\n')
    with pytest.raises(LocalError, match="--node"):
        node_address(tmp_path, key, None)
