"""deploy/: the Kubernetes manifests pass an offline schema check, hold the
settings the gateway relies on, and the configs they carry load in mixroute;
the Dockerfile and docker-compose example are checked as text; the compose
example's stand-in upstream answers the openai SDK."""

from __future__ import annotations

import copy
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import openai
import pytest
import yaml

from mixroute.config import parse_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
# The oldest Kubernetes these manifests promise to work on (autoscaling/v2 and
# policy/v1 are GA there), and the newest the bundled schemas know.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
EXPECTED = {
    ("v1", "ConfigMap", "mixroute-config"),
    ("v1", "Secret", "mixroute-providers"),
    ("apps/v1", "Deployment", "mixroute"),
    ("v1", "Service", "mixroute"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "mixroute"),
    ("policy/v1", "PodDisruptionBudget", "mixroute"),
    ("apps/v1", "Deployment", "mixroute-redis"),
    ("v1", "Service", "mixroute-redis"),
}


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text("utf-8")):
            assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
            docs.append((path, doc))
    return docs


def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (d["kind"], d["metadata"]["name"]): d
        for _, d in _documents()
        if d["kind"] != "Kustomization"
    }


def _env_of(secret: dict[str, Any], deployment: dict[str, Any]) -> dict[str, str]:
    env = dict(secret["stringData"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def test_every_manifest_passes_the_kubernetes_schema_offline() -> None:
    found = set()
    for path, doc in _documents():
        if doc["kind"] == "Kustomization":
            listed = {path.parent / name for name in doc["resources"]}
            others = set(K8S.glob("*.yaml")) - {path}
            assert listed == others, "kustomization.yaml must list every manifest"
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        found.add((doc["apiVersion"], doc["kind"], doc["metadata"]["name"]))
    assert found == EXPECTED


def test_the_schema_check_rejects_a_broken_manifest() -> None:
    deployment = copy.deepcopy(_resources()[("Deployment", "mixroute")])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    deployment = copy.deepcopy(_resources()[("Deployment", "mixroute")])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_the_gateway_deployment_is_probed_locked_down_and_wired() -> None:
    res = _resources()
    deployment = res[("Deployment", "mixroute")]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]

    # Provider keys from the Secret; Redis from MIXROUTE_REDIS_URL.
    assert container["envFrom"] == [{"secretRef": {"name": "mixroute-providers"}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MIXROUTE_REDIS_URL"].startswith("redis://mixroute-redis:6379")
    redis_service = res[("Service", "mixroute-redis")]
    assert redis_service["spec"]["ports"][0]["port"] == 6379

    # The config file comes from the ConfigMap; writable paths are emptyDirs.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "mixroute-config"
    assert container["args"] == [
        "--config",
        mounts["config"]["mountPath"] + "/mixroute.yaml",
    ]
    for name in ("data", "tmp"):
        assert "emptyDir" in volumes[name]

    service = res[("Service", "mixroute")]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    hpa = res[("HorizontalPodAutoscaler", "mixroute")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "mixroute"
    assert hpa["spec"]["minReplicas"] >= 2


def test_the_configmap_config_loads_and_fits_the_pod() -> None:
    res = _resources()
    deployment = res[("Deployment", "mixroute")]
    env = _env_of(res[("Secret", "mixroute-providers")], deployment)
    text = res[("ConfigMap", "mixroute-config")]["data"]["mixroute.yaml"]
    config = parse_config(text, source="configmap", env=env)

    assert config.state.backend == "redis"
    assert config.state.redis_url_env == "MIXROUTE_REDIS_URL"
    assert config.auth.backend == "redis"  # a key made on one pod works on all
    assert config.auth.mode == "on"  # an empty key store refuses, never opens
    assert all(m.configured for m in config.models)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    data = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert config.server.ledger_path.startswith(data["mountPath"] + "/")
    # SIGTERM comes after preStop; streams get shutdown_timeout_s before SIGKILL.
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = pod["terminationGracePeriodSeconds"]
    assert pause + config.server.shutdown_timeout_s < grace


def test_the_secret_holds_placeholders_only() -> None:
    secret = _resources()[("Secret", "mixroute-providers")]
    for key, value in secret["stringData"].items():
        if key.endswith("_API_KEY"):
            assert value == "replace-me"
        else:
            assert ".invalid/" in value


def test_dockerfile_runs_the_gateway_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text("utf-8")
    lines = [x.strip() for x in text.splitlines() if x.strip() and x[0] != "#"]
    assert lines[0] == "FROM python:3.11-slim"
    users = [x.split()[1] for x in lines if x.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    health = next(x for x in lines if x.startswith("HEALTHCHECK"))
    assert "/healthz" in text[text.index(health) :].split("\n\n")[0]
    entry = next(x for x in lines if x.startswith("ENTRYPOINT"))
    assert re.search(r'"serve", "--host", "0\.0\.0\.0"', entry)
    assert any(x.startswith("RUN pip install .") for x in lines)


def test_compose_example_has_two_replicas_on_one_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text("utf-8"))
    services = compose["services"]
    replicas = [n for n, s in services.items() if s.get("image") == "mixroute:latest"]
    assert sorted(replicas) == ["mixroute-a", "mixroute-b"]
    assert services["redis"]["image"].startswith("redis:")
    env = services["mixroute-a"]["environment"]
    assert env["MIXROUTE_REDIS_URL"] == "redis://redis:6379/0"
    for name in ("small", "medium", "large"):
        host = env[f"MIXROUTE_{name.upper()}_BASE_URL"].split("/")[2].split(":")[0]
        assert host in services
    mounted = services["mixroute-a"]["volumes"][0].split(":")[0]
    text = (DEPLOY / mounted).read_text("utf-8")
    config = parse_config(
        text, source="compose", env={k: str(v) for k, v in env.items()}
    )
    assert config.state.backend == "redis" and config.cache.enabled


@pytest.fixture
def stand_in() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = DEPLOY / "compose" / "stand_in_upstream.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), "--delay", "0"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(5)


def test_stand_in_upstream_answers_the_openai_sdk(stand_in: str) -> None:
    client = openai.OpenAI(base_url=stand_in, api_key="stand-in", max_retries=0)
    messages: Any = [{"role": "user", "content": "hello"}]
    whole = client.chat.completions.create(model="m", messages=messages, timeout=5)
    assert whole.choices[0].message.content == "This is stand-in answering."
    chunks = client.chat.completions.create(
        model="m", messages=messages, stream=True, timeout=5
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "This is stand-in answering."
    client.close()
