"""Rollouts of ModelVersions wired to data: the analysis window from a store, one analysis run, and the local
loop of ``tradeplane run`` (docs/rollouts.md). The logic itself is pure and lives in
:mod:`tradeplane.engine.rollout`; this package reads, labels, and applies."""

from .analysis_run import offline_calibration, run_analysis
from .local import RolloutDriver, command_path, read_state, state_path, write_command
from .window import read_window

__all__ = [
    "RolloutDriver",
    "command_path",
    "offline_calibration",
    "read_state",
    "read_window",
    "run_analysis",
    "state_path",
    "write_command",
]
