"""The Kubernetes manifests under deploy/kubernetes/, rendered and validated offline.

Each kustomization is rendered (tests/deploy/kustomize.py, checked against `kubectl
kustomize` where installed) and every document checked against the API schemas of a
pinned Kubernetes version (the kubernetes-validate package ships them), then against
what operating the relay needs: the migration as its own step before the rollout, pinned
images, probes on the right endpoints, a drain that fits in the grace period and the
rollout's pace, capacity guardrails, a default-deny network, secrets as files, settings
the services accept, and alerts that match the operations guide.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from auth_service.core.config import AuthSettings, DatabaseSettings, MigrationSettings
from relay_service.config import RelaySettings
from shared.keys import write_key_pair
from tests.deploy.files import (
    ALL_SETTINGS,
    HEARTBEAT_INTERVAL_MS,
    KUBERNETES,
    ROOT,
    SECRET_SETTINGS,
    SERVICE_COMMANDS,
    console_scripts,
    setting_names,
)
from tests.deploy.kustomize import (
    containers,
    normalized,
    read_env_file,
    render,
)

KUBERNETES_VERSION = "1.31"
NAMESPACE = "factory-relay"
EXAMPLE_SECRETS = KUBERNETES / "secret.example.yaml"
MIGRATE = KUBERNETES / "migrate"
MONITORING = KUBERNETES / "monitoring"
RELEASE = KUBERNETES / "release"
CONFIG_NAME = "factory-relay-config"
SECRET_NAME = "factory-relay-secrets"
IMAGE = "registry.example.com/factory-relay"
GUIDE = ROOT / "docs" / "operations.md"

KIB = 1024
MIB = 1024 * KIB
SESSION_BYTES = 11.8 * KIB
"""Resident memory per idle identified session, measured (docs/operations.md)."""
SESSIONS_PER_REPLICA = 30_000
"""What the relay's memory is sized for (docs/operations.md, "Capacity")."""
HPA_SESSIONS_PER_REPLICA = 20_000

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def app() -> list[Manifest]:
    return render(KUBERNETES)


@pytest.fixture(scope="module")
def migration() -> list[Manifest]:
    return render(MIGRATE)


@pytest.fixture(scope="module")
def monitoring() -> list[Manifest]:
    return render(MONITORING)


def find(documents: list[Manifest], kind: str, name: str) -> Manifest:
    for document in documents:
        if document["kind"] == kind and document["metadata"]["name"] == name:
            return document
    pytest.fail(f"no {kind} {name}")


def of_kind(documents: list[Manifest], kind: str) -> list[Manifest]:
    return [document for document in documents if document["kind"] == kind]


def container(document: Manifest) -> Manifest:
    (only,) = document["spec"]["template"]["spec"]["containers"]
    result: Manifest = only
    return result


def workloads(*renderings: list[Manifest]) -> list[Manifest]:
    return [d for documents in renderings for d in documents if d["kind"] in ("Deployment", "Job")]


def release() -> Manifest:
    loaded: Manifest = yaml.safe_load((RELEASE / "kustomization.yaml").read_text())
    return loaded


def config(app: list[Manifest]) -> dict[str, str]:
    (config_map,) = of_kind(app, "ConfigMap")
    data: dict[str, str] = config_map["data"]
    return data


# -- rendering and schemas -------------------------------------------------------------


def test_every_manifest_is_valid_for_the_pinned_kubernetes(
    app: list[Manifest], migration: list[Manifest]
) -> None:
    examples = list(yaml.safe_load_all(EXAMPLE_SECRETS.read_text()))
    for document in [*app, *migration, *examples]:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = f"{document['kind']} {document['metadata']['name']}"
            pytest.fail(f"{name}: {error.path}: {error.message}")
    assert len(app) >= 15


