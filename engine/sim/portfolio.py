"""Portfolio accounting for the execution simulator: positions, PnL, fees, funding, equity and metrics.

Why one structured array (``ACCOUNT_DTYPE``, one row per symbol id) holds both the contract terms and the
running state: the matcher applies every fill inside its own numba loop (≥ 10M events/s), so the kernels
take plain arrays and scalars, and one array is all a caller passes around. Each row is its own wallet in
its settlement currency (quote for linear and spot, the coin for inverse), as with isolated margin and as
COIN-M requires; summing rows is meaningful only across symbols that settle in the same currency.

Accounting follows the exchange: ``balance`` is the wallet balance (deposit + realized − fees − funding),
equity = balance + unrealized PnL at a mark. Adding to a position moves the average entry (weighted, or
harmonic for inverse, see :mod:`.contracts`); reducing realizes PnL at the average and keeps it; a fill
through zero realizes the closed part and opens the rest at the fill price. Kernels never raise: they
return NaN or status codes and the Python edge (:class:`Portfolio`, :class:`EquityCurve`) raises.
Analytics (:func:`performance_metrics`) run after the replay, outside the kernels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from ..events import KIND_MASK, MARK, EventArray
from .contracts import ContractSpec, fee, fill_position, funding_payment, notional, pnl

FloatArray = npt.NDArray[np.float64]
RecordArray = npt.NDArray[np.void]

# --- status codes -----------------------------------------------------------------------------------------------
OK: Final = 0
ERR_BAD_SYMBOL: Final = 1  #: symbol id outside the account array
ERR_NO_MARK: Final = 2  #: funding without a finite mark price (history NaN and no fallback)
ERR_FUNDING_ORDER: Final = 3  #: a settlement at or before the last one applied to the symbol (double count)
ERR_FULL: Final = 4  #: the recorder is full

_NO_TS: Final = np.iinfo(np.int64).min
_MS: Final = 1_000_000

#: One symbol's contract terms (set once by :func:`new_account`) and running state, in settlement currency.
ACCOUNT_DTYPE: Final = np.dtype(
    [
        ("kind", "i8"),  # KIND_LINEAR / KIND_INVERSE / KIND_SPOT
        ("contract_size", "f8"),
        ("lot_size", "f8"),
        ("maker_bps", "f8"),
        ("taker_bps", "f8"),
        ("im_frac", "f8"),  # initial margin fraction (1 / leverage)
        ("mm_frac", "f8"),  # maintenance margin fraction
        ("deposit", "f8"),  # initial balance
        ("position", "f8"),  # signed: base units (linear, spot) or contracts (inverse)
        ("entry_px", "f8"),  # average entry price, NaN when flat
        ("realized", "f8"),  # realized PnL, gross of fees and funding
        ("fees", "f8"),  # fees paid (rebates negative)
        ("funding", "f8"),  # funding paid (received negative)
        ("balance", "f8"),  # wallet balance: deposit + realized − fees − funding
        ("volume", "f8"),  # traded notional
        ("n_fills", "i8"),
        ("n_maker", "i8"),
        ("last_funding_ts", "i8"),  # exchange time (ns) of the last settlement applied
    ],
    align=True,
)

#: One row of an equity curve (values in settlement currency; ``position`` is the net position).
CURVE_DTYPE: Final = np.dtype(
    [("ts", "i8"), ("equity", "f8"), ("position", "f8"), ("realized", "f8"), ("unrealized", "f8"),
     ("fees", "f8"), ("funding", "f8")],
    align=True,
)  # fmt: skip


def new_account(specs: Sequence[ContractSpec], initial_balance: float | Sequence[float]) -> RecordArray:
    """A flat account, one row per symbol id (index = the id in fills and events); a scalar balance is per row."""
    balances = np.broadcast_to(np.asarray(initial_balance, dtype=np.float64), (len(specs),))
    acct = np.zeros(len(specs), dtype=ACCOUNT_DTYPE)
    for i, s in enumerate(specs):
        acct[i] = (s.kind_code, s.contract_size, s.lot_size, s.maker_bps, s.taker_bps, s.initial_margin_frac,
                   s.maintenance_margin_frac, balances[i], 0.0, np.nan, 0.0, 0.0, 0.0, balances[i], 0.0, 0, 0,
                   _NO_TS)  # fmt: skip
    return acct


# --- fill kernels -----------------------------------------------------------------------------------------------
@njit(cache=True)
def fill_fee(acct: Any, symbol: int, qty: float, px: float, maker: bool) -> float:
    """The fee the matcher should write into a fill (settlement currency, negative = rebate)."""
    a = acct[symbol]
    return fee(a["kind"], a["contract_size"], qty, px, a["maker_bps"] if maker else a["taker_bps"])


@njit(cache=True)
def apply_fill(acct: Any, symbol: int, side: int, qty: float, px: float, fee_paid: float, maker: int) -> float:
    """Book one fill; returns the PnL it realized (0.0 for an opening fill), NaN if rejected (state untouched).

    Rejected: symbol out of range, side not ±1, qty or px not finite and > 0, fee not finite.
    """
    if symbol < 0 or symbol >= acct.shape[0] or (side != 1 and side != -1):
        return np.nan
    if not (np.isfinite(qty) and np.isfinite(px) and np.isfinite(fee_paid) and qty > 0.0 and px > 0.0):
        return np.nan
    a = acct[symbol]
    new, entry, realized = fill_position(a["kind"], a["contract_size"], a["lot_size"], a["position"], a["entry_px"],
                                         side, qty, px)  # fmt: skip
    a["position"] = new
    a["entry_px"] = entry
    a["realized"] += realized
    a["fees"] += fee_paid
    a["balance"] += realized - fee_paid
    a["volume"] += notional(a["kind"], a["contract_size"], qty, px)
    a["n_fills"] += 1
    a["n_maker"] += 1 if maker else 0
    return realized


@njit(cache=True)
def apply_fills(acct: Any, fills: Any, realized_out: Any) -> int:
    """Book a FILL_DTYPE batch in order, writing each fill's realized PnL; returns how many were booked.

    Stops at the first rejected fill, so ``return < len(fills)`` is the index of the bad row.
    """
    for i in range(fills.shape[0]):
        f = fills[i]
        r = apply_fill(acct, int(f["symbol"]), int(f["side"]), f["qty"], f["px"], f["fee"], f["maker"])
        if np.isnan(r):
            return i
        realized_out[i] = r
    return int(fills.shape[0])


# --- mark to market ---------------------------------------------------------------------------------------------
@njit(cache=True)
def unrealized_pnl(acct: Any, symbol: int, mark: float) -> float:
    """PnL of the open position if closed at ``mark`` (0.0 when flat, whatever the mark)."""
    a = acct[symbol]
    pos = a["position"]
    if pos == 0.0:
        return 0.0
    return pnl(a["kind"], a["contract_size"], abs(pos), a["entry_px"], mark, 1 if pos > 0.0 else -1)


@njit(cache=True)
def equity(acct: Any, symbol: int, mark: float) -> float:
    """Margin balance: wallet balance + unrealized PnL at ``mark``."""
    return float(acct[symbol]["balance"]) + unrealized_pnl(acct, symbol, mark)


@njit(cache=True)
def used_margin(acct: Any, symbol: int, mark: float) -> float:
    """Initial margin the position ties up: |position| notional at ``mark`` × initial margin fraction."""
    a = acct[symbol]
    return notional(a["kind"], a["contract_size"], abs(a["position"]), mark) * float(a["im_frac"])


@njit(cache=True)
def maintenance_margin(acct: Any, symbol: int, mark: float) -> float:
    """Maintenance margin at ``mark`` (flat first-tier rate); equity below it means liquidation."""
    a = acct[symbol]
    return notional(a["kind"], a["contract_size"], abs(a["position"]), mark) * float(a["mm_frac"])


@njit(cache=True)
def roe(acct: Any, symbol: int, mark: float) -> float:
    """Return on equity as Binance shows it: unrealized PnL / initial margin at the entry price; NaN when flat."""
    a = acct[symbol]
    if a["position"] == 0.0:
        return np.nan
    im = notional(a["kind"], a["contract_size"], abs(a["position"]), a["entry_px"]) * float(a["im_frac"])
    return unrealized_pnl(acct, symbol, mark) / im


# --- funding ----------------------------------------------------------------------------------------------------
@njit(cache=True)
def apply_funding(acct: Any, symbol: int, rate: float, mark_px: float, ts: int) -> int:
    """Settle one funding payment (position · mark · rate, see :func:`.contracts.funding_payment`).

    Refuses (status code, state untouched) a settlement at or before the symbol's last one, so replaying
    overlapping windows cannot charge twice.
    """
    if symbol < 0 or symbol >= acct.shape[0]:
        return ERR_BAD_SYMBOL
    a = acct[symbol]
    if ts <= a["last_funding_ts"]:
        return ERR_FUNDING_ORDER
    if not np.isfinite(mark_px) or not np.isfinite(rate):
        return ERR_NO_MARK
    paid = funding_payment(a["kind"], a["contract_size"], a["position"], mark_px, rate)
    a["funding"] += paid
    a["balance"] -= paid
    a["last_funding_ts"] = ts
    return OK


@njit(cache=True)
def funding_bounds(history: Any, t_start: int, t_end: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of a time-sorted funding history whose funding time is in ``[t_start, t_end)``."""
    ts = history["exchange_ts"]
    return int(np.searchsorted(ts, t_start, side="left")), int(np.searchsorted(ts, t_end, side="left"))


