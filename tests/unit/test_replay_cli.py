"""`tradeplane replay` on real captures: the summary's counts, sync state and feature statistics."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tradeplane.cli import app, exit_codes

runner = CliRunner()


def _replay(shared_dir: Path, name: str, *args: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, ["replay", str(shared_dir / "data/binance/ws" / name), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_synced_capture_summary(shared_dir: Path) -> None:
    s = _replay(
        shared_dir, "spot_btcusdt_20240808.jsonl.gz", "--features", "--tick-size", "0.01", "--max-offset-ms", "2000"
    )
    assert s["messages_by_type"] == {"bookTicker": 28040, "depthUpdate": 3451, "snapshot": 1, "trade": 9757}
    assert s["malformed"] == 0 and s["unknown_by_type"] == {}
    (q,) = s["quality"]
    assert q["state"] == "synced" and q["gaps"] == 0 and q["crossed"] == 0 and q["degraded_events"] == 0
    assert -1400 < q["clock_offset_ms"] < -1100  # the recorder's clock ran ~1.27 s behind Binance
    assert s["feature_rows"] == s["synced_tops"] > 3000
    spread = s["book_features"]["spread_bps"]
    assert spread["count"] == s["feature_rows"] and 0 < spread["min"] <= spread["mean"] < 1
    assert s["book_features"]["bid_void"]["count"] == s["feature_rows"]  # tick size given: void computed
    assert s["bar_features"]["1s"]["rv"]["count"] > 300


def test_capture_without_snapshot_says_why_and_emits_no_book_features(shared_dir: Path) -> None:
    s = _replay(shared_dir, "spot_ethusdt_20240809.jsonl.gz", "--features")
    (q,) = s["quality"]
    assert q["state"] == "wait_snapshot" and q["unsynced_reason"] == "no snapshot received"
    assert s["synced_tops"] == 0 and s["feature_rows"] == 0
    assert all(c["count"] == 0 for c in s["book_features"].values())
    assert s["bar_features"]["1s"]["rv"]["count"] == 0  # price features need a synced book


def test_human_output_and_missing_file(shared_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", str(shared_dir / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz")])
    assert result.exit_code == 0 and "depthUpdate 6,551" in result.output and "synced" in result.output
    missing = runner.invoke(app, ["replay", str(tmp_path / "nope.jsonl.gz")])
    assert missing.exit_code == exit_codes.INVALID and "no such file" in missing.output
