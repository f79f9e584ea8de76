"""Typed node configuration, loaded from ``<home>/config.toml``.

Each section is a frozen dataclass with a docstring per field and a named
default.  Unknown keys are an error (a typo should not silently do nothing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import LocalError
from .power import parse_condition
from .sandbox import SandboxConfig

__all__ = [
    "NodeConfig",
    "NetSection",
    "NodeSection",
    "SwarmSection",
    "PolicySection",
    "LedgerSection",
    "TablesSection",
    "FLSection",
    "partition_of",
    "load_config",
    "CONFIG_FILE",
    "CONFIG_TEMPLATE",
    "from_table",
]

CONFIG_FILE = "config.toml"

T = TypeVar("T")


@dataclass(frozen=True)
class NetSection:
    """``[net]``: how the node reaches its peers."""

    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    """Multiaddrs to listen on."""
    bootstrap: tuple[str, ...] = ()
    """Multiaddrs (with /p2p/PEER_ID) of peers to dial at start."""
    mdns: bool = False
    """Discover peers on the local network with mDNS."""
    transport: str = "tcp"
    """``tcp`` (Noise + yamux) or ``quic``."""
    max_inflight_per_peer: int = 256
    """Requests this node has outstanding at once on one peer's channel (more wait for a slot)."""
    max_concurrent_per_channel: int = 64
    """Requests of one peer handled at once; beyond it the peer's channel is not read (flow control)."""
    max_inbound_streams_per_peer: int = 64
    """Inbound request streams one peer may hold open at once; more are reset."""
    max_request_bytes: int = 1 << 20
    """Largest request to a protocol without a limit of its own (a task spec's limit is
    ``[tables] spec_max_bytes``; status and ledger requests 4 KiB)."""
    dht: bool = True
    """Join the Kademlia DHT: find peers by id and blob providers (a private one in swarm mode)."""
    nat_traversal: bool = True
    """Behind a NAT: reserve a slot on relays, advertise the relayed address, try hole punching."""
    relay: bool = False
    """Serve as a circuit relay for nodes behind NATs (``edgenode run --relay``)."""
    relay_max_reservations: int = 32
    """Relay: reservations held at once."""
    relay_max_circuits: int = 8
    """Relay: relayed connections at once per reserved peer."""
    relay_max_bytes: int = 64 << 20
    """Relay: bytes one relayed connection may carry before it is reset."""
    relay_max_duration_s: int = 600
    """Relay: seconds one relayed connection may last before it is reset."""
    peer_exchange: bool = True
    """GossipSub peer exchange: a node that leaves a topic (or stops) names other peers of it in its
    PRUNEs, so the mesh heals without a bootstrap node; peers named to this node are dialled only
    from members (swarm mode), only members, with signed records, within a dial budget."""
    px_peers: int = 8
    """Peers named in one PRUNE this node sends, and taken from one it receives (1 to 32)."""
    announce_blobs: bool = True
    """Announce the blobs this node serves (task modules it fetched, shared models) as a DHT provider,
    so peers fetch them from it when their first source is gone (at most the DHT's ``dht_max_provided``)."""
    keep_blobs_mb: int = 32
    """Task modules this node fetched kept in memory to serve to peers (MiB; least recently used out first; 0: none)."""
    share_models: bool = False
    """Serve (and announce) the models of this node's registry to peers by hash (swarm mode: members only)."""

    def __post_init__(self) -> None:
        if min(self.max_inflight_per_peer, self.max_concurrent_per_channel, self.max_inbound_streams_per_peer) < 1:
            raise LocalError("[net] max_inflight_per_peer, max_concurrent_per_channel and "
                             "max_inbound_streams_per_peer must be >= 1")
        if self.max_request_bytes < 256:
            raise LocalError("[net] max_request_bytes must be >= 256")
        if not 1 <= self.px_peers <= 32:
            raise LocalError("[net] px_peers must be between 1 and 32")
        if self.keep_blobs_mb < 0:
            raise LocalError("[net] keep_blobs_mb must be >= 0")


