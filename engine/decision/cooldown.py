"""Cooldowns per (symbol, direction) and de-duplication of intents by ``intent_id``.

Why a cooldown: a signal that is true now is usually still true on the next tick; without a pause the
strategy would stack one entry per tick into the same move. The pause is per symbol *and* direction, so a
reversal is not blocked by the entry it reverses.

Why de-duplication: intent ids are derived from the decision's inputs (strategy, symbol, side, book time,
config revision), so a replayed or re-delivered tick produces the same id; it must not produce a second
entry. Downstream, ``client_order_id`` derived from the same id is the last line of defence; this is the
first.

State is plain dictionaries mutated only through :meth:`Cooldowns.record`; time is always an argument.
The cooldown stores the *last entry time*, not a deadline, so a hot change of the cooldown length
(:meth:`Cooldowns.set_cooldown`) applies at once to blocks already running — shortening it frees a symbol
sooner, lengthening it extends the pause.

Memory is bounded: an intent id is forgotten once it is older than max(cooldown, 1 h). Anything replayed
after that is far outside any cooldown, and the order layer's idempotent ids still catch it.
"""

from __future__ import annotations

from collections import OrderedDict

_NS_PER_HOUR = 3_600 * 1_000_000_000


class Cooldowns:
    """Cooldown book of one strategy (shared by all its symbols)."""

    __slots__ = ("_cooldown_ns", "_last_entry", "_seen")

    def __init__(self, cooldown_ns: int) -> None:
        self._cooldown_ns = 0
        self.set_cooldown(cooldown_ns)
        self._last_entry: dict[tuple[str, int], int] = {}  #: (symbol, side) → time of the last entry, ns
        # intent_id → time recorded, ns (insertion order = time order). An OrderedDict because a plain dict
        # emptied from the front makes next(iter()) scan the deleted slots: 15–48 µs per record at 36k ids.
        self._seen: OrderedDict[str, int] = OrderedDict()

    @property
    def cooldown_ns(self) -> int:
        return self._cooldown_ns

    @property
    def memory_ns(self) -> int:
        """How long an intent id is remembered: max(cooldown, 1 h)."""
        return max(self._cooldown_ns, _NS_PER_HOUR)

    def set_cooldown(self, cooldown_ns: int) -> None:
        """Hot configuration: the new length applies to the next query, including running cooldowns."""
        if cooldown_ns < 0:
            raise ValueError(f"cooldown_ns must be >= 0, got {cooldown_ns}")
        self._cooldown_ns = int(cooldown_ns)

    def blocked_until(self, symbol: str, side: int, now: int) -> int:
        """End of the running cooldown of (symbol, side) in ns, or 0 when an entry is allowed at ``now``."""
        last = self._last_entry.get((symbol, side))
        if last is None:
            return 0
        until = last + self._cooldown_ns
        return until if until > now else 0

    def is_duplicate(self, intent_id: str) -> bool:
        """True when this intent id was recorded (and not yet forgotten)."""
        return intent_id in self._seen

    def record(self, symbol: str, side: int, intent_id: str, now: int) -> int:
        """Record an entry at ``now``; returns the cooldown's end (ns) for the signal's ``cooldown_until``."""
        self._last_entry[(symbol, side)] = now
        self._seen.pop(intent_id, None)  # re-insert so insertion order stays time order
        self._seen[intent_id] = now
        self._forget(now)
        return now + self._cooldown_ns

    def __len__(self) -> int:
        """Intent ids currently remembered (for tests and metrics)."""
        return len(self._seen)

    def _forget(self, now: int) -> None:
        """Drop ids older than the memory horizon, oldest first. Recording times come from the decision
        clock and are non-decreasing per strategy, so the scan stops at the first young id; should a clock
        step backwards, the oldest ids are still dropped first and memory stays bounded by the horizon."""
        horizon = now - self.memory_ns
        seen = self._seen
        while seen:
            ts = next(iter(seen.values()))
            if ts >= horizon:
                break
            seen.popitem(last=False)
