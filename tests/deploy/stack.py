"""The deployment's pieces as local processes: auth service, relay replicas, nginx, DNS.

`Stack` starts what docker compose starts, with the same console scripts and the same
load balancer configuration, on loopback addresses: the auth service on 127.0.0.1, relay
replica A on 127.0.0.1 and replica B on 127.0.0.2 (same port, as containers share one),
a DNS server answering `relay.test` with both addresses and `auth.test` with the auth
service's (Docker's embedded DNS does the same for a scaled service), and nginx running
`deploy/nginx/nginx.conf.template` rendered with envsubst's semantics. Every process is
killed on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import string
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import AuthProcess, RelayProcess, ServiceProcess, service_env

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.template"
JWT_SECRET = "deploy-test-secret-0123456789abcdefghijklmnop"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin-password-for-tests"
RELAY_NAME = "relay.test"
AUTH_NAME = "auth.test"
RESOLVE_SINCE = (1, 27, 3)
"""The first open-source nginx with `resolve` on upstream servers."""
START_TIMEOUT = 30.0
UNPRIVILEGED_USER = "nobody"

_TEMPLATE_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def require_nginx() -> str:
    """The nginx binary, or skip (fail under CI) with the reason."""
    found = shutil.which("nginx") or next(
        (str(p) for p in (Path("/usr/sbin/nginx"), Path("/usr/local/sbin/nginx")) if p.exists()),
        None,
    )
    if found is None:
        message = (
            "nginx is not installed (apt-get install nginx-light): "
            "the load balancer's configuration cannot be run"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so this fails instead of skipping)")
        pytest.skip(message)
    return found


def render_template(template: str, values: Mapping[str, str]) -> str:
    """What the nginx image's envsubst does: replace the given variables, leave nginx's own.

    The image passes envsubst only the names defined in its environment, so `$host` and
    friends survive; `string.Template.safe_substitute` with just our names does the same.
    """
    missing = set(_TEMPLATE_VARIABLE.findall(template)) - set(values)
    if missing:
        raise KeyError(f"template variables without a value: {sorted(missing)}")
    return string.Template(template).safe_substitute(values)


def template_variables(template: str) -> set[str]:
    return set(_TEMPLATE_VARIABLE.findall(template))


def free_port(*hosts: str) -> int:
    """A TCP port free on every one of `hosts` at once."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port: int = probe.getsockname()[1]
        if all(_bindable(host, port) for host in hosts):
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


