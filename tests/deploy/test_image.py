"""The Dockerfile, .dockerignore and what the image installs, checked without Docker.

The image cannot be built here, so its parts are: the instructions (stages, user,
healthcheck, command, dependency layer), the build context the ignore file lets through,
the wheel built from exactly the files the Dockerfile copies, and the healthcheck script.
"""

from __future__ import annotations

import fnmatch
import http.server
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from configparser import ConfigParser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from auth_service.cli import parser as auth_cli
from tests.deploy.files import DOCKERFILE, DOCKERIGNORE, ROOT, SERVICE_COMMANDS, console_scripts
from tests.deploy.stack import free_port

HEALTHCHECK_SCRIPT = ROOT / "deploy" / "docker" / "healthcheck.py"
RUNTIME_LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    parsed = []
    for line in lines:
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def copy_sources() -> list[str]:
    """What the Dockerfile copies from the build context (not from other stages)."""
    sources = []
    for keyword, arguments in instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *paths, _destination = arguments.split()
            sources.extend(paths)
    return sources


def test_multi_stage_on_slim_python_311() -> None:
    arguments = dict(
        arguments.split("=", 1)
        for keyword, arguments in instructions()
        if keyword == "ARG" and "=" in arguments
    )
    all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m[1]], image)
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), (
            image
        )
    runtime = all_stages[-1]
    assert any(k == "COPY" and a.startswith("--from=build") for k, a in runtime)


def test_runtime_stage_runs_unprivileged_with_a_healthcheck() -> None:
    runtime = stages()[-1]
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users, "the runtime stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    (healthcheck,) = [arguments for keyword, arguments in runtime if keyword == "HEALTHCHECK"]
    assert '"python", "/opt/healthcheck.py"' in healthcheck
    assert "COPY deploy/docker/healthcheck.py /opt/healthcheck.py" in {
        f"{keyword} {arguments}" for keyword, arguments in runtime
    }
    environment = " ".join(arguments for keyword, arguments in runtime if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in environment


def test_default_command_is_a_console_script() -> None:
    (command,) = [arguments for keyword, arguments in stages()[-1] if keyword == "CMD"]
    words = tuple(re.findall(r'"([^"]+)"', command))
    assert words in SERVICE_COMMANDS
    assert words[0] in console_scripts()
    subcommands = {
        name
        for action in auth_cli()._subparsers._group_actions  # type: ignore[union-attr]
        for name in getattr(action, "choices", {})
    }
    assert {"serve", "migrate"} <= subcommands


def test_dependencies_install_from_the_lock_before_the_source_is_copied() -> None:
    build = stages()[0]
    install = next(i for i, (k, a) in enumerate(build) if k == "RUN" and "--requirement" in a)
    copied_before = [a for k, a in build[:install] if k == "COPY"]
    assert copied_before == [f"{RUNTIME_LOCK.name} {BUILD_LOCK.name} ./"], (
        "only the lock files decide that layer"
    )
    command = build[install][1]
    assert command.count("--require-hashes") == 2
    assert f"--requirement {RUNTIME_LOCK.name}" in command
    assert f"--requirement {BUILD_LOCK.name}" in command
    assert "pyproject.toml" not in command
    later = " ".join(a for k, a in build[install + 1 :] if k == "RUN")
    assert "pip wheel --no-deps --no-build-isolation" in later, "the locked hatchling builds"
    assert "install --no-deps /wheels/" in later


def lock_pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        pinned = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
        if pinned:
            name = canonicalize_name(pinned[1])
            pins[name] = (pinned[2], [])
        hashed = re.search(r"--hash=sha256:([0-9a-f]{64})", line)
        if hashed:
            pins[name][1].append(hashed[1])
    return pins


def runtime_closure() -> set[str]:
    """The project's runtime dependencies and theirs, with extras, as installed here."""
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        pending = [Requirement(r) for r in tomllib.load(pyproject)["project"]["dependencies"]]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
        for declared in metadata.requires(requirement.name) or []:
            child = Requirement(declared)
            if child.marker is None or any(child.marker.evaluate(e) for e in environments):
                pending.append(child)
    return {key.split("[")[0] for key in seen}


def test_lock_file_pins_every_runtime_dependency_with_hashes() -> None:
    pins = lock_pins(RUNTIME_LOCK)
    missing = runtime_closure() - set(pins)
    assert not missing, f"{RUNTIME_LOCK.name} lacks {sorted(missing)}: run pip-compile again"
    for name, (_version, hashes) in pins.items():
        assert hashes, f"{name} has no hash"
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        declared = tomllib.load(pyproject)["project"]["dependencies"]
    for requirement in map(Requirement, declared):
        version, _ = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
    assert "hatchling" in lock_pins(BUILD_LOCK)
    assert all(hashes for _, hashes in lock_pins(BUILD_LOCK).values())


def test_no_secret_is_baked_in() -> None:
    for keyword, arguments in instructions():
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL", arguments), (
                arguments
            )


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes; parents match too."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.removeprefix("!").rstrip("/")
        bare = bare.removeprefix("**/")
        if any(
            fnmatch.fnmatch(candidate, bare) or fnmatch.fnmatch(candidate.split("/")[-1], bare)
            for candidate in candidates
        ):
            result = not negated
    return result


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_build_context_holds_what_is_copied_and_no_secrets() -> None:
    patterns = dockerignore_patterns()
    for source in copy_sources():
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), f"{source} is copied but .dockerignore drops it"
    for secret_or_noise in (".env", ".venv", "tests", ".git", "factory-relay.db", "bench"):
        assert ignored(secret_or_noise, patterns), secret_or_noise
    assert ignored("shared/__pycache__", patterns)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the Dockerfile builds, from exactly the files it copies."""
    context = tmp_path_factory.mktemp("context")
    patterns = dockerignore_patterns()
    for source in copy_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin,
                context / source,
                ignore=lambda folder, names: [
                    name
                    for name in names
                    if ignored(str((Path(folder) / name).relative_to(ROOT)), patterns)
                ],
            )
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, context / source)
    out = tmp_path_factory.mktemp("wheels")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("*.whl")
    return built


def test_wheel_installs_the_console_scripts_and_the_migrations(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parsed = ConfigParser()
        parsed.read_string(archive.read(entry_points).decode())
    assert dict(parsed["console_scripts"]) == console_scripts()
    assert "auth_service/migrations/env.py" in names
    assert any(re.match(r"auth_service/migrations/versions/.+\.py$", n) for n in names)
    assert not [n for n in names if n.startswith(("tests/", "bench/")) or n.endswith(".env")]


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(port: int) -> int:
    result = subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT)],
        env={"PORT": str(port)},
        capture_output=True,
        timeout=30,
    )
    return result.returncode


def test_healthcheck_script_reports_the_service_state(health_server: int) -> None:
    assert run_healthcheck(health_server) == 0
    assert run_healthcheck(free_port("127.0.0.1")) == 1
