"""docker-compose.yml and .env.example, checked without a Docker engine.

The file must be valid for the compose specification, give every service a healthcheck,
run only the project's console scripts, refuse to start without its secrets, hand each
service only settings it knows, with values its settings class accepts, and wire nginx
with exactly the variables its template uses.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from auth_service.core.config import AuthSettings, MigrationSettings
from relay_service.config import RelaySettings
from shared.redis_connect import parse_redis_url
from tests.deploy.files import (
    ALL_SETTINGS,
    HEARTBEAT_INTERVAL_MS,
    NGINX_TEMPLATE,
    ROOT,
    SECRET_SETTINGS,
    SERVICE_COMMANDS,
    console_scripts,
    env_example,
    interpolate,
    interpolate_tree,
    load_compose,
    referenced_variables,
    setting_names,
)
from tests.deploy.stack import (
    RESOLVE_SINCE,
    for_this_machine,
    nginx_command,
    render_template,
    require_nginx,
    template_variables,
)

REQUIRED = {
    "JWT_SECRET": "compose-test-secret-0123456789abcdefghijkl",
    "POSTGRES_PASSWORD": "compose-test-password",
}
APP_SERVICES = ("migrate", "auth", "relay")
MIN_RELAY_SESSIONS = 20_000
"""What one relay container must be able to hold, in file descriptors."""
ONE_SHOT = ("migrate",)


def compose_schema() -> dict[str, Any]:
    """The compose specification's JSON schema, as vendored by check-jsonschema."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def dotenv(**values: str) -> dict[str, str]:
    """.env copied from .env.example with `values` filled in, expanded as compose reads it
    (a value may use the variables set above it)."""
    _, active = env_example()
    env: dict[str, str] = {}
    for name, value in active.items():
        env[name] = values[name] if name in values else interpolate(value, env)
    return env


@pytest.fixture(scope="module")
def interpolated(compose: dict[str, Any]) -> dict[str, Any]:
    """The file as compose sees it with .env copied from .env.example and filled in."""
    result: dict[str, Any] = interpolate_tree(compose, dotenv(**REQUIRED))
    return result


def duration_seconds(value: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert value, "empty duration"
    assert match, f"unsupported duration {value!r}"
    return int(match[1] or 0) * 60 + int(match[2] or 0)


def test_valid_for_the_compose_specification(
    compose: dict[str, Any], interpolated: dict[str, Any]
) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    for document in (compose, interpolated):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "migrate", "auth", "relay", "nginx", "livekit"}
    for name, service in services.items():
        healthcheck = service.get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        if name in ONE_SHOT:
            # Nothing listens in a one-shot container; what others wait for is its exit.
            assert healthcheck == {"disable": True}, name
            assert service["restart"] == "no"
            continue
        assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in ("auth", "relay"):
        assert services[name]["healthcheck"]["test"] == ["CMD", "python", "/opt/healthcheck.py"]


