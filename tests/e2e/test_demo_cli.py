"""`tradeplane demo` — the README's main job — as a user runs it: one command, a report at the end.

Small settings (half an hour of training history, two minutes of market) keep it under a minute; the code path
is the default one (`make demo` passes no options).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_trains_runs_the_example_desk_and_writes_the_report(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "tradeplane"
    home = tmp_path / "home"
    proc = subprocess.run(
        [str(exe), "demo", "--examples", str(REPO / "examples"), "--home", str(home), "--train-hours", "0.5",
         "--seconds", "120", "--trials", "2"],
        capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"}, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run report" in proc.stdout
    run = json.loads((home / "runs" / "demo" / "run.json").read_text())
    # one decision per instrument (3) per 100 ms tick over 120 s, both ends of the run included
    assert 3 * 1200 <= run["decisions"] <= 3 * 1202
    html = (home / "runs" / "demo" / "report.html").read_text()
    assert "calibration.png" in html and "rejections.png" in html
    for version in ("v1", "v2"):
        assert (home / "models" / "ofi-lgbm" / version / "model.onnx").is_file()
    shadow = (home / "demo" / "manifests" / "11-modelversion-v2.yaml").read_text()
    assert "strategy: shadow" in shadow
