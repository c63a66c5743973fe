"""The backtest report on results of real simulator runs: every PNG decodes, the HTML carries the metrics and tables
(escaped), a run without fills or parents renders, the output is deterministic, and no pyplot is involved.

:func:`backtest_result` (a real run) and :func:`hand_result` (two symbols, arrays built by hand) are shared with
test_backtest_tables.py.
"""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.unit.workloads.report_checks import PNG_MAGIC, assert_pngs
from tradeplane.engine import events as E  # noqa: N812 (short names keep the tapes readable)
from tradeplane.engine.sim import contracts
from tradeplane.engine.sim import orders as O  # noqa: N812
from tradeplane.engine.sim.executors import (
    PARENT_CANCELED,
    PARENT_FILLED,
    PARENT_PARTIAL,
    PARENT_WORKING,
    STYLE_IMMEDIATE,
    STYLE_MAKER_THEN_TAKER,
    STYLE_NAMES,
)
from tradeplane.engine.sim.matching import SimConfig, Simulator, new_order
from tradeplane.engine.sim.orders import FILL_DTYPE, ORDER_DTYPE
from tradeplane.engine.sim.portfolio import EquityCurve, Portfolio, new_account, performance_metrics
from tradeplane.engine.sim.result import MARK_DTYPE, PARENT_DTYPE, BacktestResult
from tradeplane.workloads.backtest.report import PLOTS, TABLE_ROWS, write_report

S = 1_000_000_000
T0 = 1_717_200_000 * S  # 2024-06-01T00:00:00Z
TICK = 0.1
SPEC = contracts.binance_usdm(TICK, 0.001)
EVIL = "<script>alert('x')</script>"
PERIODS_PER_YEAR = 365 * 86_400  # one curve row per second

Records = npt.NDArray[np.void]


# --- building results -----------------------------------------------------------------------------------------


