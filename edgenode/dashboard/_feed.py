"""The dashboard's data model: a sans-IO aggregator of swarm events into a JSON snapshot and deltas.

A source (a live node, a light peer, the simulator's driver) calls the ``on_*`` / ``set_*``
methods with what it saw, passing the time itself (seconds since the feed began, and the wall
clock in unix ms where a row carries it); nothing here reads a clock, sleeps or touches the
network.  :meth:`Feed.snapshot` is the whole state, bounded (recent tasks, offences and
throughput bins are kept in rings); :meth:`Feed.take_delta` is what changed since the previous
call, or None.  The page applies a snapshot, then each delta, with the same code whether it
watches a simulation or a fleet.

Shapes (all JSON):

* node: ``{id, state, self, member, advert, ledger, fl, tasks}`` where ``state`` is ``up``,
  ``down`` or ``banned``; ``advert`` is the node's last advert (capabilities, models, slots,
  queue, cost class, addresses) or null; ``ledger`` ``{height, verified, detail, held}``;
  ``fl`` ``{round, accuracy, loss, updates, model}``;
* link: ``[a, b, kind]`` with a < b (``kind``: ``direct`` or ``relayed``);
* task row: ``{id, kind, executor, submitter, status, latency_ms, t_s, at_ms}``, ``at_ms`` the
  wall clock of the receipt (the page measures its update lag against it);
* fault: ``{kind, label, start_s, end_s, nodes}``;
* FL round: ``{round, accuracy, loss, updates, t_s}``.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Feed", "TaskRow", "FaultMark", "LATENCY_EDGES_MS", "node_models"]

LATENCY_EDGES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
"""Upper edges of the latency histogram's buckets (ms); one more bucket holds the rest."""

STATES = ("up", "down", "banned")


@dataclass(frozen=True)
class TaskRow:
    """One finished (or given up) task as the page lists it."""

    task_id: str
    kind: str
    executor: str
    status: str
    latency_ms: float | None
    """Submission to verified receipt (None when unknown, e.g. a row read from a ledger)."""
    t_s: float
    """When it finished, seconds since the feed began."""
    at_ms: int
    """Wall clock of the receipt (unix ms)."""
    submitter: str = ""

    def as_json(self) -> dict[str, Any]:
        lat = None if self.latency_ms is None else round(self.latency_ms, 2)
        return {"id": self.task_id, "kind": self.kind, "executor": self.executor, "submitter": self.submitter,
                "status": self.status, "latency_ms": lat, "t_s": round(self.t_s, 3), "at_ms": self.at_ms}


@dataclass(frozen=True)
class FaultMark:
    """A fault's extent on the time axes (``end_s`` None: still on)."""

    kind: str
    label: str
    start_s: float
    end_s: float | None
    nodes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "start_s": round(self.start_s, 3),
                "end_s": None if self.end_s is None else round(self.end_s, 3), "nodes": list(self.nodes)}


def node_models(capabilities: Iterable[str]) -> list[str]:
    """The model hashes in an advert's capabilities (``model:<hash>``)."""
    return [c.split(":", 1)[1] for c in capabilities if c.startswith("model:")]


