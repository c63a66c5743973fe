"""Read one analysis window from a store: the candidate's and the stable's decisions as rollout Samples.

Why plain SELECTs and numpy joins: the same SQL must run on chDB and on the ClickHouse 18.16 server (no
ASOF JOIN, no window functions, no DateTime64 there), so every filter is on the Int64 ``*_ts`` columns and
the label join (decision → book top at t and t + horizon) is a ``searchsorted`` per market in
:mod:`.mids`.

What each Sample holds (docs/rollouts.md, "Data: what the analysis reads"):

- **rows**: signals with ``exchange_ts`` in ``[start_ns, end_ns)`` (optionally one ``run_id`` and some
  strategies) whose ``model_version`` is the version (canary, stable); a candidate with no routed rows in the
  window is read as a **shadow**: the stable's rows that carry it in ``shadow_versions``, with its
  ``shadow_p_up`` (the stable Sample is then the same rows: paired). Rows with a NaN score are left out.
- **label**: sign of the mid move from ``exchange_ts`` to ``exchange_ts + horizon`` (:mod:`.mids`), mids
  from ``book_top`` (bid/ask) of the signal's market, never later than ``end_ns``; NaN until matured.
- **acted**: ``decision != 'skip'`` (for a shadow: the stable's decision on that row was an entry — "it would
  have been acted on"); **side**: the entry's direction, for a shadow the direction of its own p_up.
- **latency_ms**: the row's ``latency_ns`` (for a shadow: the whole decision's, the shadow's share is not
  measured separately).
- **pnl / risk**: mark-to-market of each acted decision with a matured label, per unit notional:
  ``side × (mid(t+h) − mid(t)) / mid(t) − cost_bps / 10⁴``, risk 1 per decision (so PnL per risk is the mean
  net return per acted decision). Needs no fills, so it works in paper, shadow and for a 1 % canary alike,
  and it judges the model's calls rather than the strategy's sizing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ...api.v1alpha1.strategy import market_data_venue
from ...engine.rollout import Sample
from ..store.base import Columns, Store
from .mids import Market, MidSeries

FloatArray = npt.NDArray[np.float64]

#: How far before the window the book tops are read, so the first decisions have a mid at t.
LOOKBACK_NS: Final = 60 * 1_000_000_000
_NAME: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,253}")
_SIGNAL_COLUMNS: Final = (
    "exchange_ts, signal_id, venue, symbol, p_up, decision, model_version, shadow_versions, shadow_p_up, "
    "latency_ns, cost_bps"
)


def _lit(value: str) -> str:
    """A quoted SQL string literal of a name; anything but a plain name is refused (no injection)."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"not a valid name for a query: {value!r}")
    return f"'{value}'"


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(_lit(v) for v in values)})"


def read_signals(
    store: Store,
    *,
    versions: Sequence[str],
    start_ns: int,
    end_ns: int,
    strategies: Sequence[str] | None = None,
    run_id: str | None = None,
) -> Columns:
    """Signals in ``[start_ns, end_ns)`` routed to one of ``versions`` or carrying one as a shadow."""
    where = [f"exchange_ts >= {int(start_ns)}", f"exchange_ts < {int(end_ns)}"]
    if run_id is not None:
        where.append(f"run_id = {_lit(run_id)}" if run_id else "run_id = ''")
    if strategies is not None:
        if not strategies:
            where.append("0")
        else:
            where.append(_in("strategy", strategies))
    who = [_in("model_version", versions), *(f"has(shadow_versions, {_lit(v)})" for v in versions)]
    where.append(f"({' OR '.join(who)})")
    sql = f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE {' AND '.join(where)} ORDER BY exchange_ts, signal_id"
    return store.query(sql)


def read_mids(store: Store, markets: Sequence[Market], start_ns: int, end_ns: int) -> MidSeries:
    """Mids of ``markets`` from ``book_top`` with ``exchange_ts`` in ``[start_ns, end_ns]``."""
    if not markets:
        return MidSeries({})
    venues = sorted({v for v, _ in markets})
    symbols = sorted({s for _, s in markets})
    sql = (
        "SELECT venue, symbol, exchange_ts, bid_px, ask_px FROM book_top "
        f"WHERE exchange_ts >= {int(start_ns)} AND exchange_ts <= {int(end_ns)} "
        f"AND {_in('venue', venues)} AND {_in('symbol', symbols)} ORDER BY venue, symbol, exchange_ts"
    )
    cols = store.query(sql)
    if not cols or cols["venue"].shape[0] == 0:
        return MidSeries({})
    return MidSeries.from_columns(cols["venue"], cols["symbol"], cols["exchange_ts"], cols["bid_px"], cols["ask_px"])