@njit(cache=True)
def apply_funding_history(acct: Any, history: Any, t_start: int, t_end: int, fallback_marks: Any) -> int:
    """Apply, in time order, the settlements of a funding history (``read_funding_csv``) in ``[t_start, t_end)``.

    A row's NaN mark (Binance omits it before 2023-10-31) is replaced by ``fallback_marks[symbol]`` (the
    caller's mark or mid). Only settlement rows count: MARK events whose ``seq`` is their own funding time
    in ms; a live markPriceUpdate (``seq`` = the *next* funding time) is skipped, never charged.
    """
    lo, hi = funding_bounds(history, t_start, t_end)
    for i in range(lo, hi):
        e = history[i]
        if (e["kind"] & KIND_MASK) != MARK or e["seq"] != e["exchange_ts"] // _MS:
            continue
        s = int(e["symbol"])
        if s >= acct.shape[0]:
            return ERR_BAD_SYMBOL
        mark = e["px"] if np.isfinite(e["px"]) else fallback_marks[s]
        code = apply_funding(acct, s, e["qty"], mark, e["exchange_ts"])
        if code != OK:
            return code
    return OK


class FundingSettlement(NamedTuple):
    ts: int  #: funding time, ns
    symbol: int
    rate: float
    mark_px: float  #: NaN when the history has none: use the current mark or mid


