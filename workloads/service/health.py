"""Health of one workload process: a liveness heartbeat and a dependency tree of readiness checks.

Kubernetes asks two different questions and acting on the wrong answer hurts:

* **Liveness** (``/healthz``): is the process stuck? Only the main loop can say, so the loop bumps a
  :class:`Heartbeat` after each step; a heartbeat older than the timeout means "restart me". External
  dependencies never fail liveness: restarting a decide pod because Kafka is down fixes nothing and
  turns one outage into a restart storm.
* **Readiness** (``/readyz``): should this process get work / count as available now? That is the
  :class:`CheckTree`: named checks with dependencies (``consumer`` depends on ``kafka``). A check whose
  dependency fails is not run and is reported ``blocked by kafka``, so the answer names the root cause
  instead of a cascade of timeouts.

Checks are called from the HTTP server's threads on every probe and scrape: they must be cheap and must
not block (report state the workload already tracks — last successful poll, connection flags — rather
than opening a connection per probe).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "fail", "blocked"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a check returns: pass or fail, a human reason, optional JSON-ready details."""

    ok: bool
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, reason: str = "", **details: Any) -> CheckResult:
        return cls(True, reason, details)

    @classmethod
    def failed(cls, reason: str, **details: Any) -> CheckResult:
        return cls(False, reason, details)


Check = Callable[[], CheckResult]


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One evaluated check."""

    name: str
    status: Status
    reason: str
    required: bool  #: a readiness check (a failure makes the process not ready) or informational
    depends_on: tuple[str, ...]
    duration_ms: float
    details: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "required": self.required,
            "depends_on": list(self.depends_on),
            "duration_ms": round(self.duration_ms, 3),
        }
        if self.details:
            out["details"] = dict(self.details)
        return out


@dataclass(frozen=True, slots=True)
class TreeReport:
    """The whole tree, in registration (= dependency) order."""

    ready: bool
    nodes: tuple[NodeReport, ...]
    reason: str = ""  #: why the process is not ready when no single check says so (e.g. shutting down)

    def node(self, name: str) -> NodeReport:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        failing = [n.name for n in self.nodes if n.status == "fail" and n.required]
        blocked = [n.name for n in self.nodes if n.status == "blocked" and n.required]
        out: dict[str, Any] = {"status": "ok" if self.ready else "fail"}
        if self.reason:
            out["reason"] = self.reason
        out["failing"] = failing
        out["blocked"] = blocked
        out["checks"] = {n.name: n.to_json() for n in self.nodes}
        return out


@dataclass(frozen=True, slots=True)
class _Node:
    name: str
    check: Check
    depends_on: tuple[str, ...]
    required: bool


class CheckTree:
    """Named checks with dependencies. Dependencies must be registered first, which keeps the graph acyclic
    by construction and makes registration order a valid evaluation order."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}
        self._lock = threading.Lock()

    def add(self, name: str, check: Check, *, depends_on: Sequence[str] = (), readiness: bool = True) -> None:
        """Register ``check`` as ``name``. ``readiness=False``: reported, but its failure alone does not make
        the process unready (its dependents are still blocked by it)."""
        if not name or not isinstance(name, str):
            raise ValueError(f"check name must be a non-empty string, got {name!r}")
        if isinstance(depends_on, str):
            raise TypeError(f"check {name!r}: depends_on must be a sequence of names, not the string {depends_on!r}")
        with self._lock:
            if name in self._nodes:
                raise ValueError(f"check {name!r} is already registered")
            missing = [d for d in depends_on if d not in self._nodes]
            if missing:
                raise ValueError(
                    f"check {name!r} depends on unregistered check(s) {', '.join(map(repr, missing))}; "
                    "register dependencies first"
                )
            self._nodes[name] = _Node(name, check, tuple(dict.fromkeys(depends_on)), readiness)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    def evaluate(self) -> TreeReport:
        """Run every check whose dependencies are ok; the rest are ``blocked by <failed dependencies>``."""
        with self._lock:
            nodes = list(self._nodes.values())
        results: dict[str, NodeReport] = {}
        for node in nodes:
            bad = [d for d in node.depends_on if results[d].status != "ok"]
            if bad:
                results[node.name] = NodeReport(
                    node.name, "blocked", "blocked by " + ", ".join(bad), node.required, node.depends_on, 0.0, {}
                )
                continue
            started = time.perf_counter()
            try:
                res = node.check()
                if not isinstance(res, CheckResult):
                    res = CheckResult.failed(f"check returned {type(res).__name__}, not CheckResult")
            except Exception as exc:  # a broken check is a failed check, never a broken probe
                res = CheckResult.failed(f"check raised {type(exc).__name__}: {exc}")
            took = (time.perf_counter() - started) * 1e3
            status: Status = "ok" if res.ok else "fail"
            reason = res.reason or ("" if res.ok else "failed")
            results[node.name] = NodeReport(
                node.name, status, reason, node.required, node.depends_on, took, res.details
            )
        ordered = tuple(results[n.name] for n in nodes)
        ready = all(r.status == "ok" for r in ordered if r.required)
        return TreeReport(ready, ordered)


class Heartbeat:
    """The main loop's proof of life: ``beat()`` after each step; stale after ``timeout_s`` without one.

    ``clock`` is injectable (monotonic seconds) so staleness is tested without sleeping.
    """

    def __init__(self, timeout_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if timeout_s <= 0:
            raise ValueError(f"heartbeat timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._clock = clock
        self._last = clock()  # starting counts as a beat: a slow start-up shows up after timeout_s
        self.beats = 0

    def beat(self) -> None:
        self._last = self._clock()  # a float store: atomic under the GIL, no lock on the loop's path
        self.beats += 1

    def age_s(self) -> float:
        return max(0.0, self._clock() - self._last)

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(alive, JSON body for /healthz)."""
        age = self.age_s()
        alive = age <= self.timeout_s
        body: dict[str, Any] = {
            "status": "ok" if alive else "fail",
            "heartbeat_age_s": round(age, 3),
            "timeout_s": self.timeout_s,
            "beats": self.beats,
        }
        if not alive:
            body["reason"] = f"main loop heartbeat is {age:.1f} s old (limit {self.timeout_s:g} s)"
        return alive, body
