"""The paper venue's state as a venue adapter would report it: open (and recently final) orders under our
client order ids, and positions, for the reconciler (:mod:`..trading.reconcile`).

Why a module of its own: the desk's venue is the simulator, whose executors know parents by number and whose
portfolio knows positions by instrument id. A real adapter's ``open_orders()`` / ``positions()`` speak client
order ids, Binance statuses and symbols. Building that view here, from plain inputs (the executors' parent
records, the client order id each parent was sent under, the portfolio's account rows), keeps the desk's
books out of it: the reconciler compares two independent accounts of the same orders, which is the point.

Conventions, as Binance reports them:

- an order is one parent: quantity and fills as the executors booked them (exchange truth), rounded to the
  instrument's step (the venue's decimals, not the simulator's float sums); the status is ``NEW`` or
  ``PARTIALLY_FILLED`` while working, then ``FILLED``, ``EXPIRED`` (finished with part unfilled) or
  ``CANCELED``. A cancelled parent reports CANCELED at once; fills of children still in flight keep adding
  to ``filled_qty`` (and to the position), so the reconciler sees them;
- ``price`` is 0 (the desk's parents carry no limit price, like a market order) and ``avg_price`` the
  parent's VWAP;
- a position is the net quantity of one instrument on the step grid, listed only when not flat, with the
  portfolio's average entry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ..sim.executors import PARENT_CANCELED, PARENT_FILLED, PARENT_PARTIAL, PARENT_WORKING
from ..trading.reconcile import VenueOrder, VenuePosition
from .instruments import Instrument

Records = npt.NDArray[np.void]

#: executor parent status → Binance order status once final
FINAL_STATUS = {PARENT_FILLED: "FILLED", PARENT_PARTIAL: "EXPIRED", PARENT_CANCELED: "CANCELED"}


def on_grid(qty: float, step: float) -> float:
    """``qty`` on the ``step`` grid (what the venue's decimals can express); float noise goes away."""
    if not (step > 0 and math.isfinite(qty)):
        return qty
    return round(round(qty / step) * step, 12) + 0.0  # + 0.0: no "-0.0"


def order_status(status: int, filled: float) -> str:
    """The Binance status of a parent (see the module docstring)."""
    if status == PARENT_WORKING:
        return "PARTIALLY_FILLED" if filled > 0 else "NEW"
    return FINAL_STATUS[status]


def venue_orders(
    parents: Records, client_order_ids: Mapping[int, str], instruments: Sequence[Instrument]
) -> list[VenueOrder]:
    """The orders of ``instruments`` (one account) among ``parents`` (``PARENT_DTYPE`` rows, e.g.
    ``ExecutionDesk.parents``) that have a client order id, oldest first. ``client_order_ids`` maps parent id
    → the id the parent was sent under; parents without one (or of other instruments) are not listed."""
    by_id = {i.id: i for i in instruments}
    n = parents.shape[0]
    out: list[VenueOrder] = []
    for pid in sorted(client_order_ids):
        if not 1 <= pid <= n:
            continue
        row = parents[pid - 1]
        inst = by_id.get(int(row["symbol"]))
        if inst is None:
            continue
        step = inst.step_size
        filled = on_grid(float(row["filled"]), step)
        vwap = float(row["vwap"])
        out.append(
            VenueOrder(
                client_order_id=client_order_ids[pid],
                symbol=inst.symbol,
                side=int(row["side"]),
                qty=on_grid(float(row["qty"]), step),
                filled_qty=filled,
                price=0.0,
                status=order_status(int(row["status"]), filled),
                avg_price=vwap if filled > 0 else math.nan,
            )
        )
    return out


def settled(parents: Records, parent_ids: Iterable[int]) -> list[int]:
    """The ``parent_ids`` that are over at the venue: final and every child confirmed (``done_ts`` set), so
    nothing more can fill. Once the reconciler has seen them final they need not be listed again."""
    n = parents.shape[0]
    return [
        pid
        for pid in parent_ids
        if 1 <= pid <= n and int(parents[pid - 1]["status"]) != PARENT_WORKING and int(parents[pid - 1]["done_ts"])
    ]


def venue_positions(account: Records, instruments: Sequence[Instrument]) -> list[VenuePosition]:
    """Non-flat positions of ``instruments`` from the portfolio's account rows (``ACCOUNT_DTYPE``, indexed by
    instrument id), on each instrument's step grid."""
    out: list[VenuePosition] = []
    for inst in instruments:
        row = account[inst.id]
        qty = on_grid(float(row["position"]), inst.step_size)
        if qty != 0.0:
            entry = float(row["entry_px"])
            out.append(VenuePosition(inst.symbol, qty, entry if math.isfinite(entry) else 0.0))
    return out
