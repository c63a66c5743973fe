"""The online slippage fit (engine/runtime/slippage.py) against an independent computation on a real capture.

The reference is a plain Python loop over the same trades and book tops: the last top received before each
trade gives the mid, consecutive trades with one exchange time and taker side form one taker order (running
sums, as a loop adds them), and ``np.quantile`` of each notional bucket gives the table. The fitter gets the
same data cut into micro-batches (cuts inside taker orders included) and must agree exactly.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from tradeplane.api.v1alpha1.riskbudget import RiskBudgetSpec
from tradeplane.api.v1alpha1.strategy import StrategySpec
from tradeplane.engine.book import BookSet
from tradeplane.engine.decision.pipeline import decide
from tradeplane.engine.decision.types import QUALITY_SLIPPAGE_PROXY
from tradeplane.engine.events import AGG_TRADE, BUY, KIND_MASK, SELL, TRADE, SymbolTable, book_top_dtype, empty_events
from tradeplane.engine.replay import read_capture
from tradeplane.engine.risk.config import RiskConfig
from tradeplane.engine.risk.engine import RiskEngine
from tradeplane.engine.runtime.desk import DeskRuntime
from tradeplane.engine.runtime.instruments import instrument_table
from tradeplane.engine.runtime.slippage import SlippageFitConfig, SlippageFitter
from tradeplane.engine.runtime.strategy import StrategyRuntime

REPO = Path(__file__).resolve().parents[4]
_CAPTURE = "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz"
_N_EVENTS = 300_000  #: about the first three minutes of the capture: ~10k trades, ~2.6k taker orders
_S = 1_000_000_000
_CFG = SlippageFitConfig(capacity=1500, refit_every=1, min_samples=40)


@cache
def _market(shared: str) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
    events = read_capture(Path(shared) / _CAPTURE, SymbolTable()).events[:_N_EVENTS]
    return events, BookSet().apply(events).tops


@pytest.fixture(scope="module")
def market(shared_dir: Path) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
    return _market(str(shared_dir))


def reference_samples(events: npt.NDArray[np.void], tops: npt.NDArray[np.void],
                      cfg: SlippageFitConfig) -> tuple[list[float], list[float]]:  # fmt: skip
    """(notional, slippage bps) of every complete taker order, by a loop over trades and tops."""
    top_ts = tops["ingest_ts"].tolist()
    mids = []
    for r in tops:
        bid, ask = float(r["bid_px"][0]), float(r["ask_px"][0])
        ok = r["synced"] and not r["crossed"] and bid > 0 and ask > 0
        mids.append(0.5 * (bid + ask) if ok else math.nan)
    notional: list[float] = []
    slippage: list[float] = []
    j = -1
    order: list[float] | None = None  # [exchange_ts, side, Σqty, Σpx·qty, mid]
    for kind, arrival, ts, px, qty in zip(events["kind"].tolist(), events["ingest_ts"].tolist(),
                                          events["exchange_ts"].tolist(), events["px"].tolist(),
                                          events["qty"].tolist(), strict=True):  # fmt: skip
        if kind & KIND_MASK not in (TRADE, AGG_TRADE):
            continue
        side = 1.0 if kind & BUY else -1.0 if kind & SELL else 0.0
        if side == 0.0 or not (px > 0 and qty > 0):
            continue
        while j + 1 < len(top_ts) and top_ts[j + 1] < arrival:
            j += 1
        mid = mids[j] if j >= 0 and arrival - top_ts[j] <= cfg.max_mid_age_ns else math.nan
        if order is not None and order[0] == ts and order[1] == side:
            order[2] += qty
            order[3] += px * qty
            continue
        if order is not None:
            _close(order, notional, slippage)
        order = [ts, side, 0.0 + qty, 0.0 + px * qty, mid]
    return notional, slippage  # the last order is still open: it may go on


def _close(order: list[float], notional: list[float], slippage: list[float]) -> None:
    _, side, q, v, mid = order
    s = side * (v / q - mid) / mid * 1e4
    if math.isfinite(s):
        notional.append(v)
        slippage.append(s)


def reference_curve(notional: list[float], slippage: list[float], cfg: SlippageFitConfig, q: float) -> list[float]:
    """np.quantile per bucket of the last ``capacity`` samples; NaN below the trusted count."""
    buckets: list[list[float]] = [[] for _ in cfg.edges_usdt]
    for n, s in zip(notional[-cfg.capacity :], slippage[-cfg.capacity :], strict=True):
        buckets[bisect_right(cfg.edges_usdt, n) - 1].append(s)
    need = cfg.trusted_count(q)
    return [float(np.quantile(b, q)) if len(b) >= need else math.nan for b in buckets]


def feed(fitter: SlippageFitter, events: npt.NDArray[np.void], tops: npt.NDArray[np.void], cuts: npt.ArrayLike) -> None:
    """Feed in micro-batches ending at the local times ``cuts`` (a batch holds what arrived in (prev, cut])."""
    bounds = np.append(np.asarray(cuts, dtype=np.int64), np.iinfo(np.int64).max)
    e = np.searchsorted(events["ingest_ts"], bounds, "right")
    t = np.searchsorted(tops["ingest_ts"], bounds, "right")
    e0 = t0 = 0
    for e1, t1 in zip(e.tolist(), t.tolist(), strict=True):
        fitter.update(events[e0:e1], tops[t0:t1])
        e0, t0 = e1, t1


def random_cuts(events: npt.NDArray[np.void], n: int, seed: int) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(events["ingest_ts"], size=n, replace=False))


def _same(a: object, b: object) -> bool:
    """Equal element for element, NaN equal to NaN (bit-for-bit floats otherwise)."""
    return np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), equal_nan=True)


def test_online_fit_equals_a_plain_loop_on_a_real_capture(market: tuple[npt.NDArray[np.void], ...]) -> None:
    events, tops = market
    notional, slippage = reference_samples(events, tops, _CFG)
    assert len(notional) > _CFG.capacity  # the ring wrapped
    fitter = SlippageFitter(1, _CFG)
    cuts = random_cuts(events, 3_000, seed=1)
    feed(fitter, events, tops, cuts)
    # some batch boundary fell inside a taker order (several trades, one exchange time and side)
    trades = events[np.isin(events["kind"] & KIND_MASK, (TRADE, AGG_TRADE))]
    cut_at = np.searchsorted(trades["ingest_ts"], cuts, "right")
    inner = cut_at[(cut_at > 0) & (cut_at < trades.shape[0])]
    assert np.any(trades["exchange_ts"][inner] == trades["exchange_ts"][inner - 1])
    fitter.process()  # the batches still waiting, and a fit of everything
    fitter.refit(0)
    got_n, got_s = fitter.samples(0)
    assert got_n.tolist() == notional[-_CFG.capacity :]
    assert got_s.tolist() == slippage[-_CFG.capacity :]
    for q in (0.5, 0.75, 0.9, 0.975, 0.333):
        edges, bps = fitter.curve(0, q)
        assert edges == _CFG.edges_usdt
        ref = reference_curve(notional, slippage, _CFG, q)
        assert _same(bps, ref), (q, bps, ref)
        assert sum(math.isfinite(x) for x in bps) >= 3  # the test compares real numbers, not NaN to NaN
    # the low buckets of a BTC day: most orders pay the half spread (0.1 / 60 000 / 2 ≈ 0.008 bps)
    assert 0.0 < fitter.curve(0, 0.5)[1][1] < 0.05


def test_the_tables_do_not_depend_on_where_batches_are_cut(market: tuple[npt.NDArray[np.void], ...]) -> None:
    events, tops = market
    curves = []
    for seed, n in ((2, 500), (3, 20_000), (2, 500)):
        fitter = SlippageFitter(1, _CFG)
        feed(fitter, events, tops, random_cuts(events, n, seed))
        fitter.process()
        fitter.refit(0)
        curves.append((fitter.samples(0), [fitter.curve(0, q) for q in (0.5, 0.9)]))
    for (n, s), c in curves[1:]:
        assert _same(n, curves[0][0][0]) and _same(s, curves[0][0][1])
        assert all(_same(a[1], b[1]) for a, b in zip(c, curves[0][1], strict=True))


def test_refits_are_lazy_and_deterministic(market: tuple[npt.NDArray[np.void], ...]) -> None:
    """Refit every N samples or T seconds of exchange time; the same batches give the same fits, in the same
    places (what the backtest–live parity of the desk relies on)."""
    events, tops = market
    cfg = SlippageFitConfig(capacity=1500, refit_every=400, refit_after_ns=20 * _S, min_samples=40)
    cuts = random_cuts(events, 2_000, seed=4)
    runs = []
    for _ in range(2):
        fitter = SlippageFitter(1, cfg)
        seen = []
        bounds = np.searchsorted(events["ingest_ts"], cuts, "right")
        tb = np.searchsorted(tops["ingest_ts"], cuts, "right")
        e0 = t0 = 0
        for e1, t1 in zip(bounds.tolist(), tb.tolist(), strict=True):
            fitter.update(events[e0:e1], tops[t0:t1])
            seen.append((fitter.fits, fitter.curve(0, 0.75)[1]))
            e0, t0 = e1, t1
        runs.append(seen)
    assert _same([f for f, _ in runs[0]], [f for f, _ in runs[1]])
    assert all(_same(a, b) for (_, a), (_, b) in zip(runs[0], runs[1], strict=True))
    n_samples = len(reference_samples(events, tops, cfg)[0])
    span_s = (int(events["exchange_ts"][-1]) - int(events["exchange_ts"][0])) / _S
    assert 1 < fitter.fits <= n_samples // cfg.refit_every + span_s // 20 + 1
    # between fits the table does not move
    changes = sum(1 for a, b in zip(runs[0], runs[0][1:], strict=False) if not _same(a[1], b[1]))
    assert changes <= fitter.fits


def test_the_desk_hands_the_decision_the_fit_at_the_strategy_quantile(
    market: tuple[npt.NDArray[np.void], ...],
) -> None:
    """Wiring: MarketView feeds the fitter, DeskRuntime._state puts the curve at the strategy's own
    slippageQuantile (examples/21: 0.75) into MarketState, and the decision charges that bucket's value."""
    events, tops = market
    raw = yaml.safe_load((REPO / "examples" / "21-strategy-btc-usdm.yaml").read_text())["spec"]
    raw["decision"] |= {"tau": 0.5, "kappa": 0.0}
    raw["gates"] |= {"minTop1DepthUsdt": 0}
    spec = StrategySpec.model_validate(raw)
    budget = RiskBudgetSpec.model_validate(
        yaml.safe_load((REPO / "examples" / "00-riskbudget.yaml").read_text())["spec"]
    )
    instruments = instrument_table([("binance-usdm", "BTCUSDT")])
    strategy = StrategyRuntime.build("usdm-btc", spec, instruments, None)
    risk = RiskEngine(strategy.budget, RiskConfig.from_spec(budget), initial_equity=10_000.0)
    desk = DeskRuntime([strategy], {strategy.budget: risk}, instruments)
    cuts = np.arange(int(events["ingest_ts"][0]), int(events["ingest_ts"][-1]), 100_000_000)  # 100 ms batches
    e = np.searchsorted(events["ingest_ts"], cuts, "right")
    t = np.searchsorted(tops["ingest_ts"], cuts, "right")
    for e0, e1, t0, t1 in zip(e[:-1].tolist(), e[1:].tolist(), t[:-1].tolist(), t[1:].tolist(), strict=True):
        desk.view.update(events[e0:e1], tops[t0:t1])
    assert desk.view.slippage.fits > 1
    now = int(cuts[-1])
    state = desk._state(strategy, instruments[0], now)
    q = strategy.config.slippage_quantile
    assert q == 0.75
    assert (state.slippage_edges_usdt, state.slippage_bps) == desk.view.slippage.curve(0, q)
    fit = desk.view.slippage.fitted(0)
    assert fit is not None
    assert _same(state.slippage_bps, fit.at(q, min_count=desk.view.slippage.config.trusted_count(q)))
    sig, _ = decide(strategy.config, dataclasses.replace(state, data_ok=True), {}, None, strategy.cooldowns, now=now,
                    risk_headroom=True)  # fmt: skip
    notional = strategy.config.sizing.margin_base_usdt * sig.size_mult * strategy.config.sizing.leverage
    charged = state.slippage_bps[bisect_right(state.slippage_edges_usdt, notional) - 1]
    assert math.isfinite(charged) and sig.quality_flags & QUALITY_SLIPPAGE_PROXY == 0
    assert sig.slippage_bps == strategy.config.taker_legs * charged


