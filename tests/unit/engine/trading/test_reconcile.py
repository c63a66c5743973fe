"""Reconciler: what each orphan policy adopts, cancels, flattens and closes, and crash recovery without a second
order (the issue's acceptance case)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from tradeplane.engine.decision.types import LONG, SHORT, Intent
from tradeplane.engine.trading.ids import PREFIX, client_order_id
from tradeplane.engine.trading.lifecycle import TradeBook, TradeState
from tradeplane.engine.trading.reconcile import (
    OrphanPolicy,
    ReconcileReport,
    VenueOrder,
    VenuePosition,
    apply_report,
    reconcile,
)
from tradeplane.engine.trading.records import to_records, trade_book_from_records

from .factory import active, close_to, coid, iid, make_intent

RECLAIM = OrphanPolicy.RECLAIM_IF_SAFE
CONSERVATIVE = OrphanPolicy.CONSERVATIVE
BOTH = [RECLAIM, CONSERVATIVE]


def order(
    name: str, leg: str, *, symbol: str = "BTCUSDT", side: int = LONG, qty: float = 1.0, filled: float = 0.0,
    price: float = 100.0, status: str = "NEW",
) -> VenueOrder:  # fmt: skip
    return VenueOrder(coid(name, leg), symbol, side, qty, filled, price, status)


def pos(symbol: str, qty: float, px: float = 100.0) -> VenuePosition:
    return VenuePosition(symbol, qty, px)


def news(report: ReconcileReport) -> list[tuple[str, float, bool]]:
    """Adoptions that change the book (missed fills, finals it has not seen)."""
    return [(a.leg, a.fill_qty, a.final) for a in report.adopted if a.fill_qty > 0 or a.final]


def pending_and_active() -> TradeBook:
    """A pending entry on BTCUSDT and an active long on ETHUSDT with its stop and take-profit working."""
    book = TradeBook("s1")
    book.open(make_intent("p", symbol="BTCUSDT"), 1)
    active(book, "c", symbol="ETHUSDT", fill_px=2000.0)
    return book


def in_sync_venue() -> tuple[list[VenueOrder], list[VenuePosition]]:
    orders = [
        order("p", "entry"),
        order("c", "stop", symbol="ETHUSDT", side=SHORT, price=1900.0),
        order("c", "tp", symbol="ETHUSDT", side=SHORT, price=2200.0),
    ]
    return orders, [pos("ETHUSDT", 1.0, 2000.0)]


# --- agreement and foreign orders -----------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", BOTH)
def test_in_sync_is_clean(policy: OrphanPolicy) -> None:
    book = pending_and_active()
    report = reconcile(book, *in_sync_venue(), policy, prefix=PREFIX)
    assert report.clean, report
    assert len(report.adopted) == 3 and news(report) == []


@pytest.mark.parametrize("policy", BOTH)
def test_foreign_orders_are_left_alone_and_reported(policy: OrphanPolicy) -> None:
    orders, positions = in_sync_venue()
    foreign = [
        VenueOrder("web_abc123", "BTCUSDT", LONG, 5.0, 0.0, 90.0, "NEW"),
        VenueOrder("tpz_" + iid("p"), "BTCUSDT", LONG, 5.0, 0.0, 90.0, "NEW"),  # our prefix, not our layout
    ]
    report = reconcile(pending_and_active(), orders + foreign, positions, policy, prefix=PREFIX)
    assert not report.cancel and not report.flatten and not report.closed
    assert len(report.mismatches) == 2 and all("foreign" in m for m in report.mismatches)


@pytest.mark.parametrize("policy", BOTH)
def test_our_orders_of_unknown_intents_are_cancelled(policy: OrphanPolicy) -> None:
    orders, positions = in_sync_venue()
    ghost_open = order("ghost", "entry", symbol="SOLUSDT")
    ghost_done = order("ghost2", "entry", symbol="SOLUSDT", status="CANCELED")
    report = reconcile(pending_and_active(), [*orders, ghost_open, ghost_done], positions, policy, prefix=PREFIX)
    assert report.cancel == (ghost_open.client_order_id,)
    assert any(iid("ghost") in m for m in report.mismatches)


def test_a_narrower_prefix_treats_other_legs_as_foreign() -> None:
    orders, positions = in_sync_venue()
    report = reconcile(pending_and_active(), orders, positions, RECLAIM, prefix="tpe_")
    assert [a.leg for a in report.adopted] == ["entry"] and len(report.mismatches) == 2 and not report.cancel


# --- RECLAIM_IF_SAFE ------------------------------------------------------------------------------------------------
def test_reclaim_adopts_missed_entry_fills() -> None:
    book = pending_and_active()
    orders, positions = in_sync_venue()
    orders[0] = order("p", "entry", filled=0.4, status="PARTIALLY_FILLED", price=99.0)
    positions.append(pos("BTCUSDT", 0.4, 99.0))
    report = reconcile(book, orders, positions, RECLAIM, prefix=PREFIX)
    assert news(report) == [("entry", 0.4, False)] and not report.cancel and not report.mismatches
    apply_report(book, report, 50)
    t = book.trade(iid("p"))
    assert t is not None and t.state is TradeState.ACTIVE and t.filled_qty == 0.4 and t.avg_entry == 99.0
    assert reconcile(book, orders, positions, RECLAIM, prefix=PREFIX).clean


def test_reclaim_adopts_a_stop_that_fired_while_we_were_down() -> None:
    book = pending_and_active()
    orders, _ = in_sync_venue()
    orders[1] = order("c", "stop", symbol="ETHUSDT", side=SHORT, filled=1.0, price=1900.0, status="FILLED")
    report = reconcile(book, orders, [], RECLAIM, prefix=PREFIX)
    assert news(report) == [("stop", 1.0, True)] and report.cancel == (coid("c", "tp"),)
    assert not report.closed  # the missed fill explains the flat venue
    apply_report(book, report, 50)
    t = book.trade(iid("c"))
    assert t is not None and t.state is TradeState.CLOSED and t.close_reason == "stop"
    assert close_to(t.realized_pnl_usdt, -100.0)


def test_reclaim_closes_trades_the_venue_no_longer_has() -> None:
    book = pending_and_active()
    orders, _ = in_sync_venue()
    orders = [o for o in orders if "ETH" not in o.symbol] + [orders[2]]  # stop gone without a trace, tp left
    report = reconcile(book, orders, [], RECLAIM, prefix=PREFIX)
    assert report.closed == (iid("c"),) and report.cancel == (coid("c", "tp"),) and not report.flatten
    apply_report(book, report, 50)
    t = book.trade(iid("c"))
    assert t is not None and t.state is TradeState.CLOSED and t.close_reason == "reconciled"


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        pytest.param(order("p", "entry", qty=2.0), "exceeds", id="qty-above-the-trade"),
        pytest.param(order("p", "entry", side=SHORT), "side", id="wrong-side"),
        pytest.param(order("p", "entry", symbol="XRPUSDT"), "symbol", id="wrong-symbol"),
        pytest.param(order("c", "add1", symbol="ETHUSDT", qty=5.0), "exceeds", id="add-on-too-big"),
        pytest.param(order("c", "stop", symbol="ETHUSDT", side=LONG), "side", id="stop-that-adds"),
        pytest.param(order("p", "add1", filled=1.0, status="FILLED"), "before any entry", id="add-fill-before-entry"),
        pytest.param(order("c", "entry", symbol="ETHUSDT", filled=0.5, status="FILLED"), "fewer|0.5", id="venue-has-fewer-fills"),
    ],
)  # fmt: skip
def test_reclaim_cancels_unsafe_orders(bad: VenueOrder, match: str) -> None:
    orders, positions = in_sync_venue()
    orders = [o for o in orders if o.client_order_id != bad.client_order_id] + [bad]
    report = reconcile(pending_and_active(), orders, positions, RECLAIM, prefix=PREFIX)
    assert bad.client_order_id not in {a.client_order_id for a in report.adopted}
    assert (bad.client_order_id in report.cancel) == bad.is_open
    assert any(bad.client_order_id in m for m in report.mismatches)
    assert not report.flatten


def test_stale_orders_of_closed_trades_are_cancelled() -> None:
    book = pending_and_active()
    book.force_close(iid("c"), "manual", 5)
    orders, _ = in_sync_venue()
    report = reconcile(book, orders, [pos("ETHUSDT", 0.0)], RECLAIM, prefix=PREFIX)
    assert set(report.cancel) == {coid("c", "stop"), coid("c", "tp")} and not report.closed


def test_reclaim_adopts_a_position_into_the_pending_entry_that_explains_it() -> None:
    book = pending_and_active()
    orders, positions = in_sync_venue()
    orders = orders[1:]  # the entry filled and dropped off the open-orders list
    report = reconcile(book, orders, [*positions, pos("BTCUSDT", 1.0, 100.7)], RECLAIM, prefix=PREFIX)
    (a,) = [a for a in report.adopted if a.source == "position"]
    assert (a.intent_id, a.leg, a.fill_qty, a.price, a.final) == (iid("p"), "entry", 1.0, 100.7, True)
    assert not report.closed and not report.flatten and not report.cancel
    apply_report(book, report, 50)
    t = book.trade(iid("p"))
    assert t is not None and t.state is TradeState.ACTIVE and t.entry_done and t.avg_entry == 100.7


@pytest.mark.parametrize(
    ("venue_qty", "extra_intent"),
    [
        pytest.param(-1.0, None, id="wrong-side"),
        pytest.param(1.5, None, id="bigger-than-the-trade"),
        pytest.param(1.0, "p2", id="two-candidates"),
    ],
)
def test_reclaim_leaves_an_unexplained_position_alone(venue_qty: float, extra_intent: str | None) -> None:
    book = pending_and_active()
    if extra_intent:
        book.open(make_intent(extra_intent, symbol="BTCUSDT"), 1)
    orders, positions = in_sync_venue()
    report = reconcile(book, orders[1:], [*positions, pos("BTCUSDT", venue_qty)], RECLAIM, prefix=PREFIX)
    assert not report.flatten and not [a for a in report.adopted if a.source == "position"]
    assert any("BTCUSDT" in m and "left alone" in m for m in report.mismatches)


@pytest.mark.parametrize("policy", BOTH)
def test_a_pending_entry_the_venue_never_saw_is_closed(policy: OrphanPolicy) -> None:
    book = pending_and_active()
    orders, positions = in_sync_venue()
    report = reconcile(book, orders[1:], positions, policy, prefix=PREFIX)
    assert report.closed == (iid("p"),) and not report.flatten and not report.cancel


# --- CONSERVATIVE ---------------------------------------------------------------------------------------------------
def test_conservative_never_adopts_an_unseen_fill_and_resets_the_symbol() -> None:
    book = pending_and_active()
    orders, positions = in_sync_venue()
    orders[0] = order("p", "entry", filled=0.4, status="PARTIALLY_FILLED")
    report = reconcile(book, orders, [*positions, pos("BTCUSDT", 0.4)], CONSERVATIVE, prefix=PREFIX)
    assert news(report) == []
    assert report.cancel == (coid("p", "entry"),) and report.flatten == (("BTCUSDT", -0.4),)
    assert report.closed == (iid("p"),)
    trades = apply_report(book, report, 50)
    assert [t.intent_id for t in trades] == [iid("p")] and trades[0].close_reason == "reconciled"
    c = book.trade(iid("c"))
    assert c is not None and c.state is TradeState.ACTIVE  # ETHUSDT agreed: untouched


def test_conservative_flattens_a_position_no_trade_explains() -> None:
    orders, positions = in_sync_venue()
    report = reconcile(pending_and_active(), orders, [*positions, pos("XRPUSDT", -30.0)], CONSERVATIVE, prefix=PREFIX)
    assert report.flatten == (("XRPUSDT", 30.0),) and not report.cancel and not report.closed


def test_reclaim_does_not_flatten_a_position_no_trade_explains() -> None:
    orders, positions = in_sync_venue()
    report = reconcile(pending_and_active(), orders, [*positions, pos("XRPUSDT", -30.0)], RECLAIM, prefix=PREFIX)
    assert not report.flatten and any("XRPUSDT" in m for m in report.mismatches)


def test_conservative_cancels_a_leg_the_state_does_not_expect() -> None:
    book = pending_and_active()
    book.request_close(iid("c"), "halt", 5)  # closing: a stop or take-profit still working is a leftover
    orders, positions = in_sync_venue()
    report = reconcile(book, orders, positions, CONSERVATIVE, prefix=PREFIX)
    assert set(report.cancel) == {coid("c", "stop"), coid("c", "tp")}
    assert not report.flatten and not report.closed
    assert reconcile(book, orders, positions, RECLAIM, prefix=PREFIX).cancel == ()  # reclaim keeps them


def test_conservative_resets_on_an_entry_that_differs_from_the_intent() -> None:
    orders, positions = in_sync_venue()
    orders[0] = order("p", "entry", qty=0.5)
    report = reconcile(pending_and_active(), orders, positions, CONSERVATIVE, prefix=PREFIX)
    assert report.cancel == (coid("p", "entry"),) and report.closed == (iid("p"),) and not report.flatten
    assert reconcile(pending_and_active(), orders, positions, RECLAIM, prefix=PREFIX).cancel == ()


@pytest.mark.parametrize("policy", BOTH)
def test_venue_flat_closes_active_trades(policy: OrphanPolicy) -> None:
    book = pending_and_active()
    orders, _ = in_sync_venue()
    report = reconcile(book, orders[:1], [], policy, prefix=PREFIX)
    assert report.closed == (iid("c"),) and not report.flatten


# --- several books, bad input ---------------------------------------------------------------------------------------
def test_books_of_every_strategy_on_the_account() -> None:
    a, b = TradeBook("s1"), TradeBook("s2")
    a.open(make_intent("x", strategy="s1"), 1)
    b.open(make_intent("y", strategy="s2"), 1)
    orders = [order("x", "entry"), order("y", "entry")]
    alone = reconcile(a, orders, [], RECLAIM, prefix=PREFIX)
    assert alone.cancel == (coid("y", "entry"),)  # one book alone sees the other's orders as orphans
    both = reconcile([a, b], orders, [], RECLAIM, prefix=PREFIX)
    assert both.clean and len(both.adopted) == 2
    with pytest.raises(ValueError, match="two books"):
        reconcile([a, a], orders, [], RECLAIM, prefix=PREFIX)


def test_two_positions_for_one_symbol_raise() -> None:
    with pytest.raises(ValueError, match="BTCUSDT"):
        reconcile(TradeBook(), [], [pos("BTCUSDT", 1.0), pos("BTCUSDT", 2.0)], RECLAIM, prefix=PREFIX)


# --- acceptance: recovery after a simulated crash with no duplicate orders ---------------------------------------------
def _venue_apply(
    orders: Sequence[VenueOrder], positions: Sequence[VenuePosition], report: ReconcileReport
) -> tuple[list[VenueOrder], list[VenuePosition]]:
    """What the exchange looks like after the runtime carried out the report's cancels and flattens."""
    out = [dataclasses.replace(o, status="CANCELED") if o.client_order_id in report.cancel else o for o in orders]
    flat = dict(report.flatten)
    moved = [dataclasses.replace(p, qty=p.qty + flat.get(p.symbol, 0.0)) for p in positions]
    return out, [p for p in moved if p.qty != 0.0]


