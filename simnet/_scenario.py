"""Scenario files: typed, validated descriptions of a simulated swarm.

A scenario is TOML.  Every section is a frozen dataclass loaded with
:func:`edgenode.config.from_table`, so an unknown or mistyped key is an error
that names the key (``scenario.workload.rate_per_s: expected float, got str``).
The tables are documented in ``docs/simnet.md``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgenode.config import from_table
from edgenode.errors import LocalError

from ._errors import ScenarioError

__all__ = [
    "LinkClass",
    "Profile",
    "TaskMix",
    "Workload",
    "FLSection",
    "Fault",
    "SwarmSection",
    "Scenario",
    "FAULT_KINDS",
    "BYZANTINE_BEHAVIOURS",
    "SLA_CLASSES",
    "TRANSPORTS",
    "TASKS",
    "FL_STRATEGIES",
    "load_scenario",
    "parse_scenario",
    "DEFAULT_SCENARIO",
    "default_scenario",
]

FAULT_KINDS = ("kill", "partition", "degrade", "byzantine")
"""What a ``[[faults]]`` entry may do."""
BYZANTINE_BEHAVIOURS = ("poison", "forge_receipts", "spam", "replay")
"""What a byzantine node does: poisoned FL updates, forged task receipts, gossip spam, replayed task specs."""
SLA_CLASSES = ("latency", "cost")
"""The scheduler's SLA classes."""
FL_STRATEGIES = (
    "fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedmedian", "krum", "multikrum", "trimmedavg", "bulyan",
)  # fmt: skip
"""Flower strategies (``federated.flower.STRATEGIES``)."""
TRANSPORTS = ("mem", "libp2p")
"""``mem``: the in-process network; ``libp2p``: real py-libp2p hosts on loopback."""
TASKS = ("echo", "spin", "infer", "migrate")
"""Built-in tasks of the workload mix."""


@dataclass(frozen=True)
class LinkClass:
    """``[links.NAME]``: the network link a class of nodes sits behind."""

    latency_ms: float = 5.0
    """One-way latency in milliseconds."""
    jitter_ms: float = 1.0
    """Uniform jitter added to each message, in milliseconds."""
    loss: float = 0.0
    """Probability that a gossip message is lost on this link (0..1)."""
    bandwidth_bps: float = 100e6
    """Link bandwidth in bits per second (0: unlimited)."""


@dataclass(frozen=True)
class Profile:
    """``[profiles.NAME]``: a kind of device (pi4, pi5, jetson-orin, laptop)."""

    share: float = 1.0
    """Relative share of the swarm's nodes with this profile."""
    slots: int = 2
    """Tasks the device runs at once."""
    queue: int = 32
    """Tasks waiting beyond the running ones before the node answers busy."""
    providers: tuple[str, ...] = ("cpu",)
    """Execution providers it advertises (``cpu``, ``cuda``, ``tensorrt``...)."""
    models: tuple[str, ...] = ()
    """Model names it serves (``digits`` is the built-in one)."""
    link: str = "lan"
    """Name of its link class in ``[links]``."""
    cost_class: str = "standard"
    """Advertised cost class: ``low``, ``standard`` or ``premium``."""
    speed: float = 1.0
    """Relative compute speed (1.0 = laptop); the simulator scales task work by 1/speed."""


@dataclass(frozen=True)
class TaskMix:
    """One entry of ``[[workload.mix]]``: a kind of task and its share."""

    task: str = "echo"
    """Built-in task: ``echo`` (wasm, stdin to stdout), ``spin`` (wasm, a compute loop), ``infer`` (digits
    model) or ``migrate`` (``examples/tasks/migrate.c``: a long task with safe points, memnet only)."""
    weight: float = 1.0
    """Relative share of submissions."""
    sla: str = "latency"
    """SLA class: ``latency`` or ``cost``."""
    deadline_ms: int = 2000
    """Per-attempt deadline before the submitter reassigns (``migrate``: also the run's time limit)."""
    rounds: int = 1000
    """``migrate``: the task's length in rounds of migrate.c (about 1.5 ms and 2e7 fuel each on a laptop core)."""
    checkpoint_ms: int = 0
    """``migrate``: the executor ships a snapshot to the submitter every this many ms (at least 100), and a
    killed executor's task resumes from the latest; 0: none (a killed task restarts from zero)."""


@dataclass(frozen=True)
class Workload:
    """``[workload]``: what the swarm is asked to do."""

    rate_per_s: float = 20.0
    """Task submissions per second, Poisson arrivals, across all submitters."""
    submitters: int = 2
    """Light peers that submit tasks."""
    start_s: float = 1.0
    """Seconds after the start before the first submission (adverts settle first)."""
    redundancy: int = 1
    """Executors per task (majority of output hashes when > 1)."""
    max_attempts: int = 4
    """Executors tried in turn before a task is reported failed."""
    mix: tuple[TaskMix, ...] = (TaskMix(),)
    """The task mix."""


