"""Manifest validation and CRD generation speed.

Validation sits on the operator's admission path and in `tradeplane validate` over large desks, so its
cost per document matters once a desk has hundreds of strategies (the operator budget: 200 Strategies
reconciled in under 60 s). Prints the numbers and writes benchmarks/results/validate.json.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import yaml

from tradeplane.api.crds import crd_files
from tradeplane.api.validation import validate_object

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    docs = [d for p in sorted((REPO / "examples").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    strategies = [d for d in docs if d["kind"] == "Strategy"]
    rounds = 2000
    for d in docs:  # warm up pydantic's validators
        assert validate_object(d) == []
    start = time.perf_counter()
    for _ in range(rounds):
        for d in docs:
            validate_object(d)
    all_rate = rounds * len(docs) / (time.perf_counter() - start)
    per_strategy = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        validate_object(strategies[1])
        per_strategy.append((time.perf_counter_ns() - t0) / 1e3)
    per_strategy.sort()
    t0 = time.perf_counter()
    crd_files()
    crd_ms = (time.perf_counter() - t0) * 1e3
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "documents_per_s": round(all_rate),
        "strategy_validate_us_p50": round(statistics.median(per_strategy), 1),
        "strategy_validate_us_p99": round(per_strategy[int(0.99 * len(per_strategy))], 1),
        "crd_generation_ms": round(crd_ms, 1),
    }
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    out = REPO / "benchmarks" / "results" / "validate.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
