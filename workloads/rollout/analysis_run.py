"""One analysis run against a store: the controller's window, the Samples, the verdict.

Why a function of its own between the store and the pure core: the operator (ClickHouse server) and the local
runner (chDB) must judge a candidate identically, so both call :func:`run_analysis` with their store and
their clock's ``now``; only where the mids come from differs (``mids``, see :mod:`.window`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from ...api.v1alpha1.modelversion import ModelVersionPhase, ModelVersionSpec
from ...engine.rollout import AnalysisVerdict, OfflineCalibration, RolloutState, Verdict, analysis_window, analyze
from ..store.base import Store
from ..training.registry import read_offline_calibration
from .mids import MidSeries
from .window import read_window

#: Label horizon when the version declares none (``spec.training.horizonSeconds``'s default).
DEFAULT_HORIZON_S: Final = 60
_NS_PER_S: Final = 1_000_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(t: datetime) -> int:
    """A timezone-aware datetime as int64 ns since the epoch (exact to the microsecond)."""
    delta = t.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _NS_PER_S + delta.microseconds * 1_000


def horizon_of(spec: ModelVersionSpec) -> int:
    """The label horizon (ns) a version's p_up predicts: its training horizon, else the default."""
    seconds = spec.training.horizon_seconds if spec.training is not None else DEFAULT_HORIZON_S
    return seconds * _NS_PER_S


def run_analysis(
    store: Store,
    spec: ModelVersionSpec,
    state: RolloutState,
    now: datetime,
    *,
    strategies: Sequence[str] | None = None,
    run_id: str | None = None,
    offline: OfflineCalibration | None = None,
    horizon_ns: int | None = None,
    mids: MidSeries | None = None,
) -> AnalysisVerdict:
    """Window = ``analysis_window(state, now)``; :func:`~.window.read_window`; ``analyze()``.

    ``horizon_ns`` defaults to :func:`horizon_of` ``(spec)``; ``mids`` (the local run's own book tops)
    replaces the store's ``book_top``. A shadow's Samples are the same rows, so they are judged ``paired``.
    Without a stable version there is nothing to compare with: INCONCLUSIVE."""
    if state.stable is None:
        return AnalysisVerdict(Verdict.INCONCLUSIVE, f"no stable version to compare {state.candidate} with")
    start, end = analysis_window(state, now)
    cand, stable = read_window(
        store,
        candidate=state.candidate,
        stable=state.stable,
        start_ns=to_ns(start),
        end_ns=to_ns(end),
        horizon_ns=horizon_of(spec) if horizon_ns is None else horizon_ns,
        strategies=strategies,
        run_id=run_id,
        mids=mids,
    )
    paired = state.phase is ModelVersionPhase.SHADOW and cand.n == stable.n
    return analyze(cand, stable, spec.rollout.analysis, offline, paired=paired)


def offline_calibration(spec: ModelVersionSpec, home: Path) -> OfflineCalibration | None:
    """The candidate's offline reliability curve from the side file training wrote beside its model
    (``calibration.json``); None when the artifact is not a local file or has no curve (then calibration
    drift is not judged, and the verdict's notes say so)."""
    if spec.artifact is None:
        return None
    from ..local.manifests import ManifestError
    from ..local.models import artifact_path  # the local run's resolver of local:// and file:// URIs

    try:
        path = artifact_path(spec.artifact.uri, home)
    except ManifestError:  # s3:// and the like: not on this machine
        return None
    return read_offline_calibration(path.parent)
