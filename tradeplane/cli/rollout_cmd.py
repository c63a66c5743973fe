"""`tradeplane rollout status|report|promote|abort|retry NAME`: look at and steer a ModelVersion's rollout.

Cluster (default): ``status`` reads the ModelVersion's status, ``report`` the comparison report the operator
keeps in the ConfigMap ``<name>-rollout-report``; the commands set the annotation
``tradeplane.io/rollout-command`` (and ``-by``), which the operator applies in its next pass and removes; with
``--wait`` the command waits for the phase to change. Local (``--home DIR``): the files of ``tradeplane run``
(``<home>/rollouts/<version>.json``, ``-report.json``/``.md`` and ``.command.json``), which the local loop
writes, reads and consumes.

Why an annotation and not a status write: the status belongs to the controller (it is its resume point);
a request written next to the spec is applied once, in order with everything else the controller sees.

Exit codes: 0 ok; 2 bad usage or unknown version; 1 the API server or a file could not be read or written
(or ``--wait`` timed out). Heavy modules (the Kubernetes client, the local rollout helpers) load lazily.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from . import exit_codes

API_ERROR: Final = exit_codes.INVALID  #: 1: the API server (or a local file) failed us
UNKNOWN: Final = exit_codes.USAGE  #: 2: no such ModelVersion (or no local rollout of it)
GROUP: Final = "tradeplane.io"
COMMAND_ANNOTATION: Final = f"{GROUP}/rollout-command"  #: = operator/naming.ROLLOUT_COMMAND (a test keeps them equal)
COMMAND_BY_ANNOTATION: Final = f"{GROUP}/rollout-command-by"
ACTIONS: Final = ("promote", "abort", "retry")
REPORT_SUFFIX: Final = "-rollout-report"  #: = operator/render/rollout_report.report_config_map_name's suffix
REPORT_KEYS: Final = {"md": "report.md", "json": "report.json"}  #: --format → the ConfigMap's data key

rollout_app = typer.Typer(help="Canary/shadow rollouts of ModelVersions: status, report, promote, abort, retry.",
                          no_args_is_help=True)  # fmt: skip

Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (TRADEPLANE_NAMESPACE).")]
Home = Annotated[Path | None, typer.Option("--home", help="A local run's home: use its rollout files, not the API.")]
Name = Annotated[str, typer.Argument(help="The ModelVersion (the candidate).")]
Wait = Annotated[float, typer.Option("--wait", min=0, help="Wait up to this long (s) for the phase to change.")]


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _fail(exc: CliError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(exc.code)


# --- where the status comes from ---------------------------------------------------------------------------------


def _namespace(given: str | None) -> str:
    if given:
        return given
    from ..settings import load_settings

    return load_settings().namespace


def _client() -> Any:
    """A KubeClient from the kubeconfig (or in-cluster config)."""
    try:
        from ..operator.kube import KubeClient

        return KubeClient.from_config()
    except Exception as exc:  # no kubeconfig, bad kubeconfig
        raise CliError(API_ERROR, f"cannot reach the Kubernetes API: {exc}") from None


def _get(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    from ..api.v1alpha1 import API_VERSION
    from ..operator.kube import KubeError

    try:
        obj: dict[str, Any] | None = kube.get(API_VERSION, "ModelVersion", namespace, name)
    except KubeError as exc:
        raise CliError(API_ERROR, f"ModelVersion {namespace}/{name}: {exc}") from None
    except Exception as exc:  # transport errors
        raise CliError(API_ERROR, f"ModelVersion {namespace}/{name}: {type(exc).__name__}: {exc}") from None
    if obj is None:
        raise CliError(UNKNOWN, f"ModelVersion {namespace}/{name} does not exist")
    return obj


def _local_status(home: Path, name: str) -> dict[str, Any]:
    from ..workloads.rollout.local import read_state

    try:
        status = read_state(home, name)
    except (OSError, ValueError) as exc:
        raise CliError(API_ERROR, f"{home}: cannot read the rollout of {name}: {exc}") from None
    if status is None:
        raise CliError(UNKNOWN, f"no local rollout of {name} under {home} (rollouts/{name}.json)")
    return status


# --- printing ------------------------------------------------------------------------------------------------------


def _num(x: object) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def render_status(name: str, status: Mapping[str, Any]) -> str:
    """Phase, step, weight, the last analysis as a metric table, and the history."""
    extra = status.get("rollout") or {}
    lines = [
        f"ModelVersion {name}",
        f"  phase:       {status.get('phase') or '-'}",
        f"  step:        {int(status.get('currentStep') or 0) + 1}" if status.get("phase") == "Canary" else
        f"  step:        {status.get('currentStep', '-')}",
        f"  weight:      {float(status.get('weightPct') or 0.0):g} %",
        f"  stable:      {extra.get('stable') or '-'}   previous stable: {extra.get('previousStable') or '-'}",
        f"  failures:    {status.get('failures', 0)} ({extra.get('consecutiveFailures', 0)} in a row)",
        f"  last analysis: {extra.get('lastAnalysisAt') or '-'} {extra.get('lastVerdict') or ''}",
    ]  # fmt: skip
    if extra.get("lastReason"):
        lines.append(f"    {extra['lastReason']}")
    analysis = status.get("analysis") or []
    if analysis:
        rows = [("metric", "candidate", "stable", "threshold", "passed")]
        rows += [(str(r.get("metric")), _num(r.get("candidate")), _num(r.get("stable")), _num(r.get("threshold")),
                  "yes" if r.get("passed") else "NO") for r in analysis]  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines += ["    " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    history = status.get("history") or []
    if history:
        lines.append("  history:")
        lines += [f"    {h.get('time', '')}  {h.get('phase', ''):<10}  {h.get('reason', '')}" for h in history]
    return "\n".join(lines)


# --- commands ------------------------------------------------------------------------------------------------------


@rollout_app.command("status")
def status(name: Name, namespace: Namespace = None, home: Home = None,
           output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text") -> None:  # fmt: skip
    """Phase, step, weight, the last analysis (per metric) and the history of NAME's rollout."""
    if output not in ("text", "json"):
        typer.echo("error: --output must be text or json", err=True)
        raise typer.Exit(exit_codes.USAGE)
    try:
        if home is not None:
            st = _local_status(home, name)
        else:
            st = dict(_get(_client(), _namespace(namespace), name).get("status") or {})
    except CliError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(st, indent=2, sort_keys=True) if output == "json" else render_status(name, st))