def _tape(n_seconds: int, seed: int) -> Records:
    """A one-symbol L2 stream: a snapshot, then a one-tick random walk of the top two levels each second, and a
    20-lot trade half a second later (sells hit the bid on even seconds, buys lift the ask on odd ones)."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, int, int, float, float, int, int, int]] = []
    u = 100

    def message(kind: int, ts: int, levels: list[tuple[int, float, float]], seq: int, first: int, prev: int) -> None:
        for k, (side, px, qty) in enumerate(levels):
            last = E.LAST_IN_MSG if k == len(levels) - 1 else 0
            rows.append((kind | side | last, 0, ts, ts + 1000, px, qty, seq, first, prev))

    def book(bid: float, ask: float, qty: float) -> list[tuple[int, float, float]]:
        return [(E.BID, bid, qty), (E.BID, round(bid - TICK, 1), qty), (E.ASK, ask, qty),
                (E.ASK, round(ask + TICK, 1), qty)]  # fmt: skip

    bid, ask = 1000.0, 1000.2
    message(E.SNAPSHOT, T0, book(bid, ask, 5.0), u, u, -1)
    for i in range(1, n_seconds):
        ts = T0 + i * S
        step = float(rng.choice([-TICK, 0.0, TICK]))
        new_bid, new_ask = round(bid + step, 1), round(ask + step, 1)
        if new_bid != bid:
            levels = {(s, p): q for s, p, q in book(bid, ask, 0.0) + book(new_bid, new_ask, 5.0)}
            message(E.DEPTH, ts, [(s, p, q) for (s, p), q in levels.items()], u + 10, u + 1, u)
            u += 10
            bid, ask = new_bid, new_ask
        taker_sells = i % 2 == 0
        px = bid if taker_sells else ask
        rows.append(
            (E.TRADE | (E.SELL if taker_sells else E.BUY), 0, ts + S // 2, ts + S // 2 + 1000, px, 20.0, 1, 1, 1)
        )
    events = np.zeros(len(rows), E.EVENT_DTYPE)
    for i, row in enumerate(rows):
        events[i] = row
    return events


def _parents(
    fills: Records, reports: Records, report_ts: npt.NDArray[np.int64], sent: dict[int, tuple[int, float]]
) -> Records:
    """One parent per order (market orders immediate, limit orders maker-then-taker), as an executor reports them."""
    parents = np.zeros(len(sent), PARENT_DTYPE)
    for k, (oid, (send_ts, mid)) in enumerate(sorted(sent.items())):
        rep = reports[reports["order_id"] == oid]
        last, last_ts = rep[-1], int(report_ts[reports["order_id"] == oid][-1])
        f = fills[fills["order_id"] == oid]
        filled = float(f["qty"].sum())
        vwap = float((f["px"] * f["qty"]).sum() / filled) if filled else math.nan
        side = int(last["side"])
        slippage = (vwap - mid) / mid * 1e4
        done = int(last["status"]) >= O.FILLED
        status = PARENT_WORKING if not done else PARENT_FILLED if filled >= last["qty"] else PARENT_PARTIAL if filled \
            else PARENT_CANCELED  # fmt: skip
        style = STYLE_IMMEDIATE if last["type"] == O.MARKET else STYLE_MAKER_THEN_TAKER
        parents[k] = (oid, 0, side, style, status, 0, float(last["qty"]), filled,
                      float(f["qty"][f["maker"] == 1].sum()), float(f["qty"][f["maker"] == 0].sum()), vwap,
                      float(f["fee"].sum()), float(last["qty"]) * mid, mid, slippage, side * slippage, 1, send_ts,
                      last_ts if done else 0)  # fmt: skip
    return parents


def backtest_result(
    *,
    n_seconds: int = 60,
    trade: bool = True,
    symbol: str = "BTCUSDT",
    meta: dict[str, Any] | None = None,
    seed: int = 7,
) -> BacktestResult:
    """A real run: the simulator on :func:`_tape`, a portfolio booking the fills the strategy receives, an equity
    curve and marks each second. The strategy alternates market orders (taker fills), limit orders at the touch
    (maker fills once a trade eats the queue ahead; every fourth rests behind it instead) and cancels of those
    still working."""
    events = _tape(n_seconds, seed)
    sim = Simulator(
        events, SimConfig(tick_sizes={0: TICK}, maker_bps={0: SPEC.maker_bps}, taker_bps={0: SPEC.taker_bps})
    )
    portfolio = Portfolio([SPEC], 10_000.0)
    curve = EquityCurve(16, grow=True)
    marks: list[tuple[int, int, float, float, float]] = []
    sent: dict[int, tuple[int, float]] = {}
    for i in range(n_seconds + 1):
        t = T0 + i * S + S // 5
        step = sim.run_until(t)
        if step.fills.shape[0]:
            portfolio.apply_fills(step.fills)
        bid, ask = sim.depth.best_ticks(0)
        assert bid is not None and ask is not None
        mid = sim.depth.mid(0)
        marks.append((t, 0, bid * TICK, ask * TICK, mid))
        curve.record(portfolio.acct, mid, t)
        side = O.BUY if (i // 5) % 2 == 0 else O.SELL
        oid = len(sent) + 1
        if trade and i % 5 == 1:
            sim.submit(new_order(oid, side, 0.5, type=O.MARKET))
            sent[oid] = (t, mid)
        elif trade and i % 5 == 2:
            behind = 3 if i % 20 == 12 else 0  # every fourth limit order rests behind the touch: cancelled unfilled
            sim.submit(new_order(oid, side, 0.3, price_tick=bid - behind if side == O.BUY else ask + behind))
            sent[oid] = (t, mid)
        elif trade and i % 5 == 4:
            sim.cancel([len(sent)])
    sim.run_to_end()
    fills, reports, report_ts = sim.fills, sim.reports, sim.report_ts
    return BacktestResult(
        fills=fills,
        reports=reports,
        report_ts=report_ts,
        parents=_parents(fills, reports, report_ts, sent),
        curve=curve.rows[: len(curve)].copy(),
        marks=np.array(marks, MARK_DTYPE),
        account=portfolio.acct.copy(),
        metrics=performance_metrics(curve, fills, portfolio.acct, periods_per_year=PERIODS_PER_YEAR),
        symbols=(symbol,),
        meta=meta
        if meta is not None
        else {
            "data_file": "synthetic tape",
            "seed": seed,
            "events": int(events.shape[0]),
            "t_start_ns": int(events["ingest_ts"].min()),
            "t_end_ns": int(events["ingest_ts"].max()),
            "wall_s": 0.25,
            "curve_interval_ns": S,
            "config": {"tick_size": TICK, "entry_latency_ns": 0, "executor": {"market": "immediate"}},
        },
    )


def hand_result(n_fills: int = 250) -> BacktestResult:
    """Two symbols with arrays built by hand: ``n_fills`` fills alternating symbol, side and liquidity, three
    parents of three styles (one never filled), ten curve rows and marks of both symbols."""
    fills = np.zeros(n_fills, FILL_DTYPE)
    k = np.arange(n_fills)
    fills["order_id"], fills["symbol"] = k // 2 + 1, k % 2
    fills["side"] = np.where(k % 4 < 2, O.BUY, O.SELL)
    fills["maker"] = (k % 3 == 0).astype(np.uint8)
    fills["px"] = np.where(k % 2 == 0, 60_000.0, 3_000.0) + k * 0.1
    fills["qty"] = 0.001 * (1 + k % 5)
    fills["fee"] = fills["px"] * fills["qty"] * np.where(fills["maker"] == 1, -0.5e-4, 5e-4)
    fills["exch_ts"] = T0 + k * S // 10
    fills["local_ts"] = fills["exch_ts"] + 2_000_000
    fills["mid_at_send"] = fills["px"] - 0.05
    reports = np.zeros(4, ORDER_DTYPE)
    reports["order_id"], reports["symbol"], reports["side"] = [1, 1, 2, 2], [0, 0, 1, 1], [O.BUY, O.BUY, O.SELL, O.SELL]
    reports["type"], reports["status"] = [O.LIMIT, O.LIMIT, O.MARKET, O.MARKET], [O.OPEN, O.FILLED, O.PENDING, 99]
    reports["reason"], reports["avg_px"] = [0, 0, 0, O.REASON_NO_LIQUIDITY], [np.nan, 60_000.0, np.nan, 3_000.0]
    reports["update_ts"] = T0 + np.arange(4) * S
    parents = np.zeros(3, PARENT_DTYPE)
    parents["parent_id"], parents["symbol"], parents["style"] = [1, 2, 3], [0, 1, 0], [0, 1, 2]
    parents["side"], parents["qty"], parents["filled"] = [O.BUY, O.SELL, O.BUY], [1.0, 2.0, 3.0], [1.0, 1.5, 0.0]
    parents["vwap"], parents["cost_bps"] = [60_010.0, 2_999.0, np.nan], [1.5, -0.25, np.nan]
    parents["slippage_bps"] = parents["cost_bps"] * parents["side"]
    parents["send_ts"], parents["done_ts"] = T0 + np.arange(3) * S, [T0 + 5 * S, T0 + 6 * S, 0]
    curve = EquityCurve(10)
    for i in range(10):
        curve.append(T0 + i * S, 20_000.0 + 3.0 * math.sin(i), fees=0.1 * i)
    marks = np.zeros(20, MARK_DTYPE)
    marks["ts"], marks["symbol"] = T0 + (np.arange(20) // 2) * S, np.arange(20) % 2
    marks["mid"] = np.where(marks["symbol"] == 0, 60_000.0, 3_000.0)
    marks["bid"], marks["ask"] = marks["mid"] - 0.05, marks["mid"] + 0.05
    acct = new_account([SPEC, SPEC], 10_000.0)
    return BacktestResult(
        fills=fills,
        reports=reports,
        report_ts=np.asarray(reports["update_ts"] + 1_000, dtype=np.int64),
        parents=parents,
        curve=curve.rows[: len(curve)].copy(),
        marks=marks,
        account=acct,
        metrics=performance_metrics(curve, fills, acct, periods_per_year=PERIODS_PER_YEAR),
        symbols=("BTCUSDT", "ETHUSDT"),
        meta={"seed": 1},
    )


# --- helpers --------------------------------------------------------------------------------------------------


def _section(page: str, heading: str) -> str:
    match = re.search(rf"<h2>{re.escape(heading)}</h2>(.*?)</section>", page, re.S)
    assert match, heading
    return match.group(1)


def _body_rows(section: str) -> list[str]:
    return re.findall(r"<tr[ >].*?</tr>", "".join(re.findall(r"<tbody>(.*?)</tbody>", section, re.S)), re.S)


def _assert_pngs(paths: dict[str, Path]) -> None:
    assert_pngs(paths, PLOTS, min_height=300, min_width=600, min_std=0.02)


def _money(x: float) -> str:
    return f"{x:,.2f}"


# --- tests ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    return backtest_result()


def test_the_simulated_run_has_maker_and_taker_fills_and_both_styles(result: BacktestResult) -> None:
    f = result.fills
    assert f.shape[0] >= 10 and set(f["maker"].tolist()) == {0, 1} and set(f["side"].tolist()) == {O.BUY, O.SELL}
    assert set(result.parents["style"].tolist()) == {0, 1}
    assert np.isfinite(result.parents["cost_bps"]).sum() >= 10
    assert result.metrics.n_fills == f.shape[0]


def test_write_report_writes_decodable_pngs_and_the_html(tmp_path: Path, result: BacktestResult) -> None:
    paths = write_report(result, tmp_path / "report")
    assert set(paths) == {"html", *PLOTS}
    assert paths["html"] == tmp_path / "report" / "report.html"
    _assert_pngs(paths)
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<link" not in page and "<script" not in page and "http" not in page  # self-contained
    for key in PLOTS:
        assert f'<img src="{key}.png" alt=' in page
    assert "<title>Backtest: BTCUSDT</title>" in page


def test_html_carries_the_metrics_formatted(tmp_path: Path, result: BacktestResult) -> None:
    m = result.metrics
    metrics = _section(write_report(result, tmp_path)["html"].read_text(encoding="utf-8"), "Metrics")
    expected = {
        "PnL": _money(m.total_pnl),
        "gross PnL": f"{m.gross_pnl:.4g}" if abs(m.gross_pnl) < 1 else _money(m.gross_pnl),
        "fees": _money(m.fees),
        "funding": "0.00",
        "Sharpe": f"{m.sharpe:,.2f}",
        "max drawdown": _money(m.max_drawdown),
        "max drawdown %": f"{100 * m.max_drawdown_frac:.2f}%",
        "trades": str(m.n_trades),
        "win rate": f"{100 * m.win_rate:.2f}%",
        "profit factor": f"{m.profit_factor:.3g}",
        "turnover": f"{m.turnover:.3g}",
        "fills": str(m.n_fills),
        "maker share": f"{100 * m.maker_share:.2f}%",
        "fee share": f"{100 * m.fee_share:.2f}%" if m.gross_pnl > 0 else "—",  # NaN without a positive edge
    }
    for label, value in expected.items():
        assert f"<td>{label}</td><td>{value}</td>" in metrics, (label, value)


def test_html_summary_config_executors_and_tables(tmp_path: Path, result: BacktestResult) -> None:
    page = write_report(result, tmp_path)["html"].read_text(encoding="utf-8")
    summary = _section(page, "Run summary")
    for text in (
        "<td>symbols</td><td>BTCUSDT</td>",
        "<td>data span (local time)</td><td>2024-06-01T00:00:00.000001Z → 2024-06-01T00:00:59.500001Z (59.500 s)</td>",
        "<td>equity curve span (local time)</td><td>2024-06-01T00:00:00.2Z → 2024-06-01T00:01:00.2Z (60.000 s)</td>",
        f"<td>events</td><td>{result.meta['events']}</td>",
        "<td>wall time</td><td>0.250 s</td>",
        f"<td>throughput</td><td>{result.meta['events'] / 0.25:,.0f} events/s</td>",
        "<td>seed</td><td>7</td>",
        f"<td>{result.digest()}</td>",
        "<td>tick_size</td><td>0.1</td>",
        "<td>executor.market</td><td>immediate</td>",
        "<td>curve_interval_ns</td><td>1000000000</td>",
        "<td>data_file</td><td>synthetic tape</td>",
    ):
        assert text in summary, text

    executors = _body_rows(_section(page, "Executors"))
    p = result.parents
    assert len(executors) == 2
    for row, style in zip(executors, (0, 1), strict=True):
        g = p[p["style"] == style]
        cost = g["cost_bps"][np.isfinite(g["cost_bps"])]
        cells = re.findall(r"<td>(.*?)</td>", row)
        assert cells[0] == STYLE_NAMES[style] and cells[1] == str(g.shape[0]) and cells[2] == str(cost.shape[0])
        assert cells[3] == f"{100 * g['filled'].sum() / g['qty'].sum():.2f}%"
        assert cells[4:7] == [f"{cost.mean():.2f}", f"{np.median(cost):.2f}", f"{np.percentile(cost, 95):.2f}"]
        assert cells[7] == f"{100 * g['maker_qty'].sum() / g['filled'].sum():.2f}%"

    fills = _section(page, "Fills")
    rows = _body_rows(fills)
    assert len(rows) == result.fills.shape[0] <= TABLE_ROWS
    first = result.fills[0]
    cells = re.findall(r"<td>(.*?)</td>", rows[0])
    exch = str(np.datetime64(int(first["exch_ts"]), "ns")).rstrip("0").rstrip(".") + "Z"
    assert cells[1] == exch and cells[3] == "BTCUSDT" and cells[5] == ("BUY" if first["side"] == O.BUY else "SELL")
    assert cells[6] == ("maker" if first["maker"] else "taker") and float(cells[7].replace(",", "")) == first["px"]

    parents = _body_rows(_section(page, "Parent orders"))
    assert len(parents) == p.shape[0]
    assert all(STYLE_NAMES[int(s)] in row for s, row in zip(p["style"], parents, strict=True))


def test_every_string_is_escaped(tmp_path: Path) -> None:
    hostile = f"{EVIL} $5 & co"
    meta = {"seed": 3, EVIL: EVIL, "config": {"strategy": hostile, EVIL: {"x": 'a"b'}}}
    r = backtest_result(n_seconds=20, symbol=hostile, meta=meta)
    paths = write_report(r, tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; $5 &amp; co" in page
    assert "<title>Backtest: &lt;script&gt;" in page
    assert "a&quot;b" in page and "<td>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;.x</td>" in page
    fills = _body_rows(_section(page, "Fills"))
    assert fills and all(
        "<td>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; $5 &amp; co</td>" in row for row in fills
    )
    _assert_pngs(paths)  # "$" in the symbol is not taken for mathtext


def test_a_run_without_fills_renders_with_notes(tmp_path: Path) -> None:
    r = backtest_result(n_seconds=20, trade=False)
    assert r.fills.shape[0] == 0 and r.parents.shape[0] == 0 and r.reports.shape[0] == 0
    paths = write_report(r, tmp_path)
    _assert_pngs(paths)
    page = paths["html"].read_text(encoding="utf-8")
    assert "No fills." in _section(page, "Fills") and "No parent orders." in _section(page, "Parent orders")
    assert "No parent orders." in _section(page, "Executors")
    metrics = _section(page, "Metrics")
    for label in ("win rate", "profit factor", "maker share", "fee share", "Sharpe"):
        assert f"<td>{label}</td><td>—</td>" in metrics, label
    assert "<td>PnL</td><td>0.00</td>" in metrics and "<td>fills</td><td>0</td>" in metrics


def test_placeholders_for_an_empty_result(tmp_path: Path) -> None:
    r = backtest_result(n_seconds=20, trade=False)
    empty = dataclasses.replace(r, curve=r.curve[:0], marks=r.marks[:0], symbols=())
    paths = write_report(empty, tmp_path)
    for key in PLOTS:
        assert paths[key].read_bytes()[:8] == PNG_MAGIC
    assert "<title>Backtest</title>" in paths["html"].read_text(encoding="utf-8")


def test_infinite_and_nan_metrics_read_as_symbols(tmp_path: Path, result: BacktestResult) -> None:
    metrics = dataclasses.replace(result.metrics, profit_factor=math.inf, sharpe=math.nan, turnover=-math.inf)
    page = write_report(dataclasses.replace(result, metrics=metrics), tmp_path)["html"].read_text(encoding="utf-8")
    section = _section(page, "Metrics")
    assert "<td>profit factor</td><td>∞</td>" in section and "<td>Sharpe</td><td>—</td>" in section
    assert "<td>turnover</td><td>−∞</td>" in section
    assert "nan" not in section.lower() and "inf<" not in section


def test_two_symbols_three_styles_and_long_tables(tmp_path: Path) -> None:
    r = hand_result(n_fills=TABLE_ROWS + 50)
    paths = write_report(r, tmp_path)
    _assert_pngs(paths)
    page = paths["html"].read_text(encoding="utf-8")
    fills = _section(page, "Fills")
    assert len(_body_rows(fills)) == TABLE_ROWS and f"The first {TABLE_ROWS} of {TABLE_ROWS + 50} rows" in fills
    assert "<td>ETHUSDT</td>" in fills and "<td>BTCUSDT</td>" in fills
    executors = _body_rows(_section(page, "Executors"))
    assert [re.findall(r"<td>(.*?)</td>", row)[0] for row in executors] == [STYLE_NAMES[s] for s in (0, 1, 2)]
    unfilled = re.findall(r"<td>(.*?)</td>", executors[2])
    assert unfilled[2] == "0" and unfilled[4:7] == ["—", "—", "—"]  # no fills: no cost statistics
    parents = _body_rows(_section(page, "Parent orders"))
    assert "<td>working</td>" in parents[2] and "<td>2024-06-01T00:00:05Z</td>" in parents[0]


def test_output_is_deterministic(tmp_path: Path, result: BacktestResult) -> None:
    first = write_report(result, tmp_path / "a")
    second = write_report(backtest_result(), tmp_path / "b")
    for key in first:
        assert first[key].read_bytes() == second[key].read_bytes(), key


def test_a_symbol_id_without_a_name_raises_before_writing(tmp_path: Path, result: BacktestResult) -> None:
    fills = result.fills.copy()
    fills["symbol"][0] = 3
    with pytest.raises(ValueError, match="symbol id 3"):
        write_report(dataclasses.replace(result, fills=fills), tmp_path / "out")
    with pytest.raises(ValueError, match=r"result\.curve"):
        write_report(dataclasses.replace(result, curve=result.marks), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_no_pyplot_is_imported() -> None:
    code = (
        "import sys, tempfile, pathlib\n"
        "from tests.unit.workloads.test_backtest_report import backtest_result\n"
        "from tradeplane.workloads.backtest.report import write_report\n"
        "write_report(backtest_result(n_seconds=10), pathlib.Path(tempfile.mkdtemp()))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=120)
