"""The synthetic market: determinism, Binance sequencing, and a book that an independent pure-Python
reconstruction from snapshot + diffs agrees with at every bookTicker and at the end."""

from __future__ import annotations

import numpy as np
import pytest

from tradeplane.engine import events as evk
from tradeplane.engine.synth import SyntheticMarket, SyntheticMarketConfig


def _kinds(ev: np.ndarray) -> np.ndarray:
    return ev["kind"] & evk.KIND_MASK


def test_same_seed_same_events_different_seed_different_events() -> None:
    a = SyntheticMarket(SyntheticMarketConfig(), seed=11).advance(30)
    b = SyntheticMarket(SyntheticMarketConfig(), seed=11).advance(30)
    c = SyntheticMarket(SyntheticMarketConfig(), seed=12).advance(30)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_streaming_in_chunks_equals_one_run() -> None:
    whole = SyntheticMarket(SyntheticMarketConfig(), seed=5).advance(20)
    m = SyntheticMarket(SyntheticMarketConfig(), seed=5)
    parts = np.concatenate([m.advance(5) for _ in range(4)])
    assert parts.tobytes() == whole.tobytes()


def _messages(ev: np.ndarray, kind: int) -> np.ndarray:
    """Indices of the last event of each message of ``kind``."""
    return np.nonzero((_kinds(ev) == kind) & (ev["kind"] & evk.LAST_IN_MSG != 0))[0]


@pytest.mark.parametrize("futures", [True, False], ids=["usdm", "spot"])
def test_diffs_chain_like_binance(futures: bool) -> None:
    ev = SyntheticMarket(SyntheticMarketConfig(futures=futures), seed=1).advance(60)
    last = _messages(ev, evk.DEPTH)
    first_ids, last_ids, prev_ids = ev["first_seq"][last], ev["seq"][last], ev["prev_seq"][last]
    assert len(last) > 500
    assert np.all(first_ids[1:] == last_ids[:-1] + 1)  # spot rule: U = previous u + 1
    assert np.all(last_ids >= first_ids)
    if futures:
        assert np.all(prev_ids[1:] == last_ids[:-1])  # futures rule: pu = previous u
    else:
        assert np.all(prev_ids == -1)
    # The stream opens with one diff, then the snapshot whose lastUpdateId is that diff's u.
    snap = np.nonzero(_kinds(ev) == evk.SNAPSHOT)[0]
    assert snap[0] > 0 and np.all(_kinds(ev[: snap[0]]) != evk.DEPTH) is np.False_
    first_diff = last[0]
    assert first_diff < snap[0] and ev["seq"][snap[0]] == ev["seq"][first_diff]
    assert ev["first_seq"][first_diff] <= ev["seq"][snap[0]] <= ev["seq"][first_diff]  # futures first-diff rule
    assert ev["first_seq"][last[1]] == ev["seq"][snap[0]] + 1  # spot first-diff rule holds for the next one