@pytest.mark.parametrize("directory", [KUBERNETES, MIGRATE, MONITORING], ids=lambda p: p.name)
def test_rendering_matches_kubectl_kustomize(directory: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the Python rendering is checked on its own")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    theirs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    names = {CONFIG_NAME}
    assert normalized(render(directory), names) == normalized(theirs, names)


def test_every_file_is_rendered_by_one_kustomization(
    app: list[Manifest], migration: list[Manifest], monitoring: list[Manifest]
) -> None:
    used: set[Path] = {EXAMPLE_SECRETS}
    for directory in (KUBERNETES, MIGRATE, MONITORING, RELEASE):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        used.add(directory / "kustomization.yaml")
        used |= {(directory / entry).resolve() for entry in kustomization.get("resources", [])}
        for generator in kustomization.get("configMapGenerator", []):
            used |= {(directory / entry).resolve() for entry in generator.get("envs", [])}
    on_disk = {path.resolve() for path in KUBERNETES.rglob("*") if path.is_file()}
    assert on_disk == {path.resolve() for path in used}
    for document in [*app, *migration, *monitoring]:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == NAMESPACE, document["metadata"]["name"]


# -- the release: migration first, pinned images ----------------------------------------


def test_the_migration_is_rendered_apart_from_the_rollout(
    app: list[Manifest], migration: list[Manifest]
) -> None:
    assert not of_kind(app, "Job"), "a Job applied with the Deployments runs beside the rollout"
    (job,) = migration
    assert job["kind"] == "Job"
    tag = release()["images"][0]["newTag"]
    assert job["metadata"]["name"] == "auth-migrate-" + tag.replace(".", "-"), (
        "a new Job name each release: a Job's template cannot change"
    )
    assert tuple(container(job)["command"]) == ("auth-service", "migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["activeDeadlineSeconds"] > 0


def test_every_workload_runs_the_release_image(
    app: list[Manifest], migration: list[Manifest]
) -> None:
    (image,) = release()["images"]
    assert image["name"] == "factory-relay"
    assert re.fullmatch(r"\d+\.\d+\.\d+", image["newTag"]), "a release tag, never latest"
    expected = f"{image['newName']}:{image['newTag']}"
    if "digest" in image:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])
        expected += f"@{image['digest']}"
    for workload in workloads(app, migration):
        for running in containers(workload):
            assert running["image"] == expected, workload["metadata"]["name"]
            assert tuple(running["command"]) in SERVICE_COMMANDS
            assert running["command"][0] in console_scripts()


def test_the_guide_migrates_before_it_rolls_out() -> None:
    text = GUIDE.read_text()
    migrate = text.index("kubectl apply -k deploy/kubernetes/migrate")
    wait = text.index("--for=condition=complete", migrate)
    roll = text.index("kubectl apply -k deploy/kubernetes\n", wait)
    assert migrate < wait < roll
    assert "job/auth-migrate-" in text[wait - 200 : roll]
    assert "migrate-job.yaml" not in text, "applying the Job's file alone pulls :latest"


