"""Training inputs: classify the given files (klines or funding history), read them, and record lineage.

Why classify by header instead of by flag: `tradeplane train --data` takes any mix of Binance kline CSVs
and funding histories; the header says which is which, the file name (or the funding file's own symbol
column) says which symbol, and a file that is neither is an error naming it — before any training starts.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.events import EventArray
from ...engine.replay import DataFileError, read_funding_csv, read_klines_csv
from .registry import sha256_file

_SYMBOL_TOKEN = re.compile(r"^[a-z0-9]{2,20}(usdt|usdc|busd|fdusd|usd)$")


def _head(path: Path, lines: int) -> list[str]:
    """The first ``lines`` lines of a plain or gzip text file (told apart by the magic bytes, not the name)."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return [fh.readline() for _ in range(lines)]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, 1, f"cannot read: {exc}") from None


def _first_line(path: Path) -> str:
    return _head(path, 1)[0].strip()


def _kline_symbol(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    for token in name.split("_"):
        if _SYMBOL_TOKEN.match(token):
            return token.upper()
    raise DataFileError(path, None, "cannot tell the symbol from the file name (expected e.g. …_btcusdt_1m_….csv.gz)")


@dataclass
class TrainingData:
    """Klines and funding per symbol id, the symbol names (index = id) and each file's lineage."""

    symbols: list[str] = field(default_factory=list)
    klines: dict[int, EventArray] = field(default_factory=dict)
    funding: dict[int, EventArray] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)

    def symbol_id(self, symbol: str) -> int:
        if symbol not in self.symbols:
            self.symbols.append(symbol)
        return self.symbols.index(symbol)


def _span(ts: np.ndarray) -> list[str]:
    if ts.shape[0] == 0:
        return []
    return [str(np.datetime64(int(ts.min()), "ns")) + "Z", str(np.datetime64(int(ts.max()), "ns")) + "Z"]


def load_training_data(paths: list[Path]) -> TrainingData:
    """Read every file; klines and funding are matched by symbol. Errors name the file (and line)."""
    data = TrainingData()
    funding_files: list[tuple[Path, str]] = []
    for path in paths:
        if not path.is_file():
            raise DataFileError(path, None, "no such file")
        header = _first_line(path)
        if header.startswith("open_time,"):
            sid = data.symbol_id(_kline_symbol(path))
            if sid in data.klines:
                raise DataFileError(path, None, f"a second kline file for {data.symbols[sid]}")
            k = read_klines_csv(path, sid)
            if k.shape[0] < 2:
                raise DataFileError(path, None, "fewer than two klines")
            data.klines[sid] = k
            data.files.append(
                {
                    "path": str(path),
                    "kind": "klines",
                    "symbol": data.symbols[sid],
                    "rows": int(k.shape[0]),
                    "span": _span(k["open_ts"]),
                    "sha256": sha256_file(path),
                }
            )
        elif header.startswith("symbol,fundingTime"):
            first = _funding_symbol(path)
            funding_files.append((path, first))
        else:
            raise DataFileError(path, 1, f"not a kline or funding CSV (header {header[:80]!r})")
    for path, symbol in funding_files:
        if symbol not in data.symbols:
            raise DataFileError(path, None, f"funding for {symbol} but no kline file of {symbol} was given")
        sid = data.symbols.index(symbol)
        f = read_funding_csv(path, sid)
        data.funding[sid] = f
        data.files.append(
            {
                "path": str(path),
                "kind": "funding",
                "symbol": symbol,
                "rows": int(f.shape[0]),
                "span": _span(f["exchange_ts"]),
                "sha256": sha256_file(path),
            }
        )
    if not data.klines:
        raise ValueError("no kline file among --data (funding histories alone cannot be trained on)")
    return data


def _funding_symbol(path: Path) -> str:
    row = _head(path, 2)[1]
    if not row.strip():
        raise DataFileError(path, 2, "funding history has no rows")
    return row.split(",", 1)[0].strip().upper()
