"""The comparison report of a rollout: every analysis as one row, kept over time, as JSON and Markdown.

Why a report beside the status: ``status.analysis`` holds only the *latest* run, but a shadow is judged by a
person (it never promotes itself), who needs to see how the candidate compared with the stable run after run —
whether a PnL edge held, whether the latency crept up. So each analysis becomes a :class:`ReportRow` (time,
window, sample counts, per metric stable, candidate, delta, pass/fail), the rows are kept bounded
(:data:`MAX_REPORT_ROWS`, oldest dropped) and rendered the same way wherever the rollout runs: the operator
stores them in a ConfigMap, ``tradeplane run`` in files beside its state file. A canary's analyses give the
same rows (the candidate is then the canary).

Pure: the caller passes ``now`` and the states around :func:`~.controller.advance`; nothing here reads a clock
or writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tradeplane.api.v1alpha1.modelversion import ModelVersionPhase

from .controller import analysis_window
from .state import RolloutState, check_time, parse_time, rfc3339
from .verdict import AnalysisVerdict, Verdict

__all__ = [
    "MAX_REPORT_ROWS",
    "MetricRow",
    "ReportRow",
    "RolloutReport",
    "append_rows",
    "report_row",
    "row_for",
]

#: Rows kept per report: about 100 minutes of a 60 s analysis interval; bounded so the ConfigMap stays small.
MAX_REPORT_ROWS: Final = 100
#: A verdict's reason is cut to this many characters in a row (the status keeps the full latest one).
MAX_REASON_CHARS: Final = 400
REPORT_VERSION: Final = 1


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class MetricRow:
    """One metric of one analysis: both values, ``delta`` = candidate − stable (None unless both are known),
    the threshold in force (None: informational) and whether the candidate held it."""

    metric: str
    stable: float | None
    candidate: float | None
    delta: float | None
    threshold: float | None
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "stable": self.stable,
            "candidate": self.candidate,
            "delta": self.delta,
            "threshold": self.threshold,
            "passed": self.passed,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MetricRow:
        def num(key: str) -> float | None:
            v = doc.get(key)
            return None if v is None else _finite(float(v))

        return cls(str(doc["metric"]), num("stable"), num("candidate"), num("delta"), num("threshold"),
                   bool(doc.get("passed", True)))  # fmt: skip


@dataclass(frozen=True)
class ReportRow:
    """One analysis: when (``time``, = the window's end), over which window, on how many decisions, the
    verdict, the rollout's phase after it, and one :class:`MetricRow` per judged or reported metric."""

    time: datetime
    window_start: datetime
    window_end: datetime
    verdict: Verdict
    phase: ModelVersionPhase | None
    n_candidate: int
    n_stable: int
    n_matured: int
    reason: str
    metrics: tuple[MetricRow, ...] = ()

    @property
    def window_seconds(self) -> float:
        return (self.window_end - self.window_start).total_seconds()

    @property
    def failing(self) -> tuple[str, ...]:
        return tuple(m.metric for m in self.metrics if not m.passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": rfc3339(self.time),
            "windowStart": rfc3339(self.window_start),
            "windowEnd": rfc3339(self.window_end),
            "windowSeconds": self.window_seconds,
            "verdict": self.verdict.value,
            "phase": None if self.phase is None else self.phase.value,
            "nCandidate": self.n_candidate,
            "nStable": self.n_stable,
            "nMatured": self.n_matured,
            "reason": self.reason,
            "metrics": [m.to_json() for m in self.metrics],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReportRow:
        def time(key: str) -> datetime:
            t = parse_time(key, doc.get(key))
            if t is None:
                raise ValueError(f"report row: {key} is missing")
            return t

        phase = doc.get("phase")
        return cls(
            time=time("time"),
            window_start=time("windowStart"),
            window_end=time("windowEnd"),
            verdict=Verdict(doc["verdict"]),
            phase=None if phase is None else ModelVersionPhase(phase),
            n_candidate=int(doc.get("nCandidate", 0)),
            n_stable=int(doc.get("nStable", 0)),
            n_matured=int(doc.get("nMatured", 0)),
            reason=str(doc.get("reason", "")),
            metrics=tuple(MetricRow.from_json(m) for m in doc.get("metrics") or ()),
        )


def report_row(
    verdict: AnalysisVerdict,
    *,
    time: datetime,
    window: tuple[datetime, datetime],
    phase: ModelVersionPhase | None = None,
) -> ReportRow:
    """The row of one analysis ``verdict`` run at ``time`` over ``window`` (``phase``: the rollout's phase
    after the verdict was applied). Non-finite values become None; the reason is cut to
    :data:`MAX_REASON_CHARS`."""
    time = check_time("time", time)
    start, end = (check_time("window start", window[0]), check_time("window end", window[1]))
    if end < start:
        raise ValueError(f"window ends ({rfc3339(end)}) before it starts ({rfc3339(start)})")
    metrics = []
    for r in verdict.results:
        stable, cand = _finite(r.stable), _finite(r.candidate)
        delta = None if stable is None or cand is None else cand - stable
        metrics.append(MetricRow(r.metric, stable, cand, delta, _finite(r.threshold), r.passed))
    reason = verdict.reason if len(verdict.reason) <= MAX_REASON_CHARS else verdict.reason[: MAX_REASON_CHARS - 1] + "…"
    return ReportRow(time, start, end, verdict.verdict, phase, verdict.n_candidate, verdict.n_stable,
                     verdict.n_matured, reason, tuple(metrics))  # fmt: skip


def row_for(before: RolloutState, after: RolloutState, verdict: AnalysisVerdict, now: datetime) -> ReportRow:
    """The row of the analysis the caller ran at ``now`` on ``before`` (so its window is
    ``analysis_window(before, now)``, the one the analysis read) and applied with ``advance()`` → ``after``."""
    return report_row(verdict, time=now, window=analysis_window(before, now), phase=after.phase)


def append_rows(
    rows: Sequence[ReportRow], new: Iterable[ReportRow], *, limit: int = MAX_REPORT_ROWS
) -> tuple[ReportRow, ...]:
    """``rows`` followed by ``new``, only the last ``limit`` kept (the oldest analyses go first)."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return (*rows, *new)[-limit:]


# --- the report -------------------------------------------------------------------------------------------------


def _cell(x: float | None, spec: str = ".4g") -> str:
    return "–" if x is None else format(x, spec)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class RolloutReport:
    """The report of one candidate's rollout: the versions, the strategy (``canary``/``shadow``) and the rows,
    oldest first. ``to_json``/``from_json`` round-trip exactly; :meth:`markdown` is the readable form."""

    candidate: str
    stable: str | None
    strategy: str
    rows: tuple[ReportRow, ...] = ()
    limit: int = MAX_REPORT_ROWS

    def with_row(self, row: ReportRow, *, stable: str | None = None) -> RolloutReport:
        """A copy with ``row`` appended (bounded by ``limit``) and the current ``stable`` (when given)."""
        return RolloutReport(self.candidate, stable if stable is not None else self.stable, self.strategy,
                             append_rows(self.rows, (row,), limit=self.limit), self.limit)  # fmt: skip

    def metrics(self) -> list[str]:
        """Every metric reported, in the order it first appeared."""
        seen: dict[str, None] = {}
        for row in self.rows:
            for m in row.metrics:
                seen.setdefault(m.metric, None)
        return list(seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "candidate": self.candidate,
            "stable": self.stable,
            "strategy": self.strategy,
            "limit": self.limit,
            "rows": [r.to_json() for r in self.rows],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RolloutReport:
        """Read a report written by :meth:`to_json`; raises ValueError on a document it cannot read."""
        try:
            limit = int(doc.get("limit") or MAX_REPORT_ROWS)
            rows = tuple(ReportRow.from_json(r) for r in doc.get("rows") or ())
            return cls(str(doc["candidate"]), doc.get("stable"), str(doc.get("strategy", "")), rows[-limit:], limit)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a rollout report: {type(exc).__name__}: {exc}") from exc

    def markdown(self) -> str:
        """A summary table (one line per analysis) and one table per metric over time."""
        role = self.strategy or "candidate"
        head = f"# Rollout report: {self.candidate} ({role}) against stable {self.stable or '–'}"
        if not self.rows:
            return f"{head}\n\nNo analysis has run yet.\n"
        first, last = self.rows[0], self.rows[-1]
        lines = [
            head,
            "",
            f"{len(self.rows)} analyses from {rfc3339(first.time)} to {rfc3339(last.time)} (the last {self.limit} are "
            f"kept). Latest: **{last.verdict.value}**, phase {last.phase.value if last.phase else '–'}. "
            f"Delta = {role} − stable; *n* counts scored decisions in the window, *matured* the {role}'s "
            "decisions whose label is known.",
            "",
            "## Analyses",
            "",
            f"| # | time | window (s) | n {role} | n stable | matured | verdict | phase | failing |",
            "|---:|---|---:|---:|---:|---:|---|---|---|",
        ]
        for i, r in enumerate(self.rows, 1):
            lines.append(
                f"| {i} | {rfc3339(r.time)} | {r.window_seconds:g} | {r.n_candidate} | {r.n_stable} | {r.n_matured} "
                f"| {r.verdict.value} | {r.phase.value if r.phase else '–'} | {', '.join(r.failing) or '–'} |"
            )
        notes = [(i, r) for i, r in enumerate(self.rows, 1) if r.verdict is not Verdict.PASS and r.reason]
        if notes:
            lines += ["", "Why not passed:", ""]
            lines += [f"- #{i} {r.verdict.value}: {_md(r.reason)}" for i, r in notes]
        for metric in self.metrics():
            lines += [
                "",
                f"## {metric}",
                "",
                f"| # | time | stable | {role} | delta | threshold | result |",
                "|---:|---|---:|---:|---:|---:|---|",
            ]
            for i, r in enumerate(self.rows, 1):
                m = next((x for x in r.metrics if x.metric == metric), None)
                if m is None:
                    continue
                result = "info" if m.threshold is None and m.passed else "pass" if m.passed else "**FAIL**"
                lines.append(
                    f"| {i} | {rfc3339(r.time)} | {_cell(m.stable)} | {_cell(m.candidate)} | {_cell(m.delta, '+.4g')} "
                    f"| {_cell(m.threshold)} | {result} |"
                )
        return "\n".join(lines) + "\n"
