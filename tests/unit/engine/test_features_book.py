"""Book features against a plain-Python reference, on small random books (hypothesis-driven shapes).

The reference recomputes every feature from its textbook definition, one top at a time, with Python
floats and numpy only where a library routine states the definition better (``np.polyfit`` for the depth
slope). It shares no code with the kernel. Inputs cover thin books (NaN levels), empty ticks near the
touch, unsynced runs, crossed tops, several interleaved symbols, and missing tick sizes.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.events import book_top_dtype
from tradeplane.engine.features import (
    BOOK_FEATURE_DTYPE,
    FEAT_AFTER_SKIP,
    FEAT_DEGRADED,
    FEAT_FIRST,
    BookFeatures,
    BookFeatureSpec,
    compute_book_features,
)

TICK = 0.5


def random_tops(seed: int, n: int, levels: int, n_symbols: int) -> np.ndarray:
    """Tops on a 0.5 grid with 1–3 tick gaps between levels, thin books, unsynced and crossed rows."""
    rng = np.random.default_rng(seed)
    tops = np.zeros(n, book_top_dtype(levels))
    tops["symbol"] = rng.integers(0, n_symbols, n)
    tops["exchange_ts"] = np.cumsum(rng.integers(1, 1000, n))
    tops["ingest_ts"] = tops["exchange_ts"] + 7
    tops["seq"] = np.arange(n)
    mid_ticks = 200 + np.cumsum(rng.integers(-2, 3, n))
    spread = rng.integers(1, 4, n)
    bid1 = mid_ticks - spread // 2
    bid = bid1[:, None] - np.cumsum(rng.integers(1, 4, (n, levels)), axis=1) + 1
    ask = (bid1 + spread)[:, None] + np.cumsum(rng.integers(1, 4, (n, levels)), axis=1) - 1
    bq = rng.choice(np.array([0.5, 1.0, 2.0, 3.5, 10.0]), (n, levels))
    aq = rng.choice(np.array([0.5, 1.0, 2.0, 3.5, 10.0]), (n, levels))
    bid_px = bid * TICK
    ask_px = ask * TICK
    cut = rng.integers(1, levels + 1, n)
    thin = rng.random(n) < 0.3
    lvl = np.arange(levels)[None, :]
    for px, q in ((bid_px, bq), (ask_px, aq)):
        missing = thin[:, None] & (lvl >= cut[:, None])
        px[missing] = np.nan
        q[missing] = np.nan
    tops["bid_px"] = bid_px
    tops["bid_qty"] = bq
    tops["ask_px"] = ask_px
    tops["ask_qty"] = aq
    tops["synced"] = rng.random(n) > 0.1
    crossed = rng.random(n) < 0.05
    tops["crossed"] = crossed
    tops["degraded"] = rng.random(n) < 0.1
    return tops


def _f(x: float) -> bool:
    return math.isfinite(x)


def _z(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def _ofi_side_bid(p: float, q: float, pp: float, pq: float) -> float:
    if not (_f(p) and _f(pp)):
        return 0.0
    out = 0.0
    if p >= pp:
        out += _z(q)
    if p <= pp:
        out -= _z(pq)
    return out


def _ofi_side_ask(p: float, q: float, pp: float, pq: float) -> float:
    if not (_f(p) and _f(pp)):
        return 0.0
    out = 0.0
    if p <= pp:
        out -= _z(q)
    if p >= pp:
        out += _z(pq)
    return out


def _slope(px: list[float], qty: list[float], mid: float) -> float:
    x: list[float] = []
    y: list[float] = []
    cum = 0.0
    for p, q in zip(px, qty, strict=True):
        if not (_f(p) and _f(q)) or q <= 0:
            break
        cum += p * q
        x.append(abs(p - mid) / mid * 1e4)
        y.append(cum)
    if len(x) < 2:
        return math.nan
    return float(np.polyfit(np.array(x), np.array(y), 1)[0])


def _void(px: list[float], qty: list[float], tick: float, w: int) -> float:
    if not tick > 0:
        return math.nan
    quoted = {round(abs(p - px[0]) / tick) for p, q in zip(px, qty, strict=True) if _f(p) and q > 0}
    return 1.0 - len([d for d in quoted if d < w]) / w


def reference(tops: np.ndarray, spec: BookFeatureSpec) -> tuple[list[dict[str, float]], list[int]]:
    n = spec.levels
    prev: dict[int, tuple[list[float], list[float], list[float], list[float], float]] = {}
    skipped: set[int] = set()
    rows: list[dict[str, float]] = []
    index: list[int] = []
    for j, t in enumerate(tops):
        s = int(t["symbol"])
        bp, bq, ap, aq = (list(map(float, t[f][:n])) for f in ("bid_px", "bid_qty", "ask_px", "ask_qty"))
        valid_touch = _f(bp[0]) and _f(ap[0]) and bp[0] < ap[0] and bq[0] > 0 and aq[0] > 0
        if not t["synced"] or t["crossed"] or not valid_touch:
            prev.pop(s, None)
            skipped.add(s)
            continue
        mid = (bp[0] + ap[0]) / 2
        micro = (bp[0] * aq[0] + ap[0] * bq[0]) / (bq[0] + aq[0])
        w = [spec.qi_decay**i for i in range(n)]
        flags = (FEAT_FIRST if s not in prev else 0) | (FEAT_AFTER_SKIP if s in skipped else 0)
        flags |= FEAT_DEGRADED if t["degraded"] else 0
        row = {
            "symbol": s,
            "flags": flags,
            "mid": mid,
            "microprice": micro,
            "spread_bps": (ap[0] - bp[0]) / mid * 1e4,
            "bid_depth1_quote": bp[0] * bq[0],
            "ask_depth1_quote": ap[0] * aq[0],
            "depth1_quote": bp[0] * bq[0] + ap[0] * aq[0],
            "qi1": (bq[0] - aq[0]) / (bq[0] + aq[0]),
            "qi_n": sum(w[i] * (_z(bq[i]) - _z(aq[i])) for i in range(n))
            / sum(w[i] * (_z(bq[i]) + _z(aq[i])) for i in range(n)),
            "bid_slope": _slope(bp, bq, mid),
            "ask_slope": _slope(ap, aq, mid),
            "bid_void": _void(bp, bq, spec.tick_sizes.get(s, math.nan), spec.void_ticks),
            "ask_void": _void(ap, aq, spec.tick_sizes.get(s, math.nan), spec.void_ticks),
        }
        if s in prev:
            pbp, pbq, pap, paq, pmicro = prev[s]
            per_level = [
                _ofi_side_bid(bp[i], bq[i], pbp[i], pbq[i]) + _ofi_side_ask(ap[i], aq[i], pap[i], paq[i])
                for i in range(n)
            ]
            row["ofi1"] = per_level[0]
            row["ofi_n"] = sum(per_level)
            row["dmicro_bps"] = (micro / pmicro - 1) * 1e4
        else:
            row["ofi1"] = row["ofi_n"] = row["dmicro_bps"] = math.nan
        prev[s] = (bp, bq, ap, aq, micro)
        skipped.discard(s)
        rows.append(row)
        index.append(j)
    return rows, index


def assert_matches(out: np.ndarray, index: np.ndarray, rows: list[dict[str, float]], ref_index: list[int]) -> None:
    assert index.tolist() == ref_index
    assert out.dtype == BOOK_FEATURE_DTYPE
    for r, ref in zip(out, rows, strict=True):
        for key, want in ref.items():
            got = r[key]
            if key in ("symbol", "flags"):
                assert int(got) == want, key
            elif math.isnan(want):
                assert math.isnan(got), (key, got)
            else:
                assert math.isclose(float(got), want, rel_tol=1e-9, abs_tol=1e-9), (key, float(got), want)


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 40),
    levels=st.integers(1, 6),
    n_symbols=st.integers(1, 3),
    decay=st.sampled_from([1.0, 0.5, 0.8]),
    data=st.data(),
)
def test_book_features_match_reference(
    seed: int, n: int, levels: int, n_symbols: int, decay: float, data: st.DataObject
) -> None:
    tops = random_tops(seed, n, levels, n_symbols)
    used = data.draw(st.integers(1, levels))
    spec = BookFeatureSpec(
        levels=used,
        qi_decay=decay,
        void_ticks=data.draw(st.integers(1, used)),
        tick_sizes={s: TICK for s in range(n_symbols) if s != 2},  # symbol 2 has no tick size: NaN voids
    )
    out, index = compute_book_features(tops, spec)
    rows, ref_index = reference(tops, spec)
    assert_matches(out, index, rows, ref_index)


def test_unsynced_tops_produce_no_rows_and_flag_the_next_one() -> None:
    tops = random_tops(7, 6, 3, 1)
    tops["synced"] = [1, 1, 0, 0, 1, 1]
    tops["crossed"] = 0
    tops["degraded"] = 0
    bf = BookFeatures(BookFeatureSpec(levels=3, void_ticks=3, tick_sizes={0: TICK}))
    out, index = bf.update(tops)
    assert index.tolist() == [0, 1, 4, 5]
    assert out["flags"].tolist() == [FEAT_FIRST, 0, FEAT_FIRST | FEAT_AFTER_SKIP, 0]
    assert math.isnan(out["ofi1"][2]) and math.isnan(out["dmicro_bps"][2])
    assert bf.skipped_unsynced == {0: 2}
    assert bf.skipped_crossed == {}


def test_crossed_top_is_skipped_and_counted() -> None:
    tops = random_tops(8, 3, 2, 1)
    tops["synced"] = 1
    tops["crossed"] = [0, 1, 0]
    bf = BookFeatures(BookFeatureSpec(levels=2, void_ticks=2))
    _out, index = bf.update(tops)
    assert index.tolist() == [0, 2]
    assert bf.skipped_crossed == {0: 1}


def test_ofi_worked_example() -> None:
    """Cont–Kukanov–Stoikov by hand: bid up a tick with 3 new, ask unchanged price with 2 → 1 lots."""
    tops = np.zeros(2, book_top_dtype(1))
    tops["synced"] = 1
    tops["bid_px"][:, 0] = [100.0, 100.5]
    tops["bid_qty"][:, 0] = [5.0, 3.0]
    tops["ask_px"][:, 0] = [101.0, 101.0]
    tops["ask_qty"][:, 0] = [2.0, 1.0]
    out, _ = compute_book_features(tops, BookFeatureSpec(levels=1, void_ticks=1))
    # bid: price rose → +q_now = +3; ask: same price → −q_now + q_prev = −1 + 2 = +1
    assert out["ofi1"][1] == 4.0
    assert out["microprice"][0] == (100.0 * 2 + 101.0 * 5) / 7
    assert out["qi1"][0] == (5 - 2) / 7


def test_near_touch_void_worked_example() -> None:
    tops = np.zeros(1, book_top_dtype(4))
    tops["synced"] = 1
    tops["bid_px"][0] = [100.0, 99.5, 98.0, 97.5]  # ticks 0, 1, 4, 5 from the touch (tick 0.5)
    tops["bid_qty"][0] = [1.0, 1.0, 1.0, 1.0]
    tops["ask_px"][0] = [100.5, 101.0, 101.5, 102.0]  # ticks 0..3: no void
    tops["ask_qty"][0] = [1.0, 1.0, 1.0, 1.0]
    out, _ = compute_book_features(tops, BookFeatureSpec(levels=4, void_ticks=4, tick_sizes={0: 0.5}))
    assert out["bid_void"][0] == 0.5  # of ticks 0..3 only 0 and 1 are quoted
    assert out["ask_void"][0] == 0.0


def test_spec_rejects_bad_values() -> None:
    for kwargs in ({"levels": 0}, {"qi_decay": 0.0}, {"void_ticks": 11}, {"tick_sizes": {0: 0.0}}):
        try:
            BookFeatureSpec(**kwargs)  # type: ignore[arg-type]
        except ValueError as e:
            assert "BookFeatureSpec" in str(e)
        else:
            raise AssertionError(f"{kwargs} accepted")
