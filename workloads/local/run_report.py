"""The report of a local run from what the run produced: signals, rejections, fills, equity and marks.

Why from the run's own records rather than from the store: the report must also be written after a Ctrl-C
or when the store is unavailable; the store holds the same rows (the parity test reads them back).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.runtime.desk import DeskRuntime
from ...engine.runtime.outbox import Outbox
from .report import write_run_report
from .report_data import (
    TOTAL,
    EquitySeries,
    FillColumns,
    RejectionColumns,
    RunReportData,
    SignalColumns,
    live_outcomes,
)

_NS_PER_S = 1_000_000_000


def report_data(records: Outbox, desk: DeskRuntime, summary: Mapping[str, Any],
                roles: Mapping[str, str]) -> RunReportData:  # fmt: skip
    signals = SignalColumns.from_signals(records.signals)
    # outcomes are judged on the local clock, where the marks are sampled: ts = decision time
    # outcomes are judged per instrument (venue:SYMBOL: spot and futures BTCUSDT are different markets)
    signals = dataclasses.replace(
        signals,
        ts=np.array([s.infer_ts for s in records.signals], np.int64),
        symbol=np.array([f"{s.venue}:{s.symbol}" for s in records.signals], dtype=str),
    )
    horizons = {s.name: s.config.horizon_s * _NS_PER_S for s in desk.strategies}
    marks = desk.marks()
    outcomes = np.full(len(records.signals), np.nan)
    for name, horizon in horizons.items():
        rows = signals.strategy == name
        if rows.any():
            outcomes[rows] = live_outcomes(signals.ts[rows], signals.symbol[rows], marks["ts"], marks["symbol"],
                                           marks["mid"], horizon)  # fmt: skip
    equity = records.equity
    ts = np.array([e["ts"] for e in equity], np.int64)
    eq = np.array([e["equity"] for e in equity], np.float64)
    decision = [r["reason"] for r in records.rejections if r["stage"] == "decision"]
    risk = [r["reason"] for r in records.rejections if r["stage"] == "risk"]
    f = records.fills
    fills = FillColumns(ts=np.array([r["ts"] for r in f], np.int64), symbol=np.array([r["symbol"] for r in f], str),
                        side=np.array([r["side"] for r in f], np.int64),
                        qty=np.array([r["qty"] for r in f], np.float64),
                        price=np.array([r["price"] for r in f], np.float64),
                        fee=np.array([r["fee"] for r in f], np.float64))  # fmt: skip
    horizon_ns = min(horizons.values()) if horizons else 0
    return RunReportData(equity={TOTAL: EquitySeries.from_equity(ts, eq)} if ts.shape[0] else {}, signals=signals,
                         outcomes=outcomes, rejections=RejectionColumns.from_reasons(decision, risk), fills=fills,
                         summary=dict(summary), model_roles=dict(roles), horizon_ns=horizon_ns)  # fmt: skip


def build_run_report(out: Path, records: Outbox, desk: DeskRuntime, summary: Mapping[str, Any],
                     roles: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """Write report.html and its PNGs into ``out``; returns {"report": path}."""
    paths = write_run_report(out, report_data(records, desk, summary, roles))
    return {"report": str(paths[0])}
