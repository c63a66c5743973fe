"""The readiness dependency tree and the liveness heartbeat, without HTTP.

Inputs: checks registered with dependencies, check outcomes (pass, fail, raise, wrong type), a fake clock.
Observed: each node's status and reason, whether the process is ready, which checks were actually called,
and the heartbeat's staleness. Liveness and readiness are kept apart: nothing here feeds one into the other.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tradeplane.workloads.service.health import CheckResult, CheckTree, Heartbeat

# A diamond plus an independent branch:   kafka ─► consumer ─┐
#                                          clickhouse ───────┴► writer        serve (informational)
OK, BAD = True, False


def _tree(states: dict[str, bool], calls: list[str], *, serve_required: bool = False) -> CheckTree:
    def check(name: str) -> Callable[[], CheckResult]:
        def run() -> CheckResult:
            calls.append(name)
            return CheckResult(states[name], f"{name} {'up' if states[name] else 'down'}")

        return run

    tree = CheckTree()
    tree.add("kafka", check("kafka"))
    tree.add("clickhouse", check("clickhouse"))
    tree.add("consumer", check("consumer"), depends_on=["kafka"])
    tree.add("writer", check("writer"), depends_on=["consumer", "clickhouse"])
    tree.add("serve", check("serve"), readiness=serve_required)
    return tree


ALL_OK = {"kafka": OK, "clickhouse": OK, "consumer": OK, "writer": OK, "serve": OK}

SCENARIOS = [
    pytest.param(ALL_OK, {}, True, id="all-ok"),
    pytest.param(
        ALL_OK | {"kafka": BAD},
        {"kafka": ("fail", "kafka down"), "consumer": ("blocked", "blocked by kafka"),
         "writer": ("blocked", "blocked by consumer")},
        False, id="failing-leaf-blocks-its-chain",
    ),
    pytest.param(
        ALL_OK | {"clickhouse": BAD},
        {"clickhouse": ("fail", "clickhouse down"), "writer": ("blocked", "blocked by clickhouse")},
        False, id="second-parent-fails",
    ),
    pytest.param(
        ALL_OK | {"kafka": BAD, "clickhouse": BAD},
        {"kafka": ("fail", "kafka down"), "clickhouse": ("fail", "clickhouse down"),
         "consumer": ("blocked", "blocked by kafka"), "writer": ("blocked", "blocked by consumer, clickhouse")},
        False, id="both-parents-fail",
    ),
    pytest.param(
        ALL_OK | {"consumer": BAD},
        {"consumer": ("fail", "consumer down"), "writer": ("blocked", "blocked by consumer")},
        False, id="middle-node-fails",
    ),
    pytest.param(ALL_OK | {"serve": BAD}, {"serve": ("fail", "serve down")}, True, id="informational-failure-ready"),
]  # fmt: skip


@pytest.mark.parametrize(("states", "expected_not_ok", "ready"), SCENARIOS)
def test_tree_matrix(states: dict[str, bool], expected_not_ok: dict[str, tuple[str, str]], ready: bool) -> None:
    calls: list[str] = []
    report = _tree(states, calls).evaluate()
    assert report.ready is ready
    got = {n.name: (n.status, n.reason) for n in report.nodes if n.status != "ok"}
    assert got == expected_not_ok
    # Blocked checks are not called at all (their dependency is down: calling them only adds timeouts).
    blocked = {n for n, (status, _) in expected_not_ok.items() if status == "blocked"}
    assert set(calls) == set(ALL_OK) - blocked
    # Evaluation follows registration order, so every dependency was decided before its dependents.
    assert [n.name for n in report.nodes] == list(ALL_OK)


def test_informational_check_still_blocks_its_dependents() -> None:
    tree = CheckTree()
    tree.add("serve", lambda: CheckResult.failed("no replicas"), readiness=False)
    tree.add("scoring", lambda: CheckResult.passed(), depends_on=["serve"])
    report = tree.evaluate()
    assert report.node("serve").required is False and report.node("serve").status == "fail"
    assert report.node("scoring").status == "blocked" and not report.ready
    body = report.to_json()
    assert body["status"] == "fail" and body["failing"] == [] and body["blocked"] == ["scoring"]


def test_json_report_shape() -> None:
    calls: list[str] = []
    body = _tree(ALL_OK | {"kafka": BAD}, calls).evaluate().to_json()
    assert body["status"] == "fail"
    assert body["failing"] == ["kafka"] and body["blocked"] == ["consumer", "writer"]
    assert body["checks"]["writer"] == {
        "status": "blocked", "reason": "blocked by consumer", "required": True,
        "depends_on": ["consumer", "clickhouse"], "duration_ms": 0.0,
    }  # fmt: skip
    assert body["checks"]["kafka"]["reason"] == "kafka down"


def test_check_that_raises_or_returns_garbage_fails_with_a_reason() -> None:
    def boom() -> CheckResult:
        raise ConnectionError("refused")

    tree = CheckTree()
    tree.add("raises", boom)
    tree.add("garbage", lambda: True)  # type: ignore[arg-type,return-value]
    tree.add("details", lambda: CheckResult.passed("fine", lag_ms=3))
    report = tree.evaluate()
    assert (report.node("raises").status, report.node("raises").reason) == (
        "fail",
        "check raised ConnectionError: refused",
    )
    assert report.node("garbage").reason == "check returned bool, not CheckResult"
    assert report.to_json()["checks"]["details"]["details"] == {"lag_ms": 3}


def test_registration_errors() -> None:
    tree = CheckTree()
    tree.add("a", CheckResult.passed)
    with pytest.raises(ValueError, match="'a' is already registered"):
        tree.add("a", CheckResult.passed)
    with pytest.raises(ValueError, match=r"'b' depends on unregistered check\(s\) 'zz'"):
        tree.add("b", CheckResult.passed, depends_on=["a", "zz"])
    with pytest.raises(TypeError, match="not the string 'a'"):
        tree.add("c", CheckResult.passed, depends_on="a")
    with pytest.raises(ValueError, match="non-empty"):
        tree.add("", CheckResult.passed)
    assert tree.names() == ["a"]


def test_empty_tree_is_ready() -> None:
    assert CheckTree().evaluate().ready


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_goes_stale_after_the_timeout_and_recovers_on_a_beat() -> None:
    clock = FakeClock()
    hb = Heartbeat(5.0, clock=clock)
    assert hb.report()[0]  # construction counts as a beat
    clock.now += 5.0
    assert hb.report()[0]  # at the limit: still alive
    clock.now += 0.5
    alive, body = hb.report()
    assert not alive and body["reason"] == "main loop heartbeat is 5.5 s old (limit 5 s)"
    hb.beat()
    alive, body = hb.report()
    assert alive and body["beats"] == 1 and body["heartbeat_age_s"] == 0.0
    with pytest.raises(ValueError, match="timeout_s"):
        Heartbeat(0)
