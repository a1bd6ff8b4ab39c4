"""deploy/k8s/: every manifest validated offline against the Kubernetes JSON schemas (strict: unknown
fields are errors) shipped by the `kubernetes-validate` package, then cross-checked against each other
and against the image, the CLI and the settings class (the same facts the compose tests check)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate  # the project's test extra (pip install -e '.[test]'), as is PyYAML
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "docker" / "Dockerfile"
# Oldest and newest Kubernetes minor versions the manifests must be valid for.
K8S_VERSIONS = ("1.29.0", "1.37.0")
PENDING_SETTINGS: dict[str, str] = {}  # settings the manifests may set before the app has them (none now)


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        (doc,) = list(yaml.safe_load_all(path.read_text()))
        docs[path.name] = doc
    return docs


def by_kind(kind: str) -> dict:
    docs = manifests().values()
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] != "faceverify-db"]
    return doc


def api_container() -> dict:
    (container,) = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", sorted(manifests()))
def test_manifest_is_valid_kubernetes(name: str, version: str) -> None:
    kubernetes_validate.validate(manifests()[name], version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    """The offline schemas really are applied: a typo'd field and a wrongly typed one both fail."""
    deployment = by_kind("Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(n for n in manifests() if n != "secret.example.yaml")


def test_deployment_probes_ready_and_health_on_the_port_it_serves() -> None:
    container = api_container()
    command = container["command"]
    serve_port = int(command[command.index("--port") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == serve_port
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # The startup probe must allow the model load + warm-up (tens of seconds on 2 cores) before liveness.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180


def test_deployment_runs_what_the_image_runs_as_its_user() -> None:
    from service.cli.main import build_parser

    text = DOCKERFILE.read_text()
    cmd = re.search(r'^CMD (\[.*\])$', text, flags=re.M)
    assert cmd and api_container()["command"] == yaml.safe_load(cmd.group(1))
    build_parser().parse_args(api_container()["command"][1:])
    uid = int(re.search(r"useradd .*--uid (\d+)", text).group(1))  # type: ignore[union-attr]
    pod = by_kind("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid and pod["fsGroup"] == uid
    job = by_kind("Job")["spec"]["template"]["spec"]
    assert job["containers"][0]["command"] == ["faceverify", "db", "upgrade"]
    assert job["securityContext"]["runAsUser"] == uid


def test_deployment_has_resources_and_a_drain_budget() -> None:
    from service.runtime.config import Settings

    resources = api_container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    spec = by_kind("Deployment")["spec"]["template"]["spec"]
    drain = float(getattr(Settings(), "graceful_timeout_s", 20))  # the robust engineer's setting, 20 s
    assert spec["terminationGracePeriodSeconds"] >= drain + 5


def test_environment_is_settings_and_secrets_exist() -> None:
    from service.runtime.config import Settings

    known = {f"FACEVERIFY_{name.upper()}" for name in Settings.model_fields} | set(PENDING_SETTINGS)
    secret_keys = set(by_kind("Secret")["stringData"])
    for doc in (by_kind("Deployment"), by_kind("Job")):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            env = container["env"]
            names = [e["name"] for e in env]
            assert {n for n in names if n.startswith("FACEVERIFY_")} <= known
            assert "FACEVERIFY_DATABASE_URL" in names
            for entry in env:
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == by_kind("Secret")["metadata"]["name"] and ref["key"] in secret_keys
    values = {e["name"]: e.get("value") for e in api_container()["env"]}
    assert values["FACEVERIFY_MIGRATE_ON_STARTUP"] == "false"  # the Job migrates; replicas must not race


def test_database_is_the_external_service() -> None:
    external = manifests()["postgres-external.yaml"]
    assert external["spec"]["type"] == "ExternalName"
    url = by_kind("Secret")["stringData"]["database-url"]
    assert f"@{external['metadata']['name']}:{external['spec']['ports'][0]['port']}/" in url


def test_selectors_volumes_pdb_hpa_and_service_fit_the_deployment() -> None:
    deployment = by_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = by_kind("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]  # metrics are not in the Service
    hpa = by_kind("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "faceverify-api"}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu" and hpa["minReplicas"] >= 2
    assert deployment["metadata"]["name"] == "faceverify-api"
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v}
    assert claims == {by_kind("PersistentVolumeClaim")["metadata"]["name"]}
    assert by_kind("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]  # shared by replicas
    mounts = {m["mountPath"] for m in api_container()["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in api_container()["env"]}
    assert env["FACEVERIFY_DATA_DIR"] in mounts


def test_metrics_port_is_annotated_and_bound_for_scraping() -> None:
    container = api_container()
    env = {e["name"]: e.get("value") for e in container["env"]}
    annotations = by_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(env["FACEVERIFY_METRICS_PORT"]) == ports["metrics"] == int(annotations["prometheus.io/port"])
    assert env["FACEVERIFY_METRICS_HOST"] == "0.0.0.0"