@dataclass(frozen=True)
class FLSection:
    """``[fl]``: federated learning rounds over gossip."""

    enabled: bool = False
    """Run FL rounds during the scenario."""
    model: str = "logreg"
    """``logreg`` or ``mlp``."""
    rounds: int = 5
    """Rounds to run."""
    strategy: str = "fedavg"
    """Flower strategy: fedavg, fedprox, fedadam, fedmedian, krum, multikrum, trimmedavg, bulyan."""
    participants: int = 10
    """Nodes that train (the first N of the swarm)."""
    alpha: float = 0.5
    """Dirichlet concentration of the non-IID data split (smaller: more skewed)."""
    local_epochs: int = 1
    """Local epochs per round."""
    quorum: float = 0.8
    """Fraction of participants' updates a node waits for before aggregating."""
    round_timeout_s: float = 5.0
    """Deadline of a round: aggregate whatever arrived by then."""


@dataclass(frozen=True)
class Fault:
    """One ``[[faults]]`` entry: something that happens to some nodes at a time.

    Targets are ``nodes`` (explicit indices) or else ``count`` nodes drawn with the
    scenario's seed from the executors (never the submitters).
    """

    at_s: float = 0.0
    """Seconds after the start when the fault begins."""
    kind: str = "kill"
    """``kill``, ``partition``, ``degrade`` or ``byzantine``."""
    count: int = 1
    """How many nodes (when ``nodes`` is empty)."""
    nodes: tuple[int, ...] = ()
    """Explicit node indices."""
    duration_s: float = 0.0
    """How long it lasts: kill -> restart after, partition -> heal after, degrade -> restore after;
    0 means until the end of the run."""
    latency_ms: float = 200.0
    """``degrade``: the degraded link's one-way latency."""
    loss: float = 0.2
    """``degrade``: the degraded link's loss probability."""
    behaviour: str = "poison"
    """``byzantine``: poison, forge_receipts, spam or replay."""


