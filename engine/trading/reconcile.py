"""The reconciler: compare what the venue has with what the book believes, and say what to do about it.

Run at start (after restoring the book from its records) and periodically. It is pure: it returns a
:class:`ReconcileReport` and the runtime acts on it — cancels and flattens at the venue, and
:func:`apply_report` brings the book in line (missed fills, final orders, trades the venue says are over).

Which orders are ours: ids that start with ``prefix`` and parse as our client order ids (:mod:`.ids`).
Anything else on the account is foreign and never touched, only reported. Because an order's id names its
intent and leg, each of our orders maps back to one trade; the book must therefore hold every trade whose
orders can be on the account — persist the book after ``TradeBook.open`` and before sending (write-ahead),
and pass the books of every strategy sharing the account (a sequence of books is accepted), or their orders
look like orphans.

Policies (the orphan policy of the runtime):

- ``RECLAIM_IF_SAFE`` keeps what it can explain. An order of ours for a known intent is adopted when it is
  consistent with the trade (same symbol, the leg's side, a quantity not above the trade's, the venue not
  reporting fewer fills than the book); fills the book missed are adopted with it. Our orders of unknown
  intents, and stale orders of closed trades, are cancelled; unsafe ones are cancelled and reported. A
  position the book does not explain is adopted into the one trade that can explain it (a pending entry on
  that symbol and side whose order the venue no longer lists, at most its size), otherwise reported and
  left alone (it may be a person's). Trades whose position the venue no longer has are marked closed.
- ``CONSERVATIVE`` never adopts a fill it did not see. Any disagreement on a symbol (missed fills, a
  position not explained by the book's ACTIVE/PENDING_CLOSING trades, an order that differs from what the
  book expects) resets that symbol: our orders on it are cancelled, the position is flattened and its trades
  are marked closed. Open orders of ours that the trade's state does not expect (a stop on a closing trade)
  are cancelled.

Under both, status facts that add no exposure are always applied (an entry cancelled while we were down
closes its trade as "entry-unfilled"), and a pending entry the venue has never seen is marked closed: the
market has moved on, and the intent's replay will not resend it (``TradeBook.open`` is idempotent).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .ids import ADD_LEGS, ENTRY, EXIT, FLATTEN, OPENING_LEGS, PARTIAL, PREFIX, STOP, TAKE_PROFIT, is_ours
from .ids import parse_client_order_id as _parse
from .lifecycle import REASON_RECONCILED, Trade, TradeBook, TradeState, final_status

_REL_TOL: Final = 1e-9
ORDER: Final = "order"  #: adopted from a venue order
POSITION: Final = "position"  #: an unexplained position adopted into the trade that explains it
ABSENT: Final = "absent"  #: an entry order the venue no longer lists as open: it is over


class OrphanPolicy(StrEnum):
    RECLAIM_IF_SAFE = "reclaim-if-safe"
    CONSERVATIVE = "conservative"


@dataclass(frozen=True)
class VenueOrder:
    """An order as the venue reports it (open, or recently final). ``side`` +1 buy / −1 sell."""

    client_order_id: str
    symbol: str
    side: int
    qty: float
    filled_qty: float
    price: float  #: limit price (used as the fill price when ``avg_price`` is unknown)
    status: str  #: Binance status: NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, REJECTED…
    avg_price: float = math.nan  #: average fill price when the venue reports it

    @property
    def is_open(self) -> bool:
        try:
            final_status(self.status)
        except ValueError:
            return True
        return False

    @property
    def fill_price(self) -> float:
        return self.avg_price if self.avg_price > 0 and math.isfinite(self.avg_price) else self.price


@dataclass(frozen=True)
class VenuePosition:
    symbol: str
    qty: float  #: signed base units (+ long, − short)
    entry_price: float


@dataclass(frozen=True)
class Adoption:
    """A venue fact the book takes over: ``fill_qty`` the book has not seen (apply with ``on_fill``), and
    ``final`` when the order is over at the venue and the book does not know it yet (apply with
    ``on_order_final(status)``)."""

    intent_id: str
    client_order_id: str
    leg: str
    fill_qty: float
    price: float
    final: bool
    status: str
    source: str  #: ORDER | POSITION | ABSENT


@dataclass(frozen=True)
class ReconcileReport:
    adopted: tuple[Adoption, ...]
    cancel: tuple[str, ...]  #: client order ids to cancel at the venue
    flatten: tuple[tuple[str, float], ...]  #: (symbol, signed qty to trade) to go flat
    closed: tuple[str, ...]  #: intent ids the book has open but the venue says are over
    mismatches: tuple[str, ...]  #: human-readable findings (foreign orders, unsafe orders, resets)

    @property
    def clean(self) -> bool:
        """Nothing to do and nothing odd: the book and the venue agree."""
        missed = any(a.fill_qty > 0 or (a.final and a.leg == ENTRY) for a in self.adopted)
        return not (missed or self.cancel or self.flatten or self.closed or self.mismatches)


def reconcile(
    book: TradeBook | Sequence[TradeBook],
    orders: Sequence[VenueOrder],
    positions: Sequence[VenuePosition],
    policy: OrphanPolicy,
    *,
    prefix: str = PREFIX,
) -> ReconcileReport:
    """Compare the venue's ``orders`` and ``positions`` with ``book`` under ``policy`` (module docstring)."""
    run = _Run(_owners([book] if isinstance(book, TradeBook) else book), orders, policy, prefix)
    # Opening legs first, so a missed exit fill is checked against the position after missed entries.
    for o in sorted(orders, key=lambda o: _leg_rank(o.client_order_id)):
        run.order(o)
    run.entries_not_listed()
    by_symbol: dict[str, VenuePosition] = {}
    for p in positions:
        if p.symbol in by_symbol:
            raise ValueError(f"two venue positions for {p.symbol}")
        by_symbol[p.symbol] = p
    for sym in sorted({t.symbol for t in run.live()} | set(by_symbol)):
        run.position(sym, by_symbol.get(sym))
    return run.report()


