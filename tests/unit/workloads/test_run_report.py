"""The run report of ``tradeplane run``: live outcomes against a hand-computed case and a per-signal brute force,
every PNG and the HTML from synthetic runs (numbers recomputed here independently), the empty run, reason
descriptions taken from the reason modules when importable, escaping and determinism."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.workloads.report_checks import PNG_MAGIC, assert_pngs
from tradeplane.workloads.local.report import PLOTS, TABLE_ROWS, write_run_report
from tradeplane.workloads.local.report_data import (
    LATENCY_BUDGET_NS,
    TOTAL,
    EquitySeries,
    FillColumns,
    RejectionColumns,
    RunReportData,
    SignalColumns,
    live_outcomes,
    model_stats,
)

S = 1_000_000_000
T0 = 1_717_200_000 * S  # 2024-06-01T00:00:00Z
EVIL = "<script>alert('x')</script>"
DECISION_REASONS = "tradeplane.engine.decision.reasons"
RISK_REASONS = "tradeplane.engine.risk.reasons"

FloatArray = npt.NDArray[np.float64]


# --- live_outcomes --------------------------------------------------------------------------------------------


def _brute_outcomes(
    sts: list[int], ssym: list[str], mts: list[int], msym: list[str], mid: list[float], horizon: int, end: int
) -> list[float]:
    """One signal at a time: the last mark (in input order among equal times) at or before each moment."""

    def mid_at(symbol: str, t: int) -> float | None:
        best: tuple[int, int] | None = None
        for i, (ts, sym) in enumerate(zip(mts, msym, strict=True)):
            if sym == symbol and ts <= t and (best is None or ts >= best[0]):
                best = (ts, i)
        return None if best is None else mid[best[1]]

    out = []
    for ts, sym in zip(sts, ssym, strict=True):
        if ts + horizon > end:
            out.append(math.nan)
            continue
        before, after = mid_at(sym, ts), mid_at(sym, ts + horizon)
        if before is None or after is None or after == before or math.isnan(before) or math.isnan(after):
            out.append(math.nan)
        else:
            out.append(1.0 if after > before else 0.0)
    return out


def test_live_outcomes_hand_computed() -> None:
    # Marks unsorted on purpose. BTC mids: t=0 100, t=10 101, t=20 99, t=20 again 100.5 (the later wins), t=40 100.5.
    # ETH: t=5 50, t=35 50. The run ends at t=40 (last mark of any symbol).
    mark_ts = [20, 0, 5, 40, 10, 35, 20]
    mark_sym = ["BTC", "BTC", "ETH", "BTC", "BTC", "ETH", "BTC"]
    mark_mid = [99.0, 100.0, 50.0, 100.5, 101.0, 50.0, 100.5]
    signals = [
        (0, "BTC", 1.0),  # 100 → t=10: 101, up
        (10, "BTC", 0.0),  # 101 → t=20: 100.5 (last of the two at t=20), down
        (15, "BTC", 0.0),  # 101 → t=25: 100.5, down
        (20, "BTC", math.nan),  # 100.5 → t=30: 100.5, equal
        (25, "BTC", math.nan),  # t=35 ≤ 40 matured, 100.5 → 100.5 equal
        (31, "BTC", math.nan),  # t=41 > 40: not matured
        (5, "ETH", math.nan),  # 50 → 50 equal
        (3, "ETH", math.nan),  # before ETH's first mark: unknown
        (30, "ETH", math.nan),  # t=40 matured, 50 → 50
        (1, "XRP", math.nan),  # no marks at all
    ]
    got = live_outcomes([s[0] for s in signals], [s[1] for s in signals], mark_ts, mark_sym, mark_mid, horizon_ns=10)
    np.testing.assert_array_equal(got, [s[2] for s in signals])
    # An explicit end makes the t=31 signal mature (100.5 → 100.5 equal: still NaN) and cuts off the rest.
    cut = live_outcomes([0, 10, 31], ["BTC"] * 3, mark_ts, mark_sym, mark_mid, 10, end_ns=15)
    np.testing.assert_array_equal(cut, [1.0, math.nan, math.nan])
    # Up over the horizon although down in between; matured exactly at the run's end (the last mark), not after.
    np.testing.assert_array_equal(live_outcomes([0], ["BTC"], [0, 10, 20], ["BTC"] * 3, [1.0, 0.5, 3.0], 20), [1.0])
    np.testing.assert_array_equal(live_outcomes([0], ["BTC"], [0, 10, 20], ["BTC"] * 3, [1.0, 0.5, 3.0], 21), [np.nan])


def test_live_outcomes_empty_and_invalid() -> None:
    assert live_outcomes([], [], [1], ["A"], [1.0], 5).shape == (0,)
    np.testing.assert_array_equal(live_outcomes([1, 2], ["A", "A"], [], [], [], 5), [math.nan, math.nan])
    with pytest.raises(ValueError, match="horizon_ns"):
        live_outcomes([1], ["A"], [1], ["A"], [1.0], 0)
    with pytest.raises(ValueError, match="signal_ts and signal_symbol"):
        live_outcomes([1, 2], ["A"], [1], ["A"], [1.0], 5)
    with pytest.raises(ValueError, match="mark_ts, mark_symbol and mark_mid"):
        live_outcomes([1], ["A"], [1, 2], ["A", "A"], [1.0], 5)


@settings(max_examples=150, deadline=None)
@given(
    marks=st.lists(
        st.tuples(st.integers(0, 60), st.sampled_from("AB"), st.sampled_from([1.0, 2.0, 3.0, math.nan])), max_size=30
    ),
    signals=st.lists(st.tuples(st.integers(-5, 60), st.sampled_from("ABC")), max_size=30),
    horizon=st.integers(1, 25),
    end=st.one_of(st.none(), st.integers(0, 80)),
)
def test_live_outcomes_matches_a_brute_force(
    marks: list[tuple[int, str, float]], signals: list[tuple[int, str]], horizon: int, end: int | None
) -> None:
    mts, msym, mid = [m[0] for m in marks], [m[1] for m in marks], [m[2] for m in marks]
    sts, ssym = [s[0] for s in signals], [s[1] for s in signals]
    got = live_outcomes(sts, ssym, mts, msym, mid, horizon, end_ns=end)
    run_end = end if end is not None else max(mts, default=-(10**9))
    np.testing.assert_array_equal(got, _brute_outcomes(sts, ssym, mts, msym, mid, horizon, run_end))


# --- synthetic runs -------------------------------------------------------------------------------------------


def _marks(n: int, rng: np.random.Generator) -> tuple[npt.NDArray[np.int64], list[str], FloatArray]:
    """Two symbols, a mark each half second, random walks in ticks (equal mids happen)."""
    ts = np.repeat(T0 + np.arange(n) * (S // 2), 2)
    sym = ["BTCUSDT", "ETHUSDT"] * n
    walk = np.cumsum(rng.choice([-1.0, 0.0, 1.0], size=(n, 2)), axis=0) * 0.1 + np.array([60_000.0, 3_000.0])
    return ts, sym, walk.reshape(-1)


def synthetic_data(n_signals: int = 400, *, shadow: bool = True, seed: int = 3) -> RunReportData:
    """A run of ``n_signals`` signals of two strategies on two symbols with marks, equity per budget and total,
    decision and risk rejections and fills."""
    rng = np.random.default_rng(seed)
    mts, msym, mmid = _marks(2 * n_signals + 40, rng)
    k = np.arange(n_signals)
    ts = T0 + k * S
    symbol = np.where(k % 2 == 0, "BTCUSDT", "ETHUSDT")
    p_up = np.clip(rng.normal(0.5, 0.12, n_signals), 0.02, 0.98)
    entered = rng.random(n_signals) < 0.3
    decision = np.where(entered, np.where(p_up >= 0.5, "enter-long", "enter-short"), "skip")
    reasons = np.array(["BELOW_TAU", "BELOW_KAPPA", "GATE_SPREAD", "COOLDOWN"])
    reason = np.where(entered, "", reasons[rng.integers(0, 4, n_signals)])
    utility = np.where(reason == "GATE_SPREAD", np.nan, rng.gamma(2.0, 0.6, n_signals) + entered)
    horizon = 20 * S
    outcomes = live_outcomes(ts, symbol, mts, msym, mmid, horizon)
    shadow_p = np.clip(p_up + rng.normal(0, 0.05, n_signals), 0.01, 0.99) if shadow else np.full(n_signals, np.nan)
    signals = SignalColumns(
        ts=ts,
        strategy=np.where(k % 3 == 0, "scalp-b", "scalp-a"),
        symbol=symbol,
        p_up=p_up,
        decision=decision,
        reason=reason,
        utility=utility,
        latency_ns=rng.gamma(3.0, 15_000.0, n_signals).astype(np.int64),
        model_version=np.where(k % 10 == 9, "rules-fallback", "m-2024-06-01"),
        shadow_p_up=shadow_p,
        shadow_version=np.full(n_signals, "m-shadow" if shadow else ""),
    )
    curve_ts = T0 + np.arange(120) * 5 * S
    a = 10_000.0 + np.cumsum(rng.normal(0, 3.0, 120))
    b = 5_000.0 + np.cumsum(rng.normal(0, 2.0, 120))
    equity = {
        "budget-a": EquitySeries.from_equity(curve_ts, a),
        "budget-b": EquitySeries.from_equity(curve_ts, b),
        TOTAL: EquitySeries.from_equity(curve_ts, a + b),
    }
    n_fills = 2 * int(entered.sum())
    fill_k = np.arange(n_fills)
    fills = FillColumns(
        ts=T0 + fill_k * S + 7,
        symbol=np.where(fill_k % 2 == 0, "BTCUSDT", "ETHUSDT"),
        side=np.where(fill_k % 4 < 2, 1, -1),
        qty=np.asarray(0.001 * (1 + fill_k % 3), dtype=np.float64),
        price=np.where(fill_k % 2 == 0, 60_000.0, 3_000.0),
        fee=np.asarray(0.02 + 0.001 * fill_k, dtype=np.float64),
    )
    risk = ["RISK_ORDER_RATE"] * 7 + ["BREAKER_FEED_GAP"] * 2
    return RunReportData(
        equity=equity,
        signals=signals,
        outcomes=outcomes,
        rejections=RejectionColumns.from_reasons(reason[~entered].tolist(), risk),
        fills=fills,
        summary={
            "run_id": "run-7",
            "manifests": ["examples/strategy.yaml", "examples/riskbudget.yaml"],
            "source": "synth seed 3",
            "wall_s": 2.5,
            "events": 250_000,
            "config_revs": ["0123456789ab"],
            "store_path": Path(".tradeplane/run-7"),
            "audit_path": ".tradeplane/run-7/audit.jsonl",
            "extra_note": "kept",
        },
        model_roles={"m-2024-06-01": "stable", "rules-fallback": "fallback"},
        horizon_ns=horizon,
    )


# --- independent references -----------------------------------------------------------------------------------


def _brier(p: FloatArray, y: FloatArray) -> float:
    return float(sum((pi - yi) ** 2 for pi, yi in zip(p.tolist(), y.tolist(), strict=True)) / len(p))


def _ece(p: FloatArray, y: FloatArray) -> float:
    buckets: dict[int, list[tuple[float, float]]] = {}
    for pi, yi in zip(p.tolist(), y.tolist(), strict=True):
        buckets.setdefault(min(int(pi * 10), 9), []).append((pi, yi))
    return sum(
        len(b) / len(p) * abs(sum(x for x, _ in b) / len(b) - sum(v for _, v in b) / len(b)) for b in buckets.values()
    )


def _section(page: str, heading: str) -> str:
    match = re.search(rf"<h2>{re.escape(heading)}</h2>(.*?)</section>", page, re.S)
    assert match, heading
    return match.group(1)


def _rows(section: str) -> list[list[str]]:
    body = "".join(re.findall(r"<tbody>(.*?)</tbody>", section, re.S))
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr[ >].*?</tr>", body, re.S)]


def _write(data: RunReportData, out: Path) -> tuple[list[Path], str]:
    paths = write_run_report(out, data)
    return paths, paths[0].read_text(encoding="utf-8")


def _assert_all_pngs(paths: list[Path], *, min_std: float = 0.02) -> None:
    assert [p.name for p in paths] == ["report.html", *(f"{k}.png" for k in PLOTS)]
    assert_pngs({p.stem: p for p in paths[1:]}, PLOTS, min_height=300, min_width=600, min_std=min_std)


@pytest.fixture(scope="module")
def data() -> RunReportData:
    return synthetic_data()


# --- the report -----------------------------------------------------------------------------------------------


def test_synthetic_run_has_matured_unmatured_and_every_kind_of_signal(data: RunReportData) -> None:
    y = data.outcomes
    assert 200 < int(np.isfinite(y).sum()) < len(data.signals)  # some equal mids, the last 20 s not matured
    assert set(np.unique(y[np.isfinite(y)]).tolist()) == {0.0, 1.0}
    assert set(data.signals.decision.tolist()) == {"enter-long", "enter-short", "skip"}


def test_write_run_report_writes_every_png_and_a_self_contained_page(tmp_path: Path, data: RunReportData) -> None:
    paths, page = _write(data, tmp_path / "out")
    assert paths[0] == tmp_path / "out" / "report.html"
    _assert_all_pngs(paths)
    assert page.startswith("<!DOCTYPE html>") and "<title>Run report: run-7</title>" in page
    assert "<link" not in page and "<script" not in page and "http" not in page
    for key in PLOTS:
        assert f'<img src="{key}.png" alt=' in page


def test_calibration_numbers_match_an_independent_computation(tmp_path: Path, data: RunReportData) -> None:
    _, page = _write(data, tmp_path)
    s, y = data.signals, data.outcomes
    ok = np.isfinite(y)
    live = (
        f"live p_up: Brier {_brier(s.p_up[ok], y[ok]):.4f}, ECE {_ece(s.p_up[ok], y[ok]):.4f} on {ok.sum():,} matured"
    )
    shadow = f"shadow m-shadow: Brier {_brier(s.shadow_p_up[ok], y[ok]):.4f}, ECE {_ece(s.shadow_p_up[ok], y[ok]):.4f}"
    assert live in page and shadow in page
    assert "over the 20 s horizon" in page

    models = {row[0]: row for row in _rows(_section(page, "Model versions"))}
    assert list(models) == ["m-2024-06-01", "rules-fallback", "m-shadow"]
    for version, p, role in (
        ("m-2024-06-01", s.p_up, "stable"),
        ("rules-fallback", s.p_up, "fallback"),
        ("m-shadow", s.shadow_p_up, "shadow"),
    ):
        m = (s.model_version == version) if version != "m-shadow" else np.ones(len(s), dtype=bool)
        mm = m & ok
        hit = np.mean((p[mm] >= 0.5) == (y[mm] == 1.0))
        expected = [version, role, f"{int(m.sum()):,}", f"{int(mm.sum()):,}", f"{p[m].mean():.4f}",
                    f"{_brier(p[mm], y[mm]):.4f}", f"{_ece(p[mm], y[mm]):.4f}", f"{100 * hit:.2f}%"]  # fmt: skip
        assert models[version] == expected, version
    assert [m.version for m in model_stats(data)] == list(models)


def test_summary_rejections_decisions_latency_and_fills(tmp_path: Path, data: RunReportData) -> None:
    _, page = _write(data, tmp_path)
    s = data.signals
    summary = dict((r[0], r[1]) for r in _rows(_section(page, "Run summary")))
    total = data.equity[TOTAL].equity
    entries = int(np.char.startswith(s.decision, "enter").sum())
    assert summary["run id"] == "run-7" and summary["source"] == "synth seed 3"
    assert summary["manifests"] == "examples/strategy.yaml, examples/riskbudget.yaml"
    assert summary["wall time"] == "2.500 s" and summary["events"] == "250,000"
    assert summary["throughput"] == "100,000 events/s"
    assert summary["decisions"] == f"{len(s):,}" and summary["entries"] == f"{entries:,}"
    assert summary["fills"] == f"{len(data.fills):,}"
    assert summary["PnL"] == f"{total[-1] - total[0]:,.2f}"
    assert summary["max drawdown"] == f"{(np.maximum.accumulate(total) - total).max():,.2f}"
    assert summary["config revisions"] == "0123456789ab" and summary["store"] == ".tradeplane/run-7"
    assert summary["model versions"] == "m-2024-06-01 (stable), rules-fallback (fallback), m-shadow (shadow)"
    assert summary["extra_note"] == "kept"
    us = s.latency_ns / 1e3
    p50, p99 = np.percentile(us, [50, 99])
    assert summary["decision latency p50 / p99"] == f"{p50:,.1f} / {p99:,.1f} µs"
    assert summary["decisions over the latency budget"] == f"{int((s.latency_ns > LATENCY_BUDGET_NS).sum()):,}"
    assert f"p50 {p50:,.1f} µs, p99 {p99:,.1f} µs" in page
    assert (
        summary["matured signals (mid moved)"]
        == f"{int(np.isfinite(data.outcomes).sum()):,} of {len(s):,} at a 20 s horizon"
    )

    rejections = _rows(_section(page, "Rejections by reason"))
    skipped = s.reason[s.decision == "skip"]
    expected = sorted(((c, int((skipped == c).sum())) for c in set(skipped.tolist())), key=lambda x: (-x[1], x[0]))
    decision_rows = [r for r in rejections if r[0] == "decision"]
    assert [(r[1], int(r[2].replace(",", ""))) for r in decision_rows] == expected
    assert [r[:3] for r in rejections if r[0] == "risk"] == [
        ["risk", "RISK_ORDER_RATE", "7"],
        ["risk", "BREAKER_FEED_GAP", "2"],
    ]
    assert next(r for r in rejections if r[1] == "RISK_ORDER_RATE")[3] == f"{7 / 9:.2%}"

    decisions = {r[0]: r for r in _rows(_section(page, "Decisions by strategy"))}
    m = s.strategy == "scalp-b"
    assert decisions["scalp-b"][1:5] == [
        f"{int(x.sum()):,}" for x in (m, m & (s.decision == "enter-long"), m & (s.decision == "enter-short"),
                                       m & (s.decision == "skip"))
    ]  # fmt: skip

    fills = _section(page, "Fills")
    assert len(data.fills) > TABLE_ROWS and len(_rows(fills)) == TABLE_ROWS
    assert f"{len(data.fills):,} fill(s), the first {TABLE_ROWS} shown" in fills
    assert f"fees {np.sum(data.fills.fee):,.2f}" in fills
    assert _rows(fills)[0][1:4] == ["2024-06-01T00:00:00.000000007Z", "BTCUSDT", "BUY"]


def test_without_shadow_the_calibration_has_the_live_model_only(tmp_path: Path) -> None:
    data = synthetic_data(120, shadow=False)
    paths, page = _write(data, tmp_path)
    _assert_all_pngs(paths)
    assert "live p_up: Brier" in page and "shadow" not in _section(page, "Model versions")
    assert "shadow" not in page.split("Calibration of the live p_up.</b>")[1].split("</figcaption>")[0]


def test_the_empty_run_still_writes_every_file(tmp_path: Path) -> None:
    paths, page = _write(RunReportData(), tmp_path)
    _assert_all_pngs(paths, min_std=0.005)  # "no data" panels: text only
    for path in paths[1:]:
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert "<title>Run report</title>" in page
    for heading, note in (
        ("Decisions by strategy", "No signals."),
        ("Rejections by reason", "No rejections."),
        ("Model versions", "No signals: no model decided."),
        ("Fills", "No fills."),
        ("Rollouts", "No canary or shadow ModelVersion in this run."),
    ):
        assert note in _section(page, heading), heading
    summary = dict((r[0], r[1]) for r in _rows(_section(page, "Run summary")))
    assert summary["decisions"] == "0" and summary["PnL"] == "—" and summary["throughput"] == "—"
    assert "No matured signals." in page and "No decisions; the budget is p99 &lt; 250.0 µs." in page


def test_signals_that_never_matured_render_a_no_data_calibration(tmp_path: Path) -> None:
    full = synthetic_data(60)
    data = RunReportData(signals=full.signals, outcomes=np.full(len(full.signals), np.nan))
    paths, page = _write(data, tmp_path)
    _assert_all_pngs(paths, min_std=0.005)
    models = _rows(_section(page, "Model versions"))
    assert models and all(r[3] == "0" and r[5:] == ["—", "—", "—"] for r in models)
    assert "No matured signals." in page


def test_reason_descriptions_come_from_the_reason_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decision = types.ModuleType(DECISION_REASONS)
    decision.DESCRIPTIONS = {"BELOW_TAU": "p below the threshold tau"}  # type: ignore[attr-defined]
    risk = types.ModuleType(RISK_REASONS)
    risk.DESCRIPTIONS = {"RISK_ORDER_RATE": "too many orders in the last minute"}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, DECISION_REASONS, decision)
    monkeypatch.setitem(sys.modules, RISK_REASONS, risk)
    data = RunReportData(rejections=RejectionColumns.from_reasons(["BELOW_TAU", "COOLDOWN"], ["RISK_ORDER_RATE"]))
    rows = {r[1]: r for r in _rows(_section(_write(data, tmp_path)[1], "Rejections by reason"))}
    assert rows["BELOW_TAU"][4] == "p below the threshold tau"
    assert rows["COOLDOWN"][4] == "COOLDOWN"  # not described: the code itself
    assert rows["RISK_ORDER_RATE"][4] == "too many orders in the last minute"


def test_reason_descriptions_fall_back_to_the_code_without_the_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, DECISION_REASONS, None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, RISK_REASONS, None)
    data = RunReportData(rejections=RejectionColumns.from_reasons(["BELOW_TAU"], ["KILL_SWITCH"]))
    rows = _rows(_section(_write(data, tmp_path)[1], "Rejections by reason"))
    assert rows == [["decision", "BELOW_TAU", "1", "100.00%", "BELOW_TAU"], ["risk", "KILL_SWITCH", "1", "100.00%",
                    "KILL_SWITCH"]]  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Signal:
    """The Signal fields the report reads (the real class lives in engine.decision.types)."""

    exchange_ts: int
    strategy: str
    symbol: str
    p_up: float
    decision: str
    reason: str
    utility: float
    latency_ns: int
    model_version: str
    shadow: tuple[tuple[str, float], ...]


def test_signal_columns_from_signal_objects() -> None:
    cols = SignalColumns.from_signals([
        _Signal(5, "a", "BTCUSDT", 0.6, "enter-long", "", 1.5, 40_000, "m1", (("m2", 0.55), ("m3", 0.4))),
        _Signal(9, "a", "ETHUSDT", 0.45, "skip", "BELOW_TAU", math.nan, 30_000, "m1", ()),
    ])  # fmt: skip
    assert cols.ts.tolist() == [5, 9] and cols.symbol.tolist() == ["BTCUSDT", "ETHUSDT"]
    assert cols.entered.tolist() == [True, False] and cols.reason.tolist() == ["", "BELOW_TAU"]
    assert cols.shadow_version.tolist() == ["m2", ""]
    np.testing.assert_array_equal(cols.shadow_p_up, [0.55, math.nan])
    assert len(SignalColumns.from_signals([])) == 0


def test_equity_series_and_inputs_are_validated() -> None:
    s = EquitySeries.from_equity([1, 2, 3, 4], [10.0, 12.0, 9.0, 11.0])
    np.testing.assert_array_equal(s.drawdown, [0.0, 0.0, 3.0, 1.0])
    with pytest.raises(ValueError, match="drawdown"):
        EquitySeries(np.array([1]), np.array([1.0]), np.array([-1.0]))
    with pytest.raises(ValueError, match=r"EquitySeries\.equity has 1 rows"):
        EquitySeries(np.array([1, 2]), np.array([1.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="stage"):
        RejectionColumns(np.array(["execution"]), np.array(["X"]))
    with pytest.raises(ValueError, match="one value per signal"):
        RunReportData(signals=synthetic_data(10).signals, outcomes=np.zeros(3))
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        RunReportData(signals=synthetic_data(1).signals, outcomes=np.array([0.5]))


def test_every_string_is_escaped(tmp_path: Path) -> None:
    base = synthetic_data(40)
    hostile = f"{EVIL} $5 & co"
    signals = SignalColumns(**{**base.signals.__dict__, "strategy": np.full(40, hostile), "model_version":
                               np.full(40, hostile)})  # fmt: skip
    data = RunReportData(
        equity={hostile: base.equity[TOTAL]},
        signals=signals,
        outcomes=base.outcomes,
        rejections=RejectionColumns.from_reasons([hostile], []),
        fills=base.fills,
        summary={"run_id": hostile, EVIL: EVIL},
    )
    paths, page = _write(data, tmp_path)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; $5 &amp; co" in page
    assert "<title>Run report: &lt;script&gt;" in page
    _assert_all_pngs(paths)  # "$" is not taken for mathtext


def test_output_is_deterministic(tmp_path: Path, data: RunReportData) -> None:
    first = write_run_report(tmp_path / "a", data)
    second = write_run_report(tmp_path / "b", synthetic_data())
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_no_pyplot_is_imported() -> None:
    code = (
        "import sys, tempfile, pathlib\n"
        "from tests.unit.workloads.test_run_report import synthetic_data\n"
        "from tradeplane.workloads.local.report import write_run_report\n"
        "write_run_report(pathlib.Path(tempfile.mkdtemp()), synthetic_data(50))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=120)


def test_rollouts_get_their_own_section_with_the_comparison_reports(tmp_path: Path) -> None:
    rollouts = {
        "clf-v2": {"phase": "Promoted", "step": 2, "weightPct": 100.0, "stable": "clf-v2", "analyses": 5,
                   "lastVerdict": "Pass", "lastReason": "every metric within its limit",
                   "report": "/h/rollouts/clf-v2-report.md", "reportRows": 5},
        "clf-v3": {"phase": "Shadow", "step": 0, "weightPct": None, "stable": "clf-v1", "analyses": 0,
                   "lastVerdict": None, "lastReason": "", "report": None, "reportRows": 0},
    }  # fmt: skip
    _, page = _write(RunReportData(summary={"rollouts": rollouts, "run_id": "r1"}), tmp_path)
    rows = _rows(_section(page, "Rollouts"))
    assert rows[0][:7] == ["clf-v2", "Promoted", "2", "100", "clf-v2", "5", "Pass"]
    assert "<code>/h/rollouts/clf-v2-report.md</code> (5 analyses)" in rows[0][8]
    assert rows[1][:4] == ["clf-v3", "Shadow", "0", "—"] and rows[1][8] == "—"
    summary = dict((r[0], r[1]) for r in _rows(_section(page, "Run summary")))
    assert "rollouts" not in summary and not any("clf-v2" in v for v in summary.values())  # not dumped raw
