"""Market tables on both backends (the 18.16 server and chDB): a real Binance capture stored through
MarketRows/TableWriter and replayed from the store is byte-identical to the original events and gives the
engine's book the identical tops (the independent cross-check); the 1 s / 1 m bar views equal a numpy
computation and the engine's own time clock; the volume-bucket view equals the engine's volume clock, and
its VPIN and Kyle λ equal the engine's ratio_of_sums and kyle_lambda kernels; marks, open interest,
liquidations, klines, book tops, features and data-quality rows round-trip; bucket numbering resumes after
a restart."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.services import ClickHouseServer
from tradeplane.engine.book.sync import BookSet
from tradeplane.engine.events import (
    ASK,
    BID,
    BUY,
    EVENT_DTYPE,
    KIND_MASK,
    KLINE_DTYPE,
    LAST_IN_MSG,
    LIQUIDATION,
    MARK,
    OPEN_INTEREST,
    SELL,
    SNAPSHOT,
    TRADE,
    SymbolTable,
)
from tradeplane.engine.features.book_features import compute_book_features
from tradeplane.engine.features.clocks import ClockSpec, build_bars
from tradeplane.engine.features.flow_features import kyle_lambda, ratio_of_sums
from tradeplane.engine.replay import read_capture
from tradeplane.workloads.store import Store, TableWriter
from tradeplane.workloads.store.chdb_store import ChdbStore
from tradeplane.workloads.store.clickhouse_server import ClickHouseServerStore, RetryPolicy
from tradeplane.workloads.store.market import (
    MarketRows,
    book_top_rows,
    feature_rows,
    kline_rows,
    market_rows,
    quality_rows,
    replay_events,
)

CAPTURE = "binance/ws/usdm_btcusdt_20240808.jsonl.gz"
NS = 1_000_000_000
T0 = 1_722_470_400 * NS


@pytest.fixture(scope="module")
def server_store(clickhouse_server: ClickHouseServer) -> Iterator[ClickHouseServerStore]:
    store = ClickHouseServerStore(
        clickhouse_server.host,
        clickhouse_server.port,
        database=f"m_{uuid.uuid4().hex[:10]}",
        retry=RetryPolicy(3, 0.05),
    )
    store.migrate()
    yield store
    store.execute(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    store = ChdbStore(tmp_path_factory.mktemp("chdb") / "store")
    store.migrate()
    yield store
    store.close()


@pytest.fixture(params=["server", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def capture(shared_dir: Any) -> tuple[np.ndarray, SymbolTable]:
    """The first ~32k events of the USD-M capture: the REST snapshot and 30k events after it."""
    symbols = SymbolTable()
    events = read_capture(shared_dir / "data" / CAPTURE, symbols).events
    snapshot = np.flatnonzero((events["kind"] & KIND_MASK) == SNAPSHOT)
    return events[: snapshot[-1] + 30_000].copy(), symbols


def _write(store: Store, tables: dict[str, dict[str, Any]], *, max_rows: int = 25_000) -> None:
    for table, columns in tables.items():
        writer = TableWriter(store, table, max_rows=max_rows)
        writer.append(columns)
        writer.close()


def _store_events(store: Store, rows: MarketRows, events: np.ndarray, *, batch: int = 10_000) -> None:
    writers: dict[str, TableWriter] = {}
    for k in range(0, events.shape[0], batch):
        for table, columns in rows.rows(events[k : k + batch]).items():
            writers.setdefault(table, TableWriter(store, table, max_rows=25_000)).append(columns)
    for writer in writers.values():
        writer.close()


def _count(store: Store, sql: str) -> int:
    return int(store.query(sql)["n"][0])


def test_a_capture_replayed_from_the_store_gives_the_same_events_and_book(
    store: Store, capture: tuple[np.ndarray, SymbolTable]
) -> None:
    events, symbols = capture
    _store_events(store, MarketRows(symbols), events)
    lo, hi = int(events["exchange_ts"].min()), int(events["exchange_ts"].max()) + 1
    replayed = replay_events(store, "binance-usdm", "BTCUSDT", lo, hi)
    assert replayed.dtype == EVENT_DTYPE and replayed.shape == events.shape
    assert replayed.tobytes() == events.tobytes()  # every field, bit for bit, in the original order
    # the independent cross-check: the engine's book over both arrays
    want, got = BookSet().apply(events), BookSet().apply(replayed)
    assert want.tops["synced"].sum() > 300
    assert got.tops.tobytes() == want.tops.tobytes()
    # stored again (a re-consumed batch): nothing doubles, the replay is unchanged
    _store_events(store, MarketRows(symbols), events)
    trades = int(((events["kind"] & KIND_MASK) == TRADE).sum())
    assert _count(store, "SELECT count() AS n FROM trades WHERE symbol = 'BTCUSDT'") == trades
    assert replay_events(store, "binance-usdm", "BTCUSDT", lo, hi).tobytes() == events.tobytes()
    # a window: only the events of [lo, mid), still in order
    mid = int(events["exchange_ts"][events.shape[0] // 2])
    part = replay_events(store, "binance-usdm", "BTCUSDT", lo, mid, tables=("book_diffs",))
    want_part = events[(events["exchange_ts"] < mid) & ((events["kind"] & KIND_MASK) != TRADE)]
    assert part.tobytes() == want_part.tobytes()


def _nan_equal(a: Any, b: Any) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def test_book_tops_and_features_round_trip(store: Store, capture: tuple[np.ndarray, SymbolTable]) -> None:
    events, symbols = capture
    tops = BookSet().apply(events).tops
    _write(store, {"book_top": book_top_rows(tops, symbols)})
    got = store.query(
        "SELECT toUnixTimestamp64Nano(ts) AS ns, seq, synced, bid_px, ask_qty, bids_px, asks_qty FROM book_top "
        "WHERE symbol = 'BTCUSDT' ORDER BY ts, seq, ingest_ts"
    )
    order = np.lexsort((tops["ingest_ts"], tops["seq"], tops["exchange_ts"]))
    want = tops[order]
    assert got["ns"].tolist() == want["exchange_ts"].tolist() and got["seq"].tolist() == want["seq"].tolist()
    assert got["synced"].tolist() == want["synced"].tolist()
    assert _nan_equal(got["bid_px"], want["bid_px"][:, 0]) and _nan_equal(got["ask_qty"], want["ask_qty"][:, 0])
    assert _nan_equal(np.array(got["bids_px"].tolist()), want["bid_px"])
    assert _nan_equal(np.array(got["asks_qty"].tolist()), want["ask_qty"])

    feats, _ = compute_book_features(tops)
    assert feats.shape[0] > 300
    _write(store, {"features": feature_rows(feats, symbols, "book")})
    got = store.query(
        "SELECT feature_names, feature_values[indexOf(feature_names, 'ofi1')] AS ofi1, "
        "toUnixTimestamp64Nano(ts) AS ns FROM features WHERE feature_set = 'book' ORDER BY ts, ingest_ts"
    )
    order = np.lexsort((feats["ingest_ts"], feats["exchange_ts"]))
    assert got["ns"].tolist() == feats["exchange_ts"][order].tolist()
    assert _nan_equal(got["ofi1"], feats["ofi1"][order])
    assert got["feature_names"][0][:3] == ("mid", "microprice", "dmicro_bps")


def _trades(n: int, symbol: int, seed: int, start: int = T0) -> np.ndarray:
    """``n`` trades of a random walk around 100, 0-3 s apart, random sides."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["symbol"] = symbol
    ev["exchange_ts"] = start + np.cumsum(rng.integers(0, 3 * NS, n))
    ev["ingest_ts"] = ev["exchange_ts"] + 1_000_000
    ev["px"] = np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 2)
    ev["qty"] = np.round(rng.uniform(0.001, 2.0, n), 3)
    ev["kind"] = TRADE | np.where(rng.random(n) < 0.5, BUY, SELL)
    ev["seq"] = ev["first_seq"] = ev["prev_seq"] = 1000 + np.arange(n)
    return ev