def test_start_order_waits_for_health_and_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    auth = services["auth"]["depends_on"]
    assert auth["migrate"] == {"condition": "service_completed_successfully"}
    assert auth["postgres"] == auth["redis"] == {"condition": "service_healthy"}
    assert services["relay"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    nginx = services["nginx"]["depends_on"]
    assert nginx["auth"] == nginx["relay"] == {"condition": "service_healthy"}


def test_app_containers_run_the_console_scripts(compose: dict[str, Any]) -> None:
    scripts = console_scripts()
    services = compose["services"]
    expected = {
        "migrate": ["auth-service", "migrate"],
        "auth": ["auth-service", "serve"],
        "relay": ["relay-service"],
    }
    for name in APP_SERVICES:
        command = services[name]["command"]
        assert command == expected[name]
        assert command[0] in scripts
        assert tuple(command) in SERVICE_COMMANDS
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, "one image for every app service"


def test_relay_scales_behind_the_balancer(compose: dict[str, Any]) -> None:
    relay = compose["services"]["relay"]
    assert relay["deploy"]["replicas"] >= 2
    assert "ports" not in relay, "a fixed host port would stop `--scale relay=N`"
    assert "container_name" not in relay
    shutdown = float(relay["environment"]["SHUTDOWN_TIMEOUT_SECONDS"])
    assert duration_seconds(relay["stop_grace_period"]) > shutdown
    for name, service in compose["services"].items():
        if name not in ("nginx", "livekit"):
            assert "ports" not in service, f"{name} is reachable through nginx only"


SECRETS_DIRECTORY = "/run/secrets/"
FILE_SECRETS = SECRET_SETTINGS - {"LIVEKIT_API_KEY", "REDIS_URL"}
"""Never in a container's environment here: the LiveKit key is an identifier (its secret
is the secret), and compose's own Redis has no password in its URL."""


def service_secrets(compose: dict[str, Any], name: str) -> dict[str, str]:
    """Each secret a service reads: its setting's name (FOO for FOO_FILE) → secret name."""
    service = compose["services"][name]
    mounted = set(service.get("secrets", []))
    found = {}
    for setting, value in service["environment"].items():
        if isinstance(value, str) and value.startswith(SECRETS_DIRECTORY):
            secret = value.removeprefix(SECRETS_DIRECTORY)
            assert secret in mounted, f"{name}: {setting} names {secret}, not mounted"
            found[setting.removesuffix("_FILE")] = secret
    assert set(found.values()) == mounted, f"{name} mounts secrets it does not read"
    return found


def test_secrets_reach_the_containers_as_files_only(compose: dict[str, Any]) -> None:
    _, active = env_example()
    definitions = compose["secrets"]
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert not set(environment) & FILE_SECRETS, f"{name} gets a secret in its environment"
        for secret in service.get("secrets", []):
            source = definitions[secret]["environment"]
            assert source in active, f"{secret}: .env.example does not set {source}"
    assert service_secrets(compose, "relay") == {"JWT_SECRET": "jwt_secret"}
    assert service_secrets(compose, "migrate") == {"DATABASE_URL": "database_url"}
    assert service_secrets(compose, "auth") == {
        "JWT_SECRET": "jwt_secret",
        "DATABASE_URL": "database_url",
        "LIVEKIT_API_SECRET": "livekit_api_secret",
        "FIRST_ADMIN_PASSWORD": "first_admin_password",
    }
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert definitions["postgres_password"] == {"environment": "POSTGRES_PASSWORD"}


def test_env_example_leaves_every_secret_empty() -> None:
    _, active = env_example()
    assert set(REQUIRED) <= set(active)
    for name, value in active.items():
        # AUTH_DATABASE_URL only assembles the password set above it.
        assert value == "" or "${POSTGRES_PASSWORD}" in value, name
    env = dotenv(**REQUIRED)
    assert env["AUTH_DATABASE_URL"] == (
        f"postgresql://factory_relay:{REQUIRED['POSTGRES_PASSWORD']}@postgres:5432/factory_relay"
    )


def test_env_example_documents_every_setting_and_variable(compose: dict[str, Any]) -> None:
    documented, _ = env_example()
    missing_settings = ALL_SETTINGS - documented
    assert not missing_settings, f".env.example lacks settings: {sorted(missing_settings)}"
    used = {name for name, _, _ in referenced_variables(compose)}
    used |= {secret["environment"] for secret in compose["secrets"].values()}
    assert not used - documented, f".env.example lacks variables: {sorted(used - documented)}"


def _settings_from(
    environment: dict[str, Any], settings_class: type[Any], secret_files: dict[str, Path]
) -> Any:
    """The settings a container gets: its environment, /run/secrets/* as `secret_files`."""
    values = {}
    for key, value in environment.items():
        text = str(value)
        if text.startswith(SECRETS_DIRECTORY):
            text = str(secret_files[text.removeprefix(SECRETS_DIRECTORY)])
        values[key.lower()] = text
    return settings_class(_env_file=None, **values)


@pytest.fixture
def secret_files(compose: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    """What compose copies to /run/secrets: each secret's variable from the filled-in .env."""
    env = dotenv(**REQUIRED)
    files = {}
    for name, definition in compose["secrets"].items():
        files[name] = tmp_path / name
        files[name].write_text(env[definition["environment"]])
    return files


def test_service_environments_are_accepted_by_the_settings(
    interpolated: dict[str, Any], secret_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ALL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    services = interpolated["services"]
    for name, settings_class in (
        ("migrate", MigrationSettings),
        ("auth", AuthSettings),
        ("relay", RelaySettings),
    ):
        environment = services[name]["environment"]
        unknown = set(environment) - setting_names(settings_class)
        assert not unknown, f"{name} gets settings it ignores: {sorted(unknown)}"
        _settings_from(environment, settings_class, secret_files)
    auth = _settings_from(services["auth"]["environment"], AuthSettings, secret_files)
    assert auth.host == "0.0.0.0"
    assert auth.redis_url == "redis://redis:6379/0"
    assert auth.port == 8000
    assert auth.database_url.startswith("postgresql+asyncpg://factory_relay:")
    assert auth.jwt_secret.get_secret_value() == REQUIRED["JWT_SECRET"]
    assert not auth.livekit_configured, "LiveKit is opt-in"
    assert auth.first_admin_username is None
    relay = _settings_from(services["relay"]["environment"], RelaySettings, secret_files)
    assert relay.host == "0.0.0.0"
    assert relay.port == 8001
    assert relay.heartbeat_interval_ms == HEARTBEAT_INTERVAL_MS
    assert relay.jwt_secret == auth.jwt_secret


def test_livekit_dev_server_is_opt_in_and_on_loopback_only(compose: dict[str, Any]) -> None:
    """Its keys are public knowledge: never started by default, never on 0.0.0.0."""
    livekit = compose["services"]["livekit"]
    assert livekit["image"].startswith("livekit/livekit-server:")
    assert "--dev" in livekit["command"]
    assert livekit["profiles"] == ["livekit-dev"]
    assert livekit["ports"]
    for port in livekit["ports"]:
        assert port.startswith("127.0.0.1:"), port
    assert "livekit" not in compose["services"]["auth"].get("depends_on", {})
    auth = compose["services"]["auth"]["environment"]
    assert auth["LIVEKIT_API_KEY"] == "${LIVEKIT_API_KEY:-}"
    assert auth["LIVEKIT_URL"] == "${LIVEKIT_URL:-}"


def test_auth_trusts_forwarded_headers_from_the_balancers_network_only(
    compose: dict[str, Any],
) -> None:
    subnets = [entry["subnet"] for entry in compose["networks"]["relay-net"]["ipam"]["config"]]
    auth = compose["services"]["auth"]
    assert auth["environment"]["FORWARDED_ALLOW_IPS"] in subnets
    assert auth["environment"]["FORWARDED_ALLOW_IPS"] != "*"
    assert compose["services"]["nginx"]["networks"] == auth["networks"] == ["relay-net"]


def test_nginx_gets_exactly_the_templates_variables(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    template = NGINX_TEMPLATE.read_text()
    variables = template_variables(template)
    assert variables == {"LB_LISTEN", "LB_RESOLVER", "AUTH_UPSTREAM", "RELAY_UPSTREAM"}
    assert variables <= set(nginx["environment"])
    assert nginx["environment"]["LB_RESOLVER"] == "127.0.0.11", "Docker's embedded DNS"
    assert nginx["environment"]["RELAY_UPSTREAM"] == "relay:8001"
    assert nginx["environment"]["AUTH_UPSTREAM"] == "auth:8000"
    (mount,) = nginx["volumes"]
    source, target, mode = mount.split(":")
    assert (ROOT / source).resolve() == NGINX_TEMPLATE
    assert target == "/etc/nginx/templates/nginx.conf.template"
    assert mode == "ro"
    # The image renders templates into this directory: the file becomes the whole config.
    assert nginx["environment"]["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    listen = nginx["environment"]["LB_LISTEN"]
    assert any(port.endswith(f":{listen}") for port in nginx["ports"])


def nginx_directive(config: str, name: str) -> str:
    (value,) = re.findall(rf"^\s*{name} ([^;]+);", config, re.MULTILINE)
    return str(value)


def test_nginx_image_supports_resolve_in_upstreams(compose: dict[str, Any]) -> None:
    """`resolve` on an upstream server is in open-source nginx from 1.27.3 on."""
    image = compose["services"]["nginx"]["image"]
    match = re.fullmatch(r"nginx:(\d+)\.(\d+)(?:\.(\d+))?-alpine(@sha256:[0-9a-f]{64})?", image)
    assert match, image
    # A series tag (1.28) counts as its first release (1.28.0).
    assert (int(match[1]), int(match[2]), int(match[3] or 0)) >= RESOLVE_SINCE, image


def test_nginx_holds_tens_of_thousands_of_websockets(compose: dict[str, Any]) -> None:
    """Two descriptors per proxied WebSocket, all within the workers' and container's limit."""
    config = NGINX_TEMPLATE.read_text()
    connections = int(nginx_directive(config, "worker_connections"))
    open_files = int(nginx_directive(config, "worker_rlimit_nofile"))
    assert connections // 2 >= 10_000, "sessions per worker"
    assert open_files >= connections
    nginx = compose["services"]["nginx"]
    assert nginx["ulimits"]["nofile"] == {"soft": open_files, "hard": open_files}
    relay = compose["services"]["relay"]
    assert relay["ulimits"]["nofile"]["hard"] >= 2 * MIN_RELAY_SESSIONS
    shutdown = duration_seconds(nginx_directive(config, "worker_shutdown_timeout"))
    assert duration_seconds(nginx["stop_grace_period"]) > shutdown


def test_nginx_balances_relays_by_least_connections_and_limits_logins() -> None:
    config = NGINX_TEMPLATE.read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{\n(.*?)\n    \}", config, re.S))
    assert set(upstreams) == {"relay", "auth"}
    for name, body in upstreams.items():
        assert re.search(rf"^\s*zone {name} \w+;", body, re.M), name
        assert "least_conn;" in body, name
        assert re.search(r"^\s*server \$\{\w+\} resolve;", body, re.M), name
    assert "resolver ${LB_RESOLVER}" in config
    login = re.search(r"location = /auth/token \{(?P<body>[^}]*)\}", config)
    assert login is not None
    assert re.search(r"limit_req zone=logins burst=\d+ nodelay;", login["body"])
    assert "limit_req_status 429;" in config
    assert not re.search(r"^\s*(user|pid|include) ", config, re.M), "left to the image"


def test_websocket_timeouts_outlast_the_heartbeat() -> None:
    template = NGINX_TEMPLATE.read_text()
    block = re.search(r"location = /ws \{(?P<body>[^}]*)\}", template)
    assert block is not None
    body = block["body"]
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        match = re.search(rf"{directive} (\d+)s;", body)
        assert match, directive
        assert int(match[1]) > 2 * HEARTBEAT_INTERVAL_MS / 1000, directive
    for header in ("Upgrade $http_upgrade", "Connection $connection_upgrade"):
        assert f"proxy_set_header {header};" in template
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in template


def test_the_compose_rendering_passes_nginx_t(compose: dict[str, Any], tmp_path: Path) -> None:
    """`nginx -t` on the config rendered with the compose file's own values."""
    nginx = require_nginx()
    environment = compose["services"]["nginx"]["environment"]
    rendered = render_template(NGINX_TEMPLATE.read_text(), environment)
    (tmp_path / "temp").mkdir()
    # Docker's names, answered by the test DNS for an nginx without `resolve`.
    names = {"relay": ["127.0.0.1", "127.0.0.2"], "auth": ["127.0.0.1"]}
    config = tmp_path / "nginx.conf"
    config.write_text(for_this_machine(rendered, nginx, tmp_path / "temp", names))
    result = subprocess.run(
        nginx_command(nginx, tmp_path, config, test=True),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


SENTINEL_SERVICES = ("redis-replica", "redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")


def sentinel_url_from_env_example() -> str:
    """The COMPOSE_REDIS_URL .env.example gives for the sentinel profile."""
    text = (ROOT / ".env.example").read_text()
    match = re.search(r"COMPOSE_REDIS_URL=(redis\+sentinel://\S+)", text)
    assert match, ".env.example gives no Sentinel URL for the sentinel profile"
    return match[1]


def test_the_sentinel_profile_is_opt_in(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SENTINEL_SERVICES:
        assert services[name]["profiles"] == ["sentinel"], name
    assert "--replicaof" in services["redis-replica"]["command"]
    assert "profiles" not in services["redis"]


def test_the_sentinel_url_names_the_profiles_sentinels_and_master(compose: dict[str, Any]) -> None:
    target = parse_redis_url(sentinel_url_from_env_example())
    sentinels = [name for name in SENTINEL_SERVICES if name.startswith("redis-sentinel")]
    assert target.nodes == tuple((name, 26379) for name in sentinels)
    for name in sentinels:
        script = compose["services"][name]["command"][-1]
        assert f"sentinel monitor {target.master} redis 6379 2" in script


def test_the_services_accept_the_sentinel_url(
    compose: dict[str, Any], secret_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ALL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    url = sentinel_url_from_env_example()
    services = interpolate_tree(compose, {**dotenv(**REQUIRED), "COMPOSE_REDIS_URL": url})
    for name, settings_class in (("auth", AuthSettings), ("relay", RelaySettings)):
        environment = services["services"][name]["environment"]
        assert _settings_from(environment, settings_class, secret_files).redis_url == url