@pytest.mark.parametrize("listing", ["all-orders", "open-orders-only"])
@pytest.mark.parametrize("policy", BOTH)
def test_recovery_after_a_crash_sends_no_duplicate_orders(policy: OrphanPolicy, listing: str) -> None:
    intents: list[Intent] = [
        make_intent("A", symbol="BTCUSDT", side=LONG, qty=1.0),
        make_intent("B", symbol="ETHUSDT", side=SHORT, qty=2.0, price=2000.0, stop_price=2100.0, take_profit_price=1900.0),
        make_intent("C", symbol="SOLUSDT", side=LONG, qty=10.0, price=20.0, stop_price=19.0, take_profit_price=22.0),
    ]  # fmt: skip
    sent: list[str] = []  # every client order id ever sent to the venue

    # Before the crash: all three intents opened (and persisted) and their entries sent; C filled, protected.
    book = TradeBook("s1")
    for i in intents:
        _, created = book.open(i, 1)
        assert created
        sent.append(client_order_id(i.intent_id, "entry"))
    book.on_fill(coid("C", "entry"), 10.0, 20.0, 0.1, 2)
    sent += [coid("C", "stop"), coid("C", "tp")]
    records = to_records(book)
    del book  # the crash

    # While we were down: A's entry filled, B's entry was cancelled (expired); C untouched; someone's manual order.
    history = [
        order("A", "entry", qty=1.0, filled=1.0, price=100.5, status="FILLED"),
        order("B", "entry", symbol="ETHUSDT", side=SHORT, qty=2.0, price=2000.0, status="EXPIRED"),
        order("C", "entry", symbol="SOLUSDT", qty=10.0, filled=10.0, price=20.0, status="FILLED"),
        order("C", "stop", symbol="SOLUSDT", side=SHORT, qty=10.0, price=19.0),
        order("C", "tp", symbol="SOLUSDT", side=SHORT, qty=10.0, price=22.0),
        VenueOrder("web_manual1", "BTCUSDT", LONG, 0.5, 0.0, 90.0, "NEW"),
    ]
    venue_orders = history if listing == "all-orders" else [o for o in history if o.is_open]
    venue_positions = [pos("BTCUSDT", 1.0, 100.5), pos("SOLUSDT", 10.0, 20.0)]
    assert {o.client_order_id for o in history if o.client_order_id.startswith(PREFIX)} == set(sent)

    # Restart: restore, reconcile, act on the report.
    book = trade_book_from_records(records, strategy="s1")
    report = reconcile(book, venue_orders, venue_positions, policy, prefix=PREFIX)
    assert "web_manual1" not in report.cancel
    assert all(c in sent for c in report.cancel)  # only ever cancels what we sent
    apply_report(book, report, 100)
    venue_orders, venue_positions = _venue_apply(venue_orders, venue_positions, report)

    a, b, c = (book.trade(i.intent_id) for i in intents)
    assert a is not None and b is not None and c is not None
    assert b.state is TradeState.CLOSED  # expired entry: nothing to hold
    assert c.state is TradeState.ACTIVE and c.filled_qty == 10.0 and c.stop_price == 19.0
    if policy is RECLAIM:
        assert a.state is TradeState.ACTIVE and a.filled_qty == 1.0 and a.avg_entry == 100.5 and a.entry_done
        assert not report.flatten and not report.cancel
    else:  # conservative: the fill it never saw is undone
        assert a.state is TradeState.CLOSED and report.flatten == (("BTCUSDT", -1.0),)
        assert venue_positions == [pos("SOLUSDT", 10.0, 20.0)]

    # Replay the same intents from the bus: each maps onto its existing trade, so nothing is sent.
    to_send = set()
    for i in intents:
        trade, created = book.open(i, 200)
        assert not created and trade.intent_id == i.intent_id
        if created:
            to_send.add(client_order_id(i.intent_id, "entry"))
    assert to_send == set()

    # A second pass over the venue as it is now finds nothing more to do (only the manual order, reported).
    again = reconcile(book, venue_orders, venue_positions, policy, prefix=PREFIX)
    assert news(again) == [] and not again.cancel and not again.flatten and not again.closed
    assert again.mismatches == ("foreign order web_manual1 on BTCUSDT (NEW) left alone",)


