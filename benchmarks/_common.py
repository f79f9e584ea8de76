"""Shared helpers for benchmark scripts: one JSON line per figure on stdout."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["emit", "percentile", "median"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; ``samples`` need not be sorted."""
    if not samples:
        raise ValueError("no samples")
    s = sorted(samples)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return float(s[k])


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def emit(name: str, value: float, unit: str, **params: Any) -> None:
    """Print one figure as a JSON line: name, value, unit, params."""
    sys.stdout.write(json.dumps({"name": name, "value": value, "unit": unit, "params": params}, sort_keys=False) + "\n")
    sys.stdout.flush()
