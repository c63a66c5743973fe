"""The Binance decoder (tradeplane.engine.binance) on the real captures and on hand-made bad input.

Reference: an independent decoder written the obvious way in this file (``json.loads`` per line, Python
``float`` per number, one tuple per event) from the slot table in ``engine/events.py``. Every event of
every real capture is compared with it field by field; counts by type are checked against a plain
``json.loads`` count and against SOURCES.md. The decoder's numba fast path (flat messages read without
msgspec) is checked against the decoder's own msgspec-only path (``fast_path=False``) on the captures and
on random messages (hypothesis) that include unusual-but-valid and invalid JSON, so the fast path can
never decide differently from msgspec.

Bad input: every kind of bad line is counted with its line number, and the good lines around it decode
exactly as they would alone.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeplane.engine import events as evk
from tradeplane.engine.binance import (
    MAX_ERRORS,
    VENUE_COINM,
    VENUE_SPOT,
    VENUE_USDM,
    DecodeResult,
    DecodeStats,
    decode_capture_lines,
    decode_payloads,
)
from tradeplane.engine.binance import decode as dec

# SOURCES.md: messages per stream type in each capture.
CAPTURES = {
    "usdm_btcusdt_20240808": {"depthUpdate": 6551, "bookTicker": 66089, "trade": 21313, "snapshot": 1},
    "spot_btcusdt_20240808": {"depthUpdate": 3451, "bookTicker": 28040, "trade": 9757, "snapshot": 1},
    "spot_btcusdt_20240809": {"depthUpdate": 3044, "bookTicker": 45134, "trade": 10147},
    "spot_ethusdt_20240808": {"depthUpdate": 3434, "bookTicker": 24077, "trade": 6106, "snapshot": 1},
    "spot_ethusdt_20240809": {"depthUpdate": 3036, "bookTicker": 34681, "trade": 8409},
}
BOOK = (evk.DEPTH, evk.SNAPSHOT, evk.BBO)


def capture_path(shared: Path, name: str) -> Path:
    return shared / "data" / "binance" / "ws" / f"{name}.jsonl.gz"


@functools.cache
def _lines(path: Path) -> tuple[bytes, ...]:
    with gzip.open(path) as f:
        return tuple(f.read().splitlines())


def capture(shared: Path, name: str) -> tuple[bytes, ...]:
    return _lines(capture_path(shared, name))


def venue_of(name: str) -> str:
    return VENUE_USDM if name.startswith("usdm") else VENUE_SPOT


def symbol_of(name: str) -> str:
    return name.split("_")[1].upper()


# --- the independent reference ----------------------------------------------------------------------

Row = tuple[int, str, int, int, float, float, int, int, int]


def _ms_to_ns(data: dict[str, Any], keys: tuple[str, ...], fallback: int) -> int:
    """The first present, non-zero time field (ms) in ns, else ``fallback``."""
    for key in keys:
        if data.get(key):
            return int(data[key]) * 1_000_000
    return fallback


def _level_rows(kind: int, head: tuple[str, int, int], ids: tuple[int, int, int], bids: Any, asks: Any) -> list[Row]:
    """One row per level, bids then asks, LAST_IN_MSG on the last; an empty message is one NaN row."""
    sym, ts, ingest = head
    out = [(kind | evk.BID, p, q) for p, q in bids] + [(kind | evk.ASK, p, q) for p, q in asks]
    if not out:
        out = [(kind, "nan", "nan")]
    last = len(out) - 1
    return [
        (k | (evk.LAST_IN_MSG if j == last else 0), sym, ts, ingest, float(p), float(q), *ids)
        for j, (k, p, q) in enumerate(out)
    ]


def ref_decode(lines: Sequence[bytes], venue: str, snapshot_symbol: str) -> tuple[list[Row], Counter[str]]:
    """Events per the slot table in engine/events.py, the slow obvious way; and messages per type."""
    rows: list[Row] = []
    types: Counter[str] = Counter()
    for line in lines:
        prefix, _, text = line.partition(b" ")
        ingest = int(prefix)
        obj = json.loads(text)
        data = obj["data"] if "stream" in obj else obj
        ts = _ms_to_ns(data, ("T", "E"), ingest)
        if "stream" not in obj and "lastUpdateId" in obj:
            types["snapshot"] += 1
            uid = obj["lastUpdateId"]
            rows += _level_rows(evk.SNAPSHOT, (snapshot_symbol, ts, ingest), (uid, uid, -1), obj["bids"], obj["asks"])
            continue
        sym = f"{venue}:{data['s'].upper()}"
        kind = data.get("e", "bookTicker")
        types[kind] += 1
        if kind == "depthUpdate":
            ids = (data["u"], data["U"], data.get("pu", -1))
            rows += _level_rows(evk.DEPTH, (sym, ts, ingest), ids, data["b"], data["a"])
        elif kind == "bookTicker":
            u = data["u"]
            rows.append((evk.BBO | evk.BID, sym, ts, ingest, float(data["b"]), float(data["B"]), u, u, -1))
            last = evk.BBO | evk.ASK | evk.LAST_IN_MSG
            rows.append((last, sym, ts, ingest, float(data["a"]), float(data["A"]), u, u, -1))
        elif kind == "trade":
            side = evk.SELL if data["m"] else evk.BUY
            t = data["t"]
            rows.append((evk.TRADE | side, sym, ts, ingest, float(data["p"]), float(data["q"]), t, t, t))
        else:
            raise AssertionError(f"the captures hold no {kind}")
    return rows, types


def rows_of(result: DecodeResult, symbols: evk.SymbolTable) -> list[Row]:
    ev = result.events
    names = [symbols.name(int(s)) for s in ev["symbol"]]
    cols = [ev[f].tolist() for f in ("kind", "exchange_ts", "ingest_ts", "px", "qty", "seq", "first_seq", "prev_seq")]
    return [(k, n, *rest) for k, n, *rest in zip(cols[0], names, *cols[1:], strict=True)]


def assert_rows_equal(got: list[Row], want: list[Row]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        same = all(
            (a == b) or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b))
            for a, b in zip(g, w, strict=True)
        )
        assert same, f"event {i}: got {g}, want {w}"


def decode_reference_path(lines: Sequence[bytes], venue: str, symbols: evk.SymbolTable, **kw: Any) -> DecodeResult:
    """The decoder with its fast path off: every routed line through msgspec."""
    blob, starts, ends = dec._joined(lines)
    return dec._decode(
        blob, starts, ends, None, symbols, venue, kw.get("first_line", 1), kw.get("snapshot_symbol"), fast_path=False
    )


def stats_key(s: DecodeStats) -> tuple[Any, ...]:
    return (s.messages, s.events, s.klines, s.by_type, s.unknown, s.malformed, s.malformed_by, s.errors)


# --- real captures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_decodes_every_event_like_the_reference(shared_dir: Path, name: str) -> None:
    lines = capture(shared_dir, name)
    symbols = evk.SymbolTable()
    result = decode_capture_lines(lines, symbols, venue_of(name), snapshot_symbol=symbol_of(name))
    want, types = ref_decode(lines, venue_of(name), f"{venue_of(name)}:{symbol_of(name)}")

    assert types == CAPTURES[name]  # the independent count agrees with SOURCES.md
    assert result.stats.by_type == CAPTURES[name]
    assert result.stats.messages == len(lines) == result.stats.decoded
    assert (result.stats.unknown, result.stats.malformed, result.stats.errors) == ({}, 0, [])
    assert result.stats.events == len(result.events) == len(want)
    assert len(result.klines) == 0
    assert_rows_equal(rows_of(result, symbols), want)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_last_in_msg_marks_exactly_one_event_per_book_message(shared_dir: Path, name: str) -> None:
    lines = capture(shared_dir, name)
    ev = decode_capture_lines(lines, evk.SymbolTable(), venue_of(name), snapshot_symbol=symbol_of(name)).events
    kind = ev["kind"] & evk.KIND_MASK
    last = (ev["kind"] & evk.LAST_IN_MSG) != 0
    counts = CAPTURES[name]
    assert last.sum() == counts["depthUpdate"] + counts["bookTicker"] + counts.get("snapshot", 0)
    assert not last[~np.isin(kind, BOOK)].any()  # trades carry no LAST_IN_MSG
    # a message's events share (ingest_ts, seq) and a flag closes each message
    book = np.flatnonzero(np.isin(kind, BOOK))
    ends = last[book]
    assert ends[-1]
    starts = np.r_[0, np.flatnonzero(ends)[:-1] + 1]
    key = ev[book][["ingest_ts", "seq"]]
    for a, b in zip(starts, np.flatnonzero(ends), strict=True):
        assert (key[a : b + 1] == key[a]).all()
    # bookTicker: BID then ASK
    bbo = ev[kind == evk.BBO]["kind"]
    assert ((bbo[0::2] & evk.BID) != 0).all() and ((bbo[1::2] & evk.ASK) != 0).all()


@pytest.mark.parametrize("name", ["usdm_btcusdt_20240808", "spot_btcusdt_20240809"])
def test_fast_path_equals_msgspec_path_on_capture(shared_dir: Path, name: str) -> None:
    lines = capture(shared_dir, name)
    fast = decode_capture_lines(lines, evk.SymbolTable(), venue_of(name), snapshot_symbol=symbol_of(name))
    slow = decode_reference_path(lines, venue_of(name), evk.SymbolTable(), snapshot_symbol=symbol_of(name))
    assert fast.events.tobytes() == slow.events.tobytes()
    assert stats_key(fast.stats) == stats_key(slow.stats)


def test_batches_concatenate_to_the_whole(shared_dir: Path) -> None:
    lines = capture(shared_dir, "usdm_btcusdt_20240808")[:20_000]
    symbols = evk.SymbolTable()
    whole = decode_capture_lines(lines, symbols, VENUE_USDM, snapshot_symbol="BTCUSDT")
    parts = [
        decode_capture_lines(lines[a : a + 777], symbols, VENUE_USDM, first_line=a + 1, snapshot_symbol="BTCUSDT")
        for a in range(0, len(lines), 777)
    ]
    joined = DecodeResult.concat(parts)
    assert joined.events.tobytes() == whole.events.tobytes()
    assert stats_key(joined.stats) == stats_key(whole.stats)


def test_decode_payloads_matches_capture_lines(shared_dir: Path) -> None:
    lines = capture(shared_dir, "spot_ethusdt_20240808")[:5000]
    ingest = np.array([int(line.split(b" ", 1)[0]) for line in lines], dtype=np.int64)
    payloads = [line.split(b" ", 1)[1] for line in lines]
    a = decode_capture_lines(lines, evk.SymbolTable(), VENUE_SPOT, snapshot_symbol="ETHUSDT")
    b = decode_payloads(payloads, ingest, evk.SymbolTable(), VENUE_SPOT, snapshot_symbol="ETHUSDT")
    assert a.events.tobytes() == b.events.tobytes()
    assert stats_key(a.stats) == stats_key(b.stats)
    with pytest.raises(ValueError, match="one per payload"):
        decode_payloads(payloads, ingest[:-1], evk.SymbolTable(), VENUE_SPOT)


# --- bad input ---------------------------------------------------------------------------------------


def test_bad_lines_are_counted_with_line_numbers_and_lose_no_neighbour(shared_dir: Path) -> None:
    good = list(capture(shared_dir, "usdm_btcusdt_20240808")[:40])
    depth = next(x for x in good if b"depthUpdate" in x)
    ticker = next(x for x in good if b'"bookTicker"' in x)
    ingest = b"1723161255030314667 "
    bad: list[tuple[bytes, str, str]] = [  # (line, cause or "unknown:<key>", expected text in the reason)
        (depth[: len(depth) // 2], "json", "invalid JSON"),
        (ingest + b'{"stream":"btcusdt@fooBar","data":{"e":"fooBar","E":1}}', "unknown:fooBar", "fooBar"),
        (ingest + b'{"e":"fooBar","E":1,"s":"BTCUSDT"}', "unknown:fooBar", "fooBar"),
        (re.sub(rb'"u":\d+,', b"", depth, count=1), "schema", "missing required field `u`"),
        (re.sub(rb'"b":"[^"]+"', b'"b":"abc"', ticker, count=1), "number", "Expected `float`"),
        (re.sub(rb'"A":"[^"]+"', b'"A":"NaN"', ticker, count=1), "number", "bad number in 'A'"),
        (re.sub(rb'\["61496.50","0.010"\]', b'["61496.50","x"]', depth, count=1), "number", "bad level list"),
        (ticker.split(b" ", 1)[1], "prefix", "does not start with"),
        (b"", "empty", "empty line"),
        (b"   \t", "empty", "empty line"),
        (b"99999999999999999999999 " + ticker.split(b" ", 1)[1], "prefix", "does not fit int64"),
        (b"1723161255030314667", "prefix", "no JSON"),
        (ingest + b"[1,2,3]", "schema", "not a market-data object"),
    ]
    assert bad[6][0] != depth  # the level substitution hit
    lines: list[bytes] = []
    expected_errors: list[tuple[int, str, str]] = []
    first_line = 101
    for k, line in enumerate(good):
        lines.append(line)
        if k % 3 == 2 and bad:
            b, cause, text = bad.pop(0)
            lines.append(b)
            expected_errors.append((first_line + len(lines) - 1, cause, text))
    assert not bad

    result = decode_capture_lines(lines, evk.SymbolTable(), VENUE_USDM, first_line=first_line)
    alone = decode_capture_lines(good, evk.SymbolTable(), VENUE_USDM)
    assert result.events.tobytes() == alone.events.tobytes()  # no good neighbour lost or changed
    s = result.stats
    assert s.by_type == alone.stats.by_type
    assert s.unknown == {"fooBar": 2}
    malformed = [c for _, c, _ in expected_errors if not c.startswith("unknown")]
    assert s.malformed == len(malformed)
    assert s.malformed_by == dict(Counter(malformed))
    assert s.messages == len(lines) == s.decoded + sum(s.unknown.values()) + s.malformed
    assert [line for line, _ in s.errors] == [line for line, _, _ in expected_errors]
    for (_, reason), (_, _, text) in zip(s.errors, expected_errors, strict=True):
        assert text in reason


def test_same_bad_input_gives_same_result_without_fast_path(shared_dir: Path) -> None:
    good = list(capture(shared_dir, "usdm_btcusdt_20240808")[:30])
    ticker = next(x for x in good if b'"bookTicker"' in x)
    lines = [*good[:10], re.sub(rb'"b":"[^"]+"', b'"b":"1e999"', ticker), *good[10:], ticker[:50]]
    fast = decode_capture_lines(lines, evk.SymbolTable(), VENUE_USDM)
    slow = decode_reference_path(lines, VENUE_USDM, evk.SymbolTable())
    assert fast.events.tobytes() == slow.events.tobytes()
    assert stats_key(fast.stats) == stats_key(slow.stats)
    assert fast.stats.malformed == 2


def test_errors_are_capped_but_counts_exact() -> None:
    lines = [b"garbage"] * (MAX_ERRORS + 50)
    s = decode_capture_lines(lines, evk.SymbolTable(), VENUE_USDM).stats
    assert s.malformed == MAX_ERRORS + 50 == s.malformed_by["prefix"]
    assert [line for line, _ in s.errors] == list(range(1, MAX_ERRORS + 1))


def test_snapshot_without_a_symbol_in_a_multi_symbol_batch_is_malformed() -> None:
    lines = [
        b'1 {"stream":"btcusdt@trade","data":{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","m":true}}',
        b'2 {"stream":"ethusdt@trade","data":{"e":"trade","E":1,"T":1,"s":"ETHUSDT","t":2,"p":"1","q":"1","m":true}}',
        b'3 {"lastUpdateId":5,"bids":[["1","1"]],"asks":[]}',
    ]
    s = decode_capture_lines(lines, evk.SymbolTable(), VENUE_SPOT).stats
    assert (s.malformed_by, [line for line, _ in s.errors]) == ({"symbol": 1}, [3])
    named = decode_capture_lines(lines, evk.SymbolTable(), VENUE_SPOT, snapshot_symbol="BTCUSDT")
    assert named.stats.by_type == {"trade": 2, "snapshot": 1}


def test_stats_merge_sums_and_caps() -> None:
    a = DecodeStats(3, 5, 1, {"trade": 2}, {"x": 1}, 0, {}, [(2, "unknown")])
    b = DecodeStats(4, 6, 0, {"trade": 1, "kline": 1}, {"x": 1}, 2, {"json": 2}, [(k, "bad") for k in range(200)])
    merged = a.merge(b)
    assert merged is a
    assert (a.messages, a.events, a.klines, a.malformed) == (7, 11, 1, 2)
    assert (a.by_type, a.unknown, a.malformed_by) == ({"trade": 3, "kline": 1}, {"x": 2}, {"json": 2})
    assert len(a.errors) == MAX_ERRORS and a.errors[0] == (2, "unknown")


# --- the other message types -------------------------------------------------------------------------

OTHER = [
    b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1700000000100,"s":"BTCUSDT","a":5933014,'
    b'"p":"0.001","q":"100","f":100,"l":105,"T":1700000000099,"m":true}}',
    b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1638747660000,"s":"BTCUSDT","k":{"t":1638747660000,'
    b'"T":1638747719999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025",'
    b'"l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}}',
    b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1638747720000,"s":"BTCUSDT","k":{"t":1638747660000,'
    b'"T":1638747719999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0021","h":"0.0025",'
    b'"l":"0.0015","v":"1001.5","n":101,"x":true,"q":"1.5000","V":"501","Q":"0.500","B":"123456"}}}',
    b'{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT",'
    b'"p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}}',
    b'{"stream":"btcusd_201225@markPrice","data":{"e":"markPriceUpdate","E":1596095725000,"s":"BTCUSD_201225",'
    b'"p":"10934.62615417","P":"10962.17178236","r":"","T":0}}',
    b'{"stream":"!forceOrder@arr","data":{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL",'
    b'"o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9920.5","X":"FILLED","l":"0.014","z":"0.014",'
    b'"T":1568014460890}}}',
    b'{"e":"depthUpdate","E":1,"T":2,"s":"BTCUSDT","U":10,"u":12,"pu":9,"b":[],"a":[]}',
    b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}',
    b'{"data":{"u":7,"s":"BNBUSDT","b":"1","B":"2","a":"3","A":"4"},"stream":"bnbusdt@bookTicker"}',
    b'{"stream":"btcusdt@depth20@100ms","data":{"lastUpdateId":1,"bids":[],"asks":[]}}',
    b'{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1","r":"0","T":0}]}',
]


@pytest.mark.parametrize("fast_path", [True, False])
def test_other_message_types(fast_path: bool) -> None:
    symbols = evk.SymbolTable()
    lines = [b"%d %s" % (1000 + k, text) for k, text in enumerate(OTHER)]
    if fast_path:
        result = decode_capture_lines(lines, symbols, VENUE_COINM)
    else:
        result = decode_reference_path(lines, VENUE_COINM, symbols)
    s = result.stats
    assert s.by_type == {
        "aggTrade": 1,
        "kline": 2,
        "markPriceUpdate": 2,
        "forceOrder": 1,
        "depthUpdate": 1,
        "bookTicker": 2,
    }
    assert s.unknown == {"depth20": 1, "markPrice[]": 1}
    assert s.malformed == 0
    ns = 1_000_000
    sid = {name.split(":")[1]: k for k, name in enumerate(symbols.to_list())}
    assert list(sid) == ["BTCUSDT", "BTCUSD_201225", "BNBUSDT"]  # interned in first-appearance order
    btc, dlv, bnb = sid["BTCUSDT"], sid["BTCUSD_201225"], sid["BNBUSDT"]
    want: list[tuple[Any, ...]] = [
        (evk.AGG_TRADE | evk.SELL, btc, 1700000000099 * ns, 1000, 0.001, 100.0, 5933014, 100, 105),
        (evk.MARK, btc, 1562305380000 * ns, 1003, 11794.15, 0.00038167, 1562306400000, 0, -1),
        (evk.MARK, dlv, 1596095725000 * ns, 1004, 10934.62615417, np.nan, 0, 0, -1),
        (evk.LIQUIDATION | evk.SELL, btc, 1568014460890 * ns, 1005, 9920.5, 0.014, 0, 0, -1),
        (evk.DEPTH | evk.LAST_IN_MSG, btc, 2 * ns, 1006, np.nan, np.nan, 12, 10, 9),
        (evk.BBO | evk.BID, bnb, 1007, 1007, 25.3519, 31.21, 400900217, 400900217, -1),
        (evk.BBO | evk.ASK | evk.LAST_IN_MSG, bnb, 1007, 1007, 25.3652, 40.66, 400900217, 400900217, -1),
        (evk.BBO | evk.BID, bnb, 1008, 1008, 1.0, 2.0, 7, 7, -1),
        (evk.BBO | evk.ASK | evk.LAST_IN_MSG, bnb, 1008, 1008, 3.0, 4.0, 7, 7, -1),
    ]
    got = [tuple(r) for r in result.events.tolist()]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:4] == w[:4] and g[6:] == w[6:], (g, w)
        np.testing.assert_array_equal(g[4:6], w[4:6])
    (bar,) = result.klines.tolist()  # only the closed bar
    assert bar == (btc, 1638747660000 * ns, 1638747719999 * ns, 0.001, 0.0025, 0.0015, 0.0021, 1001.5, 1.5, 501.0, 101)


# --- property tests ----------------------------------------------------------------------------------

decimal_text = st.one_of(
    st.decimals(min_value=-(10**12), max_value=10**12, allow_nan=False, places=8).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.integers(min_value=0, max_value=10**25).map(str),
    st.tuples(st.integers(0, 10**17), st.integers(-30, 30)).map(lambda t: f"{t[0]}e{t[1]}"),
    st.tuples(st.integers(0, 99999), st.integers(0, 12)).map(lambda t: f"{t[0]}.{'0' * t[1]}"),
)


@given(values=st.lists(decimal_text, min_size=1, max_size=40))
@settings(max_examples=300, deadline=None)
def test_numbers_parse_exactly_like_float(values: list[str]) -> None:
    raws = [msgspec.Raw(json.dumps(v).encode()) for v in values]
    got, ok = dec._raw_numbers(raws)
    assert ok.all()
    assert got.tolist() == [float(v) for v in values]


level_text = st.tuples(st.integers(1, 10**9), st.integers(0, 8), st.integers(0, 10**12), st.integers(0, 8)).map(
    lambda t: (f"{t[0] / 10 ** t[1]:.{t[1]}f}", f"{t[2] / 10 ** t[3]:.{t[3]}f}")
)


@given(
    bids=st.lists(level_text, max_size=30),
    asks=st.lists(level_text, max_size=30),
    spaces=st.sampled_from(["", " ", "\n ", "\t"]),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_level_lists_round_trip(bids: list[tuple[str, str]], asks: list[tuple[str, str]], spaces: str) -> None:
    def lst(levels: list[tuple[str, str]]) -> str:
        inner = f",{spaces}".join(f'[{spaces}"{p}",{spaces}"{q}"{spaces}]' for p, q in levels)
        return f"[{spaces}{inner}{spaces}]"

    text = (
        f'{{"e":"depthUpdate","E":5,"T":6,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":{lst(bids)},"a":{lst(asks)}}}'
    ).encode()
    ev = decode_payloads([text], np.array([7]), evk.SymbolTable(), VENUE_USDM).events
    levels = [(evk.BID, p, q) for p, q in bids] + [(evk.ASK, p, q) for p, q in asks]
    if not levels:
        assert len(ev) == 1 and np.isnan(ev["px"][0]) and ev["kind"][0] == evk.DEPTH | evk.LAST_IN_MSG
        return
    assert len(ev) == len(levels)
    assert ev["px"].tolist() == [float(p) for _, p, _ in levels]
    assert ev["qty"].tolist() == [float(q) for _, _, q in levels]
    sides = [side for side, _, _ in levels]
    assert (ev["kind"] & (evk.BID | evk.ASK)).tolist() == sides
    assert ((ev["kind"] & evk.LAST_IN_MSG) != 0).tolist() == [False] * (len(levels) - 1) + [True]
    assert (ev["seq"] == 2).all() and (ev["first_seq"] == 1).all() and (ev["prev_seq"] == 0).all()


# Random messages of the fast path's types (depthUpdate, bookTicker, trade, aggTrade) with valid, unusual
# and invalid JSON: the fast path must agree with msgspec on every one of them, to the byte and to the
# error message.
ws = st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n"])
number_token = st.one_of(
    decimal_text,
    st.sampled_from(
        ["01.5", "1.", ".5", "+1", "1e999", "-0", "0.0000000000000000000001", "1E+2", "00", "1e", "-0.0", "-0e1"]
    ),
)
value_of = {
    "price": st.one_of(
        number_token.map(lambda v: f'"{v}"'),
        number_token,
        st.sampled_from(['"NaN"', '"inf"', '""', '"abc"', "null", "true", '["1"]', '"1\\u0030"']),
    ),
    "int": st.one_of(
        st.integers(-5, 10**13).map(str),
        st.sampled_from(['"123"', "1.0", "1e3", "99999999999999999999", "-1", "null", "9000000000001", "012"]),
    ),
    "bool": st.sampled_from(["true", "false", '"true"', "1", "null"]),
    "sym": st.sampled_from(['"BTCUSDT"', '"ETHUSDT"', '"BTC\\u0055SDT"', '"BTC\\"X"', '"BTCÜSDT"', "1", '""']),
    "extra": st.sampled_from(['"x"', "1", "1.5e3", "null", "true", "[1,[2]]", '{"a":{"b":1}}', '"\\n"']),
}
level_value = st.one_of(number_token.map(lambda v: f'"{v}"'), number_token, st.sampled_from(['""', "null", '"x"']))
level = st.one_of(
    st.tuples(level_value, level_value, ws).map(lambda t: f"[{t[2]}{t[0]},{t[2]}{t[1]}{t[2]}]"),
    st.sampled_from(['["1","2","3"]', '["1"]', "[]", '"1"', '[["1","2"]]', "{}"]),
)
value_of["levels"] = st.one_of(
    st.lists(level, max_size=6).map(lambda levels: "[" + ",".join(levels) + "]"),
    st.sampled_from(["[", "null", '"[]"', "[[]", "[1]"]),
)
FIELDS = {
    "depthUpdate": {
        "E": "int",
        "T": "int",
        "s": "sym",
        "U": "int",
        "u": "int",
        "pu": "int",
        "b": "levels",
        "a": "levels",
    },
    "bookTicker": {
        "u": "int",
        "s": "sym",
        "b": "price",
        "B": "price",
        "a": "price",
        "A": "price",
        "T": "int",
        "E": "int",
    },
    "trade": {"E": "int", "T": "int", "s": "sym", "t": "int", "p": "price", "q": "price", "m": "bool"},
    "aggTrade": {
        "E": "int",
        "T": "int",
        "s": "sym",
        "a": "int",
        "p": "price",
        "q": "price",
        "f": "int",
        "l": "int",
        "m": "bool",
    },
}
GOOD = {"int": "5", "price": '"1.25"', "bool": "false", "sym": '"BTCUSDT"', "levels": '[["1.5","2"],["1.4","0"]]'}


def key_text(key: str) -> str:
    """A JSON key; keys holding a backslash are written as given (an escape such as \\u0075)."""
    return f'"{key}"' if "\\" in key else json.dumps(key)


@st.composite
def flat_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(sorted(FIELDS)))
    members: list[tuple[str, str]] = []
    for key, sort in FIELDS[kind].items():
        if draw(st.integers(0, 30)) == 0:
            continue  # a missing field
        tweak = draw(st.integers(0, 3)) == 0
        members.append((key, draw(value_of[sort]) if tweak else GOOD[sort]))
    e_choice = draw(st.sampled_from(["right", "right", "none", "wrong", "null"]))
    if e_choice == "right" or (kind != "bookTicker" and e_choice == "none" and draw(st.booleans())):
        members.append(("e", json.dumps(kind)))
    elif e_choice == "wrong":
        members.append(("e", '"trade"' if kind != "trade" else '"aggTrade"'))
    elif e_choice == "null":
        members.append(("e", "null"))
    for _ in range(draw(st.integers(0, 2))):
        members.append((draw(st.sampled_from(["X", "M", "zz", "u", "\\u0075"])), draw(value_of["extra"])))
    order = draw(st.permutations(members))
    parts = [f"{draw(ws)}{key_text(k)}{draw(ws)}:{draw(ws)}{v}{draw(ws)}" for k, v in order]
    payload = "{" + ",".join(parts) + "}"
    stream = {
        "depthUpdate": "btcusdt@depth@100ms",
        "bookTicker": "btcusdt@bookTicker",
        "trade": "btcusdt@trade",
        "aggTrade": "btcusdt@aggTrade",
    }[kind]
    layout = draw(st.sampled_from(["envelope", "envelope", "bare", "loose-envelope"]))
    if layout == "envelope":
        text = f'{{"stream":"{stream}","data":{payload}}}'
    elif layout == "loose-envelope":
        text = f'{{ "data" : {payload}, "stream": "{stream}" }}'
    else:
        text = payload
    if draw(st.integers(0, 20)) == 0:
        text = text[: draw(st.integers(1, len(text)))]  # truncated
    return f"{draw(st.integers(1, 2**62))} {text}".encode()


@given(lines=st.lists(flat_line(), min_size=1, max_size=25))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_fast_path_agrees_with_msgspec_on_random_messages(lines: list[bytes]) -> None:
    fast = decode_capture_lines(lines, evk.SymbolTable(), VENUE_USDM)
    slow = decode_reference_path(lines, VENUE_USDM, evk.SymbolTable())
    assert fast.events.tobytes() == slow.events.tobytes()
    assert stats_key(fast.stats) == stats_key(slow.stats)
    s = fast.stats
    assert s.messages == len(lines) == s.decoded + sum(s.unknown.values()) + s.malformed


def test_invalid_utf8_is_one_malformed_line_and_keeps_its_neighbours() -> None:
    from tradeplane.engine.binance.decode import decode_capture_lines
    from tradeplane.engine.events import SymbolTable

    good = (
        b'1723161255030314667 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256299,'
        b'"T":1723161256298,"s":"BTCUSDT","t":1,"p":"61800.10","q":"0.010","m":false}}'
    )
    bad = good.replace(b'"s":"BTCUSDT"', b'"s":"BTC\xffUSDT"')
    result = decode_capture_lines([good, bad, good], SymbolTable(), "binance-usdm")
    assert result.stats.malformed == 1 and result.stats.by_type == {"trade": 2}
    assert result.stats.errors[0][0] == 2 and "UTF-8" in result.stats.errors[0][1]
    assert len(result.events) == 2
