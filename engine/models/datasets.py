"""Supervised datasets from engine bars: feature matrix, binary target, label intervals and signal economics.

Why here and not in a notebook: the feature columns a model is trained on must be computed by exactly the
code that computes them live. Every column of a feature set is either a column of the bar-feature kernel
(``compute_bar_features``, which runs online batch by batch with identical rows) or a stateless transform of
the current bar and the last *settled* funding rate, so :func:`feature_columns` works on a whole history
and on a single new bar alike. Nothing reads a bar after the decision point (tested).

A sample is a decision at a bar's close (``t0 = end_ts``). Its label is the triple-barrier (or fixed-horizon)
outcome over the next ``horizon_bars`` bars; ``t1`` is when the outcome was known, which is what the purged
splitters need. Barrier widths scale with a past-only volatility estimate, so the same multipliers fit calm
and volatile regimes, and the barrier sizes double as the up/down move sizes of the utility's E[return].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from ..events import EventArray
from ..features.bar_features import BarFeatureSpec, compute_bar_features
from ..features.clocks import bars_from_klines
from ..labels import fixed_horizon, triple_barrier

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_BPS: Final = 1e4
_NS_PER_HOUR: Final = 3_600 * 10**9
_NS_PER_DAY: Final = 24 * _NS_PER_HOUR
_FUNDING_PERIOD_NS: Final = 8 * _NS_PER_HOUR  # Binance USD-M settles at 00:00, 08:00 and 16:00 UTC


def _kernel(name: str) -> Callable[[EventArray, EventArray, FloatArray], FloatArray]:
    return lambda rows, bars, funding: np.asarray(rows[name], dtype=np.float64)


def _ret(slot: int) -> Callable[[EventArray, EventArray, FloatArray], FloatArray]:
    return lambda rows, bars, funding: np.asarray(rows["ret_bps"][:, slot], dtype=np.float64)


def _range_bps(rows: EventArray, bars: EventArray, funding: FloatArray) -> FloatArray:
    return np.asarray((bars["high"] - bars["low"]) / bars["close"] * _BPS)


def _close_location(rows: EventArray, bars: EventArray, funding: FloatArray) -> FloatArray:
    """Where the close sits in the bar's range, 0 (low) … 1 (high); NaN for a bar with no range."""
    span = bars["high"] - bars["low"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(span > 0, (bars["close"] - bars["low"]) / span, np.nan))


def _phase(end_ts: npt.NDArray[np.int64], period_ns: int) -> FloatArray:
    return np.asarray((end_ts % period_ns) / period_ns, dtype=np.float64)


def _hour_sin(rows: EventArray, bars: EventArray, funding: FloatArray) -> FloatArray:
    return np.asarray(np.sin(2 * np.pi * _phase(bars["end_ts"], _NS_PER_DAY)))


def _hour_cos(rows: EventArray, bars: EventArray, funding: FloatArray) -> FloatArray:
    return np.asarray(np.cos(2 * np.pi * _phase(bars["end_ts"], _NS_PER_DAY)))


def _hours_to_funding(rows: EventArray, bars: EventArray, funding: FloatArray) -> FloatArray:
    return np.asarray((1.0 - _phase(bars["end_ts"], _FUNDING_PERIOD_NS)) * 8.0)


def _funding_bps(rows: EventArray, bars: EventArray, funding: FloatArray) -> FloatArray:
    return np.asarray(funding * _BPS)


#: Every column a feature set may name, and how it is computed from (bar-feature rows, bars, settled funding).
FEATURE_COLUMNS: Final[Mapping[str, Callable[[EventArray, EventArray, FloatArray], FloatArray]]] = {
    "ret_1_bps": _ret(0),
    "ret_5_bps": _ret(1),
    "ret_15_bps": _ret(2),
    "ret_60_bps": _ret(3),
    **{
        name: _kernel(name)
        for name in (
            "rv",
            "rv_long",
            "rv_ratio",
            "rv_pct",
            "atr_bps",
            "bb_width",
            "bb_squeeze_turn",
            "trade_imbalance",
            "kyle_lambda",
            "amihud",
            "vpin",
            "signed_quote",
            "oi_delta_bps",
            "liq_intensity",
            "liq_imbalance",
        )
    },
    "range_bps": _range_bps,
    "close_location": _close_location,
    "hour_sin": _hour_sin,
    "hour_cos": _hour_cos,
    "hours_to_funding": _hours_to_funding,
    "funding_bps": _funding_bps,
}

#: Named feature sets. ``bars-v1`` is what exchange 1-minute klines without a taker split support: returns,
#: volatility regime, range shape, time of day and the funding cycle (order-flow columns would be all NaN).
FEATURE_SETS: Final[Mapping[str, tuple[str, ...]]] = {
    "bars-v1": (
        "ret_1_bps",
        "ret_5_bps",
        "ret_15_bps",
        "ret_60_bps",
        "rv",
        "rv_long",
        "rv_ratio",
        "rv_pct",
        "atr_bps",
        "bb_width",
        "bb_squeeze_turn",
        "range_bps",
        "close_location",
        "hour_sin",
        "hour_cos",
        "hours_to_funding",
        "funding_bps",
    ),
}


