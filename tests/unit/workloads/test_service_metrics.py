"""Metrics exposition of a workload registry, parsed back with prometheus_client's own text parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector

from tradeplane.workloads.service import CheckResult, WorkloadService
from tradeplane.workloads.service.metrics import exposition, install_process_collectors, new_registry


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_exposition_parses_and_holds_process_workload_and_registered_metrics() -> None:
    svc = WorkloadService("sink", port=0, strategy="btc-mm")
    rows = Counter("tp_sink_rows", "Rows inserted.", ["table"], registry=svc.registry)
    rows.labels("trades").inc(7)
    up = {"kafka": True}
    svc.add_check("kafka", lambda: CheckResult(up["kafka"], ""))
    svc.add_check("consumer", CheckResult.passed, depends_on=["kafka"])
    svc.metrics.loop_step_seconds.observe(0.003)

    body, ctype = exposition(svc.registry, None)
    assert ctype.startswith("text/plain; version=0.0.4")
    samples = _samples(body.decode())
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds",
            "python_info", "python_gc_collections_total"} <= names  # fmt: skip
    assert samples[("tp_sink_rows_total", (("table", "trades"),))] == 7.0
    info = (("strategy", "btc-mm"), ("version", "0.1.0"), ("workload", "sink"))
    assert samples[("tradeplane_workload_info", info)] == 1.0
    assert samples[("tradeplane_workload_loop_step_seconds_bucket", (("le", "0.005"),))] == 1.0
    assert samples[("tradeplane_workload_loop_step_seconds_bucket", (("le", "0.0025"),))] == 0.0
    assert samples[("tradeplane_workload_ready", ())] == 1.0
    assert samples[("tradeplane_workload_check_ok", (("check", "consumer"),))] == 1.0
    assert samples[("tradeplane_workload_stopping", ())] == 0.0

    # The health gauges are evaluated at scrape time: a dependency going down shows on the next scrape.
    up["kafka"] = False
    samples = _samples(exposition(svc.registry, None)[0].decode())
    assert samples[("tradeplane_workload_ready", ())] == 0.0
    assert samples[("tradeplane_workload_check_ok", (("check", "kafka"),))] == 0.0
    assert samples[("tradeplane_workload_check_ok", (("check", "consumer"),))] == 0.0  # blocked counts as not ok
    svc.request_stop("test")
    samples = _samples(exposition(svc.registry, None)[0].decode())
    assert samples[("tradeplane_workload_stopping", ())] == 1.0


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    svc = WorkloadService("decide", port=0)
    body, ctype = exposition(svc.registry, "application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert ctype.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "tradeplane_workload_loop_steps" in {f.name for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]


def test_registries_are_per_service_so_two_services_coexist() -> None:
    a, b = WorkloadService("a", port=0), WorkloadService("b", port=0)
    a.metrics.loop_steps.inc(3)
    sa = _samples(exposition(a.registry, None)[0].decode())
    sb = _samples(exposition(b.registry, None)[0].decode())
    assert sa[("tradeplane_workload_loop_steps_total", ())] == 3.0
    assert sb[("tradeplane_workload_loop_steps_total", ())] == 0.0


def test_a_given_registry_keeps_its_own_collectors() -> None:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    assert install_process_collectors(registry) == ["platform", "gc"]  # process already there: no duplicate
    svc = WorkloadService("execute", port=0, registry=registry)
    assert svc.registry is registry
    text = exposition(registry, None)[0].decode()
    assert [line.split()[0] for line in text.splitlines()].count("process_cpu_seconds_total") == 1
    assert install_process_collectors(new_registry()) == []
