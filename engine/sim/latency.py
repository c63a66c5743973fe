"""Order entry and response latency models, and the local-clock alignment of a capture.

Three latencies matter in a replay (hftbacktest's split): *feed* latency is in the data itself
(``ingest_ts − exchange_ts`` of every event: what the strategy sees lags the exchange), *entry* latency
takes an order from the strategy's send (local time) to the matching engine (exchange time), and
*response* latency takes an ack or fill back. Entry and response are modelled separately, each as

- :class:`ConstantLatency` — one number;
- :class:`SampledLatency` — draws from a seeded :class:`numpy.random.Generator`, prepared in blocks and
  consumed strictly in order, so a run with the same seed and the same sequence of sends is identical;
- :class:`RecordedLatency` — a measured series ``(ts, latency)`` looked up as of the send time (the last
  measurement at or before it; the first one before the series starts).

Why prepared arrays: the response latency is drawn inside the njit matching kernel for every fill and
report, so a model must be three plain values the kernel can read (:meth:`kernel_view`): a mode, the
latencies, and their timestamps (series only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from ..events import EVENT_DTYPE, EventArray
from .kernel_setup import copy_shifted, min_feed_latency

LAT_CONSTANT: Final = 0  #: vals[0] for every draw
LAT_SEQUENCE: Final = 1  #: vals[cursor], cursor advancing by one per draw (refilled by the Python edge)
LAT_SERIES: Final = 2  #: vals[last k with ts[k] <= t] (vals[0] before the first ts)

I64 = npt.NDArray[np.int64]
Sampler = Callable[[np.random.Generator, int], npt.NDArray[np.float64]]


class LatencyModel:
    """Base of the latency models: :meth:`draw` for sends decided in Python, :meth:`kernel_view` for the
    kernel (mode, vals, ts), and :meth:`next_block` to refill a sequence the kernel has used up."""

    mode: int = LAT_CONSTANT

    def draw(self, ts: I64) -> I64:
        """Latencies (ns, ≥ 0) for events at times ``ts`` (one per element, consumed in order)."""
        raise NotImplementedError

    def kernel_view(self) -> tuple[int, I64, I64]:
        raise NotImplementedError

    def next_block(self) -> I64:
        """A fresh block of a sequence model (only LAT_SEQUENCE is ever refilled)."""
        raise NotImplementedError(f"{type(self).__name__} is not a sequence")


class ConstantLatency(LatencyModel):
    """The same latency every time (ns)."""

    def __init__(self, latency_ns: int) -> None:
        if latency_ns < 0:
            raise ValueError(f"latency must be ≥ 0 ns, got {latency_ns}")
        self.latency_ns = int(latency_ns)
        self.mode = LAT_CONSTANT

    def draw(self, ts: I64) -> I64:
        return np.full(np.shape(ts)[0], self.latency_ns, np.int64)

    def kernel_view(self) -> tuple[int, I64, I64]:
        return LAT_CONSTANT, np.array([self.latency_ns], np.int64), np.zeros(1, np.int64)


class SampledLatency(LatencyModel):
    """Latencies drawn from a distribution with a seeded generator, in blocks of ``block`` samples.

    ``sampler(rng, n)`` returns n samples in ns (negative values are clipped to 0). The kernel and
    :meth:`draw` both consume blocks in order, so a run is reproducible from the seed. Use two instances
    (two seeds) for entry and response latency so one does not shift the other's sequence.
    """

    def __init__(self, sampler: Sampler, seed: int, block: int = 1 << 14) -> None:
        if block < 1:
            raise ValueError("block must be ≥ 1")
        self._sampler = sampler
        self._rng = np.random.default_rng(seed)
        self._block = block
        self._buf = self.next_block()
        self._pos = 0
        self.mode = LAT_SEQUENCE

    @classmethod
    def lognormal(cls, median_ns: float, sigma: float, seed: int, block: int = 1 << 14) -> SampledLatency:
        """Lognormal latencies: a long right tail, as order round trips have."""
        mu = float(np.log(median_ns))
        return cls(lambda rng, n: rng.lognormal(mu, sigma, n), seed, block)

    def next_block(self) -> I64:
        x = np.asarray(self._sampler(self._rng, self._block), np.float64)
        return np.maximum(np.rint(x), 0.0).astype(np.int64)

    def draw(self, ts: I64) -> I64:
        n = np.shape(ts)[0]
        out = np.empty(n, np.int64)
        k = 0
        while k < n:
            if self._pos >= self._buf.shape[0]:
                self._buf = self.next_block()
                self._pos = 0
            take = min(n - k, self._buf.shape[0] - self._pos)
            out[k : k + take] = self._buf[self._pos : self._pos + take]
            self._pos += take
            k += take
        return out

    def kernel_view(self) -> tuple[int, I64, I64]:
        """A fresh block for the kernel (the kernel keeps its own cursor)."""
        return LAT_SEQUENCE, self.next_block(), np.zeros(1, np.int64)


class RecordedLatency(LatencyModel):
    """A measured latency series: ``ts`` (ns, ascending) and ``latency_ns`` of the same length."""

    def __init__(self, ts: npt.ArrayLike, latency_ns: npt.ArrayLike) -> None:
        t = np.asarray(ts, np.int64)
        v = np.asarray(latency_ns, np.int64)
        if t.ndim != 1 or t.shape != v.shape or t.shape[0] == 0:
            raise ValueError("ts and latency_ns must be non-empty 1-D arrays of the same length")
        if np.any(np.diff(t) < 0):
            raise ValueError("ts must be ascending")
        if np.any(v < 0):
            raise ValueError("latencies must be ≥ 0 ns")
        self.ts, self.latency_ns = t, v
        self.mode = LAT_SERIES

    def draw(self, ts: I64) -> I64:
        k = np.searchsorted(self.ts, np.asarray(ts, np.int64), side="right") - 1
        return self.latency_ns[np.maximum(k, 0)]

    def kernel_view(self) -> tuple[int, I64, I64]:
        return LAT_SERIES, self.latency_ns, self.ts


def feed_latency(events: EventArray) -> I64:
    """Feed latency of every event (ns): the data's own receive time minus exchange time."""
    return np.asarray(events["ingest_ts"] - events["exchange_ts"], np.int64)


def align_local_clock(events: EventArray, min_feed_latency_ns: int = 0) -> EventArray:
    """A copy whose ``ingest_ts`` is shifted by one constant so that no event is received before it happened
    (the smallest feed latency becomes ``min_feed_latency_ns``), as hftbacktest's
    ``correct_local_timestamp``. Why: a recorder whose clock runs behind the exchange (the real captures here:
    −1.27 s) would otherwise let the strategy act on events the exchange has not produced yet. Relative
    feed latencies (the jitter) are kept exactly; a capture that already satisfies the bound is unchanged.
    """
    if events.shape[0] == 0 or events.dtype != EVENT_DTYPE:
        out = events.copy()
        if out.shape[0]:
            shift = int(min_feed_latency_ns) - int(np.min(out["ingest_ts"] - out["exchange_ts"]))
            if shift > 0:
                out["ingest_ts"] += shift
        return out
    # one pass for the minimum and one copy, whole records at a time (numpy copies records field by field: 17
    # ms against 2.5 ms for a day of BTCUSDT)
    shift = max(0, int(min_feed_latency_ns) - int(min_feed_latency(events)))
    out = np.empty(events.shape[0], EVENT_DTYPE)
    copy_shifted(events, shift, out)
    return out