def resolve_feature_names(spec: str) -> tuple[str, ...]:
    """A feature-set name (``bars-v1``) or a comma-separated list of column names, validated."""
    if spec in FEATURE_SETS:
        return FEATURE_SETS[spec]
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    if not names:
        raise ValueError(f"no features in {spec!r}; name a feature set ({', '.join(FEATURE_SETS)}) or columns")
    unknown = [n for n in names if n not in FEATURE_COLUMNS]
    if unknown:
        raise ValueError(
            f"unknown feature {unknown[0]!r}; feature sets: {', '.join(FEATURE_SETS)}; "
            f"columns: {', '.join(FEATURE_COLUMNS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"feature {next(n for n in names if names.count(n) > 1)!r} is listed twice")
    return names


def settled_funding(end_ts: npt.NDArray[np.int64], funding: EventArray | None) -> FloatArray:
    """The last funding rate settled at or before each time (NaN before the first, or without a history).

    Funding events are MARK records from ``read_funding_csv`` (qty = rate). Only settled rates are used:
    the predicted rate of the running period is not in the history files, so using it would not be
    reproducible offline.
    """
    out = np.full(end_ts.shape[0], np.nan)
    if funding is None or funding.shape[0] == 0:
        return out
    order = np.argsort(funding["exchange_ts"], kind="stable")
    ts = funding["exchange_ts"][order]
    rate = funding["qty"][order]
    idx = np.searchsorted(ts, end_ts, side="right") - 1
    ok = idx >= 0
    out[ok] = rate[idx[ok]]
    return out


def feature_columns(rows: EventArray, bars: EventArray, funding: FloatArray, names: Sequence[str]) -> FloatArray:
    """The ``[n_bars, len(names)]`` float64 matrix of the named columns, in order (the model's input)."""
    out = np.empty((rows.shape[0], len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        try:
            compute = FEATURE_COLUMNS[name]
        except KeyError:
            raise ValueError(f"unknown feature {name!r}") from None
        out[:, j] = compute(rows, bars, funding)
    return out


@dataclass(frozen=True)
class LabelSpec:
    """How a decision at a bar close is labelled.

    ``kind``: ``triple-barrier`` (target = the upper barrier is hit first) or ``fixed-horizon`` (target =
    the return after ``horizon_bars`` exceeds ``dead_zone_mult``·σ). σ is the standard deviation of 1-bar
    log returns over the previous ``vol_window`` bars, scaled by √horizon_bars. Barriers sit at
    +``upper_mult``·σ and −``lower_mult``·σ.
    """

    kind: Literal["triple-barrier", "fixed-horizon"] = "triple-barrier"
    horizon_bars: int = 30
    upper_mult: float = 1.0
    lower_mult: float = 1.0
    vol_window: int = 60
    dead_zone_mult: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("triple-barrier", "fixed-horizon"):
            raise ValueError(f"label kind must be triple-barrier or fixed-horizon, got {self.kind!r}")
        if self.horizon_bars < 1 or self.vol_window < 2:
            raise ValueError("label horizon_bars must be ≥ 1 and vol_window ≥ 2")
        if not (self.upper_mult > 0 and self.lower_mult > 0 and self.dead_zone_mult >= 0):
            raise ValueError("label barrier multipliers must be > 0 and dead_zone_mult ≥ 0")


@dataclass(frozen=True)
class Dataset:
    """Samples sorted by decision time ``t0``; every array has one entry per sample.

    ``y``: binary target (1 = up outcome). ``label``: −1/0/+1 outcome. ``t1``: when the outcome was known.
    ``forward_ret_bps``: the long position's return at ``t1``. ``up_move_bps``/``down_move_bps``: the
    barrier sizes (what a long wins or loses at the barriers), used for E[return] in the utility.
    ``funding_rate``: the last settled rate at ``t0`` (0 where unknown, for costs). ``bar_index``: the
    sample's bar in its symbol's series (lineage and debugging).
    """

    features: FloatArray
    feature_names: tuple[str, ...]
    y: npt.NDArray[np.int8]
    label: npt.NDArray[np.int8]
    t0: IntArray
    t1: IntArray
    symbol: npt.NDArray[np.uint32]
    forward_ret_bps: FloatArray
    up_move_bps: FloatArray
    down_move_bps: FloatArray
    funding_rate: FloatArray
    bar_index: IntArray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: npt.ArrayLike) -> Dataset:
        """The samples at ``index`` (an index array or boolean mask), same feature columns."""
        idx = np.asarray(index)
        return replace(
            self,
            **{f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "feature_names"},
        )


def _past_sigma(log_ret: FloatArray, window: int) -> FloatArray:
    """Std of the last ``window`` 1-bar log returns ending at each bar (NaN until the window is full)."""
    out = np.full(log_ret.shape[0], np.nan)
    if log_ret.shape[0] >= window:
        view = np.lib.stride_tricks.sliding_window_view(log_ret, window)
        out[window - 1 :] = view.std(axis=1, ddof=1)
    return out


def _bar_ns(end_ts: IntArray) -> int:
    steps = np.diff(end_ts)
    if steps.shape[0] == 0 or np.any(steps <= 0):
        raise ValueError("bars must be strictly increasing in end_ts and at least two")
    return int(np.median(steps))


def symbol_samples(
    klines: EventArray,
    funding: EventArray | None,
    feature_names: Sequence[str],
    label: LabelSpec,
    *,
    bar_spec: BarFeatureSpec | None = None,
    stride: int = 1,
    warmup_bars: int | None = None,
) -> Dataset:
    """One symbol's samples from its klines (``KLINE_DTYPE``, time-ordered) and funding history.

    Samples start after ``warmup_bars`` (default: the bar kernel's longest window, so no row is scored on
    half-filled windows), every ``stride`` bars, and only where the label's whole horizon lies in the data.
    """
    if stride < 1:
        raise ValueError(f"stride must be ≥ 1, got {stride}")
    spec = bar_spec or BarFeatureSpec()
    if 1 not in spec.horizons[:1]:
        raise ValueError("the bar feature spec's first return horizon must be 1 bar (σ is built from it)")
    bars = bars_from_klines(klines)
    rows = compute_bar_features(bars, spec)
    end_ts = np.asarray(bars["end_ts"], dtype=np.int64)
    funding_rate = settled_funding(end_ts, funding)
    x = feature_columns(rows, bars, funding_rate, feature_names)
    close = np.asarray(bars["close"], dtype=np.float64)
    log_ret = np.asarray(rows["ret_bps"][:, 0], dtype=np.float64) / _BPS
    sigma = _past_sigma(np.nan_to_num(log_ret, nan=0.0), label.vol_window) * np.sqrt(label.horizon_bars)
    sigma[: label.vol_window] = np.nan  # the first return is NaN; don't trust a window that contains it
    horizon_ns = label.horizon_bars * _bar_ns(end_ts)
    first = spec.ring_size() if warmup_bars is None else warmup_bars
    starts = np.arange(max(first, label.vol_window), end_ts.shape[0], stride, dtype=np.int64)
    starts = starts[(end_ts[starts] + horizon_ns <= end_ts[-1]) & np.isfinite(sigma[starts]) & (sigma[starts] > 0)]
    s = sigma[starts]
    if label.kind == "triple-barrier":
        tb = triple_barrier(
            end_ts, close, starts, s, upper_mult=label.upper_mult, lower_mult=label.lower_mult, horizon_ns=horizon_ns
        )
        outcome, fwd, t1 = tb.label, tb.ret, tb.t1
        up, down = label.upper_mult * s, label.lower_mult * s
    else:
        outcome, fwd, t1 = fixed_horizon(
            end_ts, close, starts, s, horizon_ns=horizon_ns, dead_zone_mult=label.dead_zone_mult
        )
        up = down = s
    return Dataset(
        features=x[starts],
        feature_names=tuple(feature_names),
        y=(outcome == 1).astype(np.int8),
        label=outcome.astype(np.int8),
        t0=end_ts[starts],
        t1=np.asarray(t1, dtype=np.int64),
        symbol=np.asarray(bars["symbol"][starts], dtype=np.uint32),
        forward_ret_bps=np.asarray(fwd, dtype=np.float64) * _BPS,
        up_move_bps=np.asarray(up, dtype=np.float64) * _BPS,
        down_move_bps=np.asarray(down, dtype=np.float64) * _BPS,
        funding_rate=np.nan_to_num(funding_rate[starts], nan=0.0),
        bar_index=starts,
    )


def kline_dataset(
    klines: Mapping[int, EventArray],
    funding: Mapping[int, EventArray],
    feature_names: Sequence[str],
    label: LabelSpec,
    *,
    bar_spec: BarFeatureSpec | None = None,
    stride: int = 1,
    warmup_bars: int | None = None,
) -> Dataset:
    """Samples of several symbols pooled into one time-sorted dataset (ties by symbol id).

    Pooling lets one model learn from BTC and ETH; the purged splitters work on the pooled ``t0``/``t1``.
    """
    if not klines:
        raise ValueError("no kline series given")
    parts = [
        symbol_samples(
            klines[sid],
            funding.get(sid),
            feature_names,
            label,
            bar_spec=bar_spec,
            stride=stride,
            warmup_bars=warmup_bars,
        )
        for sid in sorted(klines)
    ]
    merged = Dataset(
        features=np.concatenate([p.features for p in parts]),
        feature_names=tuple(feature_names),
        **{
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in fields(Dataset)
            if f.name not in ("features", "feature_names")
        },
    )
    order = np.lexsort((merged.symbol, merged.t0))
    return merged.subset(order)
