"""What federated learning puts on the wire and in the ledger: topics, signed commands, ledger bodies.

A launcher seals an :class:`FLStart` (gossiped on :data:`FL_CONTROL_TOPIC` and sent
straight to peers over :data:`FL_CONTROL_PROTOCOL`, answered with an :class:`FLAck`);
nodes report each round with an :class:`FLProgress` on :data:`FL_PROGRESS_TOPIC`.
Model updates travel on :func:`fl_topic` and each published one is noted in the
author's ledger as a :data:`LEDGER_KIND` entry whose body is :func:`update_note`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .. import wire

__all__ = [
    "FL_CONTROL_TOPIC",
    "FL_PROGRESS_TOPIC",
    "FL_CONTROL_PROTOCOL",
    "FL_TOPIC_PREFIX",
    "LEDGER_KIND",
    "MAX_START_TTL_MS",
    "MAX_START_DELAY_MS",
    "fl_topic",
    "update_note",
    "FLStart",
    "FLAck",
    "FLProgress",
]

FL_CONTROL_TOPIC = "edgenode/fl-control/1"
"""Gossip topic of sealed :class:`FLStart` commands."""
FL_PROGRESS_TOPIC = "edgenode/fl-progress/1"
"""Gossip topic of sealed :class:`FLProgress` reports."""
FL_CONTROL_PROTOCOL = "/edgenode/fl-control/1"
"""Direct stream: request a sealed :class:`FLStart`, answer a sealed :class:`FLAck`."""
FL_TOPIC_PREFIX = "/edgenode/fl/"
"""Gossip topics of federated models: ``/edgenode/fl/<model>/1``."""
LEDGER_KIND = "model_update"
"""Ledger entry kind noting a published update: body :func:`update_note`."""
MAX_START_TTL_MS = 10 * 60_000
"""A start command may not live longer than this (bounds the replay memory)."""
MAX_START_DELAY_MS = 30_000
"""How far in the future a command may schedule round 0."""


def fl_topic(model: str) -> str:
    """The gossip topic that carries ``model``'s updates."""
    return f"{FL_TOPIC_PREFIX}{model}/1"


def update_note(model: str, round: int, sha256: str) -> bytes:
    """The :data:`LEDGER_KIND` entry body of a published update: canonical JSON ``{"model", "round", "sha256"}``."""
    note = {"model": model, "round": round, "sha256": sha256}
    return json.dumps(note, sort_keys=True, separators=(",", ":")).encode()


@wire.message("fl.start", 1)
@dataclass(frozen=True)
class FLStart:
    """Start a federated run: every node that accepts it trains ``rounds`` rounds of ``model``."""

    run_id: str
    """Random hex id chosen by the launcher; names the run in progress reports, used against replay."""
    model: str
    """A :data:`federated.models.MODEL_FACTORIES` name (``digits``...)."""
    rounds: int
    """Rounds to run (numbered 0..rounds-1)."""
    strategy: str
    """A :data:`federated.STRATEGIES` name."""
    quorum: int
    """Updates (own included) that close a round early."""
    round_timeout_s: float
    """Seconds after which a round closes with what arrived."""
    malicious: int
    """Byzantine updates Krum/MultiKrum/Bulyan tolerate."""
    issued_ms: int
    """Unix ms when the launcher signed it."""
    expires_ms: int
    """Unix ms after which nodes refuse it."""
    start_ms: int
    """Unix ms at which round 0 starts (gives every node time to subscribe to the model's topic)."""


@wire.message("fl.ack", 1)
@dataclass(frozen=True)
class FLAck:
    """A node's answer to a start command sent to it directly."""

    run_id: str
    peer_id: str
    """The answering node (must be the envelope's author)."""
    accepted: bool
    """True when the node runs (or already runs) the run."""
    reason: str
    """``started``, ``running``, or why it refused (``disabled``, ``expired``, ``busy``...)."""


@wire.message("fl.progress", 1)
@dataclass(frozen=True)
class FLProgress:
    """One node's report after one round of a run."""

    run_id: str
    peer_id: str
    """The reporting node (must be the envelope's author)."""
    round: int
    rounds: int
    accuracy: float
    """Accuracy of the aggregated model on the node's test data."""
    loss: float
    updates: int
    """Updates aggregated this round (own included)."""
    reason: str
    """Why the round closed: ``quorum``, ``deadline`` or ``overtaken``."""
    model_sha256: str
    """Hash of the ONNX model hot-swapped into the node's registry (empty when it has none)."""
