"""Many edgenode nodes on one machine: scenarios, fault injection, figures and a report.

``simnet run SCENARIO.toml`` / ``simnet demo`` on the command line; from Python,
:func:`run_scenario` with a backend from :func:`make_backend`.
"""

from ._backend import FLRound, LedgerState, MovedWork, SwarmBackend, SwarmState, TaskOutcome, TaskRequest
from ._driver import Progress, run_scenario
from ._errors import ScenarioError, SimnetError
from ._faults import ACTIONS, FaultAction, FaultSchedule, FaultSpan
from ._metrics import Figure, Recorder, TaskRecord, percentile
from ._report import REPORT_JSON, REPORT_MD, RunResult, write_report
from ._scenario import (
    BYZANTINE_BEHAVIOURS,
    DEFAULT_SCENARIO,
    FAULT_KINDS,
    SLA_CLASSES,
    TASKS,
    TRANSPORTS,
    Fault,
    FLSection,
    LinkClass,
    Profile,
    Scenario,
    SwarmSection,
    TaskMix,
    Workload,
    default_scenario,
    load_scenario,
    parse_scenario,
)
from ._workload import Arrival, arrivals

__all__ = [
    "ACTIONS",
    "BYZANTINE_BEHAVIOURS",
    "DEFAULT_SCENARIO",
    "FAULT_KINDS",
    "REPORT_JSON",
    "REPORT_MD",
    "SLA_CLASSES",
    "TASKS",
    "TRANSPORTS",
    "Arrival",
    "FLRound",
    "FLSection",
    "Fault",
    "FaultAction",
    "FaultSchedule",
    "FaultSpan",
    "Figure",
    "LedgerState",
    "LinkClass",
    "MovedWork",
    "Profile",
    "Progress",
    "Recorder",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SimnetError",
    "SwarmBackend",
    "SwarmSection",
    "SwarmState",
    "TaskMix",
    "TaskOutcome",
    "TaskRecord",
    "TaskRequest",
    "Workload",
    "arrivals",
    "default_scenario",
    "load_scenario",
    "parse_scenario",
    "percentile",
    "run_scenario",
    "write_report",
]
