"""Prometheus metrics of the ingest workload, created in the registry the process passes in.

Why a custom collector for the lag histogram: ``prometheus_client.Histogram.observe`` is one Python call per
sample, and the ingest measures every message of every micro-batch. :class:`BatchHistogram` bins a whole
batch with one ``np.searchsorted`` + ``np.bincount`` and exposes the standard ``_bucket`` / ``_sum`` /
``_count`` series, so dashboards cannot tell the difference.

================================  =========  ===========================================================
metric                            type       meaning
================================  =========  ===========================================================
``ingest_lag_ms``                 histogram  ingest_ts − exchange_ts per message (ms; clock offset included)
``ws_gap_ratio{symbol}``          gauge      depth gaps / depth messages over the quality window
``reconnects_total``              counter    connections re-opened after one was lost (not rotations)
``ws_rotations_total``            counter    planned rotations before the 24 h limit
``ws_connect_failures_total``     counter    failed connection attempts (refused, timed out, ...)
``decode_errors_total{type}``     counter    frames not decoded, by cause (json, schema, number, unknown, …)
``messages_total{stream}``        counter    messages decoded per stream (``btcusdt@depth``, ``btcusdt@trade``)
``resyncs_total{symbol}``         counter    snapshot resyncs the book asked for after its initial sync
``snapshots_total{symbol}``       counter    REST depth snapshots applied to the stream (initial included)
``md_batches_total``              counter    market-data micro-batches published
``quality_records_total{record}`` counter    gap / resync / disconnect records published
``ws_connected_streams``          gauge      streams on an open connection
================================  =========  ===========================================================
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

#: Upper bounds (ms) of the lag buckets: loopback ~1 ms, a healthy cloud feed 5-50 ms, trouble beyond 250 ms.
LAG_BUCKETS_MS: Final = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


class BatchHistogram(Collector):
    """A Prometheus histogram fed a numpy array at a time (``observe_many``); thread-safe against scrapes."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        bounds = np.asarray(sorted(buckets), dtype=np.float64)
        if bounds.size == 0 or not np.all(np.isfinite(bounds)):
            raise ValueError(f"{name}: buckets must be finite numbers, got {list(buckets)}")
        self.name = name
        self.documentation = documentation
        self._bounds = bounds
        self._counts = np.zeros(bounds.size + 1, dtype=np.int64)  # the last one is (max bound, +Inf]
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        """Count every value into its bucket (``le`` semantics: a value equal to a bound goes in that bucket)."""
        if values.size == 0:
            return
        idx = np.searchsorted(self._bounds, values, side="left")
        add = np.bincount(idx, minlength=self._counts.size)
        total = float(values.sum())
        with self._lock:
            self._counts += add
            self._sum += total

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    @property
    def total(self) -> float:
        return self._sum

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [(repr(float(b)), float(c)) for b, c in zip(self._bounds.tolist(), cumulative, strict=False)]
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)


class IngestMetrics:
    """Every ingest metric (see the module table), registered in ``registry`` (a private one when None)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.lag_ms = BatchHistogram("ingest_lag_ms", "ingest_ts - exchange_ts per message, ms", LAG_BUCKETS_MS)
        r.register(self.lag_ms)
        self.gap_ratio = Gauge("ws_gap_ratio", "Depth gaps per depth message over the quality window",
                               ["symbol"], registry=r)  # fmt: skip
        self.reconnects = Counter("reconnects", "Connections re-opened after one was lost", registry=r)
        self.rotations = Counter("ws_rotations", "Planned connection rotations before the age limit", registry=r)
        self.connect_failures = Counter("ws_connect_failures", "Failed websocket connection attempts", registry=r)
        self.decode_errors = Counter("decode_errors", "Frames not decoded, by cause", ["type"], registry=r)
        self.messages = Counter("messages", "Messages decoded per stream", ["stream"], registry=r)
        self.resyncs = Counter("resyncs", "Book resyncs after the initial sync", ["symbol"], registry=r)
        self.snapshots = Counter("snapshots", "REST depth snapshots applied", ["symbol"], registry=r)
        self.md_batches = Counter("md_batches", "Market-data micro-batches published", registry=r)
        self.quality_records = Counter("quality_records", "Quality records published", ["record"], registry=r)
        self.connected_streams = Gauge("ws_connected_streams", "Streams on an open connection", registry=r)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of one series (``reconnects_total``, ``decode_errors_total`` with labels, ...);
        0.0 when it was never touched. For tests and the health report."""
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else float(value)