class StaticDNS:
    """A DNS server on 127.0.0.1 answering A queries from a fixed table (TTL 5 s)."""

    def __init__(self, records: Mapping[str, list[str]]) -> None:
        self.records = {name.lower(): addresses for name, addresses in records.items()}
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="static-dns", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self._socket.recvfrom(512)
            except TimeoutError:
                continue
            with contextlib.suppress(ValueError, IndexError, struct.error):
                self._socket.sendto(self.answer(query), peer)

    def answer(self, query: bytes) -> bytes:
        ident, _flags, questions = struct.unpack("!HHH", query[:6])
        if questions != 1:
            raise ValueError("one question per query")
        position, labels = 12, []
        while query[position]:
            length = query[position]
            labels.append(query[position + 1 : position + 1 + length].decode("ascii"))
            position += 1 + length
        position += 1
        qtype, _qclass = struct.unpack("!HH", query[position : position + 4])
        question = query[12 : position + 4]
        addresses = self.records.get(".".join(labels).lower())
        rcode = 3 if addresses is None else 0  # NXDOMAIN for a name we do not know
        answers = addresses if addresses and qtype == 1 else []
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(answers), 0, 0)
        records = b"".join(
            struct.pack("!HHHLH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(address)
            for address in answers
        )
        return header + question + records


@dataclass
class Service:
    """A child process that may drop root (nginx here), with its output in a log file."""

    name: str
    command: list[str]
    env: dict[str, str]
    workdir: Path
    ready_url: str | None = None
    user: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        self.log_path.touch()
        if self.user is not None:  # the child reopens /dev/stdout, so it must own the file
            entry = pwd.getpwnam(self.user)
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
                group=None if self.user is None else pwd.getpwnam(self.user).pw_gid,
                extra_groups=None if self.user is None else [],
                start_new_session=True,  # its own process group: the workers stop with it
            )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.process is not None
        assert self.ready_url is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.ready_url, timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: {self.ready_url} not ready in {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        """Stop the whole process group: nginx's workers outlive a SIGKILLed master."""
        if self.process is None:
            return
        group = self.process.pid  # the leader of its own session and group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


class Replica(RelayProcess):
    """A relay replica on a loopback address of its own and a port shared with the others,
    as replicas in containers share one port on different addresses."""

    def __init__(self, workdir: Path, *, name: str, host: str, port: int, **settings: str) -> None:
        super().__init__(
            workdir,
            jwt_secret=JWT_SECRET,
            name=name,
            redis_url=settings.pop("REDIS_URL"),
            redis_prefix=settings.pop("REDIS_PREFIX"),
            settings={**settings, "HOST": host, "PORT": str(port)},
        )
        self.host = host
        self.port = port

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connections(self) -> int:
        """Identified sessions on this replica: the sum of its `relay_connections` gauge."""
        response = httpx.get(f"{self.http_url}/metrics", timeout=5)
        response.raise_for_status()
        return round(
            sum(
                sample.value
                for family in text_string_to_metric_families(response.text)
                if family.name == "relay_connections"
                for sample in family.samples
            )
        )


class Stack:
    """Redis-backed auth service and two relay replicas behind nginx, all on loopback."""

    def __init__(
        self,
        nginx: str,
        redis_url: str,
        redis_prefix: str,
        auth_settings: Mapping[str, str] | None = None,
        *,
        relay_hosts: tuple[str, ...] = ("127.0.0.1", "127.0.0.2"),
        relay_settings: Mapping[str, str] | None = None,
        relay_open_files: int | None = None,
    ) -> None:
        self.nginx_binary = nginx
        self.workdir = Path(tempfile.mkdtemp(prefix="factory-relay-deploy-"))
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.auth_settings = dict(auth_settings or {})
        self.relay_hosts = relay_hosts
        self.relay_settings = {
            "RATE_LIMIT_PER_SECOND": "10000",
            "RATE_LIMIT_BURST": "10000",
            **(relay_settings or {}),
        }
        self.relay_open_files = relay_open_files
        self.dns = StaticDNS({RELAY_NAME: list(relay_hosts), AUTH_NAME: ["127.0.0.1"]})
        self.processes: list[ServiceProcess] = []
        self.relays: list[Replica] = []
        self.auth: AuthProcess | None = None
        self.balancer: Service | None = None
        self.lb_port = free_port("127.0.0.1")

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.lb_port}/ws"

    @property
    def auth_port(self) -> int:
        assert self.auth is not None
        return self.auth.port

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        self.dns.start()
        redis = {"REDIS_URL": self.redis_url, "REDIS_PREFIX": self.redis_prefix}
        self.auth = AuthProcess(
            self.workdir / "auth",
            jwt_secret=JWT_SECRET,
            admin=(ADMIN_USERNAME, ADMIN_PASSWORD),
            settings={**redis, "FORWARDED_ALLOW_IPS": "127.0.0.1", **self.auth_settings},
        )
        self.processes.append(self.auth)
        relay_port = free_port(*self.relay_hosts)
        for index, host in enumerate(self.relay_hosts):
            replica = Replica(
                self.workdir / f"relay-{'abcdefgh'[index]}",
                name=f"relay-{'abcdefgh'[index]}",
                host=host,
                port=relay_port,
                **self.relay_settings,
                **redis,
            )
            if self.relay_open_files is not None:  # a container runtime's low soft limit
                replica.command = with_soft_open_files(replica.command, self.relay_open_files)
            self.relays.append(replica)
            self.processes.append(replica)
        for process in self.processes:
            process.start(wait=False)
        for process in self.processes:
            process.wait_ready()
        self.balancer = self._nginx(relay_port)
        self.balancer.start()
        self.balancer.wait_ready()

    def nginx_config(self, relay_port: int) -> str:
        """The shipped nginx.conf rendered for loopback, fitted to this machine's nginx."""
        rendered = render_template(
            TEMPLATE.read_text(),
            {
                "LB_LISTEN": f"127.0.0.1:{self.lb_port}",
                "LB_RESOLVER": f"127.0.0.1:{self.dns.port}",
                "AUTH_UPSTREAM": f"{AUTH_NAME}:{self.auth_port}",
                "RELAY_UPSTREAM": f"{RELAY_NAME}:{relay_port}",
            },
        )
        return for_this_machine(
            rendered, self.nginx_binary, self.workdir / "temp", self.dns.records
        )

    def _nginx(self, relay_port: int) -> Service:
        config = self.workdir / "nginx.conf"
        config.write_text(self.nginx_config(relay_port))
        (self.workdir / "temp").mkdir()
        user = None
        if os.geteuid() == 0:  # never run the balancer as root, not even in CI
            user = UNPRIVILEGED_USER
            entry = pwd.getpwnam(user)
            for path in (self.workdir, *self.workdir.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return Service(
            "nginx",
            nginx_command(self.nginx_binary, self.workdir, config),
            service_env({}),
            self.workdir,
            ready_url=f"{self.lb_url}/lb/healthz",
            user=user,
        )

    def close(self) -> None:
        if self.balancer is not None:
            with contextlib.suppress(Exception):
                self.balancer.kill()
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.kill()
        with contextlib.suppress(Exception):
            self.dns.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def with_soft_open_files(command: list[str], soft: int) -> list[str]:
    """`command` started with a soft open-file limit of `soft` (the hard one unchanged)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return ["prlimit", f"--nofile={soft}:{hard}", "--", *command]


def nginx_version(nginx: str) -> tuple[int, ...]:
    banner = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=True).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", banner)
    assert match, banner
    return tuple(int(part) for part in match.groups())


_RESOLVED_SERVER = re.compile(
    r"^(?P<indent>\s*)server (?P<name>[^\s:]+):(?P<port>\d+) resolve;$", re.M
)


def for_this_machine(config: str, nginx: str, temp: Path, records: Mapping[str, list[str]]) -> str:
    """The rendered config, with only what this machine needs changed.

    - Temporary files go under `temp` (the image's compiled-in paths are not writable here).
    - An nginx older than 1.27.3 has no `resolve` on upstream servers: each such server
      line becomes one line per address `records` (the test DNS) gives for its name,
      which is what `resolve` would make of it. A newer nginx runs the config unchanged.
    """
    temp_paths = "".join(
        f"    {directive} {temp / name};\n" for directive, name in nginx_temp_directives(nginx)
    )
    config = config.replace("\nhttp {\n", f"\nhttp {{\n{temp_paths}", 1)
    if nginx_version(nginx) >= RESOLVE_SINCE:
        return config

    def static(match: re.Match[str]) -> str:
        addresses = records[match["name"].lower()]
        return "\n".join(
            f"{match['indent']}server {address}:{match['port']};" for address in addresses
        )

    return _RESOLVED_SERVER.sub(static, config)


def nginx_command(nginx: str, workdir: Path, config: Path, *, test: bool = False) -> list[str]:
    """nginx in the foreground with its pid file and error log under `workdir`."""
    return [
        nginx,
        *(["-t"] if test else []),
        "-p",
        str(workdir),
        "-c",
        str(config),
        "-e",
        str(workdir / "nginx-error.log"),
        "-g",
        f"daemon off; master_process on; pid {workdir / 'nginx.pid'}; "
        f"error_log {workdir / 'nginx-error.log'} notice;",
    ]


def nginx_temp_directives(nginx: str) -> list[tuple[str, str]]:
    """The temp path directives of the modules this nginx has (each would default to /var)."""
    configure = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=True).stderr
    directives = [("client_body_temp_path", "body"), ("proxy_temp_path", "proxy")]
    for module in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in configure:
            directives.append((f"{module}_temp_path", module))
    return directives
