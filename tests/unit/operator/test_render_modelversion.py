"""The RayService/RayJob renderers of ModelVersions: names, owners, the Serve config, sizing, hardening, determinism.

The serveConfigV2 is compared with the pure builders of workloads/serve/config.py (the same functions the local
deploy path hands to Serve), so what is checked here is what a RayService would run.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from tradeplane.api.v1alpha1 import ModelVersionSpec
from tradeplane.cli import app as cli_app
from tradeplane.operator.naming import CONFIG_REV, HOME_DIR, serve_url_template
from tradeplane.operator.render.common import canonical_hash
from tradeplane.operator.render.modelversion import (
    OBJECT_STORE_BYTES,
    RAY_VERSION,
    TrainingRenderError,
    render_family_rayservice,
    render_training_rayjob,
    served_versions,
    training_command,
)
from tradeplane.workloads.decide.serving import family_url
from tradeplane.workloads.serve.config import ServeConfigError, build_family_apps, build_serve_config

REPO = Path(__file__).resolve().parents[3]
NS = "desk"
IMAGE = "registry.example/tradeplane:1.2.3"
FAMILY = "ofi-lgbm"


def load(name: str, uid: str) -> dict[str, Any]:
    """An example ModelVersion as the API server returns it (namespace, uid, generation filled in)."""
    mv: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    mv["metadata"].update(namespace=NS, uid=uid, generation=1)
    return mv


def stable() -> dict[str, Any]:
    return load("10-modelversion-stable.yaml", "uid-v1")


def candidate() -> dict[str, Any]:
    return load("11-modelversion-candidate.yaml", "uid-v2")


def rayserve(mv: dict[str, Any], **serving: Any) -> dict[str, Any]:
    out = copy.deepcopy(mv)
    out["spec"]["serving"] = {**out["spec"].get("serving", {}), "mode": "rayserve", **serving}
    return out


def training(mv: dict[str, Any], **train: Any) -> dict[str, Any]:
    """``mv`` untrained: no artifact yet, a training spec instead."""
    out = copy.deepcopy(mv)
    out["spec"].pop("artifact")
    out["spec"].pop("featureSignature")
    out["spec"]["training"] = {"data": ["local://data/binance/BTCUSDT/klines_btcusdt_1m_2026-01.csv.gz"], **train}
    return out


#: family variants: (ModelVersions, names expected in the RayService or None for no RayService)
FAMILIES: dict[str, tuple[list[dict[str, Any]], list[str] | None]] = {
    "examples": ([stable(), candidate()], ["ofi-lgbm-v2"]),
    "candidate-only": ([candidate()], ["ofi-lgbm-v2"]),
    "both-rayserve": ([rayserve(stable()), candidate()], ["ofi-lgbm-v1", "ofi-lgbm-v2"]),
    "both-rayserve-reversed": ([candidate(), rayserve(stable())], ["ofi-lgbm-v1", "ofi-lgbm-v2"]),
    "stable-only": ([stable()], None),
    "none-rayserve": ([stable(), rayserve(candidate(), mode="in-process")], None),
    "candidate-training": ([stable(), training(candidate())], None),
    "candidate-deleting": (
        [stable(), candidate() | {"metadata": candidate()["metadata"] | {"deletionTimestamp": "x"}}],
        None,
    ),
    "empty": ([], None),
}


def render(versions: list[dict[str, Any]], **kw: Any) -> dict[str, Any] | None:
    return render_family_rayservice(versions, image=IMAGE, namespace=NS, **kw)


def specs_of(versions: list[dict[str, Any]]) -> dict[str, ModelVersionSpec]:
    return {mv["metadata"]["name"]: ModelVersionSpec.model_validate(mv["spec"]) for mv in versions}


def pods(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod template of a RayService or RayJob."""
    cluster = manifest["spec"].get("rayClusterConfig") or manifest["spec"]["rayClusterSpec"]
    out = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster.get("workerGroupSpecs", []))]
    if "submitterPodTemplate" in manifest["spec"]:
        out.append(manifest["spec"]["submitterPodTemplate"])
    return out


