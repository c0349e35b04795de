"""The Kubernetes manifests under deploy/kubernetes/, validated offline.

Each document is checked against the API schemas of a pinned Kubernetes version (the
kubernetes-validate package ships them), then against what operating the relay needs:
probes on the right endpoints, a drain that fits in the grace period, secrets referenced
and never inlined, settings the services accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from auth_service.core.config import AuthSettings
from relay_service.config import RelaySettings
from shared.keys import write_key_pair
from tests.deploy.files import (
    ALL_SETTINGS,
    HEARTBEAT_INTERVAL_MS,
    KUBERNETES,
    SECRET_SETTINGS,
    SERVICE_COMMANDS,
    console_scripts,
    kubernetes_documents,
    setting_names,
)

KUBERNETES_VERSION = "1.31"
NAMESPACE = "factory-relay"
EXAMPLE_SECRETS = "secret.example.yaml"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def documents() -> list[tuple[Path, Manifest]]:
    return kubernetes_documents()


def find(documents: list[tuple[Path, Manifest]], kind: str, name: str) -> Manifest:
    for _, document in documents:
        if document["kind"] == kind and document["metadata"]["name"] == name:
            return document
    pytest.fail(f"no {kind} {name}")


def container(document: Manifest) -> Manifest:
    (only,) = document["spec"]["template"]["spec"]["containers"]
    result: Manifest = only
    return result


def test_every_manifest_is_valid_for_the_pinned_kubernetes(
    documents: list[tuple[Path, Manifest]],
) -> None:
    checked = 0
    for path, document in documents:
        if document["kind"] == "Kustomization":
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name} {document['kind']}: {error.path}: {error.message}")
        checked += 1
    assert checked >= 10


def test_kustomization_lists_everything_but_the_example_secret(
    documents: list[tuple[Path, Manifest]],
) -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")}
    assert listed == on_disk - {"kustomization.yaml", EXAMPLE_SECRETS}
    for path, document in documents:
        if document["kind"] not in ("Kustomization", "Namespace"):
            assert document["metadata"]["namespace"] == NAMESPACE, path.name


@pytest.mark.parametrize(
    ("name", "command", "port"),
    [("auth", ["auth-service", "serve"], 8000), ("relay", ["relay-service"], 8001)],
)
def test_deployments_probe_drain_and_run_unprivileged(
    documents: list[tuple[Path, Manifest]], name: str, command: list[str], port: int
) -> None:
    deployment = find(documents, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    assert main["command"] == command
    assert main["command"][0] in console_scripts()
    assert main["ports"] == [{"name": "http", "containerPort": port}]
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}, kind
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = find(documents, "Service", name)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_relay_drain_fits_in_the_grace_period(documents: list[tuple[Path, Manifest]]) -> None:
    relay = find(documents, "Deployment", "relay")
    config = find(documents, "ConfigMap", "factory-relay-config")["data"]
    pre_stop = float(container(relay)["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = float(config["SHUTDOWN_TIMEOUT_SECONDS"])
    grace = relay["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop + drain, "SIGKILL would cut the drain short"


def test_relay_has_a_disruption_budget_and_an_autoscaler(
    documents: list[tuple[Path, Manifest]],
) -> None:
    labels = find(documents, "Deployment", "relay")["spec"]["selector"]["matchLabels"]
    budget = find(documents, "PodDisruptionBudget", "relay")
    assert budget["spec"]["selector"]["matchLabels"] == labels
    assert budget["spec"]["maxUnavailable"] == 1
    autoscaler = find(documents, "HorizontalPodAutoscaler", "relay")["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "relay",
    }
    assert 2 <= autoscaler["minReplicas"] < autoscaler["maxReplicas"]
    assert autoscaler["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_ingress_routes_websockets_to_the_relay_with_long_timeouts(
    documents: list[tuple[Path, Manifest]],
) -> None:
    ingress = find(documents, "Ingress", "factory-relay")
    annotations = ingress["metadata"]["annotations"]
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        seconds = int(annotations[f"nginx.ingress.kubernetes.io/{name}"])
        assert seconds > 2 * HEARTBEAT_INTERVAL_MS / 1000, name
    (rule,) = ingress["spec"]["rules"]
    routes = {path["path"]: path["backend"]["service"]["name"] for path in rule["http"]["paths"]}
    assert routes == {"/ws": "relay", "/": "auth"}


def test_migration_job_runs_the_console_script(documents: list[tuple[Path, Manifest]]) -> None:
    job = find(documents, "Job", "auth-migrate")
    assert tuple(container(job)["command"]) == ("auth-service", "migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    for _, document in documents:
        if document["kind"] in ("Deployment", "Job"):
            assert tuple(container(document)["command"]) in SERVICE_COMMANDS


def test_secrets_are_referenced_never_inlined(documents: list[tuple[Path, Manifest]]) -> None:
    for path, document in documents:
        if document["kind"] == "Secret":
            assert path.name == EXAMPLE_SECRETS, "only the clearly marked example"
            for key, value in document["stringData"].items():
                assert "CHANGE-ME-PLACEHOLDER" in value, key
        if document["kind"] == "ConfigMap":
            assert not set(document["data"]) & SECRET_SETTINGS
        if document["kind"] in ("Deployment", "Job"):
            for variable in container(document).get("env", []):
                if variable["name"] in SECRET_SETTINGS:
                    assert "value" not in variable, variable["name"]
                    assert "secretKeyRef" in variable["valueFrom"], variable["name"]
    assert "CHANGE-ME-PLACEHOLDER" not in "".join(
        path.read_text() for path in KUBERNETES.glob("*.yaml") if path.name != EXAMPLE_SECRETS
    )


def test_settings_are_accepted_by_the_services(
    documents: list[tuple[Path, Manifest]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ConfigMap + each Deployment's env (secrets and key files stood in for) validate."""
    config = find(documents, "ConfigMap", "factory-relay-config")["data"]
    assert set(config) <= ALL_SETTINGS, sorted(set(config) - ALL_SETTINGS)
    for name in ALL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    write_key_pair(tmp_path / "private.pem", tmp_path / "public.pem")
    stand_ins = {
        "DATABASE_URL": "postgresql://relay:pw@postgres.internal:5432/relay",
        "REDIS_URL": "rediss://:pw@redis.internal:6379/0",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "livekit-secret",
    }
    for name, settings_class in (("auth", AuthSettings), ("relay", RelaySettings)):
        main = container(find(documents, "Deployment", name))
        environment = dict(config)
        for variable in main["env"]:
            value = variable.get("value") or stand_ins[variable["name"]]
            environment[variable["name"]] = value.replace("/etc/factory-relay/jwt", str(tmp_path))
        assert {variable["name"] for variable in main["env"]} <= setting_names(settings_class)
        values = {key.lower(): value for key, value in environment.items()}
        settings = settings_class(_env_file=None, **values)
        assert settings.jwt_algorithm == "EdDSA"
        assert settings.redis_url is not None
