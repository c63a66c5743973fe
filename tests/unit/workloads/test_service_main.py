"""The workload entry point: registry, settings and options validation, run_workload in-process, the CLI command.

The real-process behaviour (signals, exit codes, HTTP from outside) is in
tests/integration/test_workload_process.py; here run_workload runs in the test process with signal
handlers off and the global logging state restored afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradeplane.cli import app
from tradeplane.settings import Settings, SettingsError, load_settings
from tradeplane.workloads.service import (
    EXIT_LOOP_FAILED,
    EXIT_OK,
    WORKLOADS,
    CheckResult,
    LoopStep,
    UnknownWorkloadError,
    WorkloadService,
    asyncio_step,
    parse_options,
    register_workload,
    resolve_workload,
    run_workload,
)
from tradeplane.workloads.service.noop import NoopOptions


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("TRADEPLANE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TRADEPLANE_SECRETS_DIR", str(tmp_path / "no-secrets"))


@pytest.fixture
def registry() -> Iterator[dict[str, object]]:
    saved = dict(WORKLOADS)
    yield WORKLOADS  # type: ignore[misc]
    WORKLOADS.clear()
    WORKLOADS.update(saved)


@pytest.fixture
def logging_restored() -> Iterator[io.StringIO]:
    """run_workload installs the JSON handler on the root logger and the excepthooks: put them back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = (sys.excepthook, threading.excepthook)
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)


def test_workload_settings_from_env_and_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "workload.yaml"
    cfg.write_text("workload:\n  http_port: 9100\n  strategy: btc-mm\n  options: {step_s: 0.2, ready_file: /a}\n")
    monkeypatch.setenv("TRADEPLANE_CONFIG", str(cfg))
    monkeypatch.setenv("TRADEPLANE_WORKLOAD__OPTIONS__READY_FILE", "/from-env")
    monkeypatch.setenv("TRADEPLANE_WORKLOAD__SHUTDOWN_DEADLINE_S", "12")
    s = load_settings()
    w = s.workload
    assert (w.http_port, w.strategy, w.shutdown_deadline_s, w.heartbeat_timeout_s) == (9100, "btc-mm", 12.0, 30.0)
    assert w.options == {"step_s": 0.2, "ready_file": "/from-env"}  # env wins per key, the file fills the rest
    assert load_settings(workload={"http_port": 0}).workload.options["step_s"] == 0.2  # CLI override merges
    opts = parse_options(s, NoopOptions)
    assert (opts.step_s, opts.ready_file) == (0.2, Path("/from-env"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"TRADEPLANE_WORKLOAD__HTTP_PORT": "70000"},
                     r"workload\.http_port \(TRADEPLANE_WORKLOAD__HTTP_PORT\): Input should be less than", id="port"),
        pytest.param({"TRADEPLANE_WORKLOAD__SHUTDOWN_DEADLINE_S": "-1"},
                     r"workload\.shutdown_deadline_s \(TRADEPLANE_WORKLOAD__SHUTDOWN_DEADLINE_S\)", id="deadline"),
    ],
)  # fmt: skip
def test_invalid_workload_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_invalid_options_name_the_key_and_the_variable() -> None:
    s = load_settings(workload={"options": {"step_s": "soon", "ready_flie": "/x"}})
    with pytest.raises(SettingsError) as info:
        parse_options(s, NoopOptions)
    text = str(info.value)
    assert "workload.options.step_s (TRADEPLANE_WORKLOAD__OPTIONS__STEP_S): Input should be a valid number" in text
    assert "workload.options.ready_flie (TRADEPLANE_WORKLOAD__OPTIONS__READY_FLIE): Extra inputs" in text


def test_registry_resolution(registry: dict[str, object]) -> None:
    with pytest.raises(UnknownWorkloadError, match=r"unknown workload 'ingset'; known: .*noop"):
        resolve_workload("ingset")
    noop = resolve_workload("noop")  # registered by import path, imported now
    assert noop.__module__ == "tradeplane.workloads.service.noop"

    def mine(service: WorkloadService, settings: Settings) -> LoopStep:
        return lambda: None

    register_workload("mine", mine)
    register_workload("mine", mine)  # same target again: fine
    assert resolve_workload("mine") is mine
    with pytest.raises(ValueError, match="already registered"):
        register_workload("mine", "some.module:setup")
    with pytest.raises(ValueError, match="letters, digits"):
        register_workload("no spaces", mine)
    register_workload("broken", "tradeplane.workloads.service.noop")
    with pytest.raises(ValueError, match=r"must look like 'package\.module:function'"):
        resolve_workload("broken")
    register_workload("not-callable", "tradeplane.workloads.service.main:WORKLOADS")
    with pytest.raises(ValueError, match="is not a callable"):
        resolve_workload("not-callable")


