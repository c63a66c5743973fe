"""The maker-then-taker routing policy: how long to wait for a passive fill, and in how many slices, by size.

Why a table keyed by notional: small orders lose little by crossing the spread late, large ones move the
touch if sent at once, so a desk wants to post bigger parents in more, spaced slices and wait longer for
them. The defaults are the desk's documented policy (docs/backtest.md); a Strategy may override the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Route:
    """Parents with notional (USDT) in ``[min_notional, next row's min_notional)`` post ``slices`` child orders
    ``interval_ms`` apart; each child waits ``wait_ms`` for maker fills before its rest is taken."""

    min_notional: float
    wait_ms: float
    slices: int = 1
    interval_ms: float = 0.0

    def __post_init__(self) -> None:
        if not self.min_notional >= 0:
            raise ValueError(f"Route.min_notional must be ≥ 0, got {self.min_notional!r}")
        if not self.wait_ms >= 0:
            raise ValueError(f"Route.wait_ms must be ≥ 0, got {self.wait_ms!r}")
        if not (isinstance(self.slices, int) and self.slices >= 1):
            raise ValueError(f"Route.slices must be an int ≥ 1, got {self.slices!r}")
        if not self.interval_ms >= 0 or (self.slices > 1 and self.interval_ms <= 0):
            raise ValueError(f"Route.interval_ms must be > 0 with several slices, got {self.interval_ms!r}")

    @property
    def wait_ns(self) -> int:
        return round(self.wait_ms * _MS)

    @property
    def interval_ns(self) -> int:
        return round(self.interval_ms * _MS)


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Rows sorted by ``min_notional``, the first starting at 0 so every size has a route."""

    routes: tuple[Route, ...]

    def __post_init__(self) -> None:
        if not self.routes:
            raise ValueError("RoutingTable needs at least one route")
        lows = [r.min_notional for r in self.routes]
        if lows[0] != 0:
            raise ValueError(f"RoutingTable.routes[0].min_notional must be 0, got {lows[0]}")
        for i in range(1, len(lows)):
            if lows[i] <= lows[i - 1]:
                raise ValueError(f"RoutingTable.routes[{i}].min_notional must exceed the previous row's ({lows[i]})")

    @classmethod
    def default(cls) -> RoutingTable:
        """0–200 USDT: 1.5 s, 1 slice; 200–500: 2 s, 2 slices 600 ms apart; 500–1000: 2.5 s, 3 slices every
        800 ms; 1000+: 3 s, 4 slices every 1 s."""
        return cls(
            (
                Route(0.0, 1500.0, 1, 0.0),
                Route(200.0, 2000.0, 2, 600.0),
                Route(500.0, 2500.0, 3, 800.0),
                Route(1000.0, 3000.0, 4, 1000.0),
            )
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[float]]) -> RoutingTable:
        """Rows of ``(min_notional, wait_ms, slices, interval_ms)``, e.g. from a Strategy spec."""
        routes = []
        for i, row in enumerate(rows):
            if len(row) not in (2, 4):
                raise ValueError(
                    f"routing row {i}: expected (min_notional, wait_ms[, slices, interval_ms]), got {row!r}"
                )
            lo, wait = float(row[0]), float(row[1])
            slices, interval = (int(row[2]), float(row[3])) if len(row) == 4 else (1, 0.0)
            routes.append(Route(lo, wait, slices, interval))
        return cls(tuple(routes))

    def route_for(self, notional: float) -> Route:
        """The row whose bucket holds ``notional`` (absolute value; NaN counts as the first bucket)."""
        n = abs(notional)
        chosen = self.routes[0]
        for r in self.routes:
            if n >= r.min_notional:
                chosen = r
        return chosen
