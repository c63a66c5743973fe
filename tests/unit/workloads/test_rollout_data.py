"""The rollout data helpers without a store: label join, the local top recorder, the offline curve side file
and the command/state files of the local loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tradeplane.engine.rollout import Command, OfflineCalibration
from tradeplane.workloads.rollout import command_path, write_command
from tradeplane.workloads.rollout.local import take_command
from tradeplane.workloads.rollout.mids import MidSeries, TopRecorder
from tradeplane.workloads.training.registry import (
    ARTIFACT_INDEX,
    ArtifactError,
    read_offline_calibration,
    write_offline_calibration,
)

M = ("binance-usdm", "BTCUSDT")


def test_labels_are_as_of_mids_and_nan_until_matured() -> None:
    mids = MidSeries({M: (np.array([0, 10, 20, 30]), np.array([100.0, 101.0, 101.0, 99.0]))})
    m0, m1, label = mids.labels(M, [0, 5, 10, 25], 10, until_ns=30)
    np.testing.assert_array_equal(m0, [100.0, 100.0, 101.0, 101.0])
    np.testing.assert_array_equal(label[:3], [1.0, 1.0, 0.0])  # 5 → as-of 15 is the top at 10: up
    assert np.isnan(label[3]) and np.isnan(m1[3])  # 25 + 10 = 35 > the last top seen (30)
    _, _, cut = mids.labels(M, [0, 10], 10, until_ns=15)  # tops after `until` are not used
    np.testing.assert_array_equal(cut[:1], [1.0])
    assert np.isnan(cut[1])
    assert np.isnan(mids.labels(("x", "y"), [0], 10)[2]).all()


def test_from_columns_drops_unusable_tops_and_recorder_keeps_new_ones() -> None:
    s = MidSeries.from_columns(["v", "v", "v"], ["A", "A", "A"], [2, 1, 3], [1.0, float("nan"), 3.0], [1.0, 2.0, 2.0])
    np.testing.assert_array_equal(s.series[("v", "A")][0], [2])  # nan bid and crossed book dropped
    rec = TopRecorder([M])
    rec.observe([(5, 99.0, 101.0)])
    rec.observe([(5, 98.0, 102.0)])  # same exchange time: not a new top
    rec.observe([(7, float("nan"), 1.0)])
    rec.observe([(9, 100.0, 102.0)])
    ts, mid = rec.series().series[M]
    np.testing.assert_array_equal(ts, [5, 9])
    np.testing.assert_array_equal(mid, [100.0, 101.0])


def test_offline_curve_round_trips_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    assert read_offline_calibration(tmp_path) is None
    y, p = np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.05, 0.95, 0.91, 0.5])
    name = write_offline_calibration(tmp_path, y, p)
    got, want = read_offline_calibration(tmp_path), OfflineCalibration.from_outcomes(y, p)
    assert got is not None and got.count == want.count
    np.testing.assert_array_equal(got.hit_rate, want.hit_rate)  # NaN (empty bucket) survives the JSON null
    (tmp_path / ARTIFACT_INDEX).write_text(json.dumps({"files": {name: {"sha256": "0" * 64}}}))
    with pytest.raises(ArtifactError, match="sha256"):
        read_offline_calibration(tmp_path)


def test_a_command_file_is_consumed_once(tmp_path: Path) -> None:
    write_command(tmp_path, "v2", "abort", "bob")
    cmd = take_command(tmp_path, "v2")
    assert cmd is not None and cmd.action is Command.ABORT and cmd.by == "bob"
    assert not command_path(tmp_path, "v2").exists() and take_command(tmp_path, "v2") is None
    with pytest.raises(ValueError):
        write_command(tmp_path, "v2", "explode", "bob")