def _settings(**workload: object) -> Settings:
    return load_settings(workload={"http_host": "127.0.0.1", "http_port": 0, **workload})


def test_run_workload_in_process(
    registry: dict[str, object], logging_restored: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, object] = {}

    def counting(service: WorkloadService, settings: Settings) -> LoopStep:
        service.add_check("always", CheckResult.passed)
        service.on_shutdown(lambda: seen.setdefault("flushed_after", service.stop_reason), "flush")
        steps = [0]

        def step() -> None:
            steps[0] += 1
            if steps[0] == 3:
                seen["ready"] = service.readiness()[0]
                service.request_stop("done")

        return step

    register_workload("counting", counting)
    assert run_workload("counting", _settings(strategy="s9"), install_signals=False) == EXIT_OK
    assert seen == {"ready": True, "flushed_after": "done"}
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["msg"] for x in lines if x["logger"] == "tradeplane.workload"] == [
        "http endpoints listening", "workload running", "stop requested", "workload stopped",
    ]  # fmt: skip
    assert all(x["workload"] == "counting" and x["strategy"] == "s9" for x in lines)


def test_the_process_entry_freezes_the_start_up_heap_before_the_first_step(
    registry: dict[str, object], logging_restored: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    """What set-up built is out of later collections by the first step (a test process: unfrozen after)."""
    frozen_at_step: list[int] = []
    built = [[i] for i in range(1000)]  # start-up state the workload keeps

    def keeping(service: WorkloadService, settings: Settings) -> LoopStep:
        def step() -> None:
            frozen_at_step.append(gc.get_freeze_count())
            service.request_stop("done")

        return step

    register_workload("keeping", keeping)
    assert gc.get_freeze_count() == 0
    try:
        assert run_workload("keeping", _settings(), install_signals=False, freeze_heap=True) == EXIT_OK
        assert frozen_at_step and frozen_at_step[0] >= len(built)
    finally:
        gc.unfreeze()
    logged = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert any(x["msg"] == "start-up heap frozen" and x["objects"] >= len(built) for x in logged)
    assert run_workload("keeping", _settings(), install_signals=False) == EXIT_OK  # in-process default: off
    assert gc.get_freeze_count() == 0


def test_setup_failure_runs_the_hooks_registered_so_far(
    registry: dict[str, object], logging_restored: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    closed: list[str] = []

    def failing(service: WorkloadService, settings: Settings) -> LoopStep:
        service.on_shutdown(lambda: closed.append("producer closed"), "close producer")
        raise ConnectionRefusedError("kafka:9092")

    register_workload("failing", failing)
    assert run_workload("failing", _settings(), install_signals=False) == EXIT_LOOP_FAILED
    assert closed == ["producer closed"]
    err = capsys.readouterr().err
    assert '"msg": "workload setup failed"' in err and "ConnectionRefusedError: kafka:9092" in err


def test_bad_options_raise_a_settings_error(logging_restored: io.StringIO) -> None:
    with pytest.raises(SettingsError, match="TRADEPLANE_WORKLOAD__OPTIONS__STEP_S"):
        run_workload("noop", _settings(options={"step_s": -1}), install_signals=False)


def test_asyncio_step_drives_an_event_loop_between_heartbeats() -> None:
    loop = asyncio.new_event_loop()
    ticks: list[int] = []

    async def ticker() -> None:
        while True:
            ticks.append(len(ticks))
            await asyncio.sleep(0.01)

    task = loop.create_task(ticker())
    svc = WorkloadService("ingest", port=0)
    inner = asyncio_step(loop, slice_s=0.05)
    counted = [0]

    def step() -> None:
        inner()
        counted[0] += 1
        if counted[0] == 3:
            svc.request_stop("done")

    svc.on_shutdown(lambda: (task.cancel(), loop.run_until_complete(asyncio.sleep(0))), "cancel tasks")
    try:
        assert svc.run(step) == EXIT_OK
        assert len(ticks) >= 6 and task.cancelled()  # the task ran during the slices, then was cancelled
    finally:
        loop.close()
    with pytest.raises(ValueError, match="slice_s"):
        asyncio_step(loop, 0)


def test_cli_command_is_registered_and_rejects_unknown_names() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["workload", "--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--config" in result.output
    result = runner.invoke(app, ["workload", "no-such-workload"])
    assert result.exit_code == 2 and "unknown workload 'no-such-workload'" in result.output