def _cluster_report(namespace: str, name: str, fmt: str) -> str:
    kube = _client()
    from ..operator.kube import KubeError

    try:
        cm: dict[str, Any] | None = kube.get("v1", "ConfigMap", namespace, f"{name}{REPORT_SUFFIX}")
    except KubeError as exc:
        raise CliError(API_ERROR, f"ConfigMap {namespace}/{name}{REPORT_SUFFIX}: {exc}") from None
    except Exception as exc:  # transport errors
        raise CliError(API_ERROR, f"ConfigMap {namespace}/{name}{REPORT_SUFFIX}: {type(exc).__name__}: {exc}") from None
    if cm is None:
        _get(kube, namespace, name)  # an unknown version says so
        raise CliError(UNKNOWN, f"ModelVersion {namespace}/{name} has no rollout report yet (no analysis has run)")
    text = (cm.get("data") or {}).get(REPORT_KEYS[fmt])
    if text is None:
        raise CliError(API_ERROR, f"ConfigMap {namespace}/{name}{REPORT_SUFFIX} has no {REPORT_KEYS[fmt]}")
    return str(text)


def _local_report(home: Path, name: str, fmt: str) -> str:
    from ..workloads.rollout.local import report_paths

    path = report_paths(home, name)[0 if fmt == "json" else 1]
    try:
        return path.read_text()
    except FileNotFoundError:
        _local_status(home, name)  # an unknown version says so
        raise CliError(UNKNOWN, f"no rollout report of {name} under {home} yet ({path.name}: no analysis has run)"
                       ) from None  # fmt: skip
    except OSError as exc:
        raise CliError(API_ERROR, f"{path}: {exc}") from None


