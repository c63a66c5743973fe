"""What one analysis run returns: the verdict and one record per metric, shaped like the API's AnalysisResult.

Kept apart from :mod:`.analysis` so the state (and its status round trip) can hold results without importing
the numpy-heavy analysis code paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tradeplane.api.v1alpha1.modelversion import AnalysisResult


class Verdict(StrEnum):
    PASS = "Pass"  #: every set threshold was judged and held
    FAIL = "Fail"  #: at least one judged threshold was breached
    INCONCLUSIVE = "Inconclusive"  #: nothing breached, but something set could not be judged yet


@dataclass(frozen=True)
class MetricResult:
    """One metric of one run, shaped like the API's :class:`AnalysisResult` (see :meth:`to_api`).

    ``threshold`` None: informational (no limit set, always passes). Values NaN are reported as None."""

    metric: str
    candidate: float | None
    stable: float | None
    threshold: float | None
    passed: bool
    reason: str

    def to_api(self) -> AnalysisResult:
        return AnalysisResult(
            metric=self.metric,
            candidate=self.candidate,
            stable=self.stable,
            threshold=self.threshold,
            passed=self.passed,
            reason=self.reason,
        )

    @classmethod
    def from_api(cls, r: AnalysisResult) -> MetricResult:
        return cls(r.metric, r.candidate, r.stable, r.threshold, r.passed, r.reason)


@dataclass(frozen=True)
class AnalysisVerdict:
    """The outcome of one run: the verdict, every judged metric, what is still pending, and why in words."""

    verdict: Verdict
    reason: str
    results: tuple[MetricResult, ...] = ()
    pending: tuple[str, ...] = ()  #: set thresholds that could not be judged yet, each with its reason
    n_candidate: int = 0
    n_stable: int = 0
    n_matured: int = 0  #: candidate decisions whose label has matured
    notes: tuple[str, ...] = field(default=())  #: thresholds that can never be judged here (e.g. no offline curve)

    @property
    def failed(self) -> tuple[MetricResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def to_api(self) -> list[AnalysisResult]:
        return [r.to_api() for r in self.results]