def funding_settlements(history: EventArray, t_start: int, t_end: int) -> Iterator[FundingSettlement]:
    """The settlements in ``[t_start, t_end)`` in time order, for a Python-level runner."""
    lo, hi = funding_bounds(history, t_start, t_end)
    for e in history[lo:hi]:
        if (int(e["kind"]) & KIND_MASK) == MARK and int(e["seq"]) == int(e["exchange_ts"]) // _MS:
            yield FundingSettlement(int(e["exchange_ts"]), int(e["symbol"]), float(e["qty"]), float(e["px"]))


# --- equity curve -----------------------------------------------------------------------------------------------
@njit(cache=True)
def record_equity(rows: Any, length: Any, acct: Any, marks: Any, symbol: int, ts: int) -> int:
    """Append one curve row (``length[0]`` is the row count): one symbol, or the sum of all if ``symbol < 0``.

    Returns ``ERR_FULL`` (nothing written) when ``rows`` is full.
    """
    n = length[0]
    if n >= rows.shape[0]:
        return ERR_FULL
    if symbol >= acct.shape[0]:
        return ERR_BAD_SYMBOL
    lo, hi = (0, acct.shape[0]) if symbol < 0 else (symbol, symbol + 1)
    r = rows[n]
    r["ts"] = ts
    eq = pos = real = unreal = fees = funding = 0.0
    for s in range(lo, hi):
        a = acct[s]
        u = unrealized_pnl(acct, s, marks[s])
        eq += a["balance"] + u
        pos += a["position"]
        real += a["realized"]
        unreal += u
        fees += a["fees"]
        funding += a["funding"]
    r["equity"] = eq
    r["position"] = pos
    r["realized"] = real
    r["unrealized"] = unreal
    r["fees"] = fees
    r["funding"] = funding
    length[0] = n + 1
    return OK


class RecorderFullError(RuntimeError):
    """A preallocated recorder ran out of rows."""


