"""tradeplane.engine.replay on the real files in ../shared/data (see its SOURCES.md).

Captures: streamed batches equal one whole decode whatever the batch size, line numbers in errors are
file line numbers, gzip and plain files read the same. Klines: row counts and spacing from SOURCES.md,
and 1-hour bars rebuilt from the 1-minute file equal the 1-hour file on the 657 overlapping hours.
Funding: row count, 8-hour spacing within the recorded jitter, mark price missing only before
2023-10-31. Broken CSVs name the file and the line.
"""

from __future__ import annotations

import gzip
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tradeplane.engine import events as evk
from tradeplane.engine import replay
from tradeplane.engine.binance import VENUE_COINM, VENUE_SPOT, VENUE_USDM, DecodeResult, decode_capture_lines
from tradeplane.engine.replay import (
    DataFileError,
    iter_capture,
    read_capture,
    read_funding_csv,
    read_klines_csv,
    symbol_from_capture_name,
    venue_from_capture_name,
)

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS


def data(shared: Path, *parts: str) -> Path:
    return shared.joinpath("data", "binance", *parts)


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


@pytest.mark.parametrize(
    ("name", "venue", "symbol"),
    [
        ("usdm_btcusdt_20240808.jsonl.gz", VENUE_USDM, "BTCUSDT"),
        ("spot_ethusdt_20240809.jsonl", VENUE_SPOT, "ETHUSDT"),
        ("/x/y/coinm_btcusd_perp_20240808.jsonl.gz", VENUE_COINM, "BTCUSD_PERP"),
    ],
)
def test_capture_names(name: str, venue: str, symbol: str) -> None:
    assert venue_from_capture_name(name) == venue
    assert symbol_from_capture_name(name) == symbol


def test_capture_name_without_a_venue_is_an_error() -> None:
    with pytest.raises(DataFileError, match=r"options_btc\.jsonl: cannot tell the venue"):
        venue_from_capture_name("options_btc.jsonl")
    assert symbol_from_capture_name("capture.jsonl") is None


def test_streamed_batches_equal_the_whole_file(shared_dir: Path) -> None:
    path = data(shared_dir, "ws", "usdm_btcusdt_20240808.jsonl.gz")
    symbols = evk.SymbolTable()
    whole = read_capture(path, symbols)
    assert whole.stats.by_type == {"depthUpdate": 6551, "bookTicker": 66089, "trade": 21313, "snapshot": 1}
    assert (whole.stats.messages, whole.stats.malformed, whole.stats.unknown) == (93_954, 0, {})
    assert symbols.to_list() == ["binance-usdm:BTCUSDT"]
    with gzip.open(path) as f:
        direct = decode_capture_lines(f.read().splitlines(), evk.SymbolTable(), VENUE_USDM, snapshot_symbol="BTCUSDT")
    assert whole.events.tobytes() == direct.events.tobytes()

    batches = list(iter_capture(path, symbols, batch_lines=5000))
    assert [b.stats.messages for b in batches] == [5000] * 18 + [3954]  # bounded: one batch at a time
    assert np.concatenate([b.events for b in batches]).tobytes() == whole.events.tobytes()


def test_errors_carry_file_line_numbers_and_plain_files_work(shared_dir: Path, tmp_path: Path) -> None:
    with gzip.open(data(shared_dir, "ws", "spot_btcusdt_20240808.jsonl.gz")) as f:
        lines = f.read().splitlines()[:300]
    lines[149] = b"not a capture line"
    lines[250] = lines[250][:40]
    plain = tmp_path / "spot_btcusdt_20240808.jsonl"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    zipped = tmp_path / "spot_btcusdt_20240808.jsonl.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))

    for path in (plain, zipped):
        results = list(iter_capture(path, evk.SymbolTable(), batch_lines=100))
        assert [line for r in results for line, _ in r.stats.errors] == [150, 251]
        assert sum(r.stats.malformed for r in results) == 2
        assert sum(r.stats.decoded for r in results) == 298
    assert (
        read_capture(plain, evk.SymbolTable()).events.tobytes()
        == read_capture(zipped, evk.SymbolTable()).events.tobytes()
    )


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_lines"):
        next(iter_capture(tmp_path / "usdm_x_1.jsonl", evk.SymbolTable(), batch_lines=0))


# --- capture reading: blocks, gzip members, damaged files ---------------------------------------------

CAPTURE_NAME = "usdm_btcusdt_20240808.jsonl"