@dataclass(frozen=True)
class SwarmSection:
    """``[swarm]``: size, seed and duration of the run."""

    name: str = "scenario"
    """Name shown in the report."""
    nodes: int = 30
    """Executor nodes (submitters come on top)."""
    seed: int = 1
    """Seed of every random choice: profiles, links, arrivals, fault targets, data split."""
    duration_s: float = 20.0
    """Seconds of workload; the run then drains tasks in flight."""
    drain_s: float = 10.0
    """Longest wait for tasks in flight after the workload stops."""
    transport: str = "mem"
    """``mem`` or ``libp2p``."""
    ledger: str = "sqlite"
    """Each node's ledger store: ``sqlite`` (a real database file per node) or ``memory``."""
    advert_s: float = 2.0
    """How often each node re-gossips its advert (adverts expire after 15 s)."""
    follow_adverts: bool = False
    """Executors follow each other's adverts (they only need them to answer status requests).
    Off: executors publish adverts but only submitters follow them, and submitters are wired to
    every executor; this keeps advert traffic O(nodes) instead of O(nodes^2)."""
    replicate: bool = True
    """Executors follow ledger heads and replicate each other's chains (fork proofs need it).
    O(nodes^2) traffic: turn off for swarms of hundreds of nodes."""


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file."""

    swarm: SwarmSection = field(default_factory=SwarmSection)
    links: dict[str, LinkClass] = field(default_factory=lambda: {"lan": LinkClass()})
    profiles: dict[str, Profile] = field(default_factory=lambda: {"laptop": Profile()})
    workload: Workload = field(default_factory=Workload)
    fl: FLSection = field(default_factory=FLSection)
    faults: tuple[Fault, ...] = ()

    def with_overrides(
        self,
        *,
        nodes: int | None = None,
        seed: int | None = None,
        duration_s: float | None = None,
        transport: str | None = None,
    ) -> Scenario:
        """A copy with command-line overrides applied (and validated)."""
        sw = self.swarm
        sw = dataclasses.replace(
            sw,
            nodes=sw.nodes if nodes is None else nodes,
            seed=sw.seed if seed is None else seed,
            duration_s=sw.duration_s if duration_s is None else duration_s,
            transport=sw.transport if transport is None else transport,
        )
        out = dataclasses.replace(self, swarm=sw)
        _validate(out)
        return out


_SECTIONS = {"swarm", "links", "profiles", "workload", "fl", "faults"}


def _named_tables(cls: type[Any], raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a table of named tables")
    out = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ScenarioError(f"{where}.{name}: expected a table")
        out[name] = from_table(cls, table, f"{where}.{name}")
    return out


def parse_scenario(table: dict[str, Any], where: str = "scenario") -> Scenario:
    """Build and validate a :class:`Scenario` from a parsed TOML table."""
    unknown = set(table) - _SECTIONS
    if unknown:
        raise ScenarioError(f"{where}: unknown sections {sorted(unknown)}")
    try:
        kwargs: dict[str, Any] = {}
        if "swarm" in table:
            kwargs["swarm"] = from_table(SwarmSection, _table(table["swarm"], f"{where}.swarm"), f"{where}.swarm")
        if "links" in table:
            kwargs["links"] = _named_tables(LinkClass, table["links"], f"{where}.links")
        if "profiles" in table:
            kwargs["profiles"] = _named_tables(Profile, table["profiles"], f"{where}.profiles")
        if "workload" in table:
            kwargs["workload"] = from_table(
                Workload, _table(table["workload"], f"{where}.workload"), f"{where}.workload"
            )
        if "fl" in table:
            kwargs["fl"] = from_table(FLSection, _table(table["fl"], f"{where}.fl"), f"{where}.fl")
        if "faults" in table:
            raw = table["faults"]
            if not isinstance(raw, list):
                raise ScenarioError(f"{where}.faults: expected an array of tables ([[faults]])")
            kwargs["faults"] = tuple(
                from_table(Fault, _table(f, f"{where}.faults[{i}]"), f"{where}.faults[{i}]") for i, f in enumerate(raw)
            )
    except ScenarioError:
        raise
    except LocalError as exc:
        raise ScenarioError(str(exc)) from exc
    sc = Scenario(**kwargs)
    _validate(sc, where)
    return sc


def _table(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a table")
    return raw


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ScenarioError(msg)


def _validate(sc: Scenario, where: str = "scenario") -> None:
    sw = sc.swarm
    _check(sw.nodes >= 1, f"{where}.swarm.nodes: must be >= 1")
    _check(sw.duration_s > 0, f"{where}.swarm.duration_s: must be > 0")
    _check(sw.drain_s >= 0, f"{where}.swarm.drain_s: must be >= 0")
    _check(sw.transport in TRANSPORTS, f"{where}.swarm.transport: must be one of {list(TRANSPORTS)}")
    _check(sw.ledger in ("sqlite", "memory"), f"{where}.swarm.ledger: sqlite or memory")
    _check(sw.advert_s > 0, f"{where}.swarm.advert_s: must be > 0")
    _check(bool(sc.links), f"{where}.links: at least one link class")
    for name, ln in sc.links.items():
        w = f"{where}.links.{name}"
        _check(ln.latency_ms >= 0, f"{w}.latency_ms: must be >= 0")
        _check(ln.jitter_ms >= 0, f"{w}.jitter_ms: must be >= 0")
        _check(0 <= ln.loss < 1, f"{w}.loss: must be in [0, 1)")
        _check(ln.bandwidth_bps >= 0, f"{w}.bandwidth_bps: must be >= 0")
    _check(bool(sc.profiles), f"{where}.profiles: at least one profile")
    for name, p in sc.profiles.items():
        w = f"{where}.profiles.{name}"
        _check(p.share > 0, f"{w}.share: must be > 0")
        _check(p.slots >= 1, f"{w}.slots: must be >= 1")
        _check(p.queue >= 0, f"{w}.queue: must be >= 0")
        _check(p.speed > 0, f"{w}.speed: must be > 0")
        _check(p.link in sc.links, f"{w}.link: no link class {p.link!r} in [links]")
        _check(p.cost_class in ("low", "standard", "premium"), f"{w}.cost_class: low, standard or premium")
    wl = sc.workload
    w = f"{where}.workload"
    _check(wl.rate_per_s >= 0, f"{w}.rate_per_s: must be >= 0")
    _check(wl.submitters >= 1, f"{w}.submitters: must be >= 1")
    _check(wl.start_s >= 0, f"{w}.start_s: must be >= 0")
    _check(1 <= wl.redundancy <= sw.nodes, f"{w}.redundancy: must be in [1, swarm.nodes]")
    _check(wl.max_attempts >= 1, f"{w}.max_attempts: must be >= 1")
    _check(bool(wl.mix), f"{w}.mix: at least one entry")
    for i, m in enumerate(wl.mix):
        mw = f"{w}.mix[{i}]"
        _check(m.task in TASKS, f"{mw}.task: must be one of {list(TASKS)}")
        _check(m.weight > 0, f"{mw}.weight: must be > 0")
        _check(m.sla in SLA_CLASSES, f"{mw}.sla: must be one of {list(SLA_CLASSES)}")
        _check(m.deadline_ms > 0, f"{mw}.deadline_ms: must be > 0")
        _check(1 <= m.rounds <= 30_000, f"{mw}.rounds: must be in [1, 30000]")
        _check(m.checkpoint_ms == 0 or m.checkpoint_ms >= 100, f"{mw}.checkpoint_ms: 0 or at least 100")
    fl = sc.fl
    w = f"{where}.fl"
    _check(fl.model in ("logreg", "mlp"), f"{w}.model: logreg or mlp")
    _check(fl.strategy in FL_STRATEGIES, f"{w}.strategy: must be one of {list(FL_STRATEGIES)}")
    _check(fl.rounds >= 1, f"{w}.rounds: must be >= 1")
    _check(fl.participants >= 2, f"{w}.participants: must be >= 2")
    _check(not fl.enabled or fl.participants <= sw.nodes, f"{w}.participants: must be <= swarm.nodes")
    _check(fl.alpha > 0, f"{w}.alpha: must be > 0")
    _check(fl.local_epochs >= 1, f"{w}.local_epochs: must be >= 1")
    _check(0 < fl.quorum <= 1, f"{w}.quorum: must be in (0, 1]")
    _check(fl.round_timeout_s > 0, f"{w}.round_timeout_s: must be > 0")
    for i, f in enumerate(sc.faults):
        fw = f"{where}.faults[{i}]"
        _check(f.kind in FAULT_KINDS, f"{fw}.kind: must be one of {list(FAULT_KINDS)}")
        _check(f.at_s >= 0, f"{fw}.at_s: must be >= 0")
        _check(f.duration_s >= 0, f"{fw}.duration_s: must be >= 0")
        _check(f.count >= 1 or bool(f.nodes), f"{fw}.count: must be >= 1")
        _check(f.count <= sw.nodes, f"{fw}.count: more than swarm.nodes ({sw.nodes})")
        for n in f.nodes:
            _check(0 <= n < sw.nodes, f"{fw}.nodes: index {n} outside 0..{sw.nodes - 1}")
        _check(0 <= f.loss < 1, f"{fw}.loss: must be in [0, 1)")
        _check(f.latency_ms >= 0, f"{fw}.latency_ms: must be >= 0")
        if f.kind == "byzantine":
            _check(f.behaviour in BYZANTINE_BEHAVIOURS, f"{fw}.behaviour: must be one of {list(BYZANTINE_BEHAVIOURS)}")


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; :class:`ScenarioError` names the file and the bad key."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    return parse_scenario(table, str(path))


DEFAULT_SCENARIO = """\
# The demo: a mixed fleet of boards and laptops runs wasm and inference tasks while a
# federated model trains, and a few things go wrong on the way.
[swarm]
name = "demo"
nodes = 30
seed = 7
duration_s = 20.0
drain_s = 10.0