class _Run:
    """One reconciliation's working state: the projected quantity of every open trade after the adoptions so
    far, and the report being built (dicts as ordered sets, so reports are deterministic)."""

    def __init__(
        self,
        owners: dict[str, tuple[Trade, TradeBook]],
        orders: Sequence[VenueOrder],
        policy: OrphanPolicy,
        prefix: str,
    ) -> None:
        self.owners, self.orders, self.prefix = owners, orders, prefix
        self.conservative = policy is OrphanPolicy.CONSERVATIVE
        self.adopted: list[Adoption] = []
        self.cancel: dict[str, None] = {}
        self.closed: dict[str, None] = {}
        self.flatten: list[tuple[str, float]] = []
        self.mismatches: list[str] = []
        self.dirty: set[str] = set()  # symbols to reset (conservative)
        self.proj = {iid: t.filled_qty for iid, (t, _) in owners.items() if t.is_open}
        self.listed_entry: set[str] = set()  # trades whose entry order the venue lists (any status)
        self.entry_final = {iid for iid, (t, _) in owners.items() if t.entry_done}
        self.entry_over: set[str] = set()  # pending entries the venue reports final with nothing filled
        self.flattened: set[str] = set()  # trades a missed exit fill made flat
        self.unseen: set[str] = set()  # pending entries the venue does not list at all
        self.dust = max((b.dust_qty for _, b in owners.values()), default=0.0)

    def live(self) -> list[Trade]:
        return [t for iid, (t, _) in self.owners.items() if t.is_open and iid not in self.entry_over]

    def order(self, o: VenueOrder) -> None:
        coid = o.client_order_id
        parsed = _parse(coid) if is_ours(coid, self.prefix) else None
        if parsed is None:
            self.mismatches.append(f"foreign order {coid} on {o.symbol} ({o.status}) left alone")
            return
        intent_id, leg = parsed
        owner = self.owners.get(intent_id)
        if owner is None:
            if o.is_open:
                self.cancel[coid] = None
                self.mismatches.append(f"order {coid} on {o.symbol}: unknown intent {intent_id}, cancelled")
            return
        t, b = owner
        tol = b.dust(t)
        missed = o.filled_qty - t.leg_filled.get(leg, 0.0)
        if leg == ENTRY:
            self.listed_entry.add(intent_id)
        if not t.is_open:
            if o.is_open:
                self.cancel[coid] = None
            if missed > tol and t.close_reason != REASON_RECONCILED:  # a reset trade's fills were flattened
                self.mismatches.append(f"order {coid}: {missed:g} filled after trade {intent_id} closed")
            return
        problem = _unsafe(t, leg, o, missed, self.proj[intent_id], tol, exact=self.conservative)
        if problem is None and self.conservative and missed > tol:
            problem = f"{missed:g} filled that the book never saw"
        if problem is not None:
            self.mismatches.append(f"order {coid} ({t.symbol} {leg}): {problem}")
            if o.is_open:
                self.cancel[coid] = None
            if self.conservative:
                self.dirty.add(t.symbol)
            return
        if self.conservative and o.is_open and not _expected(t, leg):
            self.cancel[coid] = None
            self.mismatches.append(f"order {coid}: leg {leg} not expected in state {t.state.value}, cancelled")
            return
        fill = missed if missed > tol else 0.0
        final = not o.is_open and not (leg == ENTRY and t.entry_done)  # only what the book has not seen
        self.adopted.append(Adoption(intent_id, coid, leg, fill, o.fill_price, final, o.status, ORDER))
        if leg in OPENING_LEGS:
            self.proj[intent_id] += fill
        else:
            self.proj[intent_id] -= min(fill, self.proj[intent_id])
            if fill > 0 and self.proj[intent_id] <= tol:
                self.flattened.add(intent_id)
        if leg == ENTRY and not o.is_open:
            self.entry_final.add(intent_id)
            if self.proj[intent_id] <= tol and t.state is TradeState.PENDING_ENTRY:
                self.entry_over.add(intent_id)

    def entries_not_listed(self) -> None:
        """Entry orders the venue does not list. Pending: it never got them (or they are over and we cannot
        tell how): candidates for an unexplained position, else closed. Already filling: the order is over
        (an open-orders listing omits finished orders), which is a status fact (fills show in positions)."""
        for t in self.live():
            iid = t.intent_id
            if iid in self.listed_entry or iid in self.entry_final:
                continue
            if t.state is TradeState.PENDING_ENTRY:
                self.unseen.add(iid)
            else:
                coid = t.client_order_id(ENTRY)
                self.adopted.append(Adoption(iid, coid, ENTRY, 0.0, math.nan, True, "EXPIRED", ABSENT))
                self.entry_final.add(iid)

    def position(self, sym: str, pos: VenuePosition | None) -> None:
        on_sym = [t for t in self.live() if t.symbol == sym]
        expected = sum(t.side * self.proj[t.intent_id] for t in on_sym)
        venue = pos.qty if pos is not None else 0.0
        tol = max(self.dust, _REL_TOL * max([abs(venue), abs(expected)] + [t.target_qty for t in on_sym]))
        agree = abs(venue - expected) <= tol
        if self.conservative:
            if not agree or sym in self.dirty:
                self._reset(sym, on_sym, venue, expected, tol)
            return
        if agree:
            return
        if abs(venue) <= tol:
            self.closed.update((t.intent_id, None) for t in on_sym if self.proj[t.intent_id] > tol)
            self.mismatches.append(f"{sym}: venue flat, book {expected:g}: trades closed")
            return
        cands = [
            t for t in on_sym if t.intent_id in self.unseen and t.side * venue > 0 and abs(venue) <= t.target_qty + tol
        ]
        if abs(expected) <= tol and len(cands) == 1 and pos is not None and pos.entry_price > 0:
            t = cands[0]
            coid = t.client_order_id(ENTRY)
            self.adopted.append(
                Adoption(t.intent_id, coid, ENTRY, abs(venue), pos.entry_price, True, "FILLED", POSITION)
            )
            self.unseen.discard(t.intent_id)
            self.mismatches.append(f"{sym}: position {venue:g} adopted into trade {t.intent_id}")
        else:
            self.mismatches.append(f"{sym}: venue position {venue:g}, book {expected:g}: not explained, left alone")

    def _reset(self, sym: str, on_sym: Sequence[Trade], venue: float, expected: float, tol: float) -> None:
        """Conservative: cancel every working order of ours on ``sym``, flatten it, close its trades."""
        for o in self.orders:
            if o.symbol == sym and o.is_open and is_ours(o.client_order_id, self.prefix):
                self.cancel[o.client_order_id] = None
        self.closed.update((t.intent_id, None) for t in on_sym)
        if abs(venue) > tol:
            self.flatten.append((sym, -venue))
            self.mismatches.append(f"{sym}: venue position {venue:g}, book {expected:g}: flattening")
        else:
            self.mismatches.append(f"{sym}: venue flat, book {expected:g}: trades closed")

    def report(self) -> ReconcileReport:
        self.closed.update((iid, None) for iid in sorted(self.unseen))
        over = set(self.closed) | (self.flattened & self.entry_final)  # trades that end once this is applied
        for o in self.orders:  # their orders still working (the take-profit of a stopped-out trade)
            parsed = _parse(o.client_order_id)
            if o.is_open and parsed is not None and parsed[0] in over and is_ours(o.client_order_id, self.prefix):
                self.cancel[o.client_order_id] = None
        return ReconcileReport(
            tuple(self.adopted), tuple(self.cancel), tuple(self.flatten), tuple(self.closed), tuple(self.mismatches)
        )


