"""The run's report: ``report.json`` (every figure), PNG plots and ``report.md``.

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import SimnetError
from ._faults import FaultSpan
from ._metrics import Figure, Recorder, percentile

__all__ = ["RunResult", "write_report", "REPORT_JSON", "REPORT_MD"]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"

_FAULT_COLOURS = {"kill": "tab:red", "partition": "tab:purple", "degrade": "tab:orange", "byzantine": "tab:brown"}


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced."""

    scenario: str
    """Scenario name."""
    params: dict[str, Any]
    """nodes, transport, seed, duration."""
    figures: tuple[Figure, ...]
    recorder: Recorder
    spans: tuple[FaultSpan, ...]
    elapsed_s: float
    notes: tuple[str, ...] = ()
    """What the driver could not do, said plainly (e.g. a fault kind the transport lacks)."""
    placement: tuple[dict[str, Any], ...] = ()
    """Where the nodes ran: one row per node group (worker process or Ray actor); empty on memnet."""

    def figure(self, name: str, **params: Any) -> float:
        """The value of figure ``name`` whose params include ``params``; KeyError if none."""
        for f in self.figures:
            if f.name == name and all(f.params.get(k) == v for k, v in params.items()):
                return f.value
        raise KeyError(f"no figure {name} {params}")

    @property
    def invariants_hold(self) -> bool:
        """No task lost, none duplicated, every ledger verified, every resumed task's output that of an
        uninterrupted run."""
        rec = self.recorder
        return (not rec.lost() and not rec.duplicated() and all(v["verified"] for v in rec.ledgers.values())
                and not rec.outputs_mismatched)


def _mark_faults(ax: Any, spans: Sequence[FaultSpan]) -> None:
    seen: set[str] = set()
    for s in spans:
        colour = _FAULT_COLOURS.get(s.kind, "tab:gray")
        label = s.kind if s.kind not in seen else None
        seen.add(s.kind)
        ax.axvspan(s.start_s, s.end_s, color=colour, alpha=0.12, label=label)
        ax.axvline(s.start_s, color=colour, lw=1, ls="--")


def _plots(res: RunResult, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = res.recorder
    made: list[str] = []

    # latency distribution by SLA class
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    any_lat = False
    for sla in sorted({t.sla for t in rec.tasks.values()}):
        lat = rec.latencies_ms(sla)
        if not lat:
            continue
        any_lat = True
        s = sorted(lat)
        ys = [(i + 1) / len(s) for i in range(len(s))]
        ax.plot(s, ys, label=f"{sla} (n={len(s)}, p50={percentile(s, 50):.0f} ms, p99={percentile(s, 99):.0f} ms)")
    if any_lat:
        ax.set_xscale("log")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("submit -> verified result (ms, log scale)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title(f"{res.scenario}: task latency distribution (CDF)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "latency.png")
    plt.close(fig)
    made.append("latency.png")

    # throughput over time with faults marked
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    series = rec.throughput_series(1.0)
    if series:
        ax.bar(
            [x for x, _ in series], [y for _, y in series], width=0.9, align="edge", color="tab:blue", label="completed"
        )
    _mark_faults(ax, res.spans)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("tasks completed per second")
    ax.set_title(f"{res.scenario}: throughput, faults shaded")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput.png")
    plt.close(fig)
    made.append("throughput.png")

    # FL accuracy per round with the centralized line
    if rec.fl_rounds:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        rounds = [r["round"] for r in rec.fl_rounds]
        acc = [r["accuracy"] for r in rec.fl_rounds]
        ax.plot(rounds, acc, marker="o", label="gossip FL (swarm mean)")
        if rec.fl_centralized is not None:
            ax.axhline(rec.fl_centralized, color="k", ls="--", label=f"centralized ({rec.fl_centralized:.3f})")
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1.02)
        ax.set_xticks(rounds)
        ax.set_title(f"{res.scenario}: federated accuracy per round")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "fl_accuracy.png")
        plt.close(fig)
        made.append("fl_accuracy.png")

    # fault timeline: one row per fault
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * max(1, len(res.spans))), dpi=110)
    for i, span in enumerate(res.spans):
        colour = _FAULT_COLOURS.get(span.kind, "tab:gray")
        ax.barh(i, max(span.end_s - span.start_s, 0.2), left=span.start_s, color=colour, alpha=0.7)
        ax.text(span.start_s, i, f" {span.label} x{len(span.nodes)}", va="center", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(0, max(res.elapsed_s, max((s.end_s for s in res.spans), default=1.0)))
    ax.set_xlabel("time since start (s)")
    ax.set_title(f"{res.scenario}: fault timeline")
    fig.tight_layout()
    fig.savefig(out / "faults.png")
    plt.close(fig)
    made.append("faults.png")
    return made


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3f}"