def without_rev(manifest: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    del out["metadata"]["annotations"][CONFIG_REV]
    return out


# --- RayService ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(FAMILIES))
def test_rayservice_serves_exactly_the_rayserve_versions(variant: str) -> None:
    versions, expected = FAMILIES[variant]
    rs = render(versions)
    if expected is None:
        assert rs is None
        return
    assert rs is not None
    assert rs["apiVersion"] == "ray.io/v1" and rs["kind"] == "RayService"
    assert rs["metadata"]["name"] == f"{FAMILY}-serve"
    assert rs["metadata"]["namespace"] == NS
    assert rs["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "tradeplane-operator",
        "app.kubernetes.io/part-of": "tradeplane",
        "tradeplane.io/model": FAMILY,
    }
    owners = rs["metadata"]["ownerReferences"]
    assert [o["name"] for o in owners] == expected
    by_name = {mv["metadata"]["name"]: mv for mv in versions}
    for o in owners:
        assert o == {
            "apiVersion": "tradeplane.io/v1alpha1",
            "kind": "ModelVersion",
            "name": o["name"],
            "uid": by_name[o["name"]]["metadata"]["uid"],
            "controller": False,
            "blockOwnerDeletion": True,
        }
    assert [mv["metadata"]["name"] for mv in served_versions(versions)] == expected


@pytest.mark.parametrize("variant", [v for v, (_, names) in sorted(FAMILIES.items()) if names])
def test_serve_config_is_the_serve_builders_output(variant: str) -> None:
    versions, expected = FAMILIES[variant]
    rs = render(versions)
    assert rs is not None
    config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    served = [mv for mv in versions if mv["metadata"]["name"] in (expected or [])]
    assert config == build_serve_config(build_family_apps(FAMILY, specs_of(served), home=HOME_DIR))
    apps = {a["name"]: a for a in config["applications"]}
    assert set(apps) == {FAMILY, *(f"{FAMILY}--{n}" for n in expected or [])}
    routes = apps[FAMILY]["deployments"][0]["user_config"]["routes"]
    assert routes["ofi-lgbm-v2"] == {"role": "canary", "weight": 0.05, "kind": "weight"}  # first step: 5 % of decisions
    if "ofi-lgbm-v1" in routes:
        assert routes["ofi-lgbm-v1"] == {"role": "stable", "weight": 0.0}
    for app in config["applications"]:
        assert app["args"]["home"] == HOME_DIR  # local:// artifacts resolve on the home volume


def test_decide_reaches_the_rendered_rayservice_router() -> None:
    """decide's Serve URL (from the template the Strategy renderer gives it) must name the Service KubeRay makes
    for this RayService (``<name>-serve-svc``, port 8000) and the router application's route prefix."""
    rs = render(FAMILIES["examples"][0])
    assert rs is not None
    config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    (router,) = [a for a in config["applications"] if a["name"] == FAMILY]
    url = family_url(serve_url_template(NS), FAMILY)
    assert url == f"http://{rs['metadata']['name']}-serve-svc.{NS}.svc:8000{router['route_prefix']}"
    assert config["http_options"]["port"] == 8000


@pytest.mark.parametrize("variant", ["examples", "both-rayserve"])
def test_ray_cluster_shape(variant: str) -> None:
    rs = render(FAMILIES[variant][0])
    assert rs is not None
    cluster = rs["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == RAY_VERSION
    assert cluster["enableInTreeAutoscaling"] is False
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    (container,) = head["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "gcs-server": 6379,
        "dashboard": 8265,
        "client": 10001,
        "serve": 8000,
    }
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["rayStartParams"] == {"object-store-memory": str(OBJECT_STORE_BYTES)}
    (worker,) = workers["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in worker["ports"]] == [8000]


@pytest.mark.parametrize(
    ("v1_resources", "v2_resources", "v1_replicas", "v2_replicas", "cpu", "memory", "replicas"),
    [
        (None, None, 1, 1, "1250m", "3072Mi", 2),  # defaults: 1 CPU / 2Gi per replica
        ({"cpu": "2", "memory": "4Gi"}, {"cpu": "500m", "memory": "1Gi"}, 1, 3, "2250m", "5120Mi", 4),
        ({"cpu": "250m", "memory": "512Mi"}, {"cpu": "1500m", "memory": "1Gi"}, 2, 2, "1750m", "2048Mi", 4),
    ],
)
def test_worker_group_is_sized_from_the_versions(
    v1_resources: dict[str, str] | None,
    v2_resources: dict[str, str] | None,
    v1_replicas: int,
    v2_replicas: int,
    cpu: str,
    memory: str,
    replicas: int,
) -> None:
    """One pod per model replica, each fitting the largest replica + the router's 250m + 1Gi for Ray itself."""
    v1 = rayserve(stable(), replicas=v1_replicas, **({"resources": v1_resources} if v1_resources else {}))
    v2 = rayserve(candidate(), replicas=v2_replicas, **({"resources": v2_resources} if v2_resources else {}))
    rs = render([v1, v2])
    assert rs is not None
    (group,) = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == replicas
    (container,) = group["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": cpu, "memory": memory}


def test_pods_are_hardened_and_carry_the_home() -> None:
    rs = render(FAMILIES["both-rayserve"][0])
    assert rs is not None
    for pod in pods(rs):
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = spec["containers"]
        assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
        assert "command" not in container  # KubeRay writes `ray start` itself
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {e["name"]: e["value"] for e in container["env"]} == {
            "OMP_NUM_THREADS": "1",
            "TRADEPLANE_HOME": HOME_DIR,
        }
        assert {m["mountPath"] for m in container["volumeMounts"]} == {HOME_DIR, "/tmp"}
        assert {v["name"]: v for v in spec["volumes"]}["home"] == {"name": "home", "emptyDir": {}}
        assert pod["metadata"]["labels"]["tradeplane.io/model"] == FAMILY
        res = container["resources"]
        assert res["requests"] == res["limits"]


def test_home_volume_and_pull_policy_are_used() -> None:
    pvc = {"persistentVolumeClaim": {"claimName": "models"}}
    rs = render(FAMILIES["examples"][0], home_volume=pvc, image_pull_policy="Always")
    assert rs is not None
    for pod in pods(rs):
        assert {v["name"]: v for v in pod["spec"]["volumes"]}["home"] == {"name": "home", **pvc}
        assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    named = render(FAMILIES["examples"][0], home_volume={"name": "models", **pvc})  # the name is ours
    assert named is not None
    assert named["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["volumes"][0] == {
        "name": "home",
        **pvc,
    }


def test_no_owner_references_across_namespaces() -> None:
    """Kubernetes has no cross-namespace owners: the GC would delete the child at once."""
    rs = render_family_rayservice(FAMILIES["examples"][0], image=IMAGE, namespace="ray")
    assert rs is not None
    assert rs["metadata"]["namespace"] == "ray"
    assert rs["metadata"]["ownerReferences"] == []


@pytest.mark.parametrize("variant", ["examples", "both-rayserve"])
def test_rayservice_is_deterministic(variant: str) -> None:
    versions = FAMILIES[variant][0]
    first, second = render(versions), render(copy.deepcopy(versions))
    assert first is not None and first == second
    assert yaml.safe_dump(first) == yaml.safe_dump(second)
    rev = first["metadata"]["annotations"][CONFIG_REV]
    assert len(rev) == 16 and rev == canonical_hash(without_rev(first))
    assert render(list(reversed(versions))) == first  # input order does not matter


@pytest.mark.parametrize(
    "change",
    [
        lambda mv: mv["spec"]["serving"].update(maxBatchSize=128),
        lambda mv: mv["spec"]["serving"].update(replicas=2),
        lambda mv: mv["spec"]["rollout"]["steps"][0].update(weightPct=10),
        lambda mv: mv["metadata"].update(uid="another-uid"),  # recreated: a new owner
    ],
)
def test_a_change_gives_another_config_rev(change: Any) -> None:
    before = render([stable(), candidate()])
    changed = candidate()
    change(changed)
    after = render([stable(), changed])
    assert before is not None and after is not None
    assert before["metadata"]["annotations"][CONFIG_REV] != after["metadata"]["annotations"][CONFIG_REV]


def test_invalid_families_are_errors() -> None:
    second_stable = rayserve(candidate())
    second_stable["spec"]["rollout"] = {"strategy": "immediate"}
    with pytest.raises(ServeConfigError, match="exactly one stable"):
        render([rayserve(stable()), second_stable])
    other = candidate()
    other["spec"]["model"] = "other"
    with pytest.raises(ServeConfigError, match="one family"):
        render([stable(), other])


# --- RayJob --------------------------------------------------------------------------------------------------


def job(mv: dict[str, Any], **kw: Any) -> dict[str, Any]:
    out = render_training_rayjob(mv, image=IMAGE, namespace=NS, **kw)
    assert out is not None
    return out


@pytest.mark.parametrize("example", [stable, candidate])
def test_no_rayjob_without_training_or_with_an_artifact(example: Any) -> None:
    mv = example()
    assert render_training_rayjob(mv, image=IMAGE, namespace=NS) is None
    trained = training(mv)
    trained["spec"]["artifact"] = mv["spec"]["artifact"]
    trained["spec"]["featureSignature"] = mv["spec"]["featureSignature"]
    assert render_training_rayjob(trained, image=IMAGE, namespace=NS) is None


@pytest.mark.parametrize("example", [stable, candidate])
def test_rayjob_metadata_and_lifecycle(example: Any) -> None:
    mv = training(example(), maxDurationMinutes=90)
    rj = job(mv, ttl_seconds_after_finished=120)
    name = mv["metadata"]["name"]
    assert rj["apiVersion"] == "ray.io/v1" and rj["kind"] == "RayJob"
    assert rj["metadata"]["name"] == f"{name}-train"
    assert rj["metadata"]["labels"]["tradeplane.io/model"] == FAMILY
    assert rj["metadata"]["labels"]["tradeplane.io/model-version"] == name
    assert rj["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "tradeplane.io/v1alpha1",
            "kind": "ModelVersion",
            "name": name,
            "uid": mv["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = rj["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["activeDeadlineSeconds"] == 90 * 60
    assert spec["ttlSecondsAfterFinished"] == 120
    assert spec["backoffLimit"] == 0
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
    assert rj == job(copy.deepcopy(mv), ttl_seconds_after_finished=120)  # deterministic
    assert rj["metadata"]["annotations"][CONFIG_REV] == canonical_hash(without_rev(rj))


def test_entrypoint_maps_the_training_spec_onto_the_cli() -> None:
    mv = training(
        candidate(),
        data=["local://data/klines_btcusdt_1m.csv.gz", "file:///mnt/data/funding_btcusdt.csv", "/abs/x.csv"],
        featureSet="bars-v1",
        label="fixed-horizon",
        horizonSeconds=90,
        maxDurationMinutes=30,
    )
    argv = shlex.split(job(mv)["spec"]["entrypoint"])
    assert argv == [
        "tradeplane",
        "train",
        "--data",
        f"{HOME_DIR}/data/klines_btcusdt_1m.csv.gz",
        "--data",
        "/mnt/data/funding_btcusdt.csv",
        "--data",
        "/abs/x.csv",
        "--out",
        f"{HOME_DIR}/models/ofi-lgbm/v2",
        "--features",
        "bars-v1",
        "--label",
        "fixed-horizon",
        "--horizon-bars",
        "2",  # 90 s of 1-minute bars, rounded up
        "--time-budget",
        "1440",  # 80 % of 30 minutes for the search
        "--model",
        "ofi-lgbm",
        "--version",
        "v2",
        "--artifact-uri",
        "local://models/ofi-lgbm/v2/model.onnx",
    ]


def test_entrypoint_parses_with_the_real_cli() -> None:
    """The flags exist and their values have the CLI's types (click parses without running the command)."""
    mv = training(candidate(), horizonSeconds=3600)
    argv = shlex.split(job(mv)["spec"]["entrypoint"])
    group = typer.main.get_command(cli_app)
    train = group.commands["train"]  # type: ignore[attr-defined]
    ctx = train.make_context("train", argv[2:])
    assert ctx.params["horizon_bars"] == 60
    assert ctx.params["time_budget"] == 2880.0
    assert [str(p) for p in ctx.params["data"]] == [f"{HOME_DIR}/data/binance/BTCUSDT/klines_btcusdt_1m_2026-01.csv.gz"]
    assert ctx.params["version"] == "v2" and ctx.params["model"] == FAMILY


@pytest.mark.parametrize("uri", ["s3://bucket/klines.csv", "gs://b/k.csv", "https://example.com/k.csv"])
def test_remote_training_data_is_rejected(uri: str) -> None:
    mv = training(candidate(), data=[uri])
    with pytest.raises(TrainingRenderError, match=r"data\[0\]"):
        render_training_rayjob(mv, image=IMAGE, namespace=NS)


def test_version_suffix_when_the_name_lacks_the_family_prefix() -> None:
    mv = training(candidate())
    mv["metadata"]["name"] = "experiment-7"
    argv = training_command("experiment-7", ModelVersionSpec.model_validate(mv["spec"]))
    assert argv[argv.index("--version") + 1] == "experiment-7"


@pytest.mark.parametrize(
    ("workers", "cpu", "memory", "threads", "cores"),
    [(1, "1", "2Gi", "1", 1.0), (3, "4", "8Gi", "4", 4.0), (2, "1500m", "3Gi", "2", 1.5)],
)
def test_training_cluster_workers(workers: int, cpu: str, memory: str, threads: str, cores: float) -> None:
    """Workers of spec.training.resources; LightGBM gets one OpenMP thread per CPU; the entrypoint reserves the
    CPUs, so it runs on a worker (the head has num-cpus 0)."""
    mv = training(candidate(), workers=workers, resources={"cpu": cpu, "memory": memory})
    rj = job(mv)
    cluster = rj["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (group,) = cluster["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == workers
    (container,) = group["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == container["resources"]["requests"] == {"cpu": cpu, "memory": memory}
    assert {e["name"]: e["value"] for e in container["env"]}["OMP_NUM_THREADS"] == threads
    assert rj["spec"]["entrypointNumCpus"] == cores
    for pod in pods(rj):
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_training_without_workers_runs_on_the_head() -> None:
    rj = job(training(candidate(), workers=0, resources={"cpu": "2", "memory": "4Gi"}))
    cluster = rj["spec"]["rayClusterSpec"]
    assert "workerGroupSpecs" not in cluster
    head = cluster["headGroupSpec"]
    assert "num-cpus" not in head["rayStartParams"]  # Ray takes the head's CPU limit
    (container,) = head["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert {e["name"]: e["value"] for e in container["env"]}["OMP_NUM_THREADS"] == "2"
