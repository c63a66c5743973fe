"""The CLI's contract: help on every command, version, exit codes, and the generated-files check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradeplane import __version__
from tradeplane.cli import app, exit_codes

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.mark.parametrize("args", [[], ["crds"], ["validate"], ["config"], ["config", "show"]], ids=" ".join)
def test_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"tradeplane {__version__}"


def test_console_script_is_installed() -> None:
    exe = shutil.which("tradeplane") or str(Path(__import__("sys").executable).parent / "tradeplane")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("tradeplane ")


def test_usage_error_exit_code() -> None:
    assert runner.invoke(app, ["validate"]).exit_code == exit_codes.USAGE
    assert runner.invoke(app, ["no-such-command"]).exit_code == exit_codes.USAGE


def test_validate_exit_codes() -> None:
    ok = runner.invoke(app, ["validate", *map(str, sorted((REPO / "examples").glob("*.yaml")))])
    assert ok.exit_code == exit_codes.OK and "5 valid, 0 error(s)" in ok.output
    bad = runner.invoke(app, ["validate", str(REPO / "tests/fixtures/manifests/invalid-three-errors.yaml")])
    assert bad.exit_code == exit_codes.INVALID
    assert bad.output.count("error: ") == 3 and "3 error(s)" in bad.output


def test_committed_crds_and_reference_are_fresh() -> None:
    result = runner.invoke(app, ["crds", "--check", "--out", str(REPO / "crds"), "--docs", str(REPO / "docs/crds.md")])
    assert result.exit_code == 0, result.output


def test_check_detects_stale_missing_and_orphaned_files(tmp_path: Path) -> None:
    out, docs = tmp_path / "crds", tmp_path / "crds.md"
    args = ["crds", "--out", str(out), "--docs", str(docs)]
    assert runner.invoke(app, [*args, "--check"]).exit_code == exit_codes.INVALID  # nothing generated yet
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0
    crd = out / "strategies.tradeplane.io.yaml"
    crd.write_text(crd.read_text().replace("maximum: 125", "maximum: 126"))
    stale = runner.invoke(app, [*args, "--check"])
    assert stale.exit_code == exit_codes.INVALID and "strategies.tradeplane.io.yaml" in stale.output
    assert runner.invoke(app, args).exit_code == 0
    (out / "portfolios.tradeplane.io.yaml").write_text("old kind\n")
    assert runner.invoke(app, [*args, "--check"]).exit_code == exit_codes.INVALID
    assert runner.invoke(app, args).exit_code == 0
    assert not (out / "portfolios.tradeplane.io.yaml").exists()