@pytest.mark.parametrize("policy", BOTH)
def test_an_entry_order_no_longer_listed_is_over(policy: OrphanPolicy) -> None:
    """An open-orders listing omits finished orders: a partly filled entry missing from it is final."""
    book = TradeBook()
    t, _ = book.open(make_intent("q", qty=1.0), 1)
    book.on_fill(coid("q", "entry"), 0.4, 100.0, 0.0, 2)
    report = reconcile(book, [], [pos("BTCUSDT", 0.4)], policy, prefix=PREFIX)
    assert news(report) == [("entry", 0.0, True)] and report.adopted[0].source == "absent"
    assert not report.cancel and not report.flatten and not report.closed
    apply_report(book, report, 50)
    assert t.state is TradeState.ACTIVE and t.entry_done and t.filled_qty == 0.4


@pytest.mark.parametrize("policy", BOTH)
def test_a_flat_closing_trade_waiting_for_its_entry_ends(policy: OrphanPolicy) -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("q", qty=1.0), 1)
    book.on_fill(coid("q", "entry"), 0.4, 100.0, 0.0, 2)
    book.request_close(t.intent_id, "halt", 3)
    book.on_fill(coid("q", "exit"), 0.4, 101.0, 0.0, 4)
    assert t.state is TradeState.PENDING_CLOSING  # flat, but the entry might still fill
    apply_report(book, reconcile(book, [], [], policy, prefix=PREFIX), 50)
    assert t.state is TradeState.CLOSED and t.close_reason == "halt" and close_to(t.realized_pnl_usdt, 0.4)