@rollout_app.command("report")
def report(name: Name, namespace: Namespace = None, home: Home = None,
           fmt: Annotated[str, typer.Option("--format", "-f", help="md or json.")] = "md") -> None:  # fmt: skip
    """NAME's comparison report: every analysis (the last 100) with, per metric, stable, candidate, delta and
    pass/fail — the record a shadow is judged by."""
    if fmt not in REPORT_KEYS:
        typer.echo("error: --format must be md or json", err=True)
        raise typer.Exit(exit_codes.USAGE)
    try:
        text = _local_report(home, name, fmt) if home is not None else _cluster_report(_namespace(namespace), name, fmt)
    except CliError as exc:
        raise _fail(exc) from None
    if fmt == "json":
        try:
            text = json.dumps(json.loads(text), indent=2, sort_keys=True)
        except ValueError:
            typer.echo("error: the stored report.json is not JSON", err=True)
            raise typer.Exit(API_ERROR) from None
    typer.echo(text.rstrip("\n"))


def _command(action: str, name: str, namespace: str | None, home: Path | None, wait: float) -> None:
    by = f"{getpass.getuser()} (cli)"
    before: tuple[Any, int | None]
    try:
        if home is not None:
            from ..workloads.rollout.local import write_command

            before = (_local_status(home, name).get("phase"), None)  # an unknown version fails here
            try:
                path = write_command(home, name, action, by)
            except OSError as exc:
                raise CliError(API_ERROR, f"{home}: cannot write the command: {exc}") from None
            typer.echo(f"{action} queued for {name}: {path} (applied by the running `tradeplane run`)")
            read = lambda: _local_status(home, name)  # noqa: E731
        else:
            ns = _namespace(namespace)
            kube = _client()
            obj = _get(kube, ns, name)
            from ..api.v1alpha1 import API_VERSION
            from ..operator.kube import KubeError

            notes = {COMMAND_ANNOTATION: action, COMMAND_BY_ANNOTATION: by}
            try:
                kube.patch(API_VERSION, "ModelVersion", ns, name, {"metadata": {"annotations": notes}})
            except KubeError as exc:
                raise CliError(API_ERROR, f"ModelVersion {ns}/{name}: {exc}") from None
            typer.echo(f"{action} requested for ModelVersion {ns}/{name} (annotation {COMMAND_ANNOTATION})")
            st = obj.get("status") or {}
            before = (st.get("phase"), len(st.get("history") or []))
            read = lambda: dict(_get(kube, ns, name).get("status") or {})  # noqa: E731
        if wait > 0:
            _wait(read, before, wait, home is not None)
    except CliError as exc:
        raise _fail(exc) from None


def _wait(read: Any, before: tuple[Any, int | None], wait: float, local: bool) -> None:
    """Poll until the phase changes (cluster: or a new history record — a retry may re-enter the same phase)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        st = read()
        changed = st.get("phase") != before[0] or (before[1] is not None and len(st.get("history") or []) > before[1])
        if changed:
            history = st.get("history") or []
            why = history[-1].get("reason", "") if history else ""
            typer.echo(f"phase {before[0]} → {st.get('phase')}: {why}")
            return
        time.sleep(0.25)
    where = "the local run" if local else "the operator"
    raise CliError(API_ERROR, f"phase still {before[0]} after {wait:g} s (is {where} running?)")


@rollout_app.command("promote")
def promote(name: Name, namespace: Namespace = None, home: Home = None, wait: Wait = 0.0) -> None:
    """Promote NAME now (Canary or Shadow → Promoted: it becomes the family's stable)."""
    _command("promote", name, namespace, home, wait)


@rollout_app.command("abort")
def abort(name: Name, namespace: Namespace = None, home: Home = None, wait: Wait = 0.0) -> None:
    """Roll NAME back now (weight 0; after promotion the previous stable is restored)."""
    _command("abort", name, namespace, home, wait)


@rollout_app.command("retry")
def retry(name: Name, namespace: Namespace = None, home: Home = None, wait: Wait = 0.0) -> None:
    """Start NAME's rollout again from its first step (RolledBack or Failed only)."""
    _command("retry", name, namespace, home, wait)
