"""Settings sources, precedence and secret hygiene (secrets never reach logs, help or error output)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradeplane.logs import SecretRedactingFormatter
from tradeplane.settings import SettingsError, load_settings, secret_field_paths

SECRET = "s3cr3t-VALUE-do-not-print"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("TRADEPLANE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TRADEPLANE_SECRETS_DIR", str(tmp_path / "no-secrets"))


def test_defaults_are_safe() -> None:
    s = load_settings()
    assert (s.bus, s.store, s.binance.testnet, s.binance.api_key) == ("inprocess", "chdb", True, None)


def test_env_overrides_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "tp.yaml"
    cfg.write_text("log_level: DEBUG\nkafka: {bootstrap_servers: 'k1:9092'}\nbus: kafka\n")
    monkeypatch.setenv("TRADEPLANE_CONFIG", str(cfg))
    monkeypatch.setenv("TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS", "k2:9092")
    s = load_settings()
    assert (s.log_level, s.bus, s.kafka.bootstrap_servers) == ("DEBUG", "kafka", "k2:9092")


def test_secret_in_config_file_is_refused_without_echoing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "tp.yaml"
    cfg.write_text(f"binance: {{api_secret: {SECRET}}}\n")
    monkeypatch.setenv("TRADEPLANE_CONFIG", str(cfg))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "binance.api_secret" in str(info.value) and "TRADEPLANE_BINANCE__API_SECRET" in str(info.value)
    assert SECRET not in str(info.value)


def test_secrets_from_env_and_from_a_mounted_secret_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "TRADEPLANE_BINANCE__API_SECRET").write_text(SECRET + "\n")
    (secrets / "tradeplane_clickhouse__dsn").write_text("clickhouse://u:pw@h:9000/db")
    monkeypatch.setenv("TRADEPLANE_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("TRADEPLANE_BINANCE__API_KEY", "key-from-env")
    s = load_settings()
    assert s.binance.api_secret is not None and s.binance.api_secret.get_secret_value() == SECRET
    assert s.clickhouse.dsn is not None and s.clickhouse.dsn.get_secret_value().endswith("/db")
    assert sorted(s.secret_values()) == sorted([SECRET, "key-from-env", "clickhouse://u:pw@h:9000/db"])
    assert SECRET not in repr(s) and SECRET not in str(s.redacted())


def test_every_secret_field_is_known() -> None:
    assert set(secret_field_paths()) == {
        "kafka.sasl_password", "clickhouse.dsn", "binance.api_key", "binance.api_secret",
    }  # fmt: skip


def test_invalid_setting_names_the_key_and_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEPLANE_KAFKA__SECURITY_PROTOCOL", "CARRIER_PIGEON")
    with pytest.raises(SettingsError, match=r"kafka\.security_protocol \(TRADEPLANE_KAFKA__SECURITY_PROTOCOL\)"):
        load_settings()


def test_log_formatter_redacts_secrets_in_messages_and_tracebacks() -> None:
    fmt = SecretRedactingFormatter([SECRET, "short"], json_lines=True)
    try:
        raise RuntimeError(f"connect failed with {SECRET}")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "key=%s", (SECRET,), sys.exc_info())
    text = fmt.format(record)
    assert SECRET not in text and text.count("***") >= 2


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "from tradeplane.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True)


def test_cli_never_prints_a_configured_secret(tmp_path: Path) -> None:
    """Run every command that prints settings, help or errors, with secrets configured, and grep all output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")}
    env |= {
        "TRADEPLANE_BINANCE__API_SECRET": SECRET,
        "TRADEPLANE_KAFKA__SASL_PASSWORD": SECRET + "-kafka",
        "TRADEPLANE_CLICKHOUSE__DSN": f"clickhouse://trader:{SECRET}@db:9000/tp",
        "TRADEPLANE_LOG_LEVEL": "DEBUG",
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: tradeplane.io/v1alpha1\nkind: RiskBudget\nmetadata: {name: b}\nspec: {halt: 1}\n")
    runs = [
        ["--help"], ["config", "show"], ["validate", "--help"], ["validate", str(bad)],
        ["validate", str(tmp_path / "missing.yaml")], ["crds", "--check", "--out", str(tmp_path)],
    ]  # fmt: skip
    shown = _cli(["config", "show"], env, tmp_path)
    assert shown.returncode == 0 and '"api_secret": "**********"' in shown.stdout
    for args in runs:
        result = _cli(args, env, tmp_path)
        assert SECRET not in result.stdout + result.stderr, args
    # A settings error must not leak either (the value of a *valid* secret sits next to the bad key).
    broken = env | {"TRADEPLANE_KAFKA__SECURITY_PROTOCOL": SECRET}
    result = _cli(["config", "show"], broken, tmp_path)
    assert result.returncode == 3 and "kafka.security_protocol" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_configured_logging_redacts_secrets_end_to_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradeplane.logs import configure_logging

    monkeypatch.setenv("TRADEPLANE_BINANCE__API_SECRET", SECRET)
    settings = load_settings()
    configure_logging("DEBUG", "text", settings.secret_values())
    log = logging.getLogger("tradeplane.test")
    log.debug("signing request with %s", SECRET)
    try:
        raise ValueError(f"HTTP 401 for secret {SECRET}")
    except ValueError:
        log.exception("order failed")
    err = capsys.readouterr().err
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "tradeplane"]:
        root.removeHandler(handler)
    assert "signing request with ***" in err and "order failed" in err and "HTTP 401 for secret ***" in err
    assert SECRET not in err