# -- workloads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "command", "port"),
    [("auth", ["auth-service", "serve"], 8000), ("relay", ["relay-service"], 8001)],
)
def test_deployments_probe_drain_and_run_unprivileged(
    app: list[Manifest], name: str, command: list[str], port: int
) -> None:
    deployment = find(app, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    assert main["command"] == command
    assert main["ports"] == [{"name": "http", "containerPort": port}]
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = find(app, "Service", name)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_memory_requests_equal_limits(app: list[Manifest], migration: list[Manifest]) -> None:
    """What a pod may use is reserved for it: no node overcommits its memory."""
    for workload in workloads(app, migration):
        resources = container(workload)["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
        assert resources["requests"]["memory"] == resources["limits"]["memory"]


def memory_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * {"Mi": MIB, "Gi": 1024 * MIB}[match[2]]


def test_relay_memory_holds_the_sessions_it_is_sized_for(app: list[Manifest]) -> None:
    assert int(config(app)["MAX_CONNECTIONS"]) == SESSIONS_PER_REPLICA
    relay = container(find(app, "Deployment", "relay"))["resources"]
    assert relay["requests"]["cpu"] == relay["limits"]["cpu"], "Guaranteed QoS"
    sessions = SESSIONS_PER_REPLICA * SESSION_BYTES
    assert memory_bytes(relay["limits"]["memory"]) > sessions + 256 * MIB, "plus queues"
    text = GUIDE.read_text()
    assert f"{SESSION_BYTES / 1024:.1f} KiB" in text
    assert f"{SESSIONS_PER_REPLICA:,}" in text


def test_relay_drain_fits_in_the_grace_period_and_the_rollout_pace(app: list[Manifest]) -> None:
    relay = find(app, "Deployment", "relay")
    pre_stop = float(container(relay)["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = float(config(app)["SHUTDOWN_TIMEOUT_SECONDS"])
    grace = relay["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop + drain, "SIGKILL would cut the drain short"
    # The next old replica stops only after the previous one's sessions have moved.
    assert relay["spec"]["minReadySeconds"] >= pre_stop + drain


def test_relay_has_a_disruption_budget_and_scales_on_sessions_and_cpu(
    app: list[Manifest],
) -> None:
    labels = find(app, "Deployment", "relay")["spec"]["selector"]["matchLabels"]
    budget = find(app, "PodDisruptionBudget", "relay")
    assert budget["spec"]["selector"]["matchLabels"] == labels
    assert budget["spec"]["maxUnavailable"] == 1
    autoscaler = find(app, "HorizontalPodAutoscaler", "relay")["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "relay",
    }
    assert 2 <= autoscaler["minReplicas"] < autoscaler["maxReplicas"]
    assert autoscaler["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    metrics = {metric["type"]: metric for metric in autoscaler["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    sessions = metrics["Pods"]["pods"]
    assert sessions["metric"]["name"] == "relay_connections"
    assert int(sessions["target"]["averageValue"]) == HPA_SESSIONS_PER_REPLICA
    assert HPA_SESSIONS_PER_REPLICA < SESSIONS_PER_REPLICA
    assert "seriesQuery: 'relay_connections" in GUIDE.read_text(), "the adapter rule"


def test_ingress_routes_websockets_to_the_relay_with_long_timeouts(app: list[Manifest]) -> None:
    ingress = find(app, "Ingress", "factory-relay")
    annotations = ingress["metadata"]["annotations"]
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        seconds = int(annotations[f"nginx.ingress.kubernetes.io/{name}"])
        assert seconds > 2 * HEARTBEAT_INTERVAL_MS / 1000, name
    (rule,) = ingress["spec"]["rules"]
    routes = {path["path"]: path["backend"]["service"]["name"] for path in rule["http"]["paths"]}
    assert routes == {"/ws": "relay", "/": "auth"}
    login = find(app, "Ingress", "factory-relay-login")
    assert login["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rps"] == "5"
    (login_rule,) = login["spec"]["rules"]
    assert login_rule["host"] == rule["host"]
    (path,) = login_rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/auth/token", "Exact")
    assert path["backend"]["service"]["name"] == "auth"


# -- network ------------------------------------------------------------------------------


def policies_for(app: list[Manifest], labels: dict[str, str]) -> list[Manifest]:
    """The NetworkPolicies that select a pod with these labels."""
    selected = []
    for policy in of_kind(app, "NetworkPolicy"):
        wanted = policy["spec"]["podSelector"].get("matchLabels", {})
        if wanted.items() <= labels.items():
            selected.append(policy)
    return selected


def allowed_ports(policies: list[Manifest], direction: str) -> set[tuple[str, int]]:
    """(peer, port) pairs: peer is a namespace name, `pods:<name>` or a CIDR."""
    allowed = set()
    for policy in policies:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get("to" if direction == "egress" else "from", [])
            for peer in peers:
                if "ipBlock" in peer:
                    name = peer["ipBlock"]["cidr"]
                elif "namespaceSelector" in peer:
                    name = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                else:
                    name = "pods:" + peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                allowed |= {(name, port["port"]) for port in rule["ports"]}
    return allowed


def test_network_is_denied_by_default_with_explicit_allows(
    app: list[Manifest], migration: list[Manifest]
) -> None:
    deny = find(app, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    labels = {
        pod["app.kubernetes.io/name"]: pod
        for pod in (w["spec"]["template"]["metadata"]["labels"] for w in workloads(app, migration))
    }
    for name, pod_labels in labels.items():
        policies = policies_for(app, pod_labels)
        egress = allowed_ports(policies, "egress")
        assert ("kube-system", 53) in egress, name
    auth = policies_for(app, labels["auth"])
    relay = policies_for(app, labels["relay"])
    migrate = policies_for(app, labels["auth-migrate"])
    for policies, port in ((auth, 8000), (relay, 8001)):
        ingress = allowed_ports(policies, "ingress")
        assert {("ingress-nginx", port), ("monitoring", port)} <= ingress
    assert {port for _, port in allowed_ports(auth, "egress")} == {53, 5432, 6379}
    assert {port for _, port in allowed_ports(relay, "egress")} == {53, 6379, 8000}
    assert {port for _, port in allowed_ports(migrate, "egress")} == {53, 5432}
    assert not allowed_ports(migrate, "ingress")


def test_forwarded_headers_are_trusted_from_a_narrow_range(app: list[Manifest]) -> None:
    value = config(app)["FORWARDED_ALLOW_IPS"]
    assert value not in ("", "*")
    for entry in value.split(","):
        network = ipaddress.ip_network(entry.strip())
        assert network.prefixlen >= 16, f"{entry}: the ingress controller's range, no wider"


# -- secrets and settings -----------------------------------------------------------------


def secret_files(workload: Manifest) -> dict[str, str]:
    """Mounted Secret items: the path inside the container → the Secret's key."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    files = {}
    for mount in container(workload).get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None or secret["secretName"] != SECRET_NAME:
            continue
        for item in secret["items"]:
            files[f"{mount['mountPath']}/{item['path']}"] = item["key"]
    return files


def test_secrets_are_mounted_files_never_inlined(
    app: list[Manifest], migration: list[Manifest]
) -> None:
    for document in yaml.safe_load_all(EXAMPLE_SECRETS.read_text()):
        for key, value in document["stringData"].items():
            assert "CHANGE-ME-PLACEHOLDER" in value, key
    assert not of_kind([*app, *migration], "Secret"), "only the clearly marked example"
    assert not set(config(app)) & SECRET_SETTINGS
    for workload in workloads(app, migration):
        files = secret_files(workload)
        for variable in container(workload).get("env", []):
            assert variable["name"] not in SECRET_SETTINGS - {"LIVEKIT_API_KEY"}, (
                f"{workload['metadata']['name']}: {variable['name']} belongs in a file"
            )
            if variable["name"].endswith("_FILE") and "/run/secrets/" in variable.get("value", ""):
                key = variable["name"].removesuffix("_FILE")
                assert files[variable["value"]] == key, variable["name"]
        assert set(files.values()) <= SECRET_SETTINGS


def test_the_migration_job_holds_the_database_url_alone(migration: list[Manifest]) -> None:
    (job,) = migration
    assert secret_files(job) == {"/run/secrets/factory-relay/DATABASE_URL": "DATABASE_URL"}
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert [volume["secret"]["secretName"] for volume in volumes] == [SECRET_NAME]
    assert [variable["name"] for variable in container(job)["env"]] == ["DATABASE_URL_FILE"]
    assert "envFrom" not in container(job)


def test_settings_are_accepted_by_the_services(
    app: list[Manifest],
    migration: list[Manifest],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ConfigMap + each workload's env, its mounted secrets and keys stood in for."""
    settings = config(app)
    assert set(settings) <= ALL_SETTINGS, sorted(set(settings) - ALL_SETTINGS)
    for name in ALL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    write_key_pair(tmp_path / "private.pem", tmp_path / "public.pem")
    stand_ins = {
        "DATABASE_URL": "postgresql://relay:pw@postgres.internal:5432/relay",
        "REDIS_URL": "rediss://:pw@redis.internal:6379/0",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "livekit-secret",
    }
    for key, value in stand_ins.items():
        (tmp_path / key).write_text(value)
    checks: tuple[tuple[Manifest, type[DatabaseSettings | RelaySettings]], ...] = (
        (find(app, "Deployment", "auth"), AuthSettings),
        (find(app, "Deployment", "relay"), RelaySettings),
        (migration[0], MigrationSettings),
    )
    for workload, settings_class in checks:
        main = container(workload)
        environment = dict(settings) if main.get("envFrom") else {}
        for variable in main["env"]:
            value = variable.get("value") or stand_ins[variable["name"]]
            value = value.replace("/etc/factory-relay/jwt", str(tmp_path))
            environment[variable["name"]] = value.replace(
                "/run/secrets/factory-relay", str(tmp_path)
            )
        assert {variable["name"] for variable in main["env"]} <= setting_names(settings_class)
        values: dict[str, Any] = {key.lower(): value for key, value in environment.items()}
        loaded = settings_class(_env_file=None, **values)
        if isinstance(loaded, DatabaseSettings):
            assert loaded.database_url.startswith("postgresql+asyncpg://")
        else:
            assert loaded.redis_url == stand_ins["REDIS_URL"]


def test_a_settings_change_rolls_the_deployments(app: list[Manifest], tmp_path: Path) -> None:
    """The ConfigMap's name carries a hash of its content, and the pods refer to that name."""
    (config_map,) = of_kind(app, "ConfigMap")
    generated = config_map["metadata"]["name"]
    assert generated.startswith(f"{CONFIG_NAME}-")
    for name in ("auth", "relay"):
        (source,) = container(find(app, "Deployment", name))["envFrom"]
        assert source["configMapRef"]["name"] == generated
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    settings = read_env_file(copy / "settings.env")
    assert settings["LOG_LEVEL"] != "DEBUG"
    (copy / "settings.env").write_text(
        (copy / "settings.env").read_text().replace("LOG_LEVEL=INFO", "LOG_LEVEL=DEBUG")
    )
    (changed,) = of_kind(render(copy), "ConfigMap")
    assert changed["metadata"]["name"] != generated


# -- monitoring ---------------------------------------------------------------------------


def test_service_monitors_scrape_every_replica(
    app: list[Manifest], monitoring: list[Manifest]
) -> None:
    for name in ("auth", "relay"):
        monitor = find(monitoring, "ServiceMonitor", name)
        service = find(app, "Service", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= (
            service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == service["spec"]["ports"][0]["name"]
        assert endpoint["path"] == "/metrics"


def guide_alerts() -> dict[str, str]:
    """The alerts table of docs/operations.md: name → expression."""
    rows = re.findall(r"^\| `([A-Z]\w+)` \| `(.+?)` \|", GUIDE.read_text(), re.MULTILINE)
    return {name: expression.replace("\\|", "|") for name, expression in rows}


def test_prometheus_rule_has_the_alerts_the_guide_names(monitoring: list[Manifest]) -> None:
    (rule,) = of_kind(monitoring, "PrometheusRule")
    alerts = {
        alert["alert"]: alert["expr"]
        for group in rule["spec"]["groups"]
        for alert in group["rules"]
    }
    assert alerts == guide_alerts()
    assert len(alerts) >= 10
