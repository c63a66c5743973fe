"""Records: a TradeBook survives dicts, JSON and a structured array unchanged, and refuses what it cannot read."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.decision.types import LONG, SHORT
from tradeplane.engine.trading.lifecycle import TradeBook, TradeState
from tradeplane.engine.trading.records import (
    FIELDS,
    RECORD_DTYPE,
    RECORDS_VERSION,
    same_trade,
    to_array,
    to_records,
    trade_book_from_array,
    trade_book_from_records,
    trade_to_record,
)

from .factory import active, coid, iid, make_intent


def book_in_every_state() -> TradeBook:
    book = TradeBook("s1", dust_qty=0.001)
    book.open(make_intent("pending"), 1)
    t = active(book, "active", side=SHORT, qty=2.0, fill_px=50.0)
    book.record_stop(t.intent_id, 50.0, 1, 3)
    book.record_add_on(t.intent_id, 3)
    book.on_fill(coid("active", "add1"), 2.0, 49.0, 0.01, 4)
    book.record_partial(t.intent_id, 5)
    book.on_fill(coid("active", "partial"), 1.0, 48.0, 0.01, 5)
    c = active(book, "closing")
    book.request_close(c.intent_id, "halt", 6)
    book.on_fill(coid("closing", "exit"), 0.25, 101.0, 0.0, 7)
    book.open(make_intent("unfilled"), 1)
    book.on_order_final(coid("unfilled", "entry"), "CANCELED", 8)
    done = active(book, "done", fill_px=100.0)
    book.on_fill(coid("done", "stop"), 1.5, 95.0, 0.02, 9)
    assert {t.state for t in book.trades()} == set(TradeState) and done.unmatched_qty == 0.5
    return book


def assert_same_books(a: TradeBook, b: TradeBook) -> None:
    assert [t.intent_id for t in a.trades()] == [t.intent_id for t in b.trades()]
    for x, y in zip(a.trades(), b.trades(), strict=True):
        assert same_trade(x, y), (x, y)


def test_dict_round_trip_in_every_state() -> None:
    book = book_in_every_state()
    restored = trade_book_from_records(to_records(book), strategy="s1", dust_qty=0.001)
    assert_same_books(book, restored)
    assert restored.strategy == "s1" and restored.dust_qty == 0.001


def test_json_round_trip() -> None:
    book = book_in_every_state()
    text = json.dumps(to_records(book))  # NaN prices are written as NaN (the store keeps Float64 NaN)
    assert_same_books(book, trade_book_from_records(json.loads(text)))


def test_array_round_trip() -> None:
    book = book_in_every_state()
    arr = to_array(book)
    assert arr.dtype == RECORD_DTYPE and arr.shape == (5,)
    assert set(arr["state"]) == {"PENDING_ENTRY", "ACTIVE", "PENDING_CLOSING", "CLOSED"}
    assert arr["filled_add1"][1] == 2.0 and arr["version"].tolist() == [RECORDS_VERSION] * 5
    assert_same_books(book, trade_book_from_array(arr))
    assert_same_books(book, trade_book_from_array(to_array(trade_book_from_array(arr))))


def test_record_fields_cover_every_trade_field() -> None:
    book = book_in_every_state()
    t = book.trades()[1]
    rec = trade_to_record(t)
    slot_fields = set(type(t).__slots__) - {"leg_filled"}  # type: ignore[attr-defined]
    assert slot_fields <= set(rec) and set(rec) == set(FIELDS)


def test_a_restored_book_carries_on() -> None:
    restored = trade_book_from_records(to_records(book_in_every_state()))
    t = restored.trade(iid("closing"))
    assert t is not None and t.state is TradeState.PENDING_CLOSING
    restored.on_fill(coid("closing", "exit"), 0.75, 101.0, 0.0, 10)
    assert t.state is TradeState.CLOSED and math.isclose(t.realized_pnl_usdt, 1.0)
    _, created = restored.open(make_intent("pending"), 11)
    assert not created


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param({"version": 2}, "version", id="other-version"),
        pytest.param({"state": "OPEN"}, "state", id="unknown-state"),
        pytest.param({"side": 0}, "side", id="bad-side"),
        pytest.param({"symbol": None}, "symbol", id="missing-field"),
    ],
)
def test_unreadable_records_raise(change: dict[str, object], match: str) -> None:
    rec = to_records(book_in_every_state())[1]
    for k, v in change.items():
        if v is None:
            del rec[k]
        else:
            rec[k] = v
    with pytest.raises(ValueError, match=match):
        trade_book_from_records([rec])


def test_duplicate_records_raise() -> None:
    recs = to_records(book_in_every_state())
    with pytest.raises(ValueError, match="already"):
        trade_book_from_records(recs + recs[:1])


def test_strings_wider_than_the_array_are_refused_not_truncated() -> None:
    book = TradeBook()
    book.open(make_intent("a", strategy="s" * 64), 1)
    with pytest.raises(ValueError, match="strategy"):
        to_array(book)
    assert_same_books(book, trade_book_from_records(to_records(book)))  # dicts have no width limit


def test_wrong_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="RECORD_DTYPE"):
        trade_book_from_array(np.zeros(1, dtype=[("x", "f8")]))


@settings(max_examples=100, deadline=None)
@given(
    side=st.sampled_from([LONG, SHORT]),
    fills=st.lists(
        st.tuples(st.sampled_from(["entry", "add1", "partial", "exit"]), st.floats(0.01, 2.0), st.floats(1.0, 500.0)),
        max_size=8,
    ),
    final=st.booleans(),
)
def test_round_trip_after_any_fill_sequence(side: int, fills: list[tuple[str, float, float]], final: bool) -> None:
    book = TradeBook()
    book.open(make_intent("h", side=side, qty=3.0), 1)
    for k, (leg, q, px) in enumerate(fills):
        with contextlib.suppress(ValueError):  # illegal in that state: the book is unchanged, keep going
            book.on_fill(coid("h", leg), q, px, 0.001 * q * px, k)
    if final:
        book.on_order_final(coid("h", "entry"), "CANCELED", 99)
    assert_same_books(book, trade_book_from_records(to_records(book)))
    assert_same_books(book, trade_book_from_array(to_array(book)))