@dataclass(frozen=True)
class NodeSection:
    """``[node]``: what this node offers to the swarm."""

    slots: int = 2
    """Tasks run at once."""
    queue: int = 64
    """Tasks waiting beyond the running ones before the node answers busy."""
    cost_class: str = "standard"
    """Advertised cost class: ``low``, ``standard`` or ``premium``."""
    metrics_port: int = 0
    """Prometheus endpoint port on 127.0.0.1; 0 turns it off."""
    drain_when: tuple[str, ...] = ()
    """Drain the node when one of these holds (checked every ``drain_poll_s``): ``"battery < PERCENT"``
    (a battery's charge under ``sysfs``/class/power_supply, while not charging) or ``"thermal >
    MILLIDEGREES"`` (a zone under ``sysfs``/class/thermal). Draining moves the running tasks with
    safe points to other executors, then the node stops (``edgenode run`` exits 0), as on SIGTERM."""
    drain_poll_s: float = 5.0
    """How often ``drain_when`` is checked, in seconds."""
    sysfs: str = "/sys"
    """Where ``drain_when`` reads batteries and thermal zones (a test points it at a fake tree)."""

    def __post_init__(self) -> None:
        try:
            for cond in self.drain_when:
                parse_condition(cond)  # a bad condition is a config error at load, not a silent no-op
        except LocalError as exc:
            raise ValueError(str(exc)) from exc
        if not self.drain_poll_s > 0:
            raise ValueError("drain_poll_s must be > 0")


@dataclass(frozen=True)
class PolicySection:
    """``[swarm.policy]``: what this node lets swarm members' tasks use."""

    submit_roles: tuple[str, ...] = ("submitter", "admin")
    """Roles allowed to submit tasks."""
    model_roles: tuple[str, ...] = ("submitter", "trainer", "admin")
    """Roles allowed to call models from tasks."""
    data_roles: tuple[str, ...] = ("admin",)
    """Roles allowed to read exported data directories."""
    allowed_models: tuple[str, ...] = ()
    """Models tasks may call; empty allows every model the node holds."""
    data_dirs: tuple[str, ...] = ()
    """Exported read-only directories as ``NAME=PATH`` strings."""
    max_output_bytes: int = 1 << 20
    """Largest output cap a task may ask for."""
    max_fuel: int = 1_000_000_000
    """Most fuel a task may ask for."""
    max_memory_mb: int = 256
    """Largest linear memory a task may ask for, in MiB."""
    max_timeout_ms: int = 30_000
    """Longest wall-clock time a task may ask for, in milliseconds."""


@dataclass(frozen=True)
class SwarmSection:
    """``[swarm]``: zero-trust swarm mode (empty ``swarm_id``: open mode)."""

    swarm_id: str = ""
    """Peer id of the swarm admin key; set it to accept only certified members."""
    cert: str = "swarm.cert"
    """This node's membership certificate (relative paths are inside the home)."""
    revocations: tuple[str, ...] = ()
    """Revocation files (from ``edgenode swarm revoke``) to apply and gossip at start."""
    policy: PolicySection = field(default_factory=PolicySection)
    """The local capability policy."""


@dataclass(frozen=True)
class TablesSection:
    """``[tables]``: bounds on what peers can make the node remember (defaults fit a 1 GB Raspberry Pi)."""

    replay_entries: int = 50_000
    """Admitted task specs remembered against replay until they expire (about 15 MB at most)."""
    nonce_max_bytes: int = 64
    """Longest task-spec nonce accepted."""
    spec_max_bytes: int = 4 << 20
    """Largest signed task spec accepted (its input included); larger ones are refused unopened."""
    adverts: int = 1024
    """Peers whose adverts are held; a new one pushes out the stalest."""
    peers: int = 4096
    """Per-peer rate-limit buckets and penalty scores kept (least recently seen dropped first)."""
    evidence: int = 256
    """Evidence records against banned peers kept (oldest dropped first)."""
    receipts: int = 1024
    """Finished tasks whose receipts are kept to answer a repeated request without rerunning it."""
    receipt_bytes: int = 16 << 20
    """Total bytes of those kept receipts; the oldest go first."""
    cert_skew_ms: int = 300_000
    """Clock skew tolerated on a membership certificate's ``not_before`` (5 minutes)."""