def apply_report(book: TradeBook | Sequence[TradeBook], report: ReconcileReport, ts: int) -> list[Trade]:
    """Bring the book(s) in line with the venue: adopted fills and final orders, then closed trades.
    Fees of adopted fills are unknown (0); PnL of trades closed behind our back is not realized."""
    owners = _owners([book] if isinstance(book, TradeBook) else book)
    touched: dict[str, Trade] = {}
    for a in report.adopted:
        b = owners[a.intent_id][1]
        if a.fill_qty > 0:
            t = b.on_fill(a.client_order_id, a.fill_qty, a.price, 0.0, ts)
            if t is not None:
                touched[t.intent_id] = t
        if a.final:
            t = b.on_order_final(a.client_order_id, a.status, ts)
            if t is not None:
                touched[t.intent_id] = t
    for iid in report.closed:
        touched[iid] = owners[iid][1].force_close(iid, REASON_RECONCILED, ts)
    return list(touched.values())


# --- helpers ---------------------------------------------------------------------------------------------------
def _owners(books: Iterable[TradeBook]) -> dict[str, tuple[Trade, TradeBook]]:
    out: dict[str, tuple[Trade, TradeBook]] = {}
    for b in books:
        for t in b.trades():
            if t.intent_id in out:
                raise ValueError(f"intent {t.intent_id} is in two books")
            out[t.intent_id] = (t, b)
    return out