class EquityCurve:
    """Preallocated equity-curve recorder; kernels append through :func:`record_equity` on ``rows``/``length``.

    When full it raises :class:`RecorderFullError` naming itself and its capacity, or, with ``grow=True``,
    doubles its capacity (outside the kernel only: a kernel gets ``ERR_FULL`` and the edge calls :meth:`check`).
    """

    def __init__(self, capacity: int, *, name: str = "equity curve", grow: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"{name}: capacity must be >= 1, got {capacity}")
        self.name, self.grow = name, grow
        self.rows: RecordArray = np.zeros(capacity, dtype=CURVE_DTYPE)
        self.length = np.zeros(1, dtype=np.int64)

    @property
    def capacity(self) -> int:
        return len(self.rows)

    def __len__(self) -> int:
        return int(self.length[0])

    def check(self, code: int) -> None:
        """Turn a kernel status into an error; with ``grow`` a full recorder grows so the caller can retry."""
        if code == ERR_FULL:
            if not self.grow:
                raise RecorderFullError(f"{self.name} is full at capacity {self.capacity} rows; "
                                        "preallocate more or construct it with grow=True")  # fmt: skip
            self.rows = np.concatenate([self.rows, np.zeros(self.capacity, dtype=CURVE_DTYPE)])
        elif code != OK:
            raise RuntimeError(f"{self.name}: kernel status {code}")

    def record(self, acct: RecordArray, marks: npt.ArrayLike, ts: int, symbol: int = -1) -> None:
        m = marks
        if not (isinstance(m, np.ndarray) and m.dtype == np.float64 and m.shape == (len(acct),)):
            m = np.ascontiguousarray(np.broadcast_to(np.asarray(marks, dtype=np.float64), (len(acct),)))
        code = record_equity(self.rows, self.length, acct, m, symbol, ts)
        if code == ERR_FULL:
            self.check(code)
            code = record_equity(self.rows, self.length, acct, m, symbol, ts)
        self.check(code)

    def append(self, ts: int, equity: float, position: float = 0.0, realized: float = 0.0,
               unrealized: float = 0.0, fees: float = 0.0, funding: float = 0.0) -> None:  # fmt: skip
        if len(self) >= self.capacity:
            self.check(ERR_FULL)
        self.rows[len(self)] = (ts, equity, position, realized, unrealized, fees, funding)
        self.length[0] += 1

    def column(self, name: str) -> npt.NDArray[Any]:
        return np.asarray(self.rows[name][: len(self)])

    def drawdown(self) -> tuple[FloatArray, FloatArray]:
        """Running peak − equity (≥ 0) and that as a fraction of the peak (NaN where the peak is ≤ 0)."""
        eq = self.column("equity")
        peak = np.maximum.accumulate(eq)
        dd = peak - eq
        with np.errstate(divide="ignore", invalid="ignore"):
            return dd, np.where(peak > 0, dd / peak, np.nan)


# --- metrics ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PerformanceMetrics:
    """Run summary; money in settlement currency, from the curve's first row to its last."""

    total_pnl: float  #: equity change
    gross_pnl: float  #: change of realized + unrealized: trading PnL before fees and funding
    fees: float
    funding: float
    sharpe: float  #: mean / std (ddof 1) of per-row simple equity returns × sqrt(periods_per_year)
    max_drawdown: float
    max_drawdown_frac: float
    n_trades: int  #: reducing fills (each a closed round trip, or part of one)
    win_rate: float  #: share of trades with realized PnL > 0 (gross of fees)
    profit_factor: float  #: Σ winning realized / |Σ losing realized|; inf without losses
    turnover: float  #: traded notional / mean equity
    fee_share: float  #: fees / gross PnL when gross PnL > 0 (share of the edge paid away), else NaN
    n_fills: int
    maker_share: float  #: maker fills / fills (by count)


@njit(cache=True)
def _replay(acct: Any, fills: Any, realized: Any, reducing: Any) -> None:
    for i in range(fills.shape[0]):
        f = fills[i]
        pos = acct[f["symbol"]]["position"]
        reducing[i] = pos != 0.0 and (pos > 0.0) != (f["side"] > 0)
        realized[i] = apply_fill(acct, int(f["symbol"]), int(f["side"]), f["qty"], f["px"], f["fee"],
                                 f["maker"])  # fmt: skip


