"""Tilt and Docker do not exist on the build machines, so their files are kept honest here: the Tiltfile
is executed with recording stand-ins for Tilt's built-ins (Starlark is Python syntax) and every path it
names must exist; every path the Dockerfile copies must exist; the image runs as non-root."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


class _TiltRecorder:
    """Stand-ins for the Tilt API that record which repository paths the Tiltfile uses."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.calls: list[str] = []

    def namespace(self) -> dict[str, Any]:
        def record(name: str, *path_args: int, path_kwargs: tuple[str, ...] = ()) -> Any:
            def fn(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                for i in path_args:
                    if i < len(args):
                        self._add(args[i])
                for key in path_kwargs:
                    if key in kwargs:
                        self._add(kwargs[key])
                return {"call": name, "args": args, "kwargs": kwargs}

            return fn

        def listdir(path: str) -> list[str]:
            self._add(path)
            return sorted(str(p.relative_to(REPO)) for p in (REPO / path).iterdir())

        return {
            "load": lambda *a, **k: None,
            "allow_k8s_contexts": record("allow_k8s_contexts"),
            "docker_build_with_restart": record("docker_build", 1, path_kwargs=("context", "dockerfile", "only")),
            "docker_build": record("docker_build", 1, path_kwargs=("context", "dockerfile", "only")),
            "fall_back_on": record("fall_back_on", 0),
            "sync": record("sync", 0),
            "helm": record("helm", 0),
            "k8s_yaml": record("k8s_yaml", 0),
            "k8s_resource": record("k8s_resource"),
            "local_resource": record("local_resource", path_kwargs=("deps",)),
            "listdir": listdir,
            "read_file": record("read_file", 0),
            "k8s_kind": record("k8s_kind"),
            "namespace_create": record("namespace_create"),
            "namespace_inject": record("namespace_inject"),
            "os": os,
        }

    def _add(self, value: Any) -> None:
        if isinstance(value, str):
            self.paths.append(value)
        elif isinstance(value, list):
            for v in value:
                self._add(v)
        # dicts are results of other calls (already recorded)


def test_tiltfile_runs_and_every_path_it_names_exists() -> None:
    recorder = _TiltRecorder()
    source = (REPO / "Tiltfile").read_text()
    exec(compile(source, "Tiltfile", "exec"), recorder.namespace())
    assert {"docker_build", "helm", "k8s_yaml", "sync", "local_resource"} <= set(recorder.calls)
    paths = [p for p in recorder.paths if not p.startswith("/")]  # absolute ones are inside the image
    assert "Dockerfile" in paths and "charts/tradeplane" in paths and "examples" in paths
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"Tiltfile references missing paths: {missing}"


def _value_paths(node: Any, prefix: str = "") -> set[str]:
    """Every dotted key path of a values mapping (``image``, ``image.tag``, ...)."""
    paths: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            paths |= {path} | _value_paths(value, path + ".")
    return paths


def test_tiltfile_matches_the_chart_and_the_example_desk() -> None:
    """The helm values it sets exist, the operator resource is the chart's Deployment name, the example
    desk is applied in the operator's namespace, and the port-forward targets are the names the operator
    renders for the example family and strategy."""
    from tradeplane.operator import naming

    recorder = _TiltRecorder()
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    ns = recorder.namespace()
    for name in ("helm", "k8s_resource", "local_resource", "namespace_inject", "namespace_create", "k8s_kind"):
        inner = ns[name]

        def wrap(*a: Any, _inner: Any = inner, _name: str = name, **k: Any) -> Any:
            calls.append((_name, a, k))
            return _inner(*a, **k)

        ns[name] = wrap
    exec(compile((REPO / "Tiltfile").read_text(), "Tiltfile", "exec"), ns)
    by = {n: [(a, k) for m, a, k in calls if m == n] for n in {c[0] for c in calls}}

    ((_helm_args, helm_kwargs),) = by["helm"]
    values = yaml.safe_load((REPO / "charts/tradeplane/values.yaml").read_text())
    keys = _value_paths(values)
    for item in helm_kwargs["set"]:
        assert item.split("=", 1)[0] in keys, f"Tiltfile sets unknown chart value {item}"
    assert not any(s.startswith("operator.enabled=") for s in helm_kwargs["set"])  # on by default
    release = helm_kwargs["name"]
    assert "tradeplane" in release  # so the chart's full name is the release name
    assert [a[0] for a, _ in by["k8s_resource"]] == [f"{release}-operator"]

    target_ns = helm_kwargs["namespace"]
    assert by["namespace_create"][0][0] == (target_ns,)
    examples = sorted(p for p in os.listdir(REPO / "examples") if p.endswith(".yaml"))
    assert len(by["namespace_inject"]) == len(examples)
    assert all(a[1] == target_ns for a, _ in by["namespace_inject"])

    desk = [d for p in examples for d in yaml.safe_load_all((REPO / "examples" / p).read_text()) if d]
    family, strategy = ns["EXAMPLE_FAMILY"], ns["EXAMPLE_STRATEGY"]
    assert family in {d["spec"]["model"] for d in desk if d["kind"] == "ModelVersion"}
    assert strategy in {d["metadata"]["name"] for d in desk if d["kind"] == "Strategy"}
    serve = {k["serve_cmd"] for _, k in by["local_resource"] if "serve_cmd" in k}
    assert any(f"-n {target_ns} port-forward svc/{naming.rayservice_name(family)}-head-svc 8265:8265" in c
               for c in serve)  # fmt: skip
    assert any(f"-n {target_ns} port-forward deployment/{naming.deployment_name(strategy, 'decide')} " in c
               and f":{naming.HTTP_PORT};" in c for c in serve)  # fmt: skip
    ((_, kind_kwargs),) = by["k8s_kind"]
    assert any("tradeplane\\.io/workload-image" in p for p in kind_kwargs["image_json_path"])


def test_tiltfile_recorder_catches_a_missing_path() -> None:
    recorder = _TiltRecorder()
    exec("k8s_yaml('no/such/dir')", recorder.namespace())
    assert not (REPO / recorder.paths[0]).exists()


def _dockerfile_copy_sources() -> list[str]:
    sources: list[str] = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        m = re.match(r"^COPY\s+(?!--from)(.+)$", line.strip())
        if m:
            sources += m.group(1).split()[:-1]
    return sources


def test_every_path_the_dockerfile_copies_exists() -> None:
    sources = _dockerfile_copy_sources()
    assert "pyproject.toml" in sources and "operator/" in sources
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, f"Dockerfile copies missing paths: {missing}"


def test_image_runs_as_non_root_and_installs_pinned() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "-c constraints.txt" in text
    assert text.count("FROM ") == 2  # builder + runtime