def _markdown(res: RunResult, images: list[str]) -> str:
    rec = res.recorder
    lines = [f"# simnet report: {res.scenario}", ""]
    lines.append(", ".join(f"{k}={v}" for k, v in res.params.items()) + f", wall {res.elapsed_s:.1f} s")
    lines.append("")
    verdict = "hold" if res.invariants_hold else "BROKEN"
    lines.append(
        f"**Invariants {verdict}**: {len(rec.lost())} accepted tasks lost, {len(rec.duplicated())} duplicated, "
        f"{sum(1 for v in rec.ledgers.values() if v['verified'])}/{len(rec.ledgers)} ledgers verify"
        + (f", {len(rec.outputs_checked) - len(rec.outputs_mismatched)}/{len(rec.outputs_checked)} resumed "
           "tasks' outputs equal an uninterrupted run's." if rec.outputs_checked else ".")
    )
    lines.append("")
    for note in res.notes:
        lines.append(f"- note: {note}")
    if res.notes:
        lines.append("")
    lines += ["| figure | params | value | unit |", "| --- | --- | --- | --- |"]
    skip = {"nodes", "transport", "scenario", "seed"}
    for f in res.figures:
        p = ", ".join(f"{k}={v}" for k, v in f.params.items() if k not in skip)
        lines.append(f"| {f.name} | {p} | {_fmt(f.value)} | {f.unit} |")
    lines.append("")
    if res.spans:
        lines += ["## Faults", "", "| kind | from (s) | to (s) | nodes |", "| --- | --- | --- | --- |"]
        for s in res.spans:
            lines.append(f"| {s.label} | {s.start_s:.1f} | {s.end_s:.1f} | {', '.join(map(str, s.nodes))} |")
        lines.append("")
    lines.append("## Plots")
    lines.append("")
    for img in images:
        lines.append(f"![{img}]({img})")
        lines.append("")
    return "\n".join(lines)


def write_report(res: RunResult, out_dir: Path) -> Path:
    """Write ``report.json``, the PNGs and ``report.md`` under ``out_dir``; return the Markdown path."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimnetError(f"cannot create report directory {out}: {exc.strerror}") from exc
    images = _plots(res, out)
    rec = res.recorder
    doc = {
        "scenario": res.scenario,
        "params": res.params,
        "elapsed_s": res.elapsed_s,
        "invariants_hold": res.invariants_hold,
        "notes": list(res.notes),
        "placement": list(res.placement),
        "figures": [f.as_json() for f in res.figures],
        "fl_rounds": rec.fl_rounds,
        "ledgers": rec.ledgers,
        "faults": [
            {"kind": s.kind, "label": s.label, "start_s": s.start_s, "end_s": s.end_s, "nodes": list(s.nodes)}
            for s in res.spans
        ],
        "lost": rec.lost(),
        "duplicated": rec.duplicated(),
        "outputs_mismatched": rec.outputs_mismatched,
        "events": [{"t_s": t, "event": e} for t, e in rec.events],
        "images": images,
    }
    (out / REPORT_JSON).write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    md = out / REPORT_MD
    md.write_text(_markdown(res, images))
    return md