@pytest.fixture(scope="module")
def head_lines(shared_dir: Path) -> list[bytes]:
    """The first 2000 lines of the USD-M capture: diffs, tickers, trades and the REST snapshot (line 55)."""
    with gzip.open(data(shared_dir, "ws", CAPTURE_NAME + ".gz")) as f:
        return [next(f).rstrip(b"\n") for _ in range(2000)]


def decoded_directly(lines: list[bytes]) -> DecodeResult:
    return decode_capture_lines(lines, evk.SymbolTable(), VENUE_USDM, snapshot_symbol="BTCUSDT")


def streamed(
    path: Path, batch_lines: int = 8192, block_bytes: int = 4 << 20, read_bytes: int | None = None
) -> list[DecodeResult]:
    """iter_capture with chosen block and read sizes (reads of ``block_bytes`` unless told)."""
    read_bytes = block_bytes if read_bytes is None else read_bytes
    return list(replay._iter_capture(path, evk.SymbolTable(), None, batch_lines, None, block_bytes, read_bytes))


def test_events_do_not_depend_on_batch_or_block_size(head_lines: list[bytes], tmp_path: Path) -> None:
    """Batch and block boundaries fall anywhere (mid-line, on a newline) and so do compressed reads (the
    gzip header and trailer included); the events and the line count never change, and neither does a
    missing last newline."""
    direct = decoded_directly(head_lines)
    assert direct.stats.by_type == {"depthUpdate": 169, "bookTicker": 1483, "trade": 347, "snapshot": 1}
    text = b"\n".join(head_lines) + b"\n"
    plain, zipped, unterminated = (
        tmp_path / "a" / CAPTURE_NAME,
        tmp_path / "b" / CAPTURE_NAME,
        tmp_path / "c" / CAPTURE_NAME,
    )
    for path, content in ((plain, text), (zipped, gzip.compress(text)), (unterminated, gzip.compress(text[:-1]))):
        path.parent.mkdir()
        path.write_bytes(content)
        assert read_capture(path, evk.SymbolTable()).events.tobytes() == direct.events.tobytes()
        for batch_lines in (1, 7, 8192):
            results = list(iter_capture(path, evk.SymbolTable(), batch_lines=batch_lines))
            assert [r.stats.messages for r in results[:-1]] == [batch_lines] * (len(results) - 1)
            assert np.concatenate([r.events for r in results]).tobytes() == direct.events.tobytes()
        for block_bytes in (13, 4096):
            results = streamed(path, batch_lines=7, block_bytes=block_bytes)
            assert sum(r.stats.messages for r in results) == 2000
            assert np.concatenate([r.events for r in results]).tobytes() == direct.events.tobytes()