@dataclass(frozen=True)
class LedgerSection:
    """``[ledger]``: what peers may make this node store and send (defaults fit a 1 GB Raspberry Pi)."""

    range_max_bytes: int = 1 << 20
    """Bytes of entries one ledger-range answer carries at most (always at least one entry)."""
    witness_max_bytes: int = 16 << 20
    """Bytes of one witnessed peer's chain stored at most; past it syncing stops and the slot is freed."""
    witness_idle_s: float = 300.0
    """A witnessed peer silent this long (no head announced) gives its slot to a new announcer."""
    payload_open: bool = False
    """Open mode: keep a task's plaintext input and output in the ledger when its spec asks."""
    payload_roles: tuple[str, ...] = ("admin",)
    """Swarm mode: roles whose tasks may keep their plaintext input and output in the ledger."""
    payload_max_bytes: int = 64 << 10
    """Largest kept payload entry body; a larger one is not kept."""

    def __post_init__(self) -> None:
        if min(self.range_max_bytes, self.witness_max_bytes, self.payload_max_bytes) < 0 or self.witness_idle_s < 0:
            raise LocalError("[ledger] limits must be >= 0")


@dataclass(frozen=True)
class FLSection:
    """``[fl]``: federated learning on this node."""

    enabled: bool = True
    """Accept signed ``fl.start`` commands from the swarm and train when one arrives."""
    partition: str = ""
    """``"K/N"``: train on digits share K (0-based) of N; empty: K from the peer id, N = ``num_partitions``."""
    num_partitions: int = 10
    """Digits shares when ``partition`` is empty (the index is ``sha256(peer_id) mod num_partitions``)."""
    alpha: float = 0.5
    """Dirichlet concentration of the digits split (smaller = more label skew)."""
    seed: int = 0
    """Seed of the digits split (every node of a swarm must use the same one)."""
    loader: str = ""
    """``"module:function"`` returning a :class:`federated.DataLoader` (the device's own data); overrides digits."""
    epochs: int = 5
    """Local passes over the data per round."""
    batch_size: int = 32
    """Minibatch size of local SGD."""
    learning_rate: float = 0.5
    """Local SGD step size."""
    max_rounds: int = 1000
    """Largest ``rounds`` a start command may ask for; bigger ones are refused."""
    controllers: tuple[str, ...] = ()
    """Peer ids allowed to start runs; empty: any peer whose signature verifies."""
    trainers: tuple[str, ...] = ()
    """Peer ids whose model updates count; empty: in swarm mode members with the ``trainer`` role,
    in open mode anyone (open mode cannot tell Sybil keys apart: set this on a public node)."""
    rejoin_quorum: int = 2
    """Distinct peers two or more rounds ahead that make this node jump to their round (>= 2)."""

    def __post_init__(self) -> None:
        if self.num_partitions < 1 or self.epochs < 1 or self.batch_size < 1 or self.max_rounds < 1:
            raise LocalError("[fl] num_partitions, epochs, batch_size and max_rounds must be >= 1")
        if self.rejoin_quorum < 2:
            raise LocalError("[fl] rejoin_quorum must be >= 2 (one peer never moves a node)")
        if self.learning_rate <= 0 or self.alpha <= 0:
            raise LocalError("[fl] learning_rate and alpha must be > 0")
        if self.partition:
            partition_of(self.partition, "")
        if self.loader and ":" not in self.loader:
            raise LocalError(f"[fl] loader {self.loader!r}: expected 'module:function'")


