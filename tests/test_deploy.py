"""deploy/: the KubeRay manifests validated against KubeRay's own CRD schema (trimmed, vendored in
tests/fixtures/kuberay with its source), kept in step with the Dockerfile and the pinned Ray; the CPU
image built where Docker runs (marked ``cluster``; skipped, saying so, where no Docker daemon answers)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agelab.config import build_config, parse_overrides
from agelab.paths import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
SCHEMAS = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "kuberay" / "ray.io_v1.schema.yaml").read_text()
)
MANIFESTS = {
    "RayCluster": DEPLOY / "kuberay" / "raycluster.yaml",
    "RayJob": DEPLOY / "kuberay" / "rayjob.yaml",
}


def strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


def problems(kind: str, manifest: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(strict(SCHEMAS[kind]))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def load(kind: str) -> dict[str, Any]:
    return yaml.safe_load(MANIFESTS[kind].read_text())


def cluster_spec(kind: str) -> dict[str, Any]:
    manifest = load(kind)
    return manifest["spec"] if kind == "RayCluster" else manifest["spec"]["rayClusterSpec"]


@pytest.mark.parametrize("kind", list(MANIFESTS))
def test_the_manifests_match_the_kuberay_crd_schema(kind):
    manifest = load(kind)
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == kind
    assert problems(kind, manifest) == []


def test_the_validator_rejects_what_kubernetes_would():
    broken = load("RayCluster")
    broken["spec"]["workerGroupSpecs"][0]["rayStartParam"] = broken["spec"]["workerGroupSpecs"][0].pop(
        "rayStartParams"
    )
    broken["spec"]["workerGroupSpecs"][1]["replicas"] = "two"
    broken["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = (
        "2 cores"
    )
    found = problems("RayCluster", broken)
    assert any("'rayStartParams' is a required property" in p for p in found), found
    assert any("rayStartParam" in p and "not allowed" in p for p in found), found
    assert any(p.startswith("spec.workerGroupSpecs.1.replicas") for p in found), found
    assert any("limits.cpu" in p for p in found), found
    job = load("RayJob")
    del job["spec"]["entrypoint"]
    assert any("'entrypoint' is a required property" in p for p in problems("RayJob", job))


def pods(kind: str) -> list[dict[str, Any]]:
    spec = cluster_spec(kind)
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]


@pytest.mark.parametrize("kind", list(MANIFESTS))
def test_every_node_runs_the_image_with_the_agelab_locations(kind):
    pinned = re.search(
        r"^ray\[[^\]]*\]==(\S+)", (PROJECT_ROOT / "requirements-cluster.txt").read_text(), re.M
    )
    assert cluster_spec(kind)["rayVersion"] == pinned[1]
    for pod in pods(kind):
        [container] = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AGELAB_RUNS_DIR"] == "/mnt/runs" and env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
        assert env["AGELAB_CACHE_DIR"] and env["AGELAB_MIRROR"].startswith("s3://")
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/mnt/runs", env["AGELAB_CACHE_DIR"]} <= mounts
        assert container["resources"]["requests"] == container["resources"]["limits"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu", 0)
        assert container["image"].endswith(":cuda" if gpus else ":cpu"), container["image"]


def test_the_dockerfile_builds_both_variants_from_the_pinned_requirements():
    text = (DEPLOY / "Dockerfile").read_text()
    assert (
        "ARG REQUIREMENTS=requirements.txt" in text
        and "--build-arg REQUIREMENTS=requirements-gpu.txt" in text
    )
    assert '-r "${REQUIREMENTS}" -r requirements-cluster.txt' in text
    for name in ("AGELAB_MODELS_DIR", "AGELAB_CACHE_DIR", "AGELAB_RUNS_DIR", "KERAS_HOME"):
        assert re.search(rf"{name}=/\S+", text), name
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for copied in re.findall(r"^COPY (?:--chown=\S+ )?(.+) \S+$", text, re.M):
        for path in copied.split():
            assert (PROJECT_ROOT / path).exists() and f"!{path}" in ignored, path


def test_the_rayjob_entrypoint_is_agelab_commands_with_known_keys():
    entrypoint = load("RayJob")["spec"]["entrypoint"]
    commands = [shlex.split(part) for part in entrypoint.split("&&")]
    assert [c[:4] for c in commands] == [
        ["python", "-m", "agelab", "setup"],
        ["python", "-m", "agelab", "train"],
    ]
    keys = parse_overrides(commands[1][4:])
    assert all(folder.startswith("s3://") for folder in keys["data"].split(","))
    assert build_config(keys)["num_cpus"] == load("RayJob")["spec"]["entrypointNumCpus"]


def docker_works() -> str | None:
    if not shutil.which("docker"):
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return None if info.returncode == 0 else f"docker cannot run here: {info.stderr.strip().splitlines()[-1]}"


@pytest.mark.cluster
def test_the_cpu_image_builds_and_runs_agelab(tmp_path):
    why_not = docker_works()
    if why_not:
        pytest.skip(why_not)
    tag = f"agelab-test:{tmp_path.name.lower()}"
    build = subprocess.run(
        ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(PROJECT_ROOT)],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        run = subprocess.run(["docker", "run", "--rm", tag], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0 and "usage: python -m agelab VERB" in run.stdout, run.stderr[-2000:]
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=300)
