"""The feature engine: one state object fed micro-batch by micro-batch (the online path).

Why one object: a live workload receives an event batch, applies it to the books (``BookSet.apply``) and
needs every feature row that batch produces — per-top book features, the bars each clock closed, and the
rolling features of those bars — before it decides. :class:`FeatureEngine` holds the state of all of them
and runs one numba kernel per component per batch (a handful of calls, never a loop over events in
Python). The offline path (:func:`tradeplane.engine.features.batch.compute_features`) is the same engine
fed a whole day in one call; ``tests/unit/engine/test_features_parity.py`` proves the two agree when a real
stream is cut into random micro-batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..events import EventArray
from .bar_features import BarFeatures, BarFeatureSpec
from .book_features import BookFeatures, BookFeatureSpec
from .clocks import BarClock, ClockSpec, Observer
from .schema import BAR_DTYPE, BAR_FEATURE_DTYPE

_NS_PER_S = 1_000_000_000
# shared zero-length results (never written: nothing can be stored in an empty array)
_NO_BARS = np.zeros(0, BAR_DTYPE)
_NO_BAR_FEATURES = np.zeros(0, BAR_FEATURE_DTYPE)

#: Default clocks: 1 s and 1 min time bars of the mid, and 1M-quote volume buckets capped at one minute.
DEFAULT_CLOCKS: tuple[ClockSpec, ...] = (
    ClockSpec.time("1s", _NS_PER_S, price="mid"),
    ClockSpec.time("1m", 60 * _NS_PER_S, price="mid"),
    ClockSpec.volume("vol1m", 1_000_000.0, cap_ns=60 * _NS_PER_S, price="mid"),
)


@dataclass(frozen=True)
class FeatureSpec:
    """Everything the engine computes: book features, the clocks, and the bar-feature windows.

    ``bars`` applies to every clock; ``bar_overrides`` replaces it for the clocks it names (windows are in
    bars, so a 1 s clock and a 1 min clock usually want different ones).
    """

    book: BookFeatureSpec = field(default_factory=BookFeatureSpec)
    clocks: tuple[ClockSpec, ...] = DEFAULT_CLOCKS
    bars: BarFeatureSpec = field(default_factory=BarFeatureSpec)
    bar_overrides: Mapping[str, BarFeatureSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [c.name for c in self.clocks]
        if len(set(names)) != len(names):
            raise ValueError(f"FeatureSpec.clocks: clock names must be unique, got {names}")
        unknown = sorted(set(self.bar_overrides) - set(names))
        if unknown:
            raise ValueError(f"FeatureSpec.bar_overrides names unknown clocks {unknown}; clocks are {names}")

    def bar_spec(self, clock: str) -> BarFeatureSpec:
        """The bar-feature windows used for ``clock``."""
        return self.bar_overrides.get(clock, self.bars)


@dataclass(frozen=True)
class FeatureBatch:
    """Rows produced by one batch.

    ``book``: ``BOOK_FEATURE_DTYPE`` rows, one per valid top; ``book_top_index[i]`` is the index in this
    batch's tops of row ``i`` (tops absent from it were not valid). ``bars`` / ``bar_features``: per clock
    name, the bars closed by this batch (``BAR_DTYPE``) and their feature rows (``BAR_FEATURE_DTYPE``),
    aligned row for row.
    """

    book: EventArray
    book_top_index: npt.NDArray[np.int64]
    bars: dict[str, EventArray]
    bar_features: dict[str, EventArray]


class TopsBatch(Protocol):
    """What the engine needs from a book batch (``engine.book.BookBatch`` has it)."""

    @property
    def tops(self) -> EventArray: ...

    @property
    def top_event_index(self) -> npt.NDArray[np.int64]: ...


class FeatureEngine:
    """Online feature state over any number of symbols; see the module docstring."""

    def __init__(self, spec: FeatureSpec | None = None) -> None:
        self.spec = spec or FeatureSpec()
        self.book = BookFeatures(self.spec.book)
        self.clocks = {c.name: BarClock(c) for c in self.spec.clocks}
        self.bar_state = {c.name: BarFeatures(self.spec.bar_spec(c.name)) for c in self.spec.clocks}
        # one observation pass serves every clock; each clock still filters by its own trade kinds
        self._observer = Observer(tuple(sorted({k for c in self.spec.clocks for k in c.trade_kinds})))

    def update(
        self,
        events: EventArray,
        tops: EventArray | None = None,
        top_event_index: npt.NDArray[np.int64] | None = None,
    ) -> FeatureBatch:
        """Feed one batch: ``events`` and, when there is a book, the tops it produced for them.

        ``top_event_index[j]`` is the index in ``events`` after which top ``j`` applies (ascending), as
        ``BookSet.apply`` returns it. Without tops only trade-priced clocks and event features have data.
        """
        if (tops is None) != (top_event_index is None):
            raise ValueError("tops and top_event_index must be given together")
        rows, index = self.book.update(tops)
        obs = self._observer.observe(events, tops, top_event_index)
        bars: dict[str, EventArray] = {}
        feats: dict[str, EventArray] = {}
        for name, clock in self.clocks.items():
            # no observation, no state change: most single events of a live feed (depth levels) stop here
            b = clock.update_observations(obs) if obs.shape[0] else _NO_BARS
            bars[name] = b
            feats[name] = self.bar_state[name].update(b) if b.shape[0] else _NO_BAR_FEATURES
        return FeatureBatch(rows, index, bars, feats)

    def update_book_batch(self, events: EventArray, batch: TopsBatch) -> FeatureBatch:
        """:meth:`update` with the tops of a ``BookBatch`` produced from ``events``."""
        return self.update(events, batch.tops, batch.top_event_index)