def partition_of(spec: str, peer_id: str, num_partitions: int = 10) -> tuple[int, int]:
    """``(index, count)`` from ``"K/N"``, or from the peer id's hash when ``spec`` is empty."""
    if not spec:
        digest = hashlib.sha256(peer_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % num_partitions, num_partitions
    k, sep, n = spec.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError as exc:
        raise LocalError(f"[fl] partition {spec!r}: expected 'K/N', e.g. '3/10'") from exc
    if not sep or count < 1 or not 0 <= index < count:
        raise LocalError(f"[fl] partition {spec!r}: need 0 <= K < N")
    return index, count


FL_TEMPLATE = """
[fl]
# Join federated runs started with `edgenode fl start --bootstrap ...` (signed fl.start commands).
# enabled = true
# Digits share "K/N" this node trains on; empty: K = sha256(peer id) mod num_partitions.
# partition = ""
# num_partitions = 10
# Dirichlet skew of the digits split (smaller = more) and its seed (same on every node).
# alpha = 0.5
# seed = 0
# Your own data: "package.module:function" returning a federated.DataLoader.
# loader = ""
# Local training per round.
# epochs = 5
# batch_size = 32
# learning_rate = 0.5
# Largest run (rounds) a start command may ask for.
# max_rounds = 1000
# Peer ids allowed to start runs; empty: anyone whose signature verifies.
# controllers = []
# Peer ids whose model updates count; empty: swarm members with the "trainer" role
# (open mode: anyone -- set it on a public node).
# trainers = []
# Distinct peers two or more rounds ahead that make this node rejoin at their round.
# rejoin_quorum = 2
"""


@dataclass(frozen=True)
class NodeConfig:
    """The whole ``config.toml``."""

    net: NetSection = field(default_factory=NetSection)
    node: NodeSection = field(default_factory=NodeSection)
    swarm: SwarmSection = field(default_factory=SwarmSection)
    """Zero-trust swarm mode (off by default)."""
    fl: FLSection = field(default_factory=FLSection)
    """``[fl]``: federated learning (:mod:`edgenode.fl`)."""
    tables: TablesSection = field(default_factory=TablesSection)
    """``[tables]``: bounds on peer-grown tables and caches."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """``[sandbox]``: the WASM sandbox's limits and ceilings (:class:`edgenode.sandbox.SandboxConfig`)."""
    ledger: LedgerSection = field(default_factory=LedgerSection)
    """``[ledger]``: range answers, replicas of witnessed peers and kept task payloads."""


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise LocalError(f"{where}: expected a list")
        return tuple(_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise LocalError(f"{where}: expected a table")
        return from_table(tp, value, where)
    if tp is int and isinstance(value, bool):
        raise LocalError(f"{where}: expected int")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise LocalError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def from_table(cls: type[T], table: dict[str, Any], where: str = "config") -> T:
    """Build the dataclass ``cls`` from a TOML table, checking names and types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(table) - names
    if unknown:
        raise LocalError(f"{where}: unknown keys {sorted(unknown)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in table.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a section's own checks (e.g. [sandbox] limits): a one-line config error
        raise LocalError(f"{where}: {exc}") from exc


def load_config(home: Path) -> NodeConfig:
    """Read ``<home>/config.toml``; defaults where it or a key is missing."""
    path = Path(home) / CONFIG_FILE
    if not path.exists():
        return NodeConfig()
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LocalError(f"{path}: {exc}") from exc
    return from_table(NodeConfig, table, str(path))


CONFIG_TEMPLATE = """\
# edgenode node configuration. Every key is optional; the values shown are the defaults.

[net]
# Multiaddrs to listen on.
# listen = ["/ip4/0.0.0.0/tcp/4001"]
# Peers to dial at start, e.g. "/ip4/192.168.1.10/tcp/4001/p2p/12D3KooW...".
# bootstrap = []
# Discover peers on the local network with mDNS.
# mdns = false
# "tcp" (Noise + yamux) or "quic".
# transport = "tcp"
# Requests this node has outstanding at once on one peer's channel.
# max_inflight_per_peer = 256
# Requests of one peer handled at once (beyond it the peer is slowed by flow control).
# max_concurrent_per_channel = 64
# Inbound request streams one peer may hold open at once.
# max_inbound_streams_per_peer = 64
# Largest request to a protocol without a limit of its own (task specs: [tables] spec_max_bytes).
# max_request_bytes = 1048576
# Kademlia DHT (peers by id, blob providers; private to the swarm in swarm mode).
# dht = true
# Behind a NAT: reserve relay slots, advertise relayed addresses, try hole punching (DCUtR).
# nat_traversal = true
# Serve as a circuit relay (or: edgenode run --relay), within these limits.
# relay = false
# relay_max_reservations = 32
# relay_max_circuits = 8
# relay_max_bytes = 67108864
# relay_max_duration_s = 600
# GossipSub peer exchange: PRUNEs name other peers of the topic, so the mesh heals after churn
# without a bootstrap node (swarm mode: members only; signed records only; dials rate-limited).
# peer_exchange = true
# Peers named in one PRUNE sent, and taken from one received (1 to 32).
# px_peers = 8
# Announce served blobs (fetched task modules, shared models) as a DHT provider; keep fetched
# modules in memory to serve them (MiB); serve this node's models to peers by hash.
# announce_blobs = true
# keep_blobs_mb = 32
# share_models = false

[node]
# Tasks run at once.
# slots = 2
# Tasks waiting beyond the running ones before the node answers "busy".
# queue = 64
# Advertised cost class: "low", "standard" or "premium".
# cost_class = "standard"
# Prometheus metrics on 127.0.0.1:PORT; 0 turns them off.
# metrics_port = 0
# Drain (move running tasks with safe points away, then stop) when a condition holds:
# "battery < PERCENT" (not charging) or "thermal > MILLIDEGREES", read from sysfs every drain_poll_s.
# drain_when = []
# drain_poll_s = 5.0
# sysfs = "/sys"

[swarm]
# Zero-trust swarm mode (docs/security.md).
# Peer id of the swarm admin key; empty = open mode (any peer may connect and submit).
# swarm_id = ""
# This node's membership certificate (from `edgenode swarm admit`), relative to the home.
# cert = "swarm.cert"
# Revocation files to apply and gossip at start.
# revocations = []

[swarm.policy]
# Roles allowed to submit tasks / call models / read data directories.
# submit_roles = ["submitter", "admin"]
# model_roles = ["submitter", "trainer", "admin"]
# data_roles = ["admin"]
# Models tasks may call; empty = every model this node holds.
# allowed_models = []
# Read-only directories exported to tasks, as "NAME=PATH".
# data_dirs = []
# Largest limits a member's task may ask for (asking for more is refused).
# max_output_bytes = 1048576
# max_fuel = 1000000000
# max_memory_mb = 256
# max_timeout_ms = 30000

[tables]
# Bounds on what peers can make the node remember (sized for a 1 GB Raspberry Pi).
# Admitted task specs remembered against replay until they expire; past it new tasks get "busy".
# replay_entries = 50000
# Longest task-spec nonce accepted, and largest signed spec (input included).
# nonce_max_bytes = 64
# spec_max_bytes = 4194304
# Peers whose adverts are held; per-peer rate-limit buckets and penalty scores kept.
# adverts = 1024
# peers = 4096
# Evidence records against banned peers kept.
# evidence = 256
# Receipts kept to answer a repeated task without rerunning it: count and total bytes.
# receipts = 1024
# receipt_bytes = 16777216
# Clock skew tolerated on a membership certificate's start time (ms).
# cert_skew_ms = 300000

[sandbox]
# Limits of untrusted WASM tasks (docs/sandbox.md), sized for a 1 GB Raspberry Pi.
# A task's own limits are clamped to these ceilings; receipts report what it ran under.
# max_memory_mb = 256
# max_timeout_ms = 30000
# max_output_bytes = 1048576
# max_fuel = 10000000000
# Limits a task gets when its spec names none.
# memory_mb = 64
# timeout_ms = 10000
# fuel = 2000000000
# Modules: largest module and largest single function compiled; compile time and memory limits.
# max_module_bytes = 8388608
# max_function_bytes = 262144
# compile_timeout_ms = 10000
# compile_memory_mb = 384
# Disk space of precompiled modules (<home>/cache), least recently used evicted first.
# cache_quota_mb = 256
# Cranelift optimisation: "speed", "speed_and_size" or "none" (compiles faster, runs slower).
# cranelift_opt_level = "speed"

[ledger]
# What peers may make this node store and send, sized for a 1 GB Raspberry Pi.
# Bytes of entries in one ledger-range answer (at least one entry is always sent).
# range_max_bytes = 1048576
# Bytes of one witnessed peer's chain kept at most (3 witnesses: 48 MiB); then its slot is freed.
# witness_max_bytes = 16777216
# Seconds of silence after which a witnessed peer's slot goes to a new announcer.
# witness_idle_s = 300.0
# Keep a task's plaintext input/output in the ledger when its spec asks: open mode (off),
# swarm mode (members with these roles), and the largest such entry.
# payload_open = false
# payload_roles = ["admin"]
# payload_max_bytes = 65536
""" + FL_TEMPLATE