class Feed:
    """The swarm as the page shows it, fed by one source; bounded in memory.

    ``max_tasks`` recent task rows, ``max_bins`` one-second throughput bins, ``max_offences``
    recent offences and ``max_nodes`` nodes are kept (the oldest go first).
    """

    def __init__(self, title: str, *, t0_ms: int = 0, max_tasks: int = 200, max_bins: int = 900,
                 max_offences: int = 100, max_nodes: int = 2000) -> None:
        self.title = title
        self.t0_ms = t0_ms
        self.max_nodes = max_nodes
        self.now_s = 0.0
        self.phase = ""
        self.observer = ""
        """The peer the data is seen from (a node, the dashboard's light peer; empty in a simulation)."""
        self.nodes: dict[str, dict[str, Any]] = {}
        self.links: set[tuple[str, str, str]] = set()
        self.tasks: deque[TaskRow] = deque(maxlen=max_tasks)
        self.hist = [0] * (len(LATENCY_EDGES_MS) + 1)
        self.bins: deque[list[float]] = deque(maxlen=max_bins)
        """[bin start s, tasks finished, tasks ok]"""
        self.counters: Counter[str] = Counter()
        self.fl_rounds: list[dict[str, Any]] = []
        self.fl: dict[str, Any] = {"run": "", "baseline": None, "model": "", "rounds_planned": 0}
        self.refusals: Counter[str] = Counter()
        self.offences: deque[dict[str, Any]] = deque(maxlen=max_offences)
        self.faults: list[FaultMark] = []
        self.ledger: dict[str, Any] = {"fork_proofs": 0}
        # what changed since the last delta
        self._dirty_nodes: set[str] = set()
        self._gone: set[str] = set()
        self._new_tasks: list[TaskRow] = []
        self._new_rounds: list[dict[str, Any]] = []
        self._new_offences: list[dict[str, Any]] = []
        self._sections: set[str] = set()
        self._bins_from = 0.0
        self.version = 0
        """Grows with every change."""
        self.listener: Callable[[], None] | None = None
        """Called on every change (a server wakes its flusher); must not call back into the feed."""

    # -- time -------------------------------------------------------------------------------
    def tick(self, now_s: float, phase: str | None = None) -> None:
        """The source's clock moved (and, optionally, its phase)."""
        self.now_s = now_s
        if phase is not None and phase != self.phase:
            self.phase = phase
        self._touch("meta")

    # -- nodes and links ------------------------------------------------------------------------
    def _node(self, peer: str) -> dict[str, Any]:
        n = self.nodes.get(peer)
        if n is None:
            if len(self.nodes) >= self.max_nodes:
                oldest = next(iter(self.nodes))
                self.remove_node(oldest)
            n = self.nodes[peer] = {"id": peer, "state": "up", "self": peer == self.observer, "member": None,
                                    "advert": None, "ledger": None, "fl": None, "tasks": 0}
            self._gone.discard(peer)
        return n

    def _set(self, peer: str, key: str, value: Any) -> None:
        n = self._node(peer)
        if n.get(key) != value:
            n[key] = value
            self._dirty_nodes.add(peer)
            self._bump()
        elif peer not in self.nodes:  # pragma: no cover - _node always adds
            self._dirty_nodes.add(peer)

    def see_node(self, peer: str) -> None:
        """A node exists (listed with nothing known about it yet)."""
        if peer not in self.nodes:
            self._node(peer)
            self._dirty_nodes.add(peer)
            self._bump()

    def set_state(self, peer: str, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"node state must be one of {STATES}, got {state!r}")
        self._set(peer, "state", state)

    def set_member(self, peer: str, member: bool | None) -> None:
        self._set(peer, "member", member)

    def set_advert(self, peer: str, *, addrs: Sequence[str], capabilities: Sequence[str], slots: int,
                   free_slots: int, queue_len: int, queue_cap: int, cost_class: str, version: str,
                   issued_ms: int = 0) -> None:
        """A node's advert (what peers place work by); ``addrs`` say how it is reached."""
        adv = {
            "capabilities": [c for c in capabilities if not c.startswith("model:")],
            "models": node_models(capabilities), "slots": slots, "free_slots": free_slots,
            "queue_len": queue_len, "queue_cap": queue_cap, "cost_class": cost_class, "version": version,
            "addrs": list(addrs)[:4], "reach": _reach(addrs), "issued_ms": issued_ms,
        }
        old = self.nodes.get(peer, {}).get("advert")
        if old is not None and {k: v for k, v in old.items() if k != "issued_ms"} == {
            k: v for k, v in adv.items() if k != "issued_ms"
        }:
            return  # a refresh of the same advert changes nothing on the page
        self._set(peer, "advert", adv)

    def set_ledger(self, peer: str, height: int, verified: bool | None = None, detail: str = "",
                   held: int | None = None) -> None:
        """``peer``'s chain: its height, whether what is held of it verifies (None: not checked),
        and how many of its entries the observer holds."""
        self._set(peer, "ledger", {"height": height, "verified": verified, "detail": detail, "held": held})

    def set_fl(self, peer: str, round: int, accuracy: float, loss: float, updates: int, model: str = "") -> None:
        self._set(peer, "fl", {"round": round, "accuracy": round_(accuracy), "loss": round_(loss),
                               "updates": updates, "model": model})

    def remove_node(self, peer: str) -> None:
        if self.nodes.pop(peer, None) is not None:
            self._gone.add(peer)
            self._dirty_nodes.discard(peer)
            self.links = {lk for lk in self.links if peer not in lk[:2]}
            self._touch("links")

    def set_links(self, links: Iterable[tuple[str, str] | tuple[str, str, str]]) -> None:
        """The links now (replaces the previous set); a link is (a, b) or (a, b, kind)."""
        new: set[tuple[str, str, str]] = set()
        for lk in links:
            a, b = sorted(lk[:2])
            if a != b:
                new.add((a, b, lk[2] if len(lk) > 2 else "direct"))  # type: ignore[misc]
        if new != self.links:
            self.links = new
            self._touch("links")

    # -- tasks ------------------------------------------------------------------------------
    def on_task(self, row: TaskRow) -> None:
        """A task finished (verified or given up)."""
        self.tasks.append(row)
        self._new_tasks.append(row)
        if len(self._new_tasks) > (self.tasks.maxlen or 0):
            del self._new_tasks[: len(self._new_tasks) - (self.tasks.maxlen or 0)]
        self.counters["finished"] += 1
        self.counters["ok" if row.status == "ok" else "not_ok"] += 1
        if row.latency_ms is not None:
            self.hist[bisect.bisect_left(LATENCY_EDGES_MS, row.latency_ms)] += 1
        start = float(int(row.t_s))
        touched = start
        if not self.bins or self.bins[-1][0] < start:
            last = self.bins[-1][0] if self.bins else start - 1
            touched = last + 1
            for t in range(int(last) + 1, int(start) + 1):  # empty seconds in between count as 0
                self.bins.append([float(t), 0, 0])
        i = len(self.bins) - 1
        while i > 0 and self.bins[i][0] > start:
            i -= 1
        if self.bins[i][0] == start:  # else older than the ring holds
            self.bins[i][1] += 1
            self.bins[i][2] += 1 if row.status == "ok" else 0
            self._bins_from = min(self._bins_from, touched) if "bins" in self._sections else touched
        if row.executor:
            n = self._node(row.executor)
            n["tasks"] += 1
            self._dirty_nodes.add(row.executor)
        self._touch("tasks", "bins")

    def count(self, name: str, n: int = 1) -> None:
        """A workload counter (``submitted``, ``in_flight`` is set with :meth:`set_count`)."""
        self.counters[name] += n
        self._touch("counters")

    def set_count(self, name: str, value: int) -> None:
        if self.counters.get(name) != value:
            self.counters[name] = value
            self._touch("counters")

    # -- ledgers ------------------------------------------------------------------------------
    def set_fork_proofs(self, n: int) -> None:
        if self.ledger["fork_proofs"] != n:
            self.ledger["fork_proofs"] = n
            self._touch("ledger")

    # -- federated learning --------------------------------------------------------------------
    def set_fl_run(self, run: str = "", *, baseline: float | None = None, model: str | None = None,
                   rounds: int | None = None) -> None:
        fl = dict(self.fl)
        fl["run"] = run or fl["run"]
        if baseline is not None:
            fl["baseline"] = round_(baseline)
        if model is not None:
            fl["model"] = model
        if rounds is not None:
            fl["rounds_planned"] = rounds
        if fl != self.fl:
            self.fl = fl
            self._touch("fl")

    def on_fl_round(self, rnd: int, accuracy: float, loss: float, updates: float, t_s: float) -> None:
        """A round closed (the swarm's mean over its reporting nodes); a round reported again replaces it."""
        r = {"round": rnd, "accuracy": round_(accuracy), "loss": round_(loss), "updates": round_(updates),
             "t_s": round(t_s, 3)}
        for i, old in enumerate(self.fl_rounds):
            if old["round"] == rnd:
                if old == r:
                    return
                self.fl_rounds[i] = r
                break
        else:
            self.fl_rounds.append(r)
            self.fl_rounds.sort(key=lambda x: x["round"])
        self._new_rounds.append(r)
        self._touch("fl")

    # -- security ------------------------------------------------------------------------------
    def set_refusals(self, counts: Mapping[str, int]) -> None:
        """Refusals by reason so far (replaces; a source sums over what it sees)."""
        new = Counter({k: int(v) for k, v in counts.items() if v})
        if new != self.refusals:
            self.refusals = new
            self._touch("security")

    def on_offence(self, peer: str, offence: str, t_s: float, banned: bool = False) -> None:
        o = {"peer": peer, "offence": offence, "t_s": round(t_s, 3), "banned": banned}
        self.offences.append(o)
        self._new_offences.append(o)
        if banned and peer in self.nodes:
            self.set_state(peer, "banned")
        self._touch("security")

    # -- faults ------------------------------------------------------------------------------------
    def set_faults(self, faults: Iterable[FaultMark]) -> None:
        new = list(faults)
        if new != self.faults:
            self.faults = new
            self._touch("faults")

    # -- output ------------------------------------------------------------------------------------
    def _touch(self, *sections: str) -> None:
        self._sections.update(sections)
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        if self.listener is not None:
            self.listener()

    def _meta(self) -> dict[str, Any]:
        return {"title": self.title, "t0_ms": self.t0_ms, "now_s": round(self.now_s, 3), "phase": self.phase,
                "observer": self.observer}

    def _security(self) -> dict[str, Any]:
        return {"refusals": dict(sorted(self.refusals.items())), "offences_total": len(self.offences),
                "banned": sorted(p for p, n in self.nodes.items() if n["state"] == "banned")}

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows now."""
        return {
            "meta": self._meta(),
            "nodes": list(self.nodes.values()),
            "links": [list(lk) for lk in sorted(self.links)],
            "tasks": [t.as_json() for t in self.tasks],
            "hist": {"edges_ms": list(LATENCY_EDGES_MS), "counts": list(self.hist)},
            "bins": [list(b) for b in self.bins],
            "counters": dict(self.counters),
            "ledger": dict(self.ledger),
            "fl": {**self.fl, "rounds": list(self.fl_rounds)},
            "security": {**self._security(), "offences": list(self.offences)},
            "faults": [f.as_json() for f in self.faults],
        }

    def take_delta(self) -> dict[str, Any] | None:
        """What changed since the last call (None: nothing); sections absent are unchanged."""
        if not (self._sections or self._dirty_nodes or self._gone):
            return None
        s = self._sections
        d: dict[str, Any] = {"meta": self._meta()}
        if self._dirty_nodes:
            d["nodes"] = [self.nodes[p] for p in sorted(self._dirty_nodes) if p in self.nodes]
        if self._gone:
            d["gone"] = sorted(self._gone)
        if "links" in s:
            d["links"] = [list(lk) for lk in sorted(self.links)]
        if self._new_tasks:
            d["tasks"] = [t.as_json() for t in self._new_tasks]
            d["hist"] = {"edges_ms": list(LATENCY_EDGES_MS), "counts": list(self.hist)}
        if "bins" in s:
            d["bins"] = [list(b) for b in self.bins if b[0] >= self._bins_from]
        if "counters" in s or self._new_tasks:
            d["counters"] = dict(self.counters)
        if "ledger" in s:
            d["ledger"] = dict(self.ledger)
        if "fl" in s:
            d["fl"] = {**self.fl, "rounds": list(self._new_rounds)}
        if "security" in s:
            d["security"] = {**self._security(), "offences": list(self._new_offences)}
        if "faults" in s:
            d["faults"] = [f.as_json() for f in self.faults]
        self._sections = set()
        self._dirty_nodes = set()
        self._gone = set()
        self._new_tasks = []
        self._new_rounds = []
        self._new_offences = []
        return d


def round_(x: float | None) -> float | None:
    """``x`` to 4 places; None for None, NaN and infinities (JSON has none of them)."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), 4)


def _reach(addrs: Sequence[str]) -> str:
    """How a node is reached, from its advertised addresses: ``relayed``, ``loopback``, ``lan``,
    ``public`` or ``none``."""
    if not addrs:
        return "none"
    if all("/p2p-circuit" in a for a in addrs):
        return "relayed"
    hosts = [a.split("/")[2] for a in addrs if a.count("/") >= 2 and a.split("/")[1] in ("ip4", "ip6")]
    if any(not (h.startswith(("127.", "10.", "192.168.", "169.254.", "fe80", "fd")) or h == "::1"
                or _is_172_private(h)) for h in hosts):
        return "public"
    if hosts and all(h.startswith("127.") or h == "::1" for h in hosts):
        return "loopback"
    return "lan"


def _is_172_private(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "172" and parts[1].isdigit() and 16 <= int(parts[1]) <= 31
