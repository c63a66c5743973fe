"""Canary / shadow rollouts of ModelVersions: metrics, one analysis run, and the rollout state machine.

Pure functions only: every call takes ``now``; nothing here reads a clock, a database or touches traffic.
The operator and the local runner read the window, call :func:`analyze` and :func:`advance`, store
:func:`status_patch` and apply the returned route; :mod:`.report` keeps every analysis as a row of the
comparison report. See docs/rollouts.md.
"""

from .analysis import Sample, analyze
from .controller import (
    TRANSITIONS,
    Command,
    Event,
    GuardSignal,
    ManualCommand,
    Route,
    StepKind,
    Transition,
    advance,
    analysis_window,
    next_due,
    pause_ends_at,
    route_for,
    wake_at,
)
from .metrics import CalibrationDrift, OfflineCalibration
from .report import MAX_REPORT_ROWS, MetricRow, ReportRow, RolloutReport, append_rows, report_row, row_for
from .state import EXTRA_KEY, HistoryEntry, RolloutState, state_from_status, status_patch
from .verdict import AnalysisVerdict, MetricResult, Verdict

__all__ = [
    "EXTRA_KEY",
    "MAX_REPORT_ROWS",
    "TRANSITIONS",
    "AnalysisVerdict",
    "CalibrationDrift",
    "Command",
    "Event",
    "GuardSignal",
    "HistoryEntry",
    "ManualCommand",
    "MetricResult",
    "MetricRow",
    "OfflineCalibration",
    "ReportRow",
    "RolloutReport",
    "RolloutState",
    "Route",
    "Sample",
    "StepKind",
    "Transition",
    "Verdict",
    "advance",
    "analysis_window",
    "analyze",
    "append_rows",
    "next_due",
    "pause_ends_at",
    "report_row",
    "route_for",
    "row_for",
    "state_from_status",
    "status_patch",
    "wake_at",
]
