"""TradeBook: the state machine, fill accounting (hand-computed), idempotent open and illegal transitions."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.decision.types import LONG, SHORT
from tradeplane.engine.trading.lifecycle import (
    TRANSITIONS,
    IllegalTransitionError,
    Trade,
    TradeBook,
    TradeEvent,
    TradeState,
)
from tradeplane.engine.trading.records import trade_to_record

from .factory import active, close_to, coid, iid, make_intent


# --- open ---------------------------------------------------------------------------------------------------------
def test_open_is_idempotent_by_intent_id() -> None:
    book = TradeBook("s1")
    t1, created1 = book.open(make_intent("a"), 10)
    t2, created2 = book.open(make_intent("a"), 20)
    assert created1 and not created2
    assert t2 is t1 and len(book) == 1 and t1.opened_ts == 10
    assert t1.state is TradeState.PENDING_ENTRY
    assert (t1.target_qty, t1.stop_price, t1.take_profit_price, t1.leverage) == (1.0, 95.0, 110.0, 10)


def test_open_of_a_closed_trade_does_not_reopen() -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("a"), 1)
    book.on_order_final(coid("a", "entry"), "CANCELED", 2)
    assert t.state is TradeState.CLOSED
    again, created = book.open(make_intent("a"), 3)
    assert again is t and not created and again.state is TradeState.CLOSED


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"strategy": "other"}, "strategy", id="other-strategy"),
        pytest.param({"qty": 0.0}, "qty", id="zero-qty"),
        pytest.param({"qty": math.nan}, "qty", id="nan-qty"),
        pytest.param({"side": 0}, "side", id="no-side"),
    ],
)
def test_open_rejects_bad_intents(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TradeBook("s1").open(make_intent("a", **kw), 1)  # type: ignore[arg-type]


def test_open_rejects_an_intent_id_that_cannot_be_an_order_id() -> None:
    bad = make_intent("a")
    object.__setattr__(bad, "intent_id", "not-alnum!")
    with pytest.raises(ValueError, match="intent id"):
        TradeBook().open(bad, 1)


def test_missing_stop_and_target_are_nan() -> None:
    t, _ = TradeBook().open(make_intent("a", stop_price=0.0, take_profit_price=math.nan), 1)
    assert math.isnan(t.stop_price) and math.isnan(t.take_profit_price)


# --- fills --------------------------------------------------------------------------------------------------------
def test_partial_entry_fills_average_and_activate_on_the_first() -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("a", qty=1.0), 1)
    assert book.on_fill(coid("a", "entry"), 0.4, 100.0, 0.02, 5) is t
    assert t.state is TradeState.ACTIVE and not t.entry_done and t.filled_qty == 0.4
    book.on_fill(coid("a", "entry"), 0.6, 110.0, 0.03, 6)
    assert close_to(t.avg_entry, (0.4 * 100 + 0.6 * 110) / 1.0)  # 106
    assert t.entry_done  # fully filled: final even before its report
    assert close_to(t.fees_usdt, 0.05) and close_to(t.realized_pnl_usdt, -0.05)
    assert t.leg_filled == {"entry": 1.0} and t.updated_ts == 6


@pytest.mark.parametrize(
    ("side", "entry_px", "qty", "exit_px", "fees", "pnl"),
    [
        pytest.param(LONG, 100.0, 1.0, 110.0, (0.05, 0.055), 10.0 - 0.105, id="long-win"),
        pytest.param(LONG, 100.0, 2.0, 95.0, (0.1, 0.095), -10.0 - 0.195, id="long-loss"),
        pytest.param(SHORT, 50.0, 2.0, 45.0, (0.05, 0.045), 10.0 - 0.095, id="short-win"),
        pytest.param(SHORT, 50.0, 4.0, 52.5, (0.1, 0.105), -10.0 - 0.205, id="short-loss"),
    ],
)
def test_take_profit_fill_realizes_linear_pnl(
    side: int, entry_px: float, qty: float, exit_px: float, fees: tuple[float, float], pnl: float
) -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("a", side=side, qty=qty), 1)
    book.on_fill(coid("a", "entry"), qty, entry_px, fees[0], 2)
    book.on_fill(coid("a", "tp"), qty, exit_px, fees[1], 3)
    assert t.state is TradeState.CLOSED and t.close_reason == "take-profit" and t.closed_ts == 3
    assert close_to(t.realized_pnl_usdt, pnl) and t.filled_qty == 0.0


def test_add_on_fills_re_average_and_exits_realize_at_the_average() -> None:
    book = TradeBook()
    t = active(book, "a", fill_px=100.0)
    book.on_fill(coid("a", "add1"), 1.0, 110.0, 0.0, 3)
    assert t.filled_qty == 2.0 and close_to(t.avg_entry, 105.0)
    book.on_fill(coid("a", "exit"), 2.0, 108.0, 0.0, 4)  # nobody asked: the exit fill itself starts the close
    assert t.state is TradeState.CLOSED and t.close_reason == "exit"
    assert close_to(t.realized_pnl_usdt, 2.0 * (108.0 - 105.0))


def test_partial_take_profit_keeps_the_trade_active_then_stop_closes_it() -> None:
    book = TradeBook()
    t = active(book, "a", side=SHORT, qty=2.0, fill_px=100.0)
    book.on_fill(coid("a", "partial"), 1.0, 98.0, 0.0, 3)
    assert t.state is TradeState.ACTIVE and t.filled_qty == 1.0 and close_to(t.realized_pnl_usdt, 2.0)
    book.on_fill(coid("a", "stop"), 0.4, 101.0, 0.0, 4)  # the venue's stop fired, partially filled so far
    assert t.state is TradeState.PENDING_CLOSING and t.close_reason == "stop"
    book.on_fill(coid("a", "stop"), 0.6, 101.0, 0.0, 5)
    assert t.state is TradeState.CLOSED and close_to(t.realized_pnl_usdt, 2.0 - 1.0)


def test_stop_after_the_ladder_moved_it_is_a_trailing_close() -> None:
    book = TradeBook()
    t = active(book, "a")
    book.record_stop(t.intent_id, 100.0, 1, 3)
    book.on_fill(coid("a", "stop"), 1.0, 100.0, 0.0, 4)
    assert t.state is TradeState.CLOSED and t.close_reason == "trailing"


def test_entry_final_with_nothing_filled_closes_entry_unfilled() -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("a"), 1)
    assert book.on_order_final(coid("a", "entry"), "EXPIRED", 7) is t
    assert t.state is TradeState.CLOSED and t.close_reason == "entry-unfilled" and t.closed_ts == 7


def test_entry_cancelled_after_a_partial_fill_stays_active_with_what_filled() -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("a", qty=1.0), 1)
    book.on_fill(coid("a", "entry"), 0.3, 100.0, 0.0, 2)
    book.on_order_final(coid("a", "entry"), "CANCELED", 3)
    assert t.state is TradeState.ACTIVE and t.entry_done and t.filled_qty == 0.3 and t.target_qty == 1.0
    book.on_order_final(coid("a", "entry"), "CANCELED", 4)  # duplicate report: no change
    assert t.state is TradeState.ACTIVE


def test_filled_entry_report_without_its_fills_changes_nothing() -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("a"), 1)
    book.on_order_final(coid("a", "entry"), "FILLED", 2)
    assert t.state is TradeState.PENDING_ENTRY and not t.entry_done  # the reconciler recovers the fills


def test_non_entry_finals_do_not_change_state() -> None:
    book = TradeBook()
    t = active(book, "a")
    book.on_order_final(coid("a", "stop"), "CANCELED", 3)  # a stop being moved
    assert t.state is TradeState.ACTIVE


def test_unknown_and_foreign_ids_return_none_without_crashing() -> None:
    book = TradeBook()
    active(book, "a")
    assert book.on_fill(coid("zzz", "entry"), 1.0, 100.0, 0.0, 3) is None
    assert book.on_fill("web_12345", 1.0, 100.0, 0.0, 3) is None
    assert book.on_order_final(coid("zzz", "entry"), "CANCELED", 3) is None
    assert book.by_client_order_id("web_12345") is None
    assert book.by_client_order_id(coid("a", "stop")) is book.trade(iid("a"))


@pytest.mark.parametrize(
    ("qty", "price", "fee"),
    [(0.0, 100.0, 0.0), (-1.0, 100.0, 0.0), (1.0, 0.0, 0.0), (1.0, math.nan, 0.0), (1.0, 100.0, math.inf)],
)
def test_bad_fill_values_raise_naming_the_order(qty: float, price: float, fee: float) -> None:
    book = TradeBook()
    book.open(make_intent("a"), 1)
    with pytest.raises(ValueError, match=coid("a", "entry")):
        book.on_fill(coid("a", "entry"), qty, price, fee, 2)


@pytest.mark.parametrize("status", ["NEW", "PARTIALLY_FILLED", "working"])
def test_a_status_that_is_not_final_raises(status: str) -> None:
    book = TradeBook()
    book.open(make_intent("a"), 1)
    with pytest.raises(ValueError, match=status):
        book.on_order_final(coid("a", "entry"), status, 2)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("canceled", "CLOSED"),
        ("Cancelled", "CLOSED"),
        ("expired", "CLOSED"),
        ("partial", "CLOSED"),
        ("filled", "PENDING_ENTRY"),
    ],
)
def test_final_status_spellings(status: str, state: str) -> None:
    """Any case, and the simulator's parent statuses (filled / partial / canceled)."""
    book = TradeBook()
    t, _ = book.open(make_intent("a"), 1)
    book.on_order_final(coid("a", "entry"), status, 2)
    assert t.state == state


