"""What a finished backtest hands to reports, tables and tests: plain arrays plus a metrics summary.

Why a frozen bundle of structured arrays rather than objects: the report, the Parquet/ClickHouse tables and
the determinism test all want the same columns, and arrays hash byte-for-byte (``digest``), so "same seed +
same data → identical fills and PnL" is one comparison.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .portfolio import PerformanceMetrics

Records = npt.NDArray[np.void]

#: One parent order as an executor worked it (see :mod:`.executors`); prices in quote per base.
PARENT_DTYPE: Final = np.dtype(
    [
        ("parent_id", "i8"),
        ("symbol", "u4"),
        ("side", "i1"),  # BUY / SELL
        ("style", "i1"),  # executors.STYLE_*
        ("status", "i1"),  # executors.PARENT_*
        ("degraded", "u1"),  # 1: maker-then-taker sent market orders (maker fill ratio under θ)
        ("qty", "f8"),  # requested, base units (contracts for inverse)
        ("filled", "f8"),
        ("maker_qty", "f8"),
        ("taker_qty", "f8"),
        ("vwap", "f8"),  # NaN before the first fill
        ("fees", "f8"),
        ("notional", "f8"),  # qty × mid at send (routing key)
        ("mid_at_send", "f8"),  # mid of the local book when the strategy sent the parent
        ("slippage_bps", "f8"),  # (vwap − mid_at_send) / mid_at_send × 1e4; NaN without fills
        ("cost_bps", "f8"),  # side × slippage_bps: > 0 means paid versus mid
        ("n_children", "i8"),
        ("send_ts", "i8"),  # local ns
        ("done_ts", "i8"),  # local ns when the last child finished; 0 while working
    ],
    align=True,
)

#: Mark price samples for plots and the equity curve (local time).
MARK_DTYPE: Final = np.dtype([("ts", "i8"), ("symbol", "u4"), ("bid", "f8"), ("ask", "f8"), ("mid", "f8")], align=True)


@dataclass(frozen=True)
class BacktestResult:
    """Everything one run produced.

    ``fills`` (FILL_DTYPE, in the order the strategy received them), ``reports`` (ORDER_DTYPE rows as of each
    status change) with ``report_ts`` (local ns when each reached the strategy), ``parents`` (PARENT_DTYPE),
    ``curve`` (portfolio.CURVE_DTYPE, all symbols summed, sampled on the local clock every
    ``meta["curve_interval_ns"]``), ``marks`` (MARK_DTYPE at the same instants), ``account`` (ACCOUNT_DTYPE
    at the end), ``metrics`` and ``meta`` (JSON-able: data file, symbols, config, seed, event count, timings).
    """

    fills: Records
    reports: Records
    report_ts: npt.NDArray[np.int64]
    parents: Records
    curve: Records
    marks: Records
    account: Records
    metrics: PerformanceMetrics
    symbols: tuple[str, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """sha256 over fills, reports, parents, the curve and the final account, field by field (numpy may
        leave the padding bytes of aligned records undefined after a concatenate, so raw record bytes are not
        a run's identity): equal digests mean identical runs."""
        h = hashlib.sha256()
        arrays: tuple[npt.NDArray[Any], ...] = (self.fills, self.reports, self.report_ts, self.parents, self.curve,
                                                 self.account)  # fmt: skip
        for a in arrays:
            for name in a.dtype.names or (None,):
                col = a if name is None else a[name]
                h.update(str(a.shape).encode())
                h.update(np.ascontiguousarray(col).tobytes())
        return h.hexdigest()