def test_concatenated_gzip_members_are_one_file(head_lines: list[bytes], tmp_path: Path) -> None:
    """``cat a.gz b.gz`` (and appending recorders) make multi-member files; a member may end mid-line,
    and zero padding after the last member is ignored, as gzip does."""
    text = b"\n".join(head_lines) + b"\n"
    cut = text.index(b"\n", len(text) // 2) - 100  # mid-line
    path = tmp_path / CAPTURE_NAME
    path.write_bytes(gzip.compress(text[:cut]) + gzip.compress(text[cut:]) + b"\x00" * 1000)
    direct = decoded_directly(head_lines)
    for block_bytes in (17, 4 << 20):
        results = streamed(path, block_bytes=block_bytes)
        assert sum(r.stats.messages for r in results) == 2000
        assert sum(r.stats.malformed for r in results) == 0
        assert np.concatenate([r.events for r in results]).tobytes() == direct.events.tobytes()


def test_damaged_gzip_files_name_the_file(head_lines: list[bytes], tmp_path: Path) -> None:
    text = b"\n".join(head_lines) + b"\n"
    whole = gzip.compress(text)
    cases = {
        "truncated": (whole[: len(whole) // 2], r"truncated gzip data: the file ends inside member 1"),
        "no trailer": (whole[:-8], r"truncated gzip data"),
        "bad crc": (whole[:-8] + bytes([whole[-8] ^ 1]) + whole[-7:], r"corrupt gzip data in member 1: .*check"),
        "bad deflate": (whole[:40] + b"\xff" * 64 + whole[104:], r"corrupt gzip data in member 1"),
        "junk after": (whole + b"not gzip", r"bytes after gzip member 1 are not gzip data"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name / CAPTURE_NAME
        path.parent.mkdir()
        path.write_bytes(content)
        with pytest.raises(DataFileError, match=rf"^{re.escape(str(path))}: {reason}") as info:
            read_capture(path, evk.SymbolTable())
        assert info.value.path == path and info.value.line is None, name
    crc_broken = tmp_path / "bad crc" / CAPTURE_NAME
    with pytest.raises(DataFileError):  # the CSV readers share the file reader
        read_klines_csv(crc_broken, 0)


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("shift", [-1, 0, 1])
def test_malformed_line_at_a_block_boundary_keeps_its_file_line_number(
    head_lines: list[bytes], tmp_path: Path, gzipped: bool, shift: int
) -> None:
    """The first block ends right before line 501's newline (shift -1), right after it (0: line 502
    starts a block), or one byte into line 502 (1); the broken line 502 is reported as line 502."""
    lines = list(head_lines)
    lines[501] = b"1723161255030314667 {broken"
    text = b"\n".join(lines) + b"\n"
    boundary = sum(len(line) + 1 for line in lines[:501]) + shift
    path = tmp_path / CAPTURE_NAME
    path.write_bytes(gzip.compress(text) if gzipped else text)
    first_block = next(replay._read_blocks(path, boundary, len(text)))
    assert first_block == text[:boundary]
    for batch_lines in (7, 500, 501, 8192):
        results = streamed(path, batch_lines=batch_lines, block_bytes=boundary, read_bytes=len(text))
        assert [line for r in results for line, _ in r.stats.errors] == [502]
        assert sum(r.stats.messages for r in results) == 2000
        assert sum(r.stats.malformed for r in results) == 1


def test_empty_captures(tmp_path: Path) -> None:
    for name, content in (("plain", b""), ("gzip", gzip.compress(b"")), ("newlines", b"\n\n")):
        path = tmp_path / name / CAPTURE_NAME
        path.parent.mkdir()
        path.write_bytes(content)
        result = read_capture(path, evk.SymbolTable())
        assert (len(result.events), result.stats.messages) == (0, content.count(b"\n")), name


# --- klines ------------------------------------------------------------------------------------------


def test_minute_klines(shared_dir: Path) -> None:
    bars = read_klines_csv(data(shared_dir, "klines", "binance_usdm_btcusdt_1m_2025-05-04_2025-06-24.csv.gz"), 7)
    assert len(bars) == 73_139
    assert (bars["symbol"] == 7).all()
    assert bars["open_ts"][0] == ns("2025-05-04 15:33:00") and bars["open_ts"][-1] == ns("2025-06-24 10:31:00")
    assert (np.diff(bars["open_ts"]) == MINUTE_NS).all()  # continuous, strictly increasing
    assert (bars["close_ts"] == bars["open_ts"] + MINUTE_NS - 10**6).all()
    assert (bars["low"] <= np.minimum(bars["open"], bars["close"])).all()
    assert (bars["high"] >= np.maximum(bars["open"], bars["close"])).all()
    assert np.isnan(bars["quote_volume"]).all() and np.isnan(bars["taker_buy_volume"]).all()
    assert (bars["trades"] == -1).all()
    assert (bars["open"][0], bars["volume"][0]) == (95505.4, 16.536)


def test_hour_klines_equal_bars_rebuilt_from_minutes(shared_dir: Path) -> None:
    minutes = read_klines_csv(data(shared_dir, "klines", "binance_usdm_btcusdt_1m_2025-05-04_2025-06-24.csv.gz"), 0)
    hours = read_klines_csv(data(shared_dir, "klines", "binance_usdm_btcusdt_1h_2025-01-01_2025-06-01.csv.gz"), 0)
    assert len(hours) == 3_625
    assert (np.diff(hours["open_ts"]) == HOUR_NS).all()
    assert (hours["close_ts"] == hours["open_ts"] + HOUR_NS - 10**6).all()
    assert (hours["trades"] > 0).all() and np.isfinite(hours["quote_volume"]).all()
    assert (hours["taker_buy_volume"] <= hours["volume"]).all()

    hour_of = minutes["open_ts"] // HOUR_NS
    starts = np.flatnonzero(np.r_[True, np.diff(hour_of) != 0])
    sizes = np.diff(np.r_[starts, len(minutes)])
    full = starts[sizes == 60]  # complete hours only
    rebuilt = {
        int(hour_of[s]): (
            minutes["open"][s],
            minutes["high"][s : s + 60].max(),
            minutes["low"][s : s + 60].min(),
            minutes["close"][s + 59],
            int(np.round(minutes["volume"][s : s + 60] * 1000).sum()),  # BTC with 3 decimals: exact in units
        )
        for s in full
    }
    matched = 0
    for row in hours:
        key = int(row["open_ts"] // HOUR_NS)
        if key in rebuilt:
            assert rebuilt[key] == (row["open"], row["high"], row["low"], row["close"], round(row["volume"] * 1000))
            matched += 1
    assert matched == 657


def test_kline_csv_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "k_1m_.csv"
    bad.write_text("open_time,open,high,low,close,volume\n1000,1,2,0.5,1.5,3\n61000,1,2,x,1.5,3\n")
    with pytest.raises(DataFileError, match=r"k_1m_\.csv:3: could not convert string to float: 'x'") as info:
        read_klines_csv(bad, 0)
    assert info.value.line == 3
    short = tmp_path / "short.csv"
    short.write_text("open_time,open,high,low,close,volume\n1000,1,2,0.5,1.5\n")
    with pytest.raises(DataFileError, match=r"short\.csv:2: expected 6 columns, got 5"):
        read_klines_csv(short, 0)
    header = tmp_path / "header.csv"
    header.write_text("time,o,h,l,c,v\n")
    with pytest.raises(DataFileError, match=r"header\.csv:1: unknown kline header"):
        read_klines_csv(header, 0)
    naive = tmp_path / "naive.csv.gz"
    row = "2025-01-01 00:00:00,1,1,1,1,1,2025-01-01 00:59:59.999,1,1,1,1,0\n"
    naive.write_bytes(
        gzip.compress(
            (
                ",".join(
                    [
                        "open_time",
                        "open",
                        "high",
                        "low",
                        "close",
                        "volume",
                        "close_time",
                        "quote_asset_volume",
                        "number_of_trades",
                        "taker_buy_base_volume",
                        "taker_buy_quote_volume",
                        "ignore",
                    ]
                )
                + "\n"
                + row
            ).encode()
        )
    )
    with pytest.raises(DataFileError, match=r"naive\.csv\.gz:2: time .* has no UTC offset"):
        read_klines_csv(naive, 0)


# --- funding -----------------------------------------------------------------------------------------


def test_funding_history(shared_dir: Path) -> None:
    path = data(shared_dir, "funding", "binance_usdm_btcusdt_funding_2019-09-10_2026-04-07.csv.gz")
    marks = read_funding_csv(path, 3)
    assert len(marks) == 7_204
    assert (marks["kind"] == evk.MARK).all() and (marks["symbol"] == 3).all()
    ts = marks["exchange_ts"]
    assert ts[0] == ns("2019-09-10 08:00:00") and ts[-1] == ns("2026-04-07 08:00:00")
    steps = np.diff(ts)
    assert (np.abs(steps - 8 * HOUR_NS) <= 100 * 10**6).all()  # every 8 h, a few tens of ms of jitter
    assert (steps != 8 * HOUR_NS).any()  # the jitter is kept, not rounded away
    assert (marks["ingest_ts"] == ts).all() and (marks["seq"] == ts // 10**6).all()
    assert np.isfinite(marks["qty"]).all() and marks["qty"][0] == 0.0001 and marks["qty"][-1] == 3.703e-05
    missing = np.isnan(marks["px"])
    cutoff = ns("2023-10-31 00:00:00")
    assert missing[ts < cutoff].all() and not missing[ts > cutoff + HOUR_NS * 24].any()
    assert marks["px"][-1] == 68594.77686657


def test_funding_csv_errors(tmp_path: Path) -> None:
    mixed = tmp_path / "funding.csv"
    mixed.write_text(
        "symbol,fundingTime,fundingRate,markPrice\n"
        "BTCUSDT,2020-01-01 00:00:00+00:00,0.0001,\n"
        "ETHUSDT,2020-01-01 08:00:00+00:00,0.0001,\n"
    )
    with pytest.raises(DataFileError, match=r"funding\.csv:3: symbol 'ETHUSDT' differs"):
        read_funding_csv(mixed, 0)
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,fundingTime,fundingRate,markPrice\nBTCUSDT,yesterday,0.0001,\n")
    with pytest.raises(DataFileError, match=r"bad\.csv:2: Invalid isoformat string"):
        read_funding_csv(bad, 0)