def test_fills_of_partial_and_add_on_legs_count_as_sent() -> None:
    """A caller that sends without recording still gets the once-only rules, from the fills."""
    book = TradeBook()
    t = active(book, "a")
    book.on_fill(coid("a", "add2"), 1.0, 101.0, 0.0, 3)
    assert t.add_ons == 2
    book.on_fill(coid("a", "partial"), 0.5, 102.0, 0.0, 4)
    assert t.partial_done


# --- closing ------------------------------------------------------------------------------------------------------
def test_request_close_is_idempotent_and_keeps_the_first_reason() -> None:
    book = TradeBook()
    t = active(book, "a")
    assert book.request_close(t.intent_id, "halt", 3) is t
    book.request_close(t.intent_id, "stop", 4)
    assert t.state is TradeState.PENDING_CLOSING and t.close_reason == "halt"
    book.on_fill(coid("a", "exit"), 1.0, 101.0, 0.0, 5)
    assert t.state is TradeState.CLOSED and t.close_reason == "halt"


def test_close_of_a_pending_entry_ends_when_the_entry_is_final() -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("a", qty=1.0), 1)
    book.request_close(t.intent_id, "kill-switch", 2)
    assert t.state is TradeState.PENDING_CLOSING
    book.on_fill(coid("a", "entry"), 0.2, 100.0, 0.0, 3)  # late fill of the entry being cancelled
    book.on_fill(coid("a", "exit"), 0.2, 100.0, 0.0, 4)
    assert t.state is TradeState.PENDING_CLOSING  # flat, but the entry may still fill
    book.on_order_final(coid("a", "entry"), "CANCELED", 5)
    assert t.state is TradeState.CLOSED and t.close_reason == "kill-switch" and t.closed_ts == 5


