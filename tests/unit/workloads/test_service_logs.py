"""Structured logs: one JSON object per line with the workload's fields, bound context, trace ids, redaction."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from tradeplane.workloads.service.logs import JsonLogFormatter, bound_fields, configure_workload_logging, log_context

SECRET = 'pa"ss\\wörd-42'  # a quote, a backslash and a non-ASCII letter: JSON escapes the first two


def _format(fmt: JsonLogFormatter, msg: str, *args: Any, exc: bool = False, **extra: Any) -> dict[str, Any]:
    record = logging.LogRecord("tradeplane.sink", logging.WARNING, __file__, 1, msg, args, None)
    if exc:
        try:
            raise ValueError("bad batch")
        except ValueError:
            record.exc_info = sys.exc_info()
    record.__dict__.update(extra)
    line = fmt.format(record)
    assert "\n" not in line  # one record, one line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_fields_and_their_order() -> None:
    fmt = JsonLogFormatter(workload="decide", strategy="btc-mm")
    out = _format(fmt, "scored %d rows", 12, batch_seq=7)
    assert list(out)[:6] == ["ts", "level", "logger", "msg", "workload", "strategy"]
    assert out["level"] == "WARNING" and out["logger"] == "tradeplane.sink" and out["msg"] == "scored 12 rows"
    assert (out["workload"], out["strategy"], out["batch_seq"]) == ("decide", "btc-mm", 7)
    assert datetime.fromisoformat(out["ts"]).utcoffset() is not None  # ISO 8601 with a zone
    assert "trace_id" not in out
    assert JsonLogFormatter(workload="sink").format(logging.makeLogRecord({"msg": "x"})).count('"strategy": null') == 1


def test_log_context_binds_fields_and_restores_them() -> None:
    fmt = JsonLogFormatter(workload="ingest")
    with log_context(trace_id="abc", symbol="BTCUSDT"):
        with log_context(symbol="ETHUSDT", batch_seq=3):
            inner = _format(fmt, "inner")
        outer = _format(fmt, "outer", symbol="explicit")  # extra= on the call wins over the context
    after = _format(fmt, "after")
    assert (inner["trace_id"], inner["symbol"], inner["batch_seq"]) == ("abc", "ETHUSDT", 3)
    assert (outer["trace_id"], outer["symbol"]) == ("abc", "explicit") and "batch_seq" not in outer
    assert "trace_id" not in after and dict(bound_fields()) == {}


def test_context_is_per_thread() -> None:
    fmt = JsonLogFormatter(workload="ingest")
    seen: list[dict[str, Any]] = []
    with log_context(trace_id="main-only"):
        t = threading.Thread(target=lambda: seen.append(_format(fmt, "from a thread")))
        t.start()
        t.join()
    assert "trace_id" not in seen[0]


def test_opentelemetry_span_ids() -> None:
    fmt = JsonLogFormatter(workload="execute")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("place-order") as span:
        out = _format(fmt, "order sent")
        ctx = span.get_span_context()
    assert out["trace_id"] == f"{ctx.trace_id:032x}" and out["span_id"] == f"{ctx.span_id:016x}"


def test_exceptions_and_secret_redaction_in_raw_and_json_escaped_form() -> None:
    fmt = JsonLogFormatter(workload="sink", secrets=[SECRET, ""])
    out = _format(fmt, "login with %s failed", SECRET, exc=True, dsn=f"clickhouse://u:{SECRET}@h/db")
    text = json.dumps(out, ensure_ascii=False)
    assert SECRET not in text and json.dumps(SECRET)[1:-1] not in text
    assert out["msg"] == "login with *** failed" and out["dsn"] == "clickhouse://u:***@h/db"
    assert "ValueError: bad batch" in out["exc_info"]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = (sys.excepthook, threading.excepthook)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restore_logging")
def test_configure_replaces_the_cli_handler_and_routes_warnings_and_thread_crashes() -> None:
    root = logging.getLogger()
    cli = logging.StreamHandler(io.StringIO())
    cli.set_name("tradeplane")
    root.addHandler(cli)
    stream = io.StringIO()
    configure_workload_logging("sink", level="INFO", strategy="s1", secrets=["hunter2"], stream=stream)
    assert [h.get_name() for h in root.handlers].count("tradeplane") == 1 and cli not in root.handlers

    logging.getLogger("tradeplane.sink").debug("hidden at INFO")
    logging.getLogger("tradeplane.sink").info("token hunter2 rotated")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated knob", UserWarning, stacklevel=1)
    t = threading.Thread(target=lambda: 1 / 0, name="worker-1")
    t.start()
    t.join()

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "token *** rotated"
    assert all(x["workload"] == "sink" and x["strategy"] == "s1" for x in lines)
    assert any(x["logger"] == "py.warnings" and "deprecated knob" in x["msg"] for x in lines)
    crash = next(x for x in lines if x["msg"].startswith("uncaught exception in thread"))
    assert crash["msg"].endswith("worker-1") and "ZeroDivisionError" in crash["exc_info"]