[links.lan]
latency_ms = 1.0
jitter_ms = 0.5
bandwidth_bps = 1e9

[links.wifi]
latency_ms = 8.0
jitter_ms = 4.0
loss = 0.01
bandwidth_bps = 50e6

[links.lte]
latency_ms = 40.0
jitter_ms = 15.0
loss = 0.02
bandwidth_bps = 10e6

[profiles.pi4]
share = 0.4
slots = 1
providers = ["cpu"]
link = "wifi"
cost_class = "low"
speed = 0.25

[profiles.pi5]
share = 0.3
slots = 2
providers = ["cpu"]
models = ["digits"]
link = "wifi"
cost_class = "low"
speed = 0.5

[profiles.jetson-orin]
share = 0.2
slots = 4
providers = ["cuda", "cpu"]
models = ["digits"]
link = "lte"
cost_class = "standard"
speed = 1.5

[profiles.laptop]
share = 0.1
slots = 4
providers = ["cpu"]
models = ["digits"]
link = "lan"
cost_class = "premium"
speed = 1.0

[workload]
rate_per_s = 25.0
submitters = 2
start_s = 1.0
[[workload.mix]]
task = "echo"
weight = 0.5
sla = "latency"
deadline_ms = 1500
[[workload.mix]]
task = "spin"
weight = 0.3
sla = "cost"
deadline_ms = 3000
[[workload.mix]]
task = "infer"
weight = 0.2
sla = "latency"
deadline_ms = 1500

[fl]
enabled = true
model = "logreg"
rounds = 10
local_epochs = 2
strategy = "fedavg"
participants = 10
round_timeout_s = 3.0

[[faults]]
at_s = 6.0
kind = "kill"
count = 2
duration_s = 5.0

[[faults]]
at_s = 9.0
kind = "partition"
count = 5
duration_s = 4.0

[[faults]]
at_s = 12.0
kind = "degrade"
count = 4
duration_s = 5.0
latency_ms = 150.0
loss = 0.1

[[faults]]
at_s = 3.0
kind = "byzantine"
count = 1
behaviour = "forge_receipts"
"""
"""The embedded scenario that ``simnet demo`` runs."""


def default_scenario() -> Scenario:
    """The demo scenario, parsed."""
    return parse_scenario(tomllib.loads(DEFAULT_SCENARIO), "demo-scenario")