def performance_metrics(
    curve: EquityCurve, fills: RecordArray, acct: RecordArray, *, periods_per_year: float
) -> PerformanceMetrics:
    """Summary metrics of one run.

    ``fills`` is the run's complete fill log (from flat): it is replayed on a fresh account with ``acct``'s
    contract terms to find each fill's realized PnL. Sharpe uses the curve's rows as periods, so record
    the curve on a regular clock and pass how many such periods make a year (e.g. 365 × 24 for hourly
    rows on a 24/7 market); the risk-free rate is taken as 0.
    """
    fresh = acct.copy()
    for col in ("position", "realized", "fees", "funding", "volume", "n_fills", "n_maker"):
        fresh[col] = 0
    fresh["entry_px"], fresh["last_funding_ts"] = np.nan, _NO_TS
    realized, reducing = np.zeros(len(fills)), np.zeros(len(fills), dtype=np.bool_)
    _replay(fresh, fills, realized, reducing)
    if np.isnan(realized).any():
        raise ValueError(f"fill {int(np.argmax(np.isnan(realized)))} is invalid (symbol, side, qty, px or fee)")
    trades = realized[reducing]
    wins, losses = trades[trades > 0].sum(), -trades[trades < 0].sum()
    eq = curve.column("equity")
    if len(eq) < 2:
        raise ValueError(f"{curve.name} has {len(eq)} rows; metrics need at least 2")
    rets = eq[1:] / eq[:-1] - 1.0
    sd = rets.std(ddof=1) if len(rets) > 1 else np.nan
    gross_series = curve.column("realized") + curve.column("unrealized")
    gross = float(gross_series[-1] - gross_series[0])
    fees = float(curve.column("fees")[-1] - curve.column("fees")[0])
    dd, dd_frac = curve.drawdown()
    n = len(fills)
    return PerformanceMetrics(
        total_pnl=float(eq[-1] - eq[0]),
        gross_pnl=gross,
        fees=fees,
        funding=float(curve.column("funding")[-1] - curve.column("funding")[0]),
        sharpe=float(rets.mean() / sd * np.sqrt(periods_per_year)) if sd > 0 else np.nan,
        max_drawdown=float(dd.max()),
        max_drawdown_frac=float(np.nanmax(dd_frac)) if np.isfinite(dd_frac).any() else np.nan,
        n_trades=len(trades),
        win_rate=float((trades > 0).mean()) if len(trades) else np.nan,
        profit_factor=float(wins / losses) if losses > 0 else (np.inf if wins > 0 else np.nan),
        turnover=float(fresh["volume"].sum() / eq.mean()),
        fee_share=fees / gross if gross > 0 else np.nan,
        n_fills=n,
        maker_share=float(fills["maker"].astype(bool).mean()) if n else np.nan,
    )


# --- Python edge ------------------------------------------------------------------------------------------------
class Portfolio:
    """Convenience wrapper over an account array; the arrays stay usable by kernels (``.acct``)."""

    def __init__(self, specs: Sequence[ContractSpec], initial_balance: float | Sequence[float]) -> None:
        self.specs = tuple(specs)
        self.acct = new_account(self.specs, initial_balance)

    def apply_fills(self, fills: RecordArray) -> FloatArray:
        """Book a batch; returns each fill's realized PnL. Raises at the first invalid fill (earlier ones stay)."""
        out = np.zeros(len(fills))
        done = apply_fills(self.acct, fills, out)
        if done < len(fills):
            raise ValueError(f"fill {done} rejected (symbol, side, qty, px or fee invalid): {fills[done]}")
        return out

    def apply_funding(self, symbol: int, rate: float, mark_px: float, ts: int) -> float:
        """Settle one payment; returns what was paid (negative = received)."""
        before = float(self.acct["funding"][symbol]) if 0 <= symbol < len(self.acct) else 0.0
        _raise_status(apply_funding(self.acct, symbol, rate, mark_px, ts), f"funding at {ts} for symbol {symbol}")
        return float(self.acct["funding"][symbol]) - before

    def settle_funding(self, history: EventArray, t_start: int, t_end: int, fallback_marks: npt.ArrayLike) -> None:
        m = np.ascontiguousarray(np.broadcast_to(np.asarray(fallback_marks, dtype=np.float64), (len(self.acct),)))
        code = apply_funding_history(self.acct, history, t_start, t_end, m)
        _raise_status(code, f"funding history in [{t_start}, {t_end})")

    def unrealized(self, symbol: int, mark: float) -> float:
        return float(unrealized_pnl(self.acct, symbol, mark))

    def equity(self, symbol: int, mark: float) -> float:
        return float(equity(self.acct, symbol, mark))

    def snapshot(self, marks: npt.ArrayLike | None = None) -> list[dict[str, float | int]]:
        """One dict per symbol: the state fields, plus mark-dependent values when ``marks`` is given."""
        out: list[dict[str, float | int]] = []
        for s, row in enumerate(self.acct):
            d: dict[str, float | int] = {k: row[k].item() for k in ACCOUNT_DTYPE.names or ()}
            if marks is not None:
                m = float(np.broadcast_to(np.asarray(marks, dtype=np.float64), (len(self.acct),))[s])
                d |= {"mark": m, "unrealized": self.unrealized(s, m), "equity": self.equity(s, m)}
                d |= {"used_margin": float(used_margin(self.acct, s, m)), "roe": float(roe(self.acct, s, m))}
            out.append(d)
        return out


def _raise_status(code: int, what: str) -> None:
    messages = {ERR_BAD_SYMBOL: "symbol id outside the account", ERR_NO_MARK: "no finite mark price or rate",
                ERR_FUNDING_ORDER: "settlement not after the last one applied to the symbol"}  # fmt: skip
    if code != OK:
        raise ValueError(f"{what}: {messages.get(code, f'status {code}')}")
