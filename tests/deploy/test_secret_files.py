"""Secrets read from files (`NAME_FILE`), as compose `secrets:` and Kubernetes Secret
volumes hand them over: real processes, with the secrets only in files."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.sync.client import connect

from shared.protocol import Op
from tests.processes import ServiceProcess, console_script, run_to_exit

JWT_SECRET = "secret-from-a-file-0123456789abcdefghijklmnop"
LIVEKIT_SECRET = "livekit-secret-from-a-file-0123456789"
ADMIN = ("admin", "admin-password-for-tests")
FACTORY = ("factory-1", "factory-password-1")
RECV_TIMEOUT = 5


def secret_file(folder: Path, name: str, content: str) -> Path:
    """As a mounted secret: one file per value, a trailing newline as `echo` writes it."""
    path = folder / name
    path.write_text(content + "\n")
    path.chmod(0o400)
    return path


@pytest.fixture
def secrets(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "run-secrets"
    folder.mkdir()
    database = f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}"
    return {
        "JWT_SECRET_FILE": str(secret_file(folder, "jwt_secret", JWT_SECRET)),
        "DATABASE_URL_FILE": str(secret_file(folder, "database_url", database)),
        "LIVEKIT_API_SECRET_FILE": str(secret_file(folder, "livekit_api_secret", LIVEKIT_SECRET)),
    }


def auth_process(workdir: Path, secrets: dict[str, str]) -> ServiceProcess:
    settings = {
        **secrets,
        "LIVEKIT_URL": "ws://127.0.0.1:7880",
        "LIVEKIT_API_KEY": "key-1",
        "FIRST_ADMIN_USERNAME": ADMIN[0],
        "FIRST_ADMIN_PASSWORD": ADMIN[1],
    }
    return ServiceProcess(
        [console_script("auth-service"), "serve"], workdir, name="auth", settings=settings
    )


def login(client: httpx.Client, username: str, password: str) -> str:
    response = client.post("/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_services_started_with_their_secrets_only_in_files_work(
    tmp_path: Path, secrets: dict[str, str]
) -> None:
    auth = auth_process(tmp_path / "auth", secrets)
    relay = ServiceProcess(
        [console_script("relay-service")],
        tmp_path / "relay",
        name="relay",
        settings={"JWT_SECRET_FILE": secrets["JWT_SECRET_FILE"]},
    )
    try:
        auth.start()
        relay.start()
        with httpx.Client(base_url=auth.http_url, timeout=10) as client:
            admin = login(client, *ADMIN)
            created = client.post(
                "/users",
                json={"username": FACTORY[0], "password": FACTORY[1], "type": "factory"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert created.status_code == 201, created.text
            factory = login(client, *FACTORY)
            livekit = client.get("/livekit/token", headers={"Authorization": f"Bearer {factory}"})
            assert livekit.status_code == 200, livekit.text
        # The auth service signs with the file's secrets...
        jwt.decode(admin, JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False})
        grant = jwt.decode(
            livekit.json()["token"],
            LIVEKIT_SECRET,
            algorithms=["HS256"],
            options={"verify_aud": False},
        )
        assert grant["sub"] == FACTORY[0]
        # ...and the relay verifies with the same file's.
        with connect(f"ws://127.0.0.1:{relay.port}/ws", open_timeout=5) as ws:
            assert json.loads(ws.recv(RECV_TIMEOUT))["op"] == Op.HELLO
            ws.send(json.dumps({"op": Op.IDENTIFY, "d": {"token": factory}}))
            ready = json.loads(ws.recv(RECV_TIMEOUT))
            assert (ready["op"], ready.get("t")) == (Op.EVENT, "READY"), ready
    finally:
        relay.kill()
        auth.kill()
    for process in (auth, relay):
        assert JWT_SECRET not in process.logs(lines=10_000)
        assert LIVEKIT_SECRET not in process.logs(lines=10_000)


@pytest.mark.parametrize(
    ("command", "setting"),
    [
        (["auth-service", "serve"], "JWT_SECRET_FILE"),
        (["auth-service", "serve"], "DATABASE_URL_FILE"),
        (["auth-service", "serve"], "LIVEKIT_API_SECRET_FILE"),
        (["auth-service", "migrate"], "DATABASE_URL_FILE"),
        (["relay-service"], "JWT_SECRET_FILE"),
    ],
)
def test_a_missing_secret_file_stops_the_service_with_one_line(
    tmp_path: Path, secrets: dict[str, str], command: list[str], setting: str
) -> None:
    missing = tmp_path / "run-secrets" / "not-mounted"
    settings = dict(secrets)
    settings[setting] = str(missing)
    result = run_to_exit([console_script(command[0]), *command[1:]], tmp_path, settings)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert (
        line
        == f"error: invalid setting {setting}: cannot read {missing}: No such file or directory"
    )


def test_a_secret_set_both_ways_is_refused(tmp_path: Path, secrets: dict[str, str]) -> None:
    settings = {"JWT_SECRET_FILE": secrets["JWT_SECRET_FILE"], "JWT_SECRET": JWT_SECRET}
    result = run_to_exit([console_script("relay-service")], tmp_path, settings)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line == "error: invalid setting JWT_SECRET, JWT_SECRET_FILE: set one or the other"
    assert JWT_SECRET not in result.stderr


def test_migrate_needs_only_the_database(tmp_path: Path, secrets: dict[str, str]) -> None:
    """The migration job mounts the database URL and no signing key, even under EdDSA."""
    settings = {
        "DATABASE_URL_FILE": secrets["DATABASE_URL_FILE"],
        "JWT_ALGORITHM": "EdDSA",  # from the shared ConfigMap; its key is not mounted
    }
    result = run_to_exit([console_script("auth-service"), "migrate"], tmp_path, settings)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "auth.db").exists()
