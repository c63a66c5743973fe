"""Route each decision's scoring between the ModelVersions of one family: stable, canaries, shadows.

Why by symbol and not by coin flip: a canary must be judged on a consistent stream of decisions, and one
symbol's positions must not alternate between two models' opinions tick by tick. So the cohort of a symbol
is a stable hash of its name in [0, 1) (blake2b, the same in every process and on every replica), and a
symbol goes to a canary when its cohort falls below the canary's cumulative weight. Raising a canary's
weight only adds symbols to it; with weights unchanged a symbol never moves. The price: with few symbols
the canary's realized share is lumpy (one symbol is all or nothing).

Shadows score every decision and are recorded next to the signal, never acted on; a failing shadow is
recorded in ``error`` and never raised, because a candidate must not be able to stop the stable path.

Each model gets a row in its own column order (precomputed ``operator.itemgetter`` per model), so models
with different signatures can share a router; a feature the mapping lacks is passed as NaN, which LightGBM
and the exported graph treat as missing.

Weights are hot (:meth:`ModelRouter.set_weights`): the whole routing table is rebuilt and replaced by one
reference assignment, so a concurrent :meth:`ModelRouter.score` sees the old table or the new one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from operator import itemgetter
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from ..calibration import ProbabilityInterval

STABLE: Final = "stable"
CANARY: Final = "canary"
SHADOW: Final = "shadow"
ROLES: Final = (STABLE, CANARY, SHADOW)

_WEIGHT_TOL = 1e-9
_COHORT_CACHE_MAX = 4096
_TWO_53 = float(2**53)


class Scorer(Protocol):
    """Anything that maps rows of features (in ``feature_names`` order) to P(up); OnnxScorer is one."""

    feature_names: tuple[str, ...]

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """2-D rows → p_up per row."""
        ...


@dataclass(frozen=True)
class RoutedModel:
    """One ModelVersion in the router. ``weight``: a canary's share of symbols (stable gets the rest;
    ignored for stable and shadow)."""

    version: str
    role: str
    weight: float
    scorer: Scorer
    interval: ProbabilityInterval | None = None  #: the artifact's calibration evidence; None → no interval


@dataclass(frozen=True, slots=True)
class RoutedScore:
    """The score a decision acts on, who produced it, and what the shadows said."""

    p_up: float
    version: str
    role: str
    shadow: tuple[tuple[str, float], ...]  #: (version, p_up); p_up NaN when that shadow failed
    error: str  #: "" or "<version>: <exception>" for each failed shadow, "; "-joined
    p_low: float = math.nan  #: the routed model's interval around p_up (NaN when it has none)
    p_high: float = math.nan


@dataclass(frozen=True, slots=True)
class _Slot:
    version: str
    role: str
    scorer: Scorer
    names: tuple[str, ...]
    getter: Any  # operator.itemgetter over names
    interval: ProbabilityInterval | None

    def row(self, features: Mapping[str, float]) -> npt.NDArray[np.float64]:
        try:
            values = self.getter(features)
        except KeyError:
            values = tuple(features.get(n, math.nan) for n in self.names)
        return np.array(values, dtype=np.float64).reshape(1, -1)

    def predict(self, features: Mapping[str, float]) -> float:
        return float(self.scorer.predict(self.row(features))[0])


@dataclass(frozen=True, slots=True)
class _Table:
    """The routing table; immutable, replaced whole on a weight change."""

    stable: _Slot | None
    canaries: tuple[tuple[_Slot, float], ...]  #: (slot, cumulative upper bound of its cohort range)
    weights: Mapping[str, float]  #: canary version → weight


def _slot(m: RoutedModel) -> _Slot:
    names = tuple(m.scorer.feature_names)
    if not names:
        raise ValueError(f"model {m.version!r}: scorer has no feature_names")
    return _Slot(m.version, m.role, m.scorer, names, itemgetter(*names), m.interval)


def _check_weight(version: str, w: float) -> float:
    w = float(w)
    if not 0.0 <= w <= 1.0:  # also rejects NaN
        raise ValueError(f"canary {version!r}: weight must be in [0, 1], got {w}")
    return w


class ModelRouter:
    """Scores one decision with the stable model or a canary (by symbol cohort), plus every shadow."""

    def __init__(self, models: Sequence[RoutedModel]) -> None:
        versions = [m.version for m in models]
        dupes = sorted({v for v in versions if versions.count(v) > 1})
        if dupes:
            raise ValueError(f"model versions must be unique, repeated: {dupes}")
        bad = [f"{m.version}={m.role!r}" for m in models if m.role not in ROLES]
        if bad:
            raise ValueError(f"role must be one of {ROLES}, got {', '.join(bad)}")
        stables = [m for m in models if m.role == STABLE]
        if len(stables) > 1:
            raise ValueError(f"exactly one stable model allowed, got {[m.version for m in stables]}")
        self._versions = tuple(versions)
        self._stable = _slot(stables[0]) if stables else None
        self._canary_slots = tuple(_slot(m) for m in models if m.role == CANARY)
        self._shadows = tuple(_slot(m) for m in models if m.role == SHADOW)
        self._cohorts: dict[str, float] = {}
        self._table = self._build({m.version: _check_weight(m.version, m.weight) for m in models if m.role == CANARY})

    def _build(self, weights: Mapping[str, float]) -> _Table:
        total = math.fsum(weights.values())
        if total > 1.0 + _WEIGHT_TOL:
            raise ValueError(f"canary weights sum to {total:g} > 1: {dict(weights)}")
        upper = 0.0
        canaries = []
        for s in self._canary_slots:
            upper += weights[s.version]
            canaries.append((s, upper))
        return _Table(self._stable, tuple(canaries), dict(weights))

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Change canary weights (unnamed canaries keep theirs); takes effect with the next score.

        Only canary versions can be named: the stable model gets the rest and shadows have no weight.
        The new table is validated completely before it replaces the old one.
        """
        table = self._table
        unknown = sorted(set(weights) - set(table.weights))
        if unknown:
            raise ValueError(f"not canary versions of this router: {unknown} (canaries: {sorted(table.weights)})")
        merged = {**table.weights, **{v: _check_weight(v, w) for v, w in weights.items()}}
        self._table = self._build(merged)

    def versions(self) -> tuple[str, ...]:
        return self._versions

    def weights(self) -> dict[str, float]:
        """Version → share of symbols: canaries as set, stable the rest, shadows 0."""
        table = self._table
        canary_total = math.fsum(table.weights.values())
        out: dict[str, float] = {}
        for v in self._versions:
            if table.stable is not None and v == table.stable.version:
                out[v] = max(0.0, 1.0 - canary_total)
            else:
                out[v] = table.weights.get(v, 0.0)
        return out

    def cohort(self, symbol: str) -> float:
        """Stable position of ``symbol`` in [0, 1): the top 53 bits of an 8-byte blake2b(symbol) / 2**53
        (53 bits so the float is exact and never rounds up to 1.0)."""
        c = self._cohorts.get(symbol)
        if c is None:
            c = (int.from_bytes(blake2b(symbol.encode(), digest_size=8).digest(), "big") >> 11) / _TWO_53
            if len(self._cohorts) >= _COHORT_CACHE_MAX:
                self._cohorts.clear()
            self._cohorts[symbol] = c
        return c

    def route(self, symbol: str) -> tuple[str, str]:
        """(version, role) that would score ``symbol`` now."""
        slot = self._pick(self._table, symbol)
        return slot.version, slot.role

    def _pick(self, table: _Table, symbol: str) -> _Slot:
        if table.stable is None:
            raise ValueError(f"router has no stable model (versions: {list(self._versions)})")
        if table.canaries:
            u = self.cohort(symbol)
            for slot, upper in table.canaries:
                if u < upper:
                    return slot
        return table.stable

    def score(self, symbol: str, features: Mapping[str, float]) -> RoutedScore:
        """P(up) from the routed model (its exceptions propagate: the caller degrades) and every shadow's."""
        slot = self._pick(self._table, symbol)
        p = slot.predict(features)
        lo, hi = slot.interval.bounds(p) if slot.interval is not None else (math.nan, math.nan)
        if not self._shadows:
            return RoutedScore(p, slot.version, slot.role, (), "", lo, hi)
        shadow: list[tuple[str, float]] = []
        errors: list[str] = []
        for s in self._shadows:
            try:
                shadow.append((s.version, s.predict(features)))
            except Exception as exc:  # a shadow must never break the decision; recorded instead
                shadow.append((s.version, math.nan))
                errors.append(f"{s.version}: {type(exc).__name__}: {exc}")
        return RoutedScore(p, slot.version, slot.role, tuple(shadow), "; ".join(errors), lo, hi)