def _leg_rank(coid: str) -> int:
    parsed = _parse(coid)
    return 0 if parsed is None or parsed[1] in OPENING_LEGS else 1


def _unsafe(t: Trade, leg: str, o: VenueOrder, missed: float, held: float, tol: float, *, exact: bool) -> str | None:
    """Why adopting this order of ``t`` would be unsafe, or None."""
    opening = leg in OPENING_LEGS
    if o.symbol != t.symbol:
        return f"symbol {o.symbol}, trade is on {t.symbol}"
    if o.side != (t.side if opening else -t.side):
        return f"side {o.side:+d} does not {'open' if opening else 'reduce'} a {t.side:+d} trade"
    cap = t.target_qty if opening else t.target_qty * (1 + t.add_ons)
    if o.qty > cap + tol:
        return f"qty {o.qty:g} exceeds the trade's {cap:g}"
    if exact and opening and o.is_open and abs(o.qty - t.target_qty) > tol:
        return f"qty {o.qty:g} is not the trade's {t.target_qty:g}"
    if missed < -tol:
        return f"venue reports {o.filled_qty:g} filled, the book {o.filled_qty - missed:g}"
    if missed > tol:
        if not (o.fill_price > 0 and math.isfinite(o.fill_price)):
            return f"{missed:g} filled at an unknown price"
        if leg in ADD_LEGS and held <= tol:
            return "add-on filled before any entry"
        if not opening and missed > held + tol:
            return f"exit fills {missed:g} exceed the position {held:g}"
    return None


def _expected(t: Trade, leg: str) -> bool:
    """Whether the book expects an open order on ``leg`` of ``t`` in its current state (conservative)."""
    st = t.state
    if leg == ENTRY:
        return not t.entry_done and st is not TradeState.CLOSED
    if leg in ADD_LEGS:
        return ADD_LEGS.index(leg) < t.add_ons and st in (TradeState.ACTIVE, TradeState.PENDING_CLOSING)
    if leg in (STOP, TAKE_PROFIT):
        return st is TradeState.ACTIVE
    if leg == PARTIAL:
        return t.partial_done and st is TradeState.ACTIVE
    if leg in (EXIT, FLATTEN):
        return st is TradeState.PENDING_CLOSING
    return False