def test_close_before_any_fill_then_entry_cancelled() -> None:
    book = TradeBook()
    t, _ = book.open(make_intent("a"), 1)
    book.request_close(t.intent_id, "halt", 2)
    book.on_order_final(coid("a", "entry"), "CANCELED", 3)
    assert t.state is TradeState.CLOSED and t.close_reason == "halt"


def test_dust_threshold_counts_as_flat() -> None:
    book = TradeBook(dust_qty=0.001)
    t = active(book, "a")
    book.on_fill(coid("a", "exit"), 0.9995, 100.0, 0.0, 3)
    assert t.state is TradeState.CLOSED and close_to(t.filled_qty, 0.0005)
    strict = TradeBook()
    u = active(strict, "a")
    strict.on_fill(coid("a", "exit"), 0.9995, 100.0, 0.0, 3)
    assert u.state is TradeState.PENDING_CLOSING


def test_exit_fills_beyond_the_position_are_kept_as_unmatched() -> None:
    book = TradeBook()
    t = active(book, "a", fill_px=100.0)
    book.on_fill(coid("a", "stop"), 1.5, 90.0, 0.0, 3)
    assert t.state is TradeState.CLOSED and t.unmatched_qty == 0.5
    assert close_to(t.realized_pnl_usdt, -10.0)  # realized on the 1.0 held only


