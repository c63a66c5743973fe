"""What the live-book tests share: the USD-M capture's head, and a wall clock the test moves by hand."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.binance_replay import CaptureMessage, RecordedSnapshot, load_capture

T0 = 1_800_000_000_000_000_000  #: the "wall clock" at the first send
MS = 1_000_000


def usdm_capture(shared_dir: Path, lines: int) -> tuple[list[CaptureMessage], RecordedSnapshot]:
    """The first ``lines`` messages of the real USD-M BTCUSDT capture and its REST snapshot."""
    _, messages, snapshot = load_capture(shared_dir / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz", lines)
    assert snapshot is not None
    return messages, snapshot


class HandClock:
    """``clock()`` → ``now`` (ns), which the test sets."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now
