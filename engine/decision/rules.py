"""Rules: named conditions on features that scale, or veto, an entry — data from the Strategy, never code.

A rule is ``when`` (conditions, all must hold) → effects (``size_mult``, ``tp_mult``, ``sl_mult`` or
``skip_entry``). The spec's conditions are compiled once per config revision into (feature, comparison
function, value) triples, the comparison being one of the standard library's ``operator`` functions looked up
from a fixed table keyed by :class:`Comparison`. Nothing from the spec is ever evaluated as code, so a
manifest cannot run anything: the worst a bad rule can do is fail validation.

Semantics (documented in docs/strategy.md):
- rules run in spec order; the effects of every fired rule multiply;
- a fired ``skip_entry`` rule short-circuits: later rules are not evaluated and its own multipliers are not
  applied (the entry is skipped anyway); ``skipped_by`` names it;
- a condition on a NaN or missing feature never holds — not even ``ne`` — because "unknown" must not switch
  behaviour on (IEEE ``nan != x`` is true, so this is checked explicitly);
- the products are clamped: ``size_mult`` to the sizing spec's [min, max] whitelist, ``tp_mult`` and
  ``sl_mult`` to [0.1, 10], so a stack of rules cannot produce an absurd position or a stop at the entry.
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from tradeplane.api.v1alpha1.strategy import Comparison, Rule

#: Spec comparison → function. The only way a rule condition turns into behaviour.
_COMPARE: Mapping[Comparison, Callable[[float, float], bool]] = {
    Comparison.LT: op.lt,
    Comparison.LE: op.le,
    Comparison.GT: op.gt,
    Comparison.GE: op.ge,
    Comparison.EQ: op.eq,
    Comparison.NE: op.ne,
}

#: Clamp of the take-profit and stop multipliers.
TP_SL_MIN = 0.1
TP_SL_MAX = 10.0


@dataclass(frozen=True)
class RuleOutcome:
    """What the rules did to one decision."""

    size_mult: float  #: product of the fired rules' size multipliers, clamped to [min_mult, max_mult]
    tp_mult: float  #: product of the fired take-profit multipliers, clamped to [0.1, 10]
    sl_mult: float  #: product of the fired stop multipliers, clamped to [0.1, 10]
    skip: bool  #: a skip_entry rule fired
    skipped_by: str  #: its name ("" when not skipped)
    fired: tuple[str, ...]  #: names of the rules that fired, in order (the skipping rule last)


@dataclass(frozen=True, slots=True)
class _Condition:
    feature: str
    compare: Callable[[float, float], bool]
    value: float


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    name: str
    when: tuple[_Condition, ...]
    size_mult: float
    tp_mult: float
    sl_mult: float
    skip_entry: bool


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


class RuleSet:
    """An ordered, compiled list of rules. Build with :meth:`from_spec`; immutable after that."""

    __slots__ = ("_max", "_min", "_rules", "features", "names")

    def __init__(self, rules: Sequence[_CompiledRule], *, min_mult: float, max_mult: float) -> None:
        if not 0.0 <= min_mult <= max_mult:
            raise ValueError(f"need 0 <= min_mult <= max_mult, got min_mult={min_mult} max_mult={max_mult}")
        self._rules = tuple(rules)
        self._min = float(min_mult)
        self._max = float(max_mult)
        self.names: tuple[str, ...] = tuple(r.name for r in self._rules)
        #: every feature a condition reads, first appearance first (the runtime must provide them)
        self.features: tuple[str, ...] = tuple(dict.fromkeys(c.feature for r in self._rules for c in r.when))

    @classmethod
    def from_spec(
        cls,
        rules: Sequence[Rule],
        *,
        min_mult: float,
        max_mult: float,
        known_features: Collection[str] | None = None,
    ) -> RuleSet:
        """Compile the spec's rules. With ``known_features``, a condition on any other feature is a
        ValueError naming ``rules[i].when[j].feature`` and the rule: a typo must fail when the config is
        compiled, not silently never fire. Rule names must be unique (they are the reason codes signals record)."""
        compiled: list[_CompiledRule] = []
        seen: set[str] = set()
        for i, rule in enumerate(rules):
            if rule.name in seen:
                raise ValueError(f"rules[{i}].name: duplicate rule name {rule.name!r}")
            seen.add(rule.name)
            conds: list[_Condition] = []
            for j, c in enumerate(rule.when):
                if known_features is not None and c.feature not in known_features:
                    raise ValueError(
                        f"rules[{i}].when[{j}].feature: unknown feature {c.feature!r} in rule {rule.name!r} "
                        f"(known: {', '.join(sorted(known_features))})"
                    )
                conds.append(_Condition(c.feature, _COMPARE[Comparison(c.op)], float(c.value)))
            compiled.append(
                _CompiledRule(
                    name=rule.name,
                    when=tuple(conds),
                    size_mult=float(rule.size_mult),
                    tp_mult=float(rule.tp_mult),
                    sl_mult=float(rule.sl_mult),
                    skip_entry=bool(rule.skip_entry),
                )
            )
        return cls(compiled, min_mult=min_mult, max_mult=max_mult)

    def __len__(self) -> int:
        return len(self._rules)

    def apply(self, features: Mapping[str, float]) -> RuleOutcome:
        """Evaluate the rules on one decision's features (missing features count as NaN)."""
        nan = float("nan")
        size = tp = sl = 1.0
        fired: list[str] = []
        for r in self._rules:
            for c in r.when:
                x = features.get(c.feature, nan)
                if x != x or not c.compare(x, c.value):  # x != x: NaN never fires a condition
                    break
            else:
                fired.append(r.name)
                if r.skip_entry:
                    return self._outcome(size, tp, sl, r.name, fired)
                size *= r.size_mult
                tp *= r.tp_mult
                sl *= r.sl_mult
        return self._outcome(size, tp, sl, "", fired)

    def _outcome(self, size: float, tp: float, sl: float, skipped_by: str, fired: list[str]) -> RuleOutcome:
        return RuleOutcome(
            size_mult=_clamp(size, self._min, self._max),
            tp_mult=_clamp(tp, TP_SL_MIN, TP_SL_MAX),
            sl_mult=_clamp(sl, TP_SL_MIN, TP_SL_MAX),
            skip=bool(skipped_by),
            skipped_by=skipped_by,
            fired=tuple(fired),
        )