def test_force_close_and_forget() -> None:
    book = TradeBook()
    t = active(book, "a")
    book.force_close(t.intent_id, "reconciled", 9)
    book.force_close(t.intent_id, "again", 10)  # idempotent
    assert t.state is TradeState.CLOSED and t.close_reason == "reconciled" and t.closed_ts == 9
    active(book, "b")
    assert book.forget_closed(9) == 0 and book.forget_closed(10) == 1
    assert iid("a") not in book and iid("b") in book and len(book.open_trades()) == 1


def test_unknown_intent_for_request_close_raises_key_error() -> None:
    with pytest.raises(KeyError, match="nope"):
        TradeBook().request_close("nope", "x", 1)


# --- illegal transitions ------------------------------------------------------------------------------------------
def _pending(book: TradeBook) -> Trade:
    return book.open(make_intent("a"), 1)[0]


def _closing(book: TradeBook) -> Trade:
    t = active(book, "a")
    return book.request_close(t.intent_id, "x", 3)


def _closed(book: TradeBook) -> Trade:
    t = active(book, "a")
    book.on_fill(coid("a", "tp"), 1.0, 110.0, 0.0, 3)
    return t


def _act(book: TradeBook) -> Trade:
    return active(book, "a")


def _twice_partial(book: TradeBook) -> Trade:
    t = active(book, "a")
    book.record_partial(t.intent_id, 3)
    return t


def _two_adds(book: TradeBook) -> Trade:
    t = active(book, "a")
    book.record_add_on(t.intent_id, 3)
    book.record_add_on(t.intent_id, 3)
    return t


@pytest.mark.parametrize(
    ("setup", "do", "state", "event"),
    [
        pytest.param(_pending, lambda b: b.on_fill(coid("a", "add1"), 1.0, 100.0, 0.0, 9), "PENDING_ENTRY",
                     "add-fill", id="add-on-before-entry"),
        pytest.param(_pending, lambda b: b.on_fill(coid("a", "stop"), 1.0, 100.0, 0.0, 9), "PENDING_ENTRY",
                     "exit-fill", id="exit-before-entry"),
        pytest.param(_closed, lambda b: b.on_fill(coid("a", "entry"), 1.0, 100.0, 0.0, 9), "CLOSED",
                     "entry-fill", id="entry-fill-on-closed"),
        pytest.param(_closed, lambda b: b.on_fill(coid("a", "exit"), 1.0, 100.0, 0.0, 9), "CLOSED",
                     "exit-fill", id="exit-fill-on-closed"),
        pytest.param(_closed, lambda b: b.request_close(iid("a"), "x", 9), "CLOSED", "close", id="close-closed"),
        pytest.param(_closing, lambda b: b.record_stop(iid("a"), 99.0, 1, 9), "PENDING_CLOSING", "move-stop",
                     id="move-stop-while-closing"),
        pytest.param(_pending, lambda b: b.record_add_on(iid("a"), 9), "PENDING_ENTRY", "add-sent",
                     id="add-on-while-pending"),
        pytest.param(_twice_partial, lambda b: b.record_partial(iid("a"), 9), "ACTIVE", "partial-sent",
                     id="second-partial"),
        pytest.param(_two_adds, lambda b: b.record_add_on(iid("a"), 9), "ACTIVE", "add-sent", id="third-add-on"),
        pytest.param(_closing, lambda b: b.on_fill(coid("a", "partial"), 0.5, 100.0, 0.0, 9), None, None,
                     id="partial-fill-while-closing-is-an-exit"),
    ],
)  # fmt: skip
def test_illegal_transitions_raise_naming_trade_state_event_and_change_nothing(
    setup: Callable[[TradeBook], Trade], do: Callable[[TradeBook], object], state: str | None, event: str | None
) -> None:
    book = TradeBook()
    t = setup(book)
    before = trade_to_record(t)
    if state is None:  # control row: legal
        do(book)
        return
    with pytest.raises(IllegalTransitionError) as err:
        do(book)
    msg = str(err.value)
    assert t.intent_id in msg and state in msg and event in msg
    assert _nan_equal(trade_to_record(t), before)


