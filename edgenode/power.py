"""Battery and thermal conditions that drain a node (``[node] drain_when``), read from sysfs.

A condition is one string: ``"battery < 15"`` holds when a battery under
``<sysfs>/class/power_supply`` reports a charge (``capacity``, percent) below 15 while it is not
being charged (its ``status`` is neither ``Charging`` nor ``Full``); ``"thermal > 85000"`` holds
when a zone under ``<sysfs>/class/thermal/thermal_zone*`` reports a ``temp`` (millidegrees
Celsius) above 85000.  Files that are missing or unreadable count as no reading.

:func:`watch_power` polls the conditions and calls back once, when one holds: the node then
drains (:meth:`edgenode.node.Node.request_drain`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import LocalError

__all__ = ["DrainCondition", "PowerReading", "parse_condition", "read_power", "watch_power"]

_SYNTAX = re.compile(r"^\s*(battery|thermal)\s*([<>])\s*(\d{1,7})\s*$")
_OPS = {"battery": "<", "thermal": ">"}
_NOT_DRAINING = ("Charging", "Full")


@dataclass(frozen=True)
class DrainCondition:
    """``battery < PERCENT`` or ``thermal > MILLIDEGREES``."""

    source: str
    """``battery`` or ``thermal``."""
    limit: int
    """Percent of charge (battery), millidegrees Celsius (thermal)."""

    def __str__(self) -> str:
        return f"{self.source} {_OPS[self.source]} {self.limit}"

    def holds(self, reading: PowerReading) -> str | None:
        """Why the condition holds in ``reading`` (one line for the log), or None."""
        if self.source == "battery":
            low = [(n, c) for n, c, status in reading.batteries if c < self.limit and status not in _NOT_DRAINING]
            return None if not low else f"battery {low[0][0]} at {low[0][1]} % (drain_when {self})"
        hot = [(n, t) for n, t in reading.zones if t > self.limit]
        return None if not hot else f"thermal zone {hot[0][0]} at {hot[0][1]} millidegrees C (drain_when {self})"


def parse_condition(text: str) -> DrainCondition:
    """``"battery < 15"`` or ``"thermal > 85000"``; LocalError for anything else."""
    m = _SYNTAX.match(text)
    if m is None or _OPS[m.group(1)] != m.group(2):
        raise LocalError(f"drain_when {text!r}: expected \"battery < PERCENT\" or \"thermal > MILLIDEGREES\"")
    source, limit = m.group(1), int(m.group(3))
    if source == "battery" and not 1 <= limit <= 100:
        raise LocalError(f"drain_when {text!r}: a battery's charge is a percentage (1..100)")
    return DrainCondition(source, limit)


@dataclass(frozen=True)
class PowerReading:
    """What sysfs says now."""

    batteries: tuple[tuple[str, int, str], ...] = ()
    """(name, charge in percent, status) of each power supply with a ``capacity``."""
    zones: tuple[tuple[str, int], ...] = ()
    """(name, millidegrees Celsius) of each thermal zone with a ``temp``."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()[:64]
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and re.fullmatch(r"-?\d{1,9}", text) else None


def read_power(sysfs: Path) -> PowerReading:
    """Batteries and thermal zones under ``sysfs`` (``/sys`` on a device)."""
    batteries = []
    for supply in sorted((sysfs / "class" / "power_supply").glob("*")):
        kind = _read(supply / "type")
        charge = _int(_read(supply / "capacity"))
        if charge is not None and kind in (None, "Battery"):
            batteries.append((supply.name, charge, _read(supply / "status") or "Unknown"))
    zones = []
    for zone in sorted((sysfs / "class" / "thermal").glob("thermal_zone*")):
        temp = _int(_read(zone / "temp"))
        if temp is not None:
            zones.append((zone.name, temp))
    return PowerReading(tuple(batteries), tuple(zones))


async def watch_power(
    conditions: Sequence[DrainCondition], sysfs: Path, every_s: float, on_hold: Callable[[str], object]
) -> None:
    """Read sysfs every ``every_s`` seconds until a condition holds; then call ``on_hold(why)`` once and return."""
    while True:
        reading = await asyncio.to_thread(read_power, sysfs)
        why = next((w for c in conditions if (w := c.holds(reading)) is not None), None)
        if why is not None:
            on_hold(why)
            return
        await asyncio.sleep(every_s)
