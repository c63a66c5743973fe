"""Ingest metrics: the batch-fed lag histogram exposes exactly what prometheus_client's own Histogram exposes
for the same samples (the independent reference), and every ingest metric is created in the registry given."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from tradeplane.workloads.ingest import BatchHistogram, IngestMetrics
from tradeplane.workloads.ingest.metrics import LAG_BUCKETS_MS


def test_batch_histogram_matches_prometheus_histogram() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.lognormal(3.0, 1.5, 5000), [-3.0, 0.0, 1.0, 5.0, 10000.0, 1e9]])
    ours = CollectorRegistry()
    hist = BatchHistogram("lag_ms", "doc", LAG_BUCKETS_MS)
    ours.register(hist)
    for chunk in np.array_split(values, 7):
        hist.observe_many(chunk)
    theirs = CollectorRegistry()
    ref = Histogram("lag_ms", "doc", buckets=LAG_BUCKETS_MS, registry=theirs)
    for v in values.tolist():
        ref.observe(v)
    for bound in [*LAG_BUCKETS_MS, float("inf")]:
        le = "+Inf" if bound == float("inf") else repr(bound)
        assert ours.get_sample_value("lag_ms_bucket", {"le": le}) == theirs.get_sample_value(
            "lag_ms_bucket", {"le": le}
        ), le
    assert ours.get_sample_value("lag_ms_count") == len(values) == hist.count
    assert ours.get_sample_value("lag_ms_sum") == pytest.approx(theirs.get_sample_value("lag_ms_sum"), rel=1e-12)


def test_every_metric_lives_in_the_given_registry() -> None:
    registry = CollectorRegistry()
    m = IngestMetrics(registry)
    m.reconnects.inc()
    m.decode_errors.labels("json").inc(2)
    m.messages.labels("btcusdt@trade").inc(5)
    m.resyncs.labels("BTCUSDT").inc()
    m.gap_ratio.labels("BTCUSDT").set(0.01)
    m.lag_ms.observe_many(np.array([3.0]))
    text = generate_latest(registry).decode()
    for name in ("ingest_lag_ms_bucket", "ws_gap_ratio", "reconnects_total", "decode_errors_total",
                 "messages_total", "resyncs_total", "ws_rotations_total", "ws_connected_streams"):  # fmt: skip
        assert name in text, name
    assert m.sample("decode_errors_total", {"type": "json"}) == 2.0
    assert m.sample("decode_errors_total", {"type": "number"}) == 0.0
    assert IngestMetrics().registry is not registry  # no registry given: a private one, no global clashes