def _tops(rows: list[tuple[int, float, float, int]]) -> npt.NDArray[np.void]:
    """Level-1 tops of instrument 0: (arrival ns, bid, ask, synced)."""
    out = np.zeros(len(rows), book_top_dtype(1))
    for i, (ts, bid, ask, synced) in enumerate(rows):
        out[i]["ingest_ts"] = out[i]["exchange_ts"] = ts
        out[i]["bid_px"], out[i]["ask_px"] = bid, ask
        out[i]["bid_qty"] = out[i]["ask_qty"] = 1.0
        out[i]["synced"] = synced
    return out


def _trades(rows: list[tuple[int, int, float, float, int]]) -> npt.NDArray[np.void]:
    """Trades of instrument 0: (arrival ns, exchange ns, px, qty, side)."""
    ev: npt.NDArray[np.void] = empty_events(len(rows))
    for i, (arrival, ts, px, qty, side) in enumerate(rows):
        ev[i]["kind"] = TRADE | (BUY if side > 0 else SELL)
        ev[i]["ingest_ts"], ev[i]["exchange_ts"], ev[i]["px"], ev[i]["qty"] = arrival, ts, px, qty
    return ev


def test_a_taker_order_is_one_sample_at_its_vwap_against_the_mid_before_it() -> None:
    f = SlippageFitter(1, SlippageFitConfig(edges_usdt=(0.0, 1_000.0), min_samples=1, min_tail=0, process_events=1))
    f.update(empty_events(0), _tops([(10, 99.0, 101.0, 1)]))  # mid 100
    # a buy walking two levels (one exchange time), then a sell; a top between the fills changes nothing
    f.update(_trades([(20, 5, 101.0, 1.0, 1), (21, 5, 102.0, 3.0, 1)]), _tops([(20, 101.0, 103.0, 1)]))
    f.update(_trades([(30, 6, 101.0, 2.0, -1)]), _tops([]))
    f.update(_trades([(40, 7, 103.0, 1.0, 1)]), _tops([(35, 0.0, 0.0, 0)]))  # the top before it: unsynced
    f.update(_trades([(50, 8, 103.0, 1.0, 1)]), _tops([]))  # closes the previous one: no mid, no sample
    notional, slip = f.samples(0)
    vwap = (101.0 + 3 * 102.0) / 4
    assert notional.tolist() == [407.0, 202.0]
    assert slip.tolist() == [(vwap - 100.0) / 100.0 * 1e4, -(101.0 - 102.0) / 102.0 * 1e4]