def _reference_book(ev: np.ndarray) -> tuple[dict[float, float], dict[float, float], int, list[tuple[int, bool]]]:
    """Apply snapshot + diffs with plain dicts (independent of any kernel). A bookTicker with id s is checked
    right after the diff whose last id u == s is applied (the book is then exactly at update s).
    Returns the book, the last u, and per-check (bookTicker index, agreed)."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    last_u = -1
    synced = False
    checks: list[tuple[int, bool]] = []
    pending: dict[int, tuple[int, float, float]] = {}  # bookTicker id -> (index, bid, ask)
    bbo_bid = np.nan
    for i, e in enumerate(ev):
        kind = int(e["kind"]) & evk.KIND_MASK
        px, qty = round(float(e["px"]), 6), float(e["qty"])
        side = bids if e["kind"] & evk.BID else asks
        if kind == evk.SNAPSHOT:
            if not synced:
                bids.clear()
                asks.clear()
                synced = True
            side[px] = qty
            last_u = int(e["seq"])
        elif kind == evk.DEPTH and synced:
            if int(e["seq"]) <= last_u:
                continue  # stale: already in the snapshot
            if qty == 0.0:
                side.pop(px, None)
            else:
                side[px] = qty
            if e["kind"] & evk.LAST_IN_MSG:
                last_u = int(e["seq"])
                if last_u in pending:
                    index, bid, ask = pending.pop(last_u)
                    checks.append((index, max(bids) == bid and min(asks) == ask))
        elif kind == evk.BBO:
            if e["kind"] & evk.BID:
                bbo_bid = px
            else:
                pending[int(e["seq"])] = (i, bbo_bid, px)
    return bids, asks, last_u, checks


def test_independent_book_agrees_with_every_checkable_book_ticker_and_the_end_state() -> None:
    # 1 ms diffs, so many bookTickers carry exactly the id of a diff's last update (checkable).
    m = SyntheticMarket(SyntheticMarketConfig(diff_interval_ms=1), seed=21)
    ev = m.advance(120)
    bids, asks, _, checks = _reference_book(ev)
    assert len(checks) > 50, len(checks)
    assert all(ok for _, ok in checks), [i for i, ok in checks if not ok][:5]
    # After one more flush boundary, the reconstructed book equals the generator's true book exactly.
    tail = m.resync()
    bids, asks, _, _ = _reference_book(np.concatenate([ev, tail[: np.argmax(_kinds(tail) == evk.SNAPSHOT)]]))
    # The snapshot carried the top 1000 levels per side, so compare the top 500 (deeper levels are unknown
    # to any client, as on the exchange).
    bp, bq, ap, aq = m.book()
    top_bids = sorted(bids.items(), reverse=True)[:500]
    top_asks = sorted(asks.items())[:500]
    assert top_bids == list(zip(np.round(bp, 6).tolist()[:500], bq.tolist()[:500], strict=True))
    assert top_asks == list(zip(np.round(ap, 6).tolist()[:500], aq.tolist()[:500], strict=True))


def test_market_has_trades_funding_regimes_and_fat_tails() -> None:
    m = SyntheticMarket(SyntheticMarketConfig(p_calm_to_volatile=0.02, p_volatile_to_calm=0.05), seed=4)
    regimes = []
    chunks = []
    for _ in range(60):
        chunks.append(m.advance(30))
        regimes.append(m.regime)
    ev = np.concatenate(chunks)
    kinds = _kinds(ev)
    trades = ev[kinds == evk.TRADE]
    assert len(trades) > 1000 and {evk.BUY, evk.SELL} <= {int(k) & (evk.BUY | evk.SELL) for k in trades["kind"][:200]}
    assert set(regimes) == {0, 1}
    marks = ev[kinds == evk.MARK]
    assert len(marks) == 1800 and np.all(np.isfinite(marks["qty"])) and np.std(marks["qty"]) > 0
    r = np.diff(np.log(marks["px"]))
    r = r[r != 0]
    kurtosis = float(np.mean((r - r.mean()) ** 4) / np.var(r) ** 2)
    assert kurtosis > 3.0  # fatter than normal
    assert np.all(ev["ingest_ts"] > ev["exchange_ts"])  # offset + latency are positive by construction
    assert np.all(np.diff(ev["exchange_ts"]) >= 0)


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"SyntheticMarketConfig\.market_rate"):
        SyntheticMarketConfig(market_rate=0)
    with pytest.raises(ValueError, match="depth_decay"):
        SyntheticMarketConfig(depth_decay=1.5)


def test_exhausting_a_side_raises_a_clear_error() -> None:
    m = SyntheticMarket(SyntheticMarketConfig(cancel_rate=2000, limit_rate=50, initial_depth_levels=50,
                                              grid_ticks=400), seed=2)  # fmt: skip
    with pytest.raises(RuntimeError, match="exhausted"):
        m.advance(600)
