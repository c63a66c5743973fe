"""Route each decision's scoring between the ModelVersions of one family: stable, canaries, shadows.

Each canary has a share in [0, 1] and a **unit** (``kind``), the two kinds of canary step a ModelVersion
can ask for (``cohortPct`` / ``weightPct``):

- ``cohort`` — a share of *symbols*. The cohort of a symbol is a stable hash of its name in [0, 1)
  (blake2b, the same in every process and on every replica), and a symbol goes to a cohort canary when its
  cohort falls below the canary's cumulative share. One symbol's positions never alternate between two
  models' opinions, and a canary is judged on whole symbols; the price is that with few symbols the
  realized share is lumpy (one symbol is all or nothing).
- ``weight`` — a share of *decisions*. The unit is the pair (symbol, ``key``), where the caller's key
  names the decision (the pipeline passes the decision's exchange timestamp), hashed the same way under a
  different personalisation. Never a coin flip: the same events replayed route identically, bit for bit,
  in any process. With one symbol a 20 % step gives the canary ~20 % of its decisions.

Both units are stable (same unit → same model while the weights hold) and monotone (raising a canary's
share only adds units to it). Cohort canaries take their ranges of the symbol space first, in model order,
exactly as when cohorts were the only unit; weight canaries then divide the decisions of the symbols that
no cohort canary holds, their ranges scaled by 1 / (1 − the cohort canaries' total) so that each still
gets its own share of *all* decisions. A score without a key falls back to the symbol as the key (a
per-symbol split again: old callers keep working, and a weight canary still gets a stable stream).

Shadows score every decision and are recorded next to the signal, never acted on; a failing shadow is
recorded in ``error`` and never raised, because a candidate must not be able to stop the stable path.

Each model gets a row in its own column order (precomputed ``operator.itemgetter`` per model), so models
with different signatures can share a router; a feature the mapping lacks is passed as NaN, which LightGBM
and the exported graph treat as missing.

Weights and kinds are hot (:meth:`ModelRouter.set_weights`): the whole routing table is rebuilt and
replaced by one reference assignment, so a concurrent :meth:`ModelRouter.score` sees the old table or the
new one.
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
#: A canary's unit: share of symbols (the default, what a route without a kind means) or of decisions.
COHORT: Final = "cohort"
WEIGHT: Final = "weight"
KINDS: Final = (COHORT, WEIGHT)

_WEIGHT_TOL = 1e-9
_COHORT_CACHE_MAX = 4096
_TWO_53 = float(2**53)
#: blake2b personalisation of the decision hash: independent of the symbol cohort (unsalted blake2b)
_DECISION_PERSON: Final = b"tp-decision"

#: What names one decision for a ``weight`` canary (an exchange timestamp in ns, a request id).
DecisionKey = str | int


class Scorer(Protocol):
    """Anything that maps rows of features (in ``feature_names`` order) to P(up); OnnxScorer is one."""

    feature_names: tuple[str, ...]

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """2-D rows → p_up per row."""
        ...


@dataclass(frozen=True)
class RoutedModel:
    """One ModelVersion in the router. ``weight``: a canary's share (stable gets the rest; ignored for
    stable and shadow); ``kind``: what that share is of — ``cohort`` symbols or ``weight`` decisions."""

    version: str
    role: str
    weight: float
    scorer: Scorer
    interval: ProbabilityInterval | None = None  #: the artifact's calibration evidence; None → no interval
    kind: str = COHORT


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
    """The routing table; immutable, replaced whole on a weight or kind change."""

    stable: _Slot | None
    cohorts: tuple[tuple[_Slot, float], ...]  #: (slot, cumulative upper bound in the symbol cohort space)
    decisions: tuple[tuple[_Slot, float], ...]  #: (slot, scaled cumulative upper bound in the decision space)
    weights: Mapping[str, float]  #: canary version → share
    kinds: Mapping[str, str]  #: canary version → COHORT | WEIGHT


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


def _check_kind(version: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"canary {version!r}: kind must be one of {KINDS}, got {kind!r}")
    return str(kind)


def _unit(data: bytes, person: bytes = b"") -> float:
    """A stable position in [0, 1): the top 53 bits of an 8-byte blake2b / 2**53 (53 bits so the float is
    exact and never rounds up to 1.0)."""
    return (int.from_bytes(blake2b(data, digest_size=8, person=person).digest(), "big") >> 11) / _TWO_53


def decision_point(symbol: str, key: DecisionKey) -> float:
    """Stable position in [0, 1) of one decision (``symbol``, ``key``): where a ``weight`` canary's share
    is measured. Independent of the symbol's cohort (another blake2b personalisation)."""
    return _unit(f"{symbol}\x1f{key}".encode(), _DECISION_PERSON)


