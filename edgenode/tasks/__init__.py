"""Task services: the executor, the submitter, the node's own chain writer, and their ports."""

from ._chain import Appended, ChainWriter
from ._executor import RESULT_CACHE, DrainReport, Executor
from ._infer import RegistryEngine, npy_bytes, npy_load
from ._migrate import (
    CHECKPOINT_KIND,
    MIGRATE_PROTOCOL,
    MOVE_PROTOCOL,
    ORDER_SKEW_MS,
    POLICY_CHECKPOINT_MS,
    RESUMED_KIND,
    SNAPSHOT_PROTOCOL,
    CheckpointRecord,
    DrainDone,
    DrainOrder,
    Handover,
    MoveDone,
    MoveOrder,
    ResumedRecord,
    SnapshotKeeper,
    SnapshotNote,
    arch_capability,
)
from ._ports import AdmissionHook, Clock, InferEngine, SystemClock, WasmEngine
from ._replay import REPLAY_DB, MemoryReplayStore, ReplayStore, SqliteReplayStore
from ._status import PeerStatus, ask_status
from ._submitter import Submitter, TaskOutcome, TaskRequest

__all__ = [
    "PeerStatus",
    "ask_status",
    "CHECKPOINT_KIND",
    "MIGRATE_PROTOCOL",
    "RESUMED_KIND",
    "MOVE_PROTOCOL",
    "MoveDone",
    "MoveOrder",
    "DrainDone",
    "DrainOrder",
    "ORDER_SKEW_MS",
    "arch_capability",
    "POLICY_CHECKPOINT_MS",
    "SNAPSHOT_PROTOCOL",
    "CheckpointRecord",
    "Handover",
    "ResumedRecord",
    "SnapshotKeeper",
    "SnapshotNote",
    "REPLAY_DB",
    "RESULT_CACHE",
    "AdmissionHook",
    "Appended",
    "ChainWriter",
    "Clock",
    "Executor",
    "DrainReport",
    "InferEngine",
    "MemoryReplayStore",
    "RegistryEngine",
    "ReplayStore",
    "SqliteReplayStore",
    "Submitter",
    "SystemClock",
    "TaskOutcome",
    "TaskRequest",
    "WasmEngine",
    "npy_bytes",
    "npy_load",
]
