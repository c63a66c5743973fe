"""Live decide's venue context: predicted parent ids, commands, and execute's reports (session, seq)."""

from __future__ import annotations

import numpy as np
import pytest

from tradeplane.engine.events import EVENT_DTYPE, book_top_dtype
from tradeplane.engine.runtime.instruments import instrument_table
from tradeplane.engine.sim.executors import PARENT_WORKING
from tradeplane.engine.sim.orders import FILL_DTYPE, ORDER_DTYPE
from tradeplane.engine.sim.portfolio import new_account
from tradeplane.workloads.live.decide_context import (
    EXECUTE_NOT_GREETED,
    LiveContext,
    VenueReports,
    after_announcement,
)
from tradeplane.workloads.paper.protocol import (
    ANNOUNCE_SESSION,
    TOUCH_DTYPE,
    CancelParent,
    ProtocolError,
    StartParent,
    VenueStep,
    decode_venue_step,
    encode_venue_step,
)

SESSION = 77


def _ctx() -> LiveContext:
    inst = instrument_table([("binance-usdm", "BTCUSDT"), ("binance-usdm", "ETHUSDT")])
    specs = [i.contract(leverage=1.0) for i in inst]
    ctx = LiveContext({i: s.lot_size for i, s in enumerate(specs)}, {i: s.tick_size for i, s in enumerate(specs)},
                      new_account(specs, 5_000.0))  # fmt: skip
    ctx.touch_of = lambda s: (100.0 + s, 100.5 + s)
    return ctx


def _report(ctx: LiveContext, seq: int, *, session: int = SESSION, filled: float = 0.0,
            n_fills: int = 0) -> VenueStep:  # fmt: skip
    parents = ctx.desk.parents[:1].copy()
    parents["filled"], parents["vwap"] = filled, 100.25
    account = ctx.portfolio.acct.copy()
    account["position"][0] = filled
    fills = np.zeros(n_fills, FILL_DTYPE)
    fills["qty"] = filled
    step = VenueStep(session, seq, 123, np.zeros(0, EVENT_DTYPE), np.zeros(0, book_top_dtype(10)), fills,
                     np.zeros(1, ORDER_DTYPE), parents, account, np.zeros(2, TOUCH_DTYPE))  # fmt: skip
    return decode_venue_step(encode_venue_step(step))  # what crosses Kafka


def test_parents_get_the_ids_execute_will_give_and_become_commands() -> None:
    ctx = _ctx()
    ctx.now = 5
    assert [ctx.execute(0, 1, 0.01), ctx.execute(1, -1, 0.02, "immediate"), ctx.execute(0, -1, 0.01)] == [1, 2, 3]
    ctx.cancel_parent(2)
    cmds = ctx.take_commands()
    assert [type(c) for c in cmds] == [StartParent, StartParent, StartParent, CancelParent]
    assert [c.pid for c in cmds] == [1, 2, 3, 2]
    first = cmds[0]
    assert isinstance(first, StartParent) and (first.symbol, first.side, first.style) == (0, 1, "maker_then_taker")
    assert ctx.take_commands() == []
    assert ctx.desk.parent_state(1)[:2] == (PARENT_WORKING, 0.0)
    assert ctx.touch(1) == (101.0, 101.5)


def test_reports_of_this_session_update_parents_account_and_the_next_batch() -> None:
    ctx = _ctx()
    ctx.execute(0, 1, 0.01)
    ctx.take_commands()
    inbox = VenueReports(SESSION, ctx)
    assert not inbox.accept(_report(ctx, 1, session=SESSION + 1, filled=9.0))  # another session's
    assert inbox.other_sessions == 1 and ctx.desk.parent_state(1)[1] == 0.0
    assert inbox.accept(_report(ctx, 1, filled=0.004, n_fills=2))
    assert ctx.desk.parent_state(1)[1:3] == (0.004, 100.25)
    assert float(ctx.portfolio.acct["position"][0]) == 0.004
    fills, reports = ctx.take_executions()
    assert fills.shape[0] == 2 and reports.shape[0] == 1
    assert ctx.take_executions()[0].shape[0] == 0  # handed to one desk call only
    assert not inbox.accept(_report(ctx, 1, filled=0.009))  # a redelivery
    assert inbox.duplicates == 1 and ctx.desk.parent_state(1)[1] == 0.004
    with pytest.raises(ProtocolError, match="reports were lost"):
        inbox.accept(_report(ctx, 3, filled=0.01))


def test_a_report_about_a_parent_this_session_never_sent_is_refused() -> None:
    ctx = _ctx()
    ctx.execute(0, 1, 0.01)
    step = _report(ctx, 1)
    other = _ctx()  # no parents sent
    with pytest.raises(ProtocolError, match="parent ids"):
        VenueReports(SESSION, other).accept(step)


def _announcement(ctx: LiveContext, now: int) -> VenueStep:
    account = ctx.portfolio.acct.copy()
    account["position"][0] = 0.5
    step = VenueStep(ANNOUNCE_SESSION, 0, now, np.zeros(0, EVENT_DTYPE), np.zeros(0, book_top_dtype(10)),
                     np.zeros(0, FILL_DTYPE), np.zeros(0, ORDER_DTYPE), ctx.desk.parents[:0].copy(), account,
                     np.zeros(2, TOUCH_DTYPE))  # fmt: skip
    return decode_venue_step(encode_venue_step(step))


def test_an_execute_started_after_the_session_is_noted_an_older_one_is_history() -> None:
    ctx = _ctx()
    inbox = VenueReports(SESSION, ctx, started_ns=1_000)
    assert not inbox.accept(_announcement(ctx, 999)) and inbox.announced_at == 0  # before the hello: it read it
    assert not inbox.accept(_announcement(ctx, 1_500)) and inbox.announced_at == 1_500
    assert float(ctx.portfolio.acct["position"][0]) == 0.0  # an announcement is not this session's account
    assert inbox.last == 0  # nor a report: the session's seq 1 is still expected
    with pytest.raises(ValueError, match="announcement"):
        VenueReports(ANNOUNCE_SESSION, ctx)


def test_after_an_execute_start_the_hello_is_said_again_unless_commands_were_lost() -> None:
    assert after_announcement(SESSION, 0, 1_500) == "hello"
    with pytest.raises(ProtocolError, match="2 commands") as err:
        after_announcement(SESSION, 2, 1_500)
    assert err.value.field == "execute"


def test_parents_are_refused_until_execute_greets_this_session() -> None:
    ctx = _ctx()
    inbox = VenueReports(SESSION, ctx, started_ns=1_000)
    assert ctx.order_refusal() == EXECUTE_NOT_GREETED
    assert not inbox.accept(_announcement(ctx, 1_500))  # an execute started: not yet this session's answer
    assert not inbox.accept(_report(ctx, 1, session=SESSION + 1))  # another session's greeting
    assert ctx.order_refusal() == EXECUTE_NOT_GREETED
    assert inbox.accept(_report(ctx, 1))  # the greeting: seq 1 of this session
    assert ctx.order_refusal() is None