def _numpy_bars(ev: np.ndarray, period: int) -> dict[str, np.ndarray]:
    key = ev["exchange_ts"] // period
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])  # trades are in time (and id) order
    ends = np.r_[starts[1:], ev.shape[0]]
    px, qty, buy = ev["px"], ev["qty"], (ev["kind"] & BUY) != 0
    return {
        "ns": key[starts] * period,
        "open": px[starts],
        "close": px[ends - 1],
        "high": np.maximum.reduceat(px, starts),
        "low": np.minimum.reduceat(px, starts),
        "volume": np.add.reduceat(qty, starts),
        "quote_volume": np.add.reduceat(px * qty, starts),
        "buy_volume": np.add.reduceat(np.where(buy, qty, 0.0), starts),
        "trades": ends - starts,
    }


@pytest.mark.parametrize(("view", "period"), [("bars_1s", NS), ("bars_1m", 60 * NS)])
def test_bar_views_equal_numpy_and_the_engine_time_clock(store: Store, view: str, period: int) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    names = [f"binance-usdm:BARS{tag}A", f"binance-usdm:BARS{tag}B"]
    a, b = _trades(400, 0, 1), _trades(300, 1, 2)
    rows = MarketRows(names)
    for part in (a[:150], b, a[150:]):  # several inserts: the views merge their states
        _write(store, rows.rows(part))
    for ev, name in ((a, names[0]), (b, names[1])):
        got = store.query(
            f"SELECT toUnixTimestamp64Nano(ts) AS ns, open, high, low, close, volume, quote_volume, vwap, buy_volume, "
            f"trades FROM {view} WHERE symbol = '{name.split(':')[1]}' ORDER BY ts"
        )
        want = _numpy_bars(ev, period)
        assert got["ns"].tolist() == want["ns"].tolist()
        assert got["trades"].tolist() == want["trades"].tolist()
        for col in ("open", "high", "low", "close"):
            assert got[col].tolist() == want[col].tolist(), col
        for col in ("volume", "quote_volume", "buy_volume"):
            np.testing.assert_allclose(got[col], want[col], rtol=1e-12, err_msg=col)
        np.testing.assert_allclose(got["vwap"], want["quote_volume"] / want["volume"], rtol=1e-12)
        # the engine's own time clock: every closed bar with trades (its last bar is still open)
        bars = build_bars(ClockSpec.time("t", period, max_fill=10**6), ev)
        bars = bars[bars["count"] > 0]
        k = bars.shape[0]
        assert k >= len(want["ns"]) - 1
        assert bars["start_ts"].tolist() == got["ns"][:k].tolist()
        assert bars["count"].tolist() == got["trades"][:k].tolist()
        for col in ("open", "high", "low", "close"):
            assert bars[col].tolist() == got[col][:k].tolist(), col
        np.testing.assert_allclose(bars["quote_volume"], got["quote_volume"][:k], rtol=1e-12)
        np.testing.assert_allclose(bars["buy_volume"], got["buy_volume"][:k], rtol=1e-12)


