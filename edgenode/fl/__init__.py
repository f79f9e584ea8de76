"""Federated learning on a node: the ``[fl]`` section, signed run commands, gossip rounds, the launcher.

Modules (private; everything public is re-exported here):

* ``_config``: what a node's :class:`FLSection` means when a run starts (its data, its training);
* ``_messages``: topics, the signed :class:`FLStart` / :class:`FLAck` / :class:`FLProgress`,
  the ``model_update`` ledger body (:func:`update_note`);
* ``_gate``: sans-IO admission -- which start commands (:class:`StartGate`) and whose
  updates (:class:`TrainerCheck`) a node accepts;
* ``_service``: one model's gossip rounds on a node (:class:`FederatedService`);
* ``_controller``: the node's asyncio side (:class:`FLController`, :func:`node_controller`);
* ``_launch``: the launcher's side (:func:`launch`, :class:`ProgressBook`).
"""

from ..config import FLSection, partition_of
from ._config import make_loader, train_config
from ._controller import FLController, FLHost, node_controller
from ._gate import TRAINER_ROLE, StartGate, StartRefused, TrainerCheck, identity_verify
from ._launch import FLStalled, NoFLNode, ProgressBook, RoundSummary, launch, make_start
from ._messages import (
    FL_CONTROL_PROTOCOL,
    FL_CONTROL_TOPIC,
    FL_PROGRESS_TOPIC,
    FL_TOPIC_PREFIX,
    LEDGER_KIND,
    MAX_START_DELAY_MS,
    MAX_START_TTL_MS,
    FLAck,
    FLProgress,
    FLStart,
    fl_topic,
    update_note,
)
from ._service import FederatedService, ModelSink, Note

__all__ = [
    "FL_CONTROL_PROTOCOL",
    "FL_CONTROL_TOPIC",
    "FL_PROGRESS_TOPIC",
    "FL_TOPIC_PREFIX",
    "LEDGER_KIND",
    "MAX_START_DELAY_MS",
    "MAX_START_TTL_MS",
    "TRAINER_ROLE",
    "FLAck",
    "FLController",
    "FLHost",
    "FLProgress",
    "FLSection",
    "FLStalled",
    "FLStart",
    "FederatedService",
    "ModelSink",
    "NoFLNode",
    "Note",
    "ProgressBook",
    "RoundSummary",
    "StartGate",
    "StartRefused",
    "TrainerCheck",
    "fl_topic",
    "identity_verify",
    "launch",
    "make_loader",
    "make_start",
    "node_controller",
    "partition_of",
    "train_config",
    "update_note",
]
