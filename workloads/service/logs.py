"""Structured logs for workload processes: one JSON object per line on stderr.

Why JSON in the cluster: the log pipeline (Loki, Elasticsearch, Cloud Logging) indexes fields, so "all
errors of the decide pods of strategy btc-mm for trace 4bf9…" is a query, not a grep. Every line carries

``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``msg``, ``workload``, ``strategy`` (``null`` when the process
serves none), then any ``extra={...}`` fields, the fields bound with :func:`log_context` (``trace_id``,
``batch_seq``, …), ``trace_id``/``span_id`` of the current OpenTelemetry span when one is recording, and
``exc_info`` for exceptions.

Secrets are redacted from the final line exactly as :mod:`tradeplane.logs` does for the CLI, in their raw
and their JSON-escaped spelling (a secret with a quote or a backslash is escaped inside a JSON string).

The module is ``logs`` rather than ``logging`` so it never shadows the standard library's module.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType, TracebackType
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

try:  # the workloads extra installs OpenTelemetry; the logs work without it
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - exercised only in images without the SDK
    _otel_trace = None  # type: ignore[assignment]

REDACTED = "***"
HANDLER_NAME = "tradeplane"  #: same name as the CLI's handler, which this one replaces

_NOTHING: Mapping[str, Any] = MappingProxyType({})
_BOUND: ContextVar[Mapping[str, Any]] = ContextVar("tradeplane_log_fields", default=_NOTHING)

_FIRST = ("ts", "level", "logger", "msg", "workload", "strategy")


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged in this context (thread / asyncio task), e.g. a trace id:

    ``with log_context(trace_id=batch.trace_id, symbol="BTCUSDT"): log.info("decided")``
    """
    token = _BOUND.set(MappingProxyType({**_BOUND.get(), **fields}))
    try:
        yield
    finally:
        _BOUND.reset(token)


def bound_fields() -> Mapping[str, Any]:
    """The fields :func:`log_context` has bound in the current context."""
    return _BOUND.get()


class JsonLogFormatter(JsonFormatter):
    """python-json-logger's formatter with the workload's fields, context fields and secret redaction."""

    def __init__(self, *, workload: str, strategy: str | None = None, secrets: Iterable[str] = ()) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger", "message": "msg"},
            static_fields={"workload": workload, "strategy": strategy},
            timestamp="ts",
            json_ensure_ascii=False,
        )
        forms: set[str] = set()
        for s in secrets:
            if s:
                forms.add(s)
                forms.add(json.dumps(s, ensure_ascii=False)[1:-1])
        # Longest first, so a secret that contains another is redacted whole.
        self._secrets = sorted(forms, key=len, reverse=True)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        # Context first: a field passed explicitly with extra= on the call wins over a bound one.
        for key, value in _BOUND.get().items():
            log_data[key] = value
        if _otel_trace is not None:
            ctx = _otel_trace.get_current_span().get_span_context()
            if ctx.is_valid:
                log_data.setdefault("trace_id", format(ctx.trace_id, "032x"))
                log_data.setdefault("span_id", format(ctx.span_id, "016x"))
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        ordered = {k: log_data[k] for k in _FIRST if k in log_data}
        ordered.update((k, v) for k, v in log_data.items() if k not in ordered)
        return ordered

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def configure_workload_logging(
    workload: str,
    *,
    level: str = "INFO",
    strategy: str | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route the root logger to one JSON-lines handler on ``stream`` (stderr), replacing the CLI's handler.

    Also routes ``warnings.warn`` and uncaught exceptions (main thread and other threads) into the same
    JSON stream, so nothing a workload prints escapes the log pipeline's parser.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLogFormatter(workload=workload, strategy=strategy, secrets=secrets))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    _install_excepthooks()
    return handler


_log = logging.getLogger("tradeplane.workload")


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    _log.critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    _log.error(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _install_excepthooks() -> None:
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
