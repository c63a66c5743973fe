"""Constructed event tapes for simulator tests: one snapshot, diffs chained by pu, trades (ts in ns)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tradeplane.engine import events as E  # noqa: N812 (short names keep the tapes readable)

FEED = 1  # ns of feed latency in constructed data


class Tape:
    """Builds an event stream: one snapshot, then diffs that chain by pu, and trades."""

    def __init__(self, feed_ns: int = FEED) -> None:
        self.rows: list[tuple[int, int, float, float, int, int, int]] = []
        self.u = 100
        self.feed_ns = feed_ns

    def snapshot(self, ts: int, bids: dict[float, float], asks: dict[float, float]) -> Tape:
        lv = [(E.BID, p, q) for p, q in bids.items()] + [(E.ASK, p, q) for p, q in asks.items()]
        for k, (side, p, q) in enumerate(lv):
            last = E.LAST_IN_MSG if k == len(lv) - 1 else 0
            self.rows.append((E.SNAPSHOT | side | last, ts, p, q, self.u, self.u, -1))
        return self

    def diff(self, ts: int, bids: dict[float, float] | None = None, asks: dict[float, float] | None = None,
             pu: int | None = None) -> Tape:  # fmt: skip
        lv = [(E.BID, p, q) for p, q in (bids or {}).items()] + [(E.ASK, p, q) for p, q in (asks or {}).items()]
        prev = self.u if pu is None else pu
        self.u += 10
        for k, (side, p, q) in enumerate(lv):
            last = E.LAST_IN_MSG if k == len(lv) - 1 else 0
            self.rows.append((E.DEPTH | side | last, ts, p, q, self.u, prev + 1, prev))
        return self

    def trade(self, ts: int, px: float, qty: float, taker_buy: bool) -> Tape:
        self.rows.append((E.TRADE | (E.BUY if taker_buy else E.SELL), ts, px, qty, 1, 1, 1))
        return self

    def events(self) -> npt.NDArray[np.void]:
        ev = np.zeros(len(self.rows), E.EVENT_DTYPE)
        for i, (k, ts, p, q, u, first, prev) in enumerate(self.rows):
            ev[i] = (k, 0, ts, ts + self.feed_ns, p, q, u, first, prev)
        return ev
