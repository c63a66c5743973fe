"""Labels against a plain-Python reference, on hand-built paths and random walks, and the no-look-ahead
property: perturbing prices after a sample's horizon changes none of its outputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.labels import fixed_horizon, triple_barrier, volume_bucket_returns

S = 1_000_000_000


def _reference_triple_barrier(ts, px, start, up, down, horizon):  # type: ignore[no-untyped-def]
    best, best_j, label, last = -np.inf, start, 0, start
    for j in range(start + 1, len(ts)):
        if ts[j] > ts[start] + horizon:
            break
        r = px[j] / px[start] - 1
        last = j
        if r > best:
            best, best_j = r, j
        if r >= up:
            label = 1
            break
        if r <= -down:
            label = -1
            break
    return label, last, px[last] / px[start] - 1, (best if best_j != start else 0.0), ts[best_j] - ts[start]


def test_hand_built_paths() -> None:
    ts = np.arange(8, dtype=np.int64) * S
    px = np.array([100, 100.5, 101.1, 99.0, 98.0, 100, 100, 100.0])
    out = triple_barrier(ts, px, [0, 2, 5], sigma=0.01, upper_mult=1, lower_mult=1, horizon_ns=3 * S)
    assert out.label.tolist() == [1, -1, 0]
    assert out.hit_index.tolist() == [2, 3, 7]
    assert out.t1.tolist() == [2 * S, 3 * S, 7 * S]
    assert out.ret[0] == pytest.approx(0.011) and out.ret[1] == pytest.approx(99 / 101.1 - 1)
    assert out.peak_ret[0] == pytest.approx(0.011) and out.time_to_peak_ns[0] == 2 * S
    assert out.peak_ret[2] == 0.0  # flat path: no gain


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.5, 3.0), st.floats(0.5, 3.0), st.integers(1, 40))
def test_triple_barrier_matches_reference_on_random_walks(seed: int, up: float, down: float, h: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    ts = np.cumsum(rng.integers(1, 3, n)).astype(np.int64) * S
    px = 100 * np.exp(np.cumsum(rng.standard_t(3, n) * 0.002))
    starts = np.sort(rng.choice(n, 40, replace=False))
    sigma = np.full(40, 0.004)
    out = triple_barrier(ts, px, starts, sigma, upper_mult=up, lower_mult=down, horizon_ns=h * S)
    for k, s in enumerate(starts):
        label, hit, ret, peak, tpeak = _reference_triple_barrier(ts, px, s, up * 0.004, down * 0.004, h * S)
        assert (out.label[k], out.hit_index[k], out.time_to_peak_ns[k]) == (label, hit, tpeak)
        assert out.ret[k] == pytest.approx(ret, abs=1e-12) and out.peak_ret[k] == pytest.approx(peak, abs=1e-12)


def test_data_after_the_horizon_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    ts = np.arange(n, dtype=np.int64) * S
    px = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    starts = np.arange(0, 1500, 7)
    sigma = np.full(len(starts), 0.002)
    h = 30 * S
    tb = triple_barrier(ts, px, starts, sigma, horizon_ns=h)
    fh = fixed_horizon(ts, px, starts, sigma, horizon_ns=h)
    cut = 1000  # perturb everything after sample index `cut`'s horizon
    perturbed = px.copy()
    perturbed[cut + 31 :] *= np.exp(rng.normal(0, 0.05, n - cut - 31))
    tb2 = triple_barrier(ts, perturbed, starts, sigma, horizon_ns=h)
    fh2 = fixed_horizon(ts, perturbed, starts, sigma, horizon_ns=h)
    early = starts <= cut
    for field in ("label", "hit_index", "t1", "ret", "peak_ret", "time_to_peak_ns"):
        assert np.array_equal(getattr(tb, field)[early], getattr(tb2, field)[early]), field
    for a, b in zip(fh, fh2, strict=True):
        assert np.array_equal(a[early], b[early])
    assert not np.array_equal(tb.ret[~early], tb2.ret[~early])  # the perturbation did reach later samples
    assert np.all(tb.t1 <= ts[starts] + h) and np.all(tb.t1 >= ts[starts])


def test_fixed_horizon_dead_zone() -> None:
    ts = np.arange(6, dtype=np.int64) * S
    px = np.array([100, 100.2, 100.4, 99.0, 99.0, 101.0])
    label, fwd, t1 = fixed_horizon(ts, px, [0, 1, 2], sigma=0.01, horizon_ns=2 * S, dead_zone_mult=0.5)
    assert fwd.tolist() == pytest.approx([0.004, 99 / 100.2 - 1, 99 / 100.4 - 1])
    assert label.tolist() == [0, -1, -1]
    assert t1.tolist() == [2 * S, 3 * S, 4 * S]


def test_volume_bucket_returns_per_second() -> None:
    end = np.array([0, 2, 3, 7], dtype=np.int64) * S
    close = np.array([100.0, 101.0, 100.0, 102.0])
    y, t1 = volume_bucket_returns(end, close)
    assert y[:3] == pytest.approx([0.01 / 2, (100 / 101 - 1) / 1, 0.02 / 4]) and np.isnan(y[3])
    assert t1.tolist() == [2 * S, 3 * S, 7 * S, 7 * S]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"px": [100.0, -1.0]}, "prices must be finite and > 0"),
        ({"ts": [1, 0]}, "non-decreasing"),
        ({"sigma": [0.0]}, "sigma must be finite and > 0"),
        ({"starts": [5]}, "must index into the series"),
    ],
)
def test_bad_inputs_say_what_is_wrong(kwargs: dict[str, list[float]], message: str) -> None:
    args = {"ts": [0, 1], "px": [100.0, 101.0], "starts": [0], "sigma": [0.01]} | kwargs
    with pytest.raises(ValueError, match=message):
        triple_barrier(args["ts"], args["px"], args["starts"], args["sigma"], horizon_ns=5)
