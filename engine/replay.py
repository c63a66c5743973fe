"""Recorded market data → engine arrays: raw websocket captures, kline CSVs, funding-rate CSVs.

This is the one engine module that reads files (the engine is otherwise pure): a backtest, the local
runner's recorded market and the tests all replay captures through here, so a capture and a live feed
go through the same decoder (:mod:`tradeplane.engine.binance`) and produce identical events.

Captures are ``<ingest ns> <raw JSON>`` lines, gzip or plain, named ``<market>_<symbol>_<date>.jsonl[.gz]``
(``usdm_btcusdt_20240808.jsonl.gz``); the name gives the venue and the symbol of the REST depth snapshot,
which names none. :func:`iter_capture` streams a capture in micro-batches with bounded memory;
:func:`read_capture` returns the whole file as one result.

Errors in CSV files raise :class:`DataFileError` naming the file and the line; bad capture lines never
raise: the decoder counts them (see :class:`~tradeplane.engine.binance.DecodeStats`).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Final

import numpy as np

from .binance import VENUE_COINM, VENUE_SPOT, VENUE_USDM, DecodeResult, decode_capture_lines
from .events import EVENT_DTYPE, KLINE_DTYPE, MARK, EventArray, SymbolTable

__all__ = [
    "DataFileError",
    "iter_capture",
    "read_capture",
    "read_funding_csv",
    "read_klines_csv",
    "symbol_from_capture_name",
    "venue_from_capture_name",
]

#: Capture file-name prefix → SymbolTable venue.
CAPTURE_VENUES: Final = {"spot": VENUE_SPOT, "usdm": VENUE_USDM, "coinm": VENUE_COINM}
_SUFFIXES: Final = (".gz", ".jsonl", ".json", ".txt", ".csv")
_MS: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INTERVAL: Final = re.compile(r"_(\d+)([smhdw])_")
_UNIT_NS: Final = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}

PathLike = str | Path


class DataFileError(ValueError):
    """A data file that cannot be read as what it claims to be; the message names the file and line."""

    def __init__(self, path: PathLike, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = Path(path)
        self.line = line
        self.reason = reason


def _stem_tokens(path: PathLike) -> list[str]:
    name = Path(path).name
    while name.endswith(_SUFFIXES):
        name = name[: name.rindex(".")]
    return name.split("_")


def venue_from_capture_name(path: PathLike) -> str:
    """``usdm_…`` → ``binance-usdm``, ``spot_…`` → ``binance-spot``, ``coinm_…`` → ``binance-coinm``."""
    prefix = _stem_tokens(path)[0].lower()
    try:
        return CAPTURE_VENUES[prefix]
    except KeyError:
        known = ", ".join(f"{k}_…" for k in CAPTURE_VENUES)
        raise DataFileError(path, None, f"cannot tell the venue from the file name (expected {known})") from None


def symbol_from_capture_name(path: PathLike) -> str | None:
    """``usdm_btcusdt_20240808.jsonl.gz`` → ``BTCUSDT`` (``coinm_btcusd_perp_…`` → ``BTCUSD_PERP``);
    None when the name is not ``<market>_<symbol>_<date>``."""
    tokens = _stem_tokens(path)
    if len(tokens) < 3 or not tokens[-1].isdigit():
        return None
    return "_".join(tokens[1:-1]).upper()


class _Reader:
    """A binary reader over a plain or gzip file (told apart by the magic bytes, not the name); the
    context manager closes both the gzip wrapper and the file."""

    def __init__(self, path: PathLike) -> None:
        self._raw = Path(path).open("rb")  # noqa: SIM115 (closed by __exit__)
        self.stream: io.BufferedIOBase = self._raw
        if self._raw.peek(2)[:2] == b"\x1f\x8b":
            self.stream = gzip.GzipFile(fileobj=self._raw, mode="rb")

    def __enter__(self) -> io.BufferedIOBase:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not self._raw:
            self.stream.close()
        self._raw.close()


def iter_capture(
    path: PathLike,
    symbols: SymbolTable,
    venue: str | None = None,
    batch_lines: int = 8192,
    *,
    snapshot_symbol: str | None = None,
) -> Iterator[DecodeResult]:
    """Stream a capture as decoded micro-batches of ``batch_lines`` lines (memory bounded by one batch).

    ``venue`` defaults to :func:`venue_from_capture_name`; ``snapshot_symbol`` (the symbol of REST
    snapshot lines, which name none) to :func:`symbol_from_capture_name`. Error line numbers are line
    numbers in the file. Events are identical whatever ``batch_lines`` is.
    """
    if batch_lines < 1:
        raise ValueError(f"batch_lines must be ≥ 1, got {batch_lines}")
    venue = venue if venue is not None else venue_from_capture_name(path)
    snapshot_symbol = snapshot_symbol if snapshot_symbol is not None else symbol_from_capture_name(path)
    with _Reader(path) as stream:
        first_line = 1
        while lines := list(islice(stream, batch_lines)):
            yield decode_capture_lines(lines, symbols, venue, first_line=first_line, snapshot_symbol=snapshot_symbol)
            first_line += len(lines)


def read_capture(
    path: PathLike, symbols: SymbolTable, venue: str | None = None, *, snapshot_symbol: str | None = None
) -> DecodeResult:
    """A whole capture as one result (events, klines, merged stats); see :func:`iter_capture`."""
    return DecodeResult.concat(iter_capture(path, symbols, venue, snapshot_symbol=snapshot_symbol))


# --- CSV histories ----------------------------------------------------------------------------------


def _csv_rows(path: PathLike) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and (line number, fields) rows of a plain or gzip CSV, read fully (histories are small)."""
    with _Reader(path) as stream:
        raw = stream.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataFileError(path, line, f"not UTF-8 text: {exc.reason}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataFileError(path, 1, "empty file: no header") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        for fields in reader:
            if fields:
                yield reader.line_num, fields

    return header, rows()


def _iso_ns(value: str) -> int:
    """ISO-8601 with an explicit UTC offset (``2025-01-01 00:59:59.999000+00:00``) → epoch ns."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000


def _float(value: str) -> float:
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


_KLINE_SHORT: Final = ["open_time", "open", "high", "low", "close", "volume"]
_KLINE_FULL: Final = [
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


def _interval_ns(path: PathLike, open_ts: np.ndarray) -> int:
    """Bar length for files without close times: from the name (``_1m_``, ``_4h_``), else the most
    common spacing of the open times."""
    found = _INTERVAL.search(Path(path).name)
    if found:
        return int(found.group(1)) * _UNIT_NS[found.group(2)]
    steps = np.diff(open_ts)
    if not len(steps):
        raise DataFileError(path, None, "cannot tell the bar length: one row and no interval in the name")
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def read_klines_csv(path: PathLike, symbol_id: int) -> EventArray:
    """Read a Binance kline CSV into KLINE_DTYPE rows.

    Two layouts: ``open_time,open,high,low,close,volume`` with ``open_time`` in epoch ms (freqtrade
    exports; close_ts = open + bar length − 1 ms, quote/taker volume NaN, trades −1), and Binance's full
    12 columns with ISO-8601 times. Times become epoch ns; ``close_ts`` is the bar's last millisecond.
    """
    header, rows = _csv_rows(path)
    if header == _KLINE_SHORT:
        full = False
    elif header == _KLINE_FULL:
        full = True
    else:
        raise DataFileError(path, 1, f"unknown kline header {header}; expected {_KLINE_SHORT} or {_KLINE_FULL}")
    width = len(header)
    records: list[tuple[float | int, ...]] = []
    for line, fields in rows:
        if len(fields) != width:
            raise DataFileError(path, line, f"expected {width} columns, got {len(fields)}")
        try:
            if full:
                records.append(
                    (
                        _iso_ns(fields[0]),
                        _iso_ns(fields[6]),
                        *(_float(v) for v in fields[1:6]),
                        _float(fields[7]),
                        _float(fields[9]),
                        int(fields[8]),
                    )
                )
            else:
                open_ms = int(fields[0])
                records.append((open_ms * _MS, -1, *(_float(v) for v in fields[1:6]), np.nan, np.nan, -1))
        except ValueError as exc:
            raise DataFileError(path, line, str(exc)) from None
    out = np.zeros(len(records), dtype=KLINE_DTYPE)
    if not records:
        return out
    columns = list(zip(*records, strict=True))
    out["symbol"] = symbol_id
    out["open_ts"] = columns[0]
    for name, values in zip(
        ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume"), columns[2:9], strict=True
    ):
        out[name] = values
    out["trades"] = columns[9]
    out["close_ts"] = columns[1] if full else out["open_ts"] + _interval_ns(path, out["open_ts"]) - _MS
    return out


_FUNDING: Final = ["symbol", "fundingTime", "fundingRate", "markPrice"]


def read_funding_csv(path: PathLike, symbol_id: int) -> EventArray:
    """Read a funding-rate history (``symbol,fundingTime,fundingRate,markPrice``, REST
    ``/fapi/v1/fundingRate``) into MARK events.

    px = mark price (NaN when empty: Binance omits it before 2023-10-31), qty = funding rate,
    exchange_ts = ingest_ts = the funding time in ns exactly as recorded (it can carry a few ms of
    jitter), seq = the funding time in ms, first_seq = 0, prev_seq = −1. All rows must name one symbol.
    """
    header, rows = _csv_rows(path)
    if header != _FUNDING:
        raise DataFileError(path, 1, f"unknown funding header {header}; expected {_FUNDING}")
    times: list[int] = []
    rates: list[float] = []
    marks: list[float] = []
    symbol: str | None = None
    for line, fields in rows:
        if len(fields) != len(_FUNDING):
            raise DataFileError(path, line, f"expected {len(_FUNDING)} columns, got {len(fields)}")
        if symbol is None:
            symbol = fields[0]
        elif fields[0] != symbol:
            raise DataFileError(path, line, f"symbol {fields[0]!r} differs from {symbol!r} above")
        try:
            times.append(_iso_ns(fields[1]))
            rates.append(_float(fields[2]))
            marks.append(_float(fields[3]) if fields[3].strip() else np.nan)
        except ValueError as exc:
            raise DataFileError(path, line, str(exc)) from None
    out = np.zeros(len(times), dtype=EVENT_DTYPE)
    out["kind"] = MARK
    out["symbol"] = symbol_id
    out["exchange_ts"] = times
    out["ingest_ts"] = times
    out["px"] = marks
    out["qty"] = rates
    out["seq"] = np.asarray(times, dtype=np.int64) // _MS
    out["first_seq"] = 0
    out["prev_seq"] = -1
    return out