def _strs(values: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    return np.asarray([str(v) for v in values.tolist()], dtype=str) if values.shape[0] else np.array([], dtype=str)


def _markets(venue: npt.NDArray[np.str_], symbol: npt.NDArray[np.str_]) -> list[Market]:
    """Each row's market as ``book_top`` names it (a paper venue trades on the USD-M feed)."""
    return [(market_data_venue(v), s) for v, s in zip(venue.tolist(), symbol.tolist(), strict=True)]


def label_rows(
    mids: MidSeries, markets: Sequence[Market], t: npt.NDArray[np.int64], horizon_ns: int, until_ns: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(mid at t, mid at t + h, label) per row, joined market by market."""
    n = t.shape[0]
    m0, m1, label = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    keys = np.asarray([f"{v}|{s}" for v, s in markets], dtype=str) if n else np.array([], dtype=str)
    for key in np.unique(keys).tolist():
        rows = keys == key
        venue, symbol = str(key).split("|", 1)
        a, b, c = mids.labels((venue, symbol), t[rows], horizon_ns, until_ns=until_ns)
        m0[rows], m1[rows], label[rows] = a, b, c
    return m0, m1, label


def _sample(
    p: FloatArray,
    label: FloatArray,
    acted: npt.NDArray[np.bool_],
    side: FloatArray,
    latency_ns: npt.NDArray[np.int64],
    m0: FloatArray,
    m1: FloatArray,
    cost_bps: FloatArray,
) -> Sample:
    scored = acted & np.isfinite(label) & np.isfinite(m0) & np.isfinite(m1) & (m0 > 0)
    pnl: FloatArray | None = None
    risk: FloatArray | None = None
    if scored.any():
        cost = np.where(np.isfinite(cost_bps[scored]), cost_bps[scored], 0.0)
        pnl = side[scored] * (m1[scored] - m0[scored]) / m0[scored] - cost / 10_000.0
        risk = np.ones(pnl.shape[0])
    return Sample(
        p_up=p,
        label=label,
        acted=acted,
        latency_ms=np.maximum(latency_ns.astype(np.float64), 0.0) / 1e6,
        pnl=pnl,
        risk=risk,
        side=side,
    )


def _decision_side(decision: npt.NDArray[np.str_], p: FloatArray) -> FloatArray:
    """+1 for enter-long, −1 for enter-short, else the direction p_up points to (≥ ½ → long)."""
    from_p = np.where(p >= 0.5, 1.0, -1.0)
    return np.where(decision == "enter-long", 1.0, np.where(decision == "enter-short", -1.0, from_p))


def _shadow_scores(versions: npt.NDArray[Any], scores: npt.NDArray[Any], candidate: str) -> FloatArray:
    """The candidate's shadow p_up per row (NaN where it did not score)."""
    out = np.full(versions.shape[0], np.nan)
    for i, (vs, ps) in enumerate(zip(versions.tolist(), scores.tolist(), strict=True)):
        for v, p in zip(vs, ps, strict=False):
            if v == candidate:
                out[i] = float(p)
                break
    return out


def read_window(
    store: Store,
    *,
    candidate: str,
    stable: str,
    start_ns: int,
    end_ns: int,
    horizon_ns: int,
    strategies: Sequence[str] | None = None,
    run_id: str | None = None,
    mids: MidSeries | None = None,
) -> tuple[Sample, Sample]:
    """(candidate, stable) Samples over the signals with ``exchange_ts`` in ``[start_ns, end_ns)``; see the
    module docstring for every column. ``mids``: the book tops to label with (the local run's own); None →
    ``book_top`` of ``store`` from ``start_ns − LOOKBACK_NS`` to ``end_ns``."""
    if horizon_ns <= 0:
        raise ValueError(f"horizon_ns must be > 0, got {horizon_ns}")
    if end_ns < start_ns:
        raise ValueError(f"end_ns {end_ns} is before start_ns {start_ns}")
    cols = read_signals(
        store, versions=[candidate, stable], start_ns=start_ns, end_ns=end_ns, strategies=strategies, run_id=run_id
    )
    n = cols["exchange_ts"].shape[0] if cols else 0
    if n == 0:
        empty = np.zeros(0)
        s = Sample(empty, empty, np.zeros(0, bool), empty)
        return s, s
    t = cols["exchange_ts"].astype(np.int64)
    version = _strs(cols["model_version"])
    decision = _strs(cols["decision"])
    p = cols["p_up"].astype(np.float64)
    markets = _markets(_strs(cols["venue"]), _strs(cols["symbol"]))
    if mids is None:
        mids = read_mids(store, sorted(set(markets)), start_ns - LOOKBACK_NS, end_ns)
    m0, m1, label = label_rows(mids, markets, t, horizon_ns, end_ns)
    latency = cols["latency_ns"].astype(np.int64)
    cost = cols["cost_bps"].astype(np.float64)
    acted = decision != "skip"
    valid = np.isfinite(p) & (p >= 0) & (p <= 1)

    def take(rows: npt.NDArray[np.bool_], score: FloatArray, side: FloatArray) -> Sample:
        return _sample(score[rows], label[rows], acted[rows], side[rows], latency[rows], m0[rows], m1[rows], cost[rows])

    stable_rows = (version == stable) & valid
    routed = (version == candidate) & valid
    if routed.any():  # canary (or a stable version judged against another)
        return take(routed, p, _decision_side(decision, p)), take(stable_rows, p, _decision_side(decision, p))
    shadow_p = _shadow_scores(cols["shadow_versions"], cols["shadow_p_up"], candidate)
    shadow_rows = stable_rows & np.isfinite(shadow_p) & (shadow_p >= 0) & (shadow_p <= 1)
    shadow_side = np.where(shadow_p >= 0.5, 1.0, -1.0)
    return take(shadow_rows, shadow_p, shadow_side), take(shadow_rows, p, _decision_side(decision, p))