def test_a_stale_top_gives_no_sample_and_untrusted_buckets_are_nan() -> None:
    cfg = SlippageFitConfig(edges_usdt=(0.0, 150.0), min_samples=3, min_tail=0, max_mid_age_ns=_S, process_events=1)
    f = SlippageFitter(1, cfg)
    f.update(empty_events(0), _tops([(0, 99.0, 101.0, 1)]))
    f.update(_trades([(2 * _S, 1, 101.0, 1.0, 1), (2 * _S + 1, 2, 101.0, 1.0, -1)]), _tops([]))
    assert f.samples(0)[0].shape[0] == 0  # the top is two seconds old
    f.update(empty_events(0), _tops([(3 * _S, 99.0, 101.0, 1)]))
    rows = [(3 * _S + 1 + k, 10 + k, 100.5 + 0.1 * k, 1.0, 1) for k in range(4)] + [(4 * _S, 99, 150.0, 1.0, 1)]
    f.update(_trades(rows), _tops([]))
    edges, bps = f.curve(0, 0.5)
    assert edges == (0.0, 150.0)
    assert bps[0] == pytest.approx(np.quantile([50.0, 60.0, 70.0, 80.0], 0.5)) and math.isnan(bps[1])
    assert f.curve(0, 0.5) is f.curve(0, 0.5)  # cached until the next fit
    with pytest.raises(ValueError, match="within"):
        f.curve(0, 1.0)


def test_nothing_fitted_is_all_nan_and_tail_quantiles_need_more_samples() -> None:
    f = SlippageFitter(2)
    edges, bps = f.curve(1, 0.5)
    assert len(edges) == len(bps) and all(math.isnan(x) for x in bps)
    cfg = SlippageFitConfig()
    assert cfg.trusted_count(0.5) == cfg.min_samples
    assert cfg.trusted_count(0.975) == 200 and cfg.trusted_count(0.01) == 500