def _bucketed_trades(buckets: int, size: float, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Trades whose quote volumes fill each bucket of ``size`` exactly (dyadic prices and quantities: every
    sum is exact), so the engine's volume clock splits no trade and both sides see the same buckets. Returns
    the events and the trade indices of each bucket."""
    rng = np.random.default_rng(seed)
    px: list[float] = []
    qty: list[float] = []
    members: list[np.ndarray] = []
    for _ in range(buckets):
        first, room = len(px), size
        while True:
            p = 95 + rng.integers(0, 81) / 8  # 95 .. 105 in 1/8
            q = rng.integers(1, 17) / 8  # 1/8 .. 2
            if room - p * q < 300:
                break
            px.append(p)
            qty.append(q)
            room -= p * q
        px.append(room / 4)  # the filler: 4 units at the price that fills the bucket exactly (75 .. 127.5)
        qty.append(4.0)
        members.append(np.arange(first, len(px)))
    n = len(px)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["exchange_ts"] = T0 + np.arange(n) * 50_000_000
    ev["ingest_ts"] = ev["exchange_ts"] + 1_000_000
    ev["px"], ev["qty"] = px, qty
    ev["kind"] = TRADE | np.where(rng.random(n) < 0.55, BUY, SELL)
    ev["seq"] = ev["first_seq"] = ev["prev_seq"] = np.arange(n)
    return ev, members


def test_volume_buckets_equal_the_engine_clock_vpin_and_kyle_lambda(store: Store) -> None:
    size = 2000.0
    name = f"binance-usdm:VB{uuid.uuid4().hex[:6].upper()}"
    ev, members = _bucketed_trades(30, size, seed=5)
    rows = MarketRows([name], bucket_quote={name: size})
    cut = int(members[7][3])  # split the stream inside a bucket: the writer's state carries over
    _write(store, rows.rows(ev[:cut]))
    _write(store, rows.rows(ev[cut:]))
    got = store.query(f"SELECT * FROM vbuckets WHERE symbol = '{name.split(':')[1]}' ORDER BY bucket")
    bars = build_bars(ClockSpec.volume("v", size), ev)
    assert got["bucket"].tolist() == list(range(30)) and bars.shape[0] == 30
    assert got["trades"].tolist() == bars["count"].tolist() == [len(m) for m in members]
    assert got["start_ts"].tolist() == bars["start_ts"].tolist() and got["end_ts"].tolist() == bars["end_ts"].tolist()
    assert got["open"].tolist() == bars["open"].tolist() and got["close"].tolist() == bars["close"].tolist()
    assert got["buy_quote"].tolist() == bars["buy_quote"].tolist()  # exact arithmetic on both sides
    assert got["sell_quote"].tolist() == bars["sell_quote"].tolist()
    assert got["quote_volume"].tolist() == [size] * 30
    # VPIN: the engine's ratio-of-sums kernel over the engine's buckets, per bucket and over 5 buckets
    imbalance, volume = np.abs(bars["buy_quote"] - bars["sell_quote"]), bars["buy_quote"] + bars["sell_quote"]
    engine_vpin = [ratio_of_sums(imbalance, volume, k + 1, 30, 1) for k in range(30)]
    np.testing.assert_allclose(got["vpin"], engine_vpin, rtol=1e-12)
    db_imbalance, db_volume = np.abs(got["buy_quote"] - got["sell_quote"]), got["buy_quote"] + got["sell_quote"]
    for k in range(4, 30):
        window = db_imbalance[k - 4 : k + 1].sum() / db_volume[k - 4 : k + 1].sum()
        assert window == pytest.approx(ratio_of_sums(imbalance, volume, k + 1, 30, 5), rel=1e-12)
    # Kyle lambda: the engine's OLS kernel over each bucket's trades (price change on signed quantity)
    signed = np.where((ev["kind"] & BUY) != 0, 1.0, -1.0) * ev["qty"]
    for k, idx in enumerate(members):
        first = int(idx[0])
        ring = np.arange(first - 1, int(idx[-1]) + 1) if first > 0 else idx  # the previous trade's price first
        w = ring.shape[0] - 1
        want = kyle_lambda(signed[ring].copy(), ev["px"][ring].copy(), ring.shape[0], ring.shape[0], w)
        assert not math.isnan(want)
        assert got["kyle_lambda"][k] == pytest.approx(want, rel=1e-9), k
        assert got["n_xy"][k] == w


def test_bucket_numbering_resumes_after_a_restart(store: Store) -> None:
    size = 2000.0
    tag = uuid.uuid4().hex[:6].upper()
    once, twice = f"binance-usdm:RA{tag}", f"binance-usdm:RB{tag}"
    ev, members = _bucketed_trades(12, size, seed=9)
    _write(store, market_rows(ev, [once], bucket_quote=size))
    cut = int(members[5][2])
    _write(store, market_rows(ev[:cut], [twice], bucket_quote=size))
    restarted = MarketRows([twice], bucket_quote=size)
    restarted.resume(store)  # a new process: the last bucket's volume and price come from the store
    _write(store, restarted.rows(ev[cut:]))
    sql = "SELECT bucket, trades, buy_quote, kyle_lambda FROM vbuckets WHERE symbol = '{}' ORDER BY bucket"
    a, b = store.query(sql.format(once.split(":")[1])), store.query(sql.format(twice.split(":")[1]))
    assert a["bucket"].tolist() == b["bucket"].tolist() == list(range(12))
    assert a["trades"].tolist() == b["trades"].tolist()
    assert a["buy_quote"].tolist() == b["buy_quote"].tolist()
    assert _nan_equal(a["kyle_lambda"], b["kyle_lambda"])


def test_marks_open_interest_liquidations_and_klines_round_trip(store: Store) -> None:
    name = f"binance-usdm:X{uuid.uuid4().hex[:6].upper()}"
    ev = np.zeros(7, EVENT_DTYPE)
    ev["exchange_ts"] = T0 + np.arange(7) * NS
    ev["ingest_ts"] = T0 + np.array([0, 0, 0, 1, 2, 2, 3]) * NS  # equal receive times keep their order
    ev["kind"] = [MARK, OPEN_INTEREST, LIQUIDATION | SELL, MARK, LIQUIDATION | BUY, OPEN_INTEREST, MARK]
    ev["px"] = [60000.5, 0.0, 59000.0, np.nan, 61000.0, 0.0, 60100.0]
    ev["qty"] = [1e-4, 81234.5, 0.5, np.nan, 1.25, 81000.0, -2e-5]
    ev["seq"] = [1722499200000, 0, 0, 1722499200000, 0, 0, 1722528000000]
    ev["prev_seq"] = -1
    _write(store, market_rows(ev, [name]))
    back = replay_events(store, "binance-usdm", name.split(":")[1], T0, T0 + 10 * NS)
    assert back.tobytes() == ev.tobytes()

    kl = np.zeros(3, KLINE_DTYPE)
    kl["open_ts"] = T0 + np.arange(3) * 60 * NS
    kl["close_ts"] = kl["open_ts"] + 60 * NS - 1_000_000
    kl["open"], kl["high"], kl["low"], kl["close"] = 1.0, 2.0, 0.5, 1.5
    kl["volume"], kl["quote_volume"], kl["taker_buy_volume"], kl["trades"] = [3.0, 4.0, 5.0], np.nan, 1.0, -1
    _write(store, {"klines": kline_rows(kl, [name])})
    got = store.query(f"SELECT * FROM klines WHERE symbol = '{name.split(':')[1]}' ORDER BY ts")
    assert got["interval_ns"].tolist() == [60 * NS] * 3 and got["volume"].tolist() == [3.0, 4.0, 5.0]
    assert np.isnan(got["quote_volume"]).all() and got["trades"].tolist() == [-1] * 3
    assert got["ts"].view(np.int64).tolist() == kl["open_ts"].tolist()


def test_gaps_and_resyncs_are_flagged_in_the_data(store: Store, capture: tuple[np.ndarray, SymbolTable]) -> None:
    events, symbols = capture
    depth_ends = np.flatnonzero(((events["kind"] & KIND_MASK) == 1) & ((events["kind"] & LAST_IN_MSG) != 0))
    lost = slice(int(depth_ends[200]) + 1, int(depth_ends[201]) + 1)  # one depth message lost in transit
    broken = np.concatenate([events[: lost.start], events[lost.stop :]])
    batch = BookSet().apply(broken)
    assert batch.gaps.shape[0] == 1
    _write(store, {"data_quality": quality_rows(broken, batch.gaps, batch.resync_requests, symbols)})
    got = store.query(
        "SELECT check_name, reason, seq, expected, got, toUnixTimestamp64Nano(ts) AS ns FROM data_quality "
        "WHERE symbol = 'BTCUSDT' AND check_name = 'gap'"
    )
    lost_msg = events[lost]
    assert got["reason"].tolist() == ["chain"]
    assert got["got"].tolist() == [int(lost_msg["seq"][0])]  # the next diff's pu named the lost u ...
    assert got["expected"].tolist() == [int(events["seq"][depth_ends[200]])]  # ... the book had the one before
    assert got["ns"].tolist() == [int(batch.gaps["exchange_ts"][0])]
    resyncs = store.query("SELECT reason FROM data_quality WHERE symbol = 'BTCUSDT' AND check_name = 'resync'")
    assert "gap" in resyncs["reason"].tolist()


def test_side_and_flags_columns_spell_out_the_kind(capture: tuple[np.ndarray, SymbolTable]) -> None:
    events, symbols = capture
    cols = market_rows(events[:5000], symbols)["book_diffs"]
    kind = cols["kind"]
    assert ((cols["side"] == 1) == ((kind & BID) != 0)).all() and ((cols["side"] == -1) == ((kind & ASK) != 0)).all()
    assert ((cols["last_in_msg"] == 1) == ((kind & LAST_IN_MSG) != 0)).all()


def test_market_rows_state_restored_in_a_new_object_continues_exactly(capture: tuple[np.ndarray, SymbolTable]) -> None:
    """Split anywhere, saved with :meth:`MarketRows.state` (through JSON) and restored into a fresh object:
    every trade column and every ingest position equals one pass over the whole stream."""
    usdm_events, symbols = capture
    names = symbols.to_list()
    assert names == ["binance-usdm:BTCUSDT"]
    whole = MarketRows(names, bucket_quote=2e6).rows(usdm_events)
    for cut in (1, len(usdm_events) // 3, len(usdm_events) - 7):
        first = MarketRows(names, bucket_quote=2e6)
        head = first.rows(usdm_events[:cut])
        second = MarketRows(names, bucket_quote=2e6)
        second.restore(json.loads(json.dumps(first.state())))
        tail = second.rows(usdm_events[cut:])
        for table, cols in whole.items():
            parts = [p[table] for p in (head, tail) if table in p]
            for col, values in cols.items():
                joined = np.concatenate([p[col] for p in parts])
                if values.dtype.kind == "f":
                    np.testing.assert_array_equal(joined, values, err_msg=f"{table}.{col} cut at {cut}")
                else:
                    assert joined.tolist() == values.tolist(), f"{table}.{col} cut at {cut}"
    # a symbol the restored table does not know is ignored, not an error
    other = MarketRows(["binance-usdm:ETHUSDT"], bucket_quote=2e6)
    other.restore({"last_px": {"binance-usdm:BTCUSDT": 1.0}})
    assert other.state()["last_px"] == {}