class ModelRouter:
    """Scores one decision with the stable model or a canary (by symbol cohort or by decision), plus every
    shadow."""

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
        canaries = [m for m in models if m.role == CANARY]
        self._table = self._build(
            {m.version: _check_weight(m.version, m.weight) for m in canaries},
            {m.version: _check_kind(m.version, m.kind) for m in canaries},
        )

    def _build(self, weights: Mapping[str, float], kinds: Mapping[str, str]) -> _Table:
        total = math.fsum(weights.values())
        if total > 1.0 + _WEIGHT_TOL:
            raise ValueError(f"canary weights sum to {total:g} > 1: {dict(weights)}")
        cohort_total = math.fsum(weights[s.version] for s in self._canary_slots if kinds[s.version] == COHORT)
        # weight canaries split what the cohort canaries leave: scaled so each gets its share of every decision
        rest = 1.0 - cohort_total
        scale = 1.0 / rest if rest > _WEIGHT_TOL else 0.0
        upper_c = upper_d = 0.0
        cohorts, decisions = [], []
        for s in self._canary_slots:
            if kinds[s.version] == COHORT:
                upper_c += weights[s.version]
                cohorts.append((s, upper_c))
            else:
                upper_d += weights[s.version]
                decisions.append((s, upper_d * scale))
        return _Table(self._stable, tuple(cohorts), tuple(decisions), dict(weights), dict(kinds))

    def set_weights(self, weights: Mapping[str, float], kinds: Mapping[str, str] | None = None) -> None:
        """Change canary weights and, with ``kinds``, their units (unnamed canaries keep theirs); takes
        effect with the next score.

        Only canary versions can be named: the stable model gets the rest and shadows have no weight.
        The new table is validated completely before it replaces the old one.
        """
        table = self._table
        kinds = kinds or {}
        unknown = sorted((set(weights) | set(kinds)) - set(table.weights))
        if unknown:
            raise ValueError(f"not canary versions of this router: {unknown} (canaries: {sorted(table.weights)})")
        merged = {**table.weights, **{v: _check_weight(v, w) for v, w in weights.items()}}
        merged_kinds = {**table.kinds, **{v: _check_kind(v, k) for v, k in kinds.items()}}
        self._table = self._build(merged, merged_kinds)

    def versions(self) -> tuple[str, ...]:
        return self._versions

    def weights(self) -> dict[str, float]:
        """Version → share: canaries as set (of symbols or of decisions, :meth:`kinds`), stable the rest,
        shadows 0."""
        table = self._table
        canary_total = math.fsum(table.weights.values())
        out: dict[str, float] = {}
        for v in self._versions:
            if table.stable is not None and v == table.stable.version:
                out[v] = max(0.0, 1.0 - canary_total)
            else:
                out[v] = table.weights.get(v, 0.0)
        return out

    def kinds(self) -> dict[str, str]:
        """Canary version → its unit, ``cohort`` (share of symbols) or ``weight`` (share of decisions)."""
        return dict(self._table.kinds)

    def cohort(self, symbol: str) -> float:
        """Stable position of ``symbol`` in [0, 1): the top 53 bits of an 8-byte blake2b(symbol) / 2**53
        (53 bits so the float is exact and never rounds up to 1.0)."""
        c = self._cohorts.get(symbol)
        if c is None:
            c = _unit(symbol.encode())
            if len(self._cohorts) >= _COHORT_CACHE_MAX:
                self._cohorts.clear()
            self._cohorts[symbol] = c
        return c

    def route(self, symbol: str, key: DecisionKey | None = None) -> tuple[str, str]:
        """(version, role) that would score the decision (``symbol``, ``key``) now."""
        slot = self._pick(self._table, symbol, key)
        return slot.version, slot.role

    def reaches(self, symbol: str) -> frozenset[str]:
        """The versions that may score some decision of ``symbol`` now: the cohort canary holding it, or
        the stable plus every weight canary with a share (what a per-symbol attribution must charge)."""
        table = self._table
        if table.stable is None:
            raise ValueError(f"router has no stable model (versions: {list(self._versions)})")
        u = self.cohort(symbol) if table.cohorts else 1.0
        for slot, upper in table.cohorts:
            if u < upper:
                return frozenset({slot.version})
        return frozenset(
            {table.stable.version} | {s.version for s, _ in table.decisions if table.weights[s.version] > 0}
        )

    def _pick(self, table: _Table, symbol: str, key: DecisionKey | None) -> _Slot:
        if table.stable is None:
            raise ValueError(f"router has no stable model (versions: {list(self._versions)})")
        if table.cohorts:
            u = self.cohort(symbol)
            for slot, upper in table.cohorts:
                if u < upper:
                    return slot
        if table.decisions:
            d = decision_point(symbol, symbol if key is None else key)
            for slot, upper in table.decisions:
                if d < upper:
                    return slot
        return table.stable

    def score(self, symbol: str, features: Mapping[str, float], key: DecisionKey | None = None) -> RoutedScore:
        """P(up) from the routed model (its exceptions propagate: the caller degrades) and every shadow's.

        ``key`` names the decision for ``weight`` canaries (deterministic: the pipeline passes the
        decision's exchange timestamp); None → the symbol."""
        slot = self._pick(self._table, symbol, key)
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