def _nan_equal(a: dict[str, object], b: dict[str, object]) -> bool:
    return all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a)  # type: ignore[arg-type]


def test_stop_may_not_move_against_the_position() -> None:
    book = TradeBook()
    t = active(book, "a")  # long, stop 95
    book.record_stop(t.intent_id, 100.0, 1, 3)
    with pytest.raises(ValueError, match="against"):
        book.record_stop(t.intent_id, 99.0, 2, 4)
    assert t.stop_price == 100.0 and t.trail_level == 1


def test_closed_is_terminal_and_every_state_is_reachable() -> None:
    from_closed = {to for (src, _), tos in TRANSITIONS.items() if src is TradeState.CLOSED for to in tos}
    assert from_closed == {TradeState.CLOSED}
    reachable = {to for tos in TRANSITIONS.values() for to in tos}
    assert reachable | {TradeState.PENDING_ENTRY} == set(TradeState)  # PENDING_ENTRY is where open() starts
    assert TradeState.PENDING_ENTRY not in reachable  # and nothing goes back to it
    assert all(isinstance(e, TradeEvent) for _, e in TRANSITIONS)


# --- property: accounting -----------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    side=st.sampled_from([LONG, SHORT]),
    entry=st.lists(st.tuples(st.floats(0.01, 5.0), st.floats(10.0, 1000.0)), min_size=1, max_size=4),
    adds=st.lists(st.tuples(st.floats(0.01, 5.0), st.floats(10.0, 1000.0)), max_size=2),
    exit_px=st.lists(st.floats(10.0, 1000.0), min_size=1, max_size=4),
    fee=st.floats(0.0, 1.0),
)
def test_a_closed_trade_realizes_its_cash_flows(
    side: int, entry: list[tuple[float, float]], adds: list[tuple[float, float]], exit_px: list[float], fee: float
) -> None:
    """Realized PnL of a trade closed flat equals side·(exit notional − entry notional) − fees, whatever the
    order of partial fills (the averages cancel out); the state ends CLOSED and never goes negative."""
    book = TradeBook()
    total = sum(q for q, _ in entry)
    t, _ = book.open(make_intent("p", side=side, qty=total), 1)
    for q, px in entry:
        book.on_fill(coid("p", "entry"), q, px, fee, 2)
        assert t.state is TradeState.ACTIVE
    for k, (q, px) in enumerate(adds):
        book.on_fill(coid("p", f"add{k + 1}"), q, px, fee, 3)
    held = t.filled_qty
    n = len(exit_px)
    for k, px in enumerate(exit_px):
        q = held / n if k < n - 1 else t.filled_qty
        book.on_fill(coid("p", "exit"), q, px, fee, 4)
        assert t.filled_qty >= 0
    assert t.state is TradeState.CLOSED
    opened = sum(q * px for q, px in entry + adds)
    closed = sum((held / n if k < n - 1 else held - held / n * (n - 1)) * px for k, px in enumerate(exit_px))
    fees = fee * (len(entry) + len(adds) + n)
    expected = side * (closed - opened) - fees
    assert math.isclose(t.realized_pnl_usdt, expected, rel_tol=1e-9, abs_tol=1e-6 * max(opened, 1.0))
    assert math.isclose(t.fees_usdt, fees, rel_tol=1e-12, abs_tol=1e-12)
