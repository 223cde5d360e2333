"""Real servers for tests: an S3-compatible object store (moto), a throwaway PostgreSQL, an MLflow tracking
server on both, and a multi-node Ray cluster with token authentication, all on this machine.

    with s3_server() as s3, postgres_server() as pg, mlflow_server(pg.create_database("m"), s3) as ml:
        MlflowClient(ml.uri).create_experiment("e")

The same servers as pytest fixtures (``tests/conftest.py`` imports them for the whole suite):
``s3_service`` and ``postgres_service`` (one per session), ``mlflow_service`` (a fresh server and database
per test) and ``ray_multinode`` (a fresh head + one worker per test).

Every server runs as the leader of its own session, and teardown signals every process of that session
(found in /proc, so Linux only): it reaches what the server forks (uvicorn under ``mlflow server``;
gcs_server, raylet and the ``ray::`` workers under ``ray start``) and nothing else, so Ray instances and
servers of other tests on this machine survive. Ports come from binding port 0; state lives in short temp
dirs under /tmp (unix socket paths must stay under 108 bytes).

Module-level imports are the standard library and pytest only: conftest imports this module in every run,
and boto3, pyarrow and Ray load when a server is first used.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = [
    "MlflowServer",
    "PostgresServer",
    "RayCluster",
    "RayNode",
    "S3Server",
    "free_port",
    "mlflow_server",
    "mlflow_service",
    "postgres_bindir",
    "postgres_server",
    "postgres_service",
    "ray_cluster",
    "ray_multinode",
    "s3_server",
    "s3_service",
]

_HOST = "127.0.0.1"
POSTGRES_MISSING = "needs PostgreSQL 15: apt-get install postgresql"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (the kernel's pick for port 0)."""
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((_HOST, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _session_members(sid: int) -> list[int]:
    """The live processes of session ``sid``, from /proc (Linux); zombies are left out, being dead already."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:  # after the ")" that ends the command name: state, ppid, pgrp, session, …
            state, _, _, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
        except OSError:  # exited meanwhile
            continue
        if int(session) == sid and state != "Z":
            members.append(int(entry.name))
    return members


@dataclass
class _Session:
    """A server process started as the leader of a new session: everything it starts stays in that session."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def spawn(cls, args: list[str], log: Path, env: dict[str, str] | None = None) -> _Session:
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
        return cls(proc, log)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def members(self) -> list[int]:
        """The leader and every live process it started (unless one called setsid itself)."""
        return _session_members(self.proc.pid)

    def _signal(self, sig: signal.Signals) -> bool:
        pids = self.members()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return bool(pids)

    def stop(self, grace: float) -> None:
        """SIGTERM the session and give the leader ``grace`` seconds, then SIGKILL whatever of it is left
        (``grace=0``: SIGKILL at once, like a machine that died). By session, not process group: Ray's
        worker processes (``ray::…``) move to process groups of their own, so a ``killpg`` of ``ray start``
        would leave a removed node's tasks running as orphans."""
        if grace > 0 and self.alive:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        deadline = time.monotonic() + 30.0
        while self._signal(signal.SIGKILL) and time.monotonic() < deadline:
            time.sleep(0.05)  # again: a member may have forked between the scan and the kill
        self.proc.wait()


def _wait_until(ready: Callable[[], bool], *, what: str, timeout: float, session: _Session | None = None) -> float:
    """Poll ``ready`` until it holds; fail early, with the log, if ``session`` dies first. Returns seconds waited."""
    start = time.monotonic()
    while not ready():
        if session is not None and not session.alive:
            raise RuntimeError(f"{what}: the process exited with {session.proc.returncode}; "
                               f"log {session.log}:\n{_tail(session.log)}")
        if time.monotonic() - start > timeout:
            log = f"; log {session.log}:\n{_tail(session.log)}" if session is not None else ""
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s{log}")
        time.sleep(0.2)
    return time.monotonic() - start


# --------------------------------------------------------------------------------------------- S3 (moto)


@dataclass
class S3Server:
    """A moto S3 server on 127.0.0.1 with one bucket; any key/secret is accepted, these are the customary ones."""

    port: int
    bucket: str
    session: _Session
    access_key: str = "test"
    secret_key: str = "test"
    region: str = "us-east-1"

    @property
    def endpoint(self) -> str:
        """For boto3 and ``MLFLOW_S3_ENDPOINT_URL``: ``http://127.0.0.1:PORT``."""
        return f"http://{_HOST}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this server as S3: boto3 (hence MLflow's S3 artifact store) reads these."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def url(self, key: str = "") -> str:
        """``s3://BUCKET/KEY``."""
        return f"s3://{self.bucket}/{key}"

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)

    def filesystem(self) -> pyarrow.fs.S3FileSystem:
        """A pyarrow filesystem on this server, e.g. for ``tune.RunConfig(storage_filesystem=…)``; paths on it
        are ``BUCKET/KEY``, without ``s3://``."""
        from pyarrow.fs import S3FileSystem

        return S3FileSystem(endpoint_override=f"{_HOST}:{self.port}", scheme="http", access_key=self.access_key,
                            secret_key=self.secret_key, region=self.region)

    def keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@contextlib.contextmanager
def s3_server(bucket: str = "ablate-test", timeout: float = 60.0) -> Iterator[S3Server]:
    """``moto_server`` (from ``moto[server]``) on a free port, with ``bucket`` created; killed on exit."""
    root = Path(tempfile.mkdtemp(prefix="s3-"))
    port = free_port()
    session = _Session.spawn([sys.executable, "-m", "moto.server", "-H", _HOST, "-p", str(port)], root / "moto.log")
    try:
        server = S3Server(port, bucket, session)
        _wait_until(lambda: _http_ok(server.endpoint), what="moto S3 server", timeout=timeout, session=session)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        session.stop(grace=5.0)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> Path | None:
    """The folder with initdb/pg_ctl: Debian's /usr/lib/postgresql/VERSION/bin (newest first), else PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _missing(reason: str) -> NoReturn:
    """Skip when a system server is absent; fail under CI, where .ci/run installs it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster that listens only on a unix socket in ``root`` (no TCP at all)."""

    bindir: Path
    root: Path
    port: int
    user: str = "postgres"  # the superuser initdb creates; also the OS user the server runs as under root

    @property
    def socket_dir(self) -> Path:
        return self.root

    def uri(self, database: str) -> str:
        """The SQLAlchemy URI MLflow accepts: ``postgresql+psycopg`` names psycopg 3, the driver MLflow 3.17 /
        SQLAlchemy 2.1 load (a bare ``postgresql://`` resolves to it too); the socket folder goes in ``host``."""
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"

    def _run(self, *args: str) -> None:
        # Postgres refuses to run as root: under root every tool runs as the postgres OS user.
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # A session of its own: the postmaster pg_ctl forks stays out of the terminal's signals (Ctrl-C).
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                                start_new_session=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               f"\nserver log:\n{_tail(self.root / 'postgres.log')}")

    def start(self) -> None:
        # fsync off: a throwaway cluster has nothing to protect, and syncs are slow on a shared disk.
        options = f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c fsync=off"
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "postgres.log"), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URI."""
        self._run("createdb", "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user, name)
        return self.uri(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a temp dir (trust auth, superuser ``postgres``); stopped and removed on exit.

    Skips with ``POSTGRES_MISSING`` when the binaries are absent, or fails if ``CI`` is set."""
    bindir = postgres_bindir()
    if bindir is None:
        _missing(POSTGRES_MISSING)
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            _missing(f"{POSTGRES_MISSING} (running as root needs its postgres user)")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(bindir, root, free_port())
    try:
        server._run("initdb", "-D", str(root / "data"), "-A", "trust", "-U", server.user, "-E", "UTF8", "--no-sync")
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------- MLflow


@dataclass
class MlflowServer:
    """``mlflow server`` on 127.0.0.1, artifacts proxied to S3; ``stop()``/``start()`` take it down and bring it
    back on the same port (same backend store, so the data survives)."""

    backend_uri: str
    artifacts_destination: str
    port: int
    env: dict[str, str]
    root: Path
    session: _Session | None = None

    @property
    def uri(self) -> str:
        """The tracking URI: ``http://127.0.0.1:PORT``."""
        return f"http://{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.session is not None and self.session.alive

    def start(self, timeout: float = 180.0) -> float:
        """Start the server and wait for ``GET /health`` to answer 200; returns the seconds that took."""
        if self.running:
            raise RuntimeError(f"mlflow server on port {self.port} is already running")
        args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
                "--artifacts-destination", self.artifacts_destination, "--host", _HOST, "--port", str(self.port),
                "--workers", "1"]
        self.session = _Session.spawn(args, self.root / "mlflow.log", self.env)
        return _wait_until(lambda: _http_ok(f"{self.uri}/health"), what="mlflow server", timeout=timeout,
                           session=self.session)

    def stop(self, grace: float = 0.0) -> None:
        """Take the server down, by default with SIGKILL like a crash (~0.1 s); ``grace`` > 0 sends SIGTERM first
        and waits up to that long (uvicorn's graceful shutdown takes ~5 s). Returns once the port refuses
        connections."""
        if self.session is not None:
            self.session.stop(grace)
        _wait_until(lambda: not _port_open(self.port), what=f"port {self.port} to close", timeout=30.0)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, s3: S3Server, artifacts_prefix: str = "mlartifacts",
                  timeout: float = 180.0) -> Iterator[MlflowServer]:
    """``python -m mlflow server`` (this interpreter's MLflow) on ``backend_uri``, artifacts at
    ``s3://BUCKET/ARTIFACTS_PREFIX`` on ``s3``; ready when ``/health`` answers; its process session is
    ended on exit. Clients need no S3 credentials: the server proxies artifacts (``mlflow-artifacts:/`` URIs)."""
    root = Path(tempfile.mkdtemp(prefix="mlflow-"))
    env = {**os.environ, **s3.env, "MLFLOW_DISABLE_TELEMETRY": "true",
           # The job runner (GenAI scorers) forks seven huey consumers: CPU this machine needs for the tests.
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = MlflowServer(backend_uri, s3.url(artifacts_prefix), free_port(), env, root)
    try:
        server.start(timeout)
        yield server
    finally:
        if server.session is not None:
            server.session.stop(grace=0)  # nothing to save: the data is in the backend store and on S3
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------- Ray

# Polls the GCS until the cluster has the wanted number of alive nodes: argv = address, count, timeout.
_WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
want, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while (alive := sum(node["Alive"] for node in ray.nodes())) != want:
    if time.monotonic() > deadline:
        sys.exit(f"{alive} alive Ray nodes, expected {want}")
    time.sleep(0.2)
"""


@dataclass
class RayNode:
    """One ``ray start --block`` process; its session holds every process of that node, ``ray::`` workers too."""

    index: int
    head: bool
    temp_dir: Path
    session: _Session

    @property
    def alive(self) -> bool:
        return self.session.alive

    def pids(self) -> list[int]:
        """The node's live processes: ``ray start``, its daemons, and the ``ray::`` workers of its tasks."""
        return self.session.members()


@dataclass
class RayCluster:
    """A Ray cluster of ``ray start`` nodes on this machine, token authentication on, with its own token."""

    address: str  # the head's GCS, ``127.0.0.1:PORT``
    token: str
    root: Path
    cpus_per_node: int
    nodes: list[RayNode] = field(default_factory=list)

    @property
    def token_path(self) -> Path:
        return self.root / "auth_token"

    @property
    def env(self) -> dict[str, str]:
        """The auth settings a driver needs: ``RAY_AUTH_MODE=token`` (a driver given an address does not turn
        auth on by itself) and this cluster's token file, so ``~/.ray/auth_token`` plays no part."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def driver_env(self) -> dict[str, str]:
        """This process's environment for a driver subprocess: the cluster's auth and ``RAY_ADDRESS`` (which
        wins over ``ray.init(address=…)``) replace whatever Ray settings were inherited."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH_")}
        return {**env, **self.env, "RAY_ADDRESS": self.address}

    def _node_env(self) -> dict[str, str]:
        return {**self.driver_env(), "RAY_USAGE_STATS_ENABLED": "0",
                # The GCS declares a node dead after 3 missed 1 s health checks (default 5 x 3 s: ~15 s).
                "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}

    def run_driver(self, code: str, *args: str, env: dict[str, str] | None = None,
                   timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``python -c CODE ARGS…`` with ``driver_env()`` (or ``env``); output captured, not checked."""
        return subprocess.run([sys.executable, "-c", code, *args], env=self.driver_env() if env is None else env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def wait_for_nodes(self, alive: int, timeout: float = 60.0) -> None:
        """Wait until the GCS counts exactly ``alive`` alive nodes (asked by a driver subprocess)."""
        result = self.run_driver(_WAIT_FOR_NODES, self.address, str(alive), str(timeout), timeout=timeout + 60)
        if result.returncode != 0:
            raise RuntimeError(f"Ray cluster at {self.address}: {result.stderr[-3000:]}")

    @property
    def gcs_port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def _spawn_node(self, head: bool) -> RayNode:
        index = len(self.nodes)
        temp_dir = self.root / f"n{index}"
        temp_dir.mkdir()
        args = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address", _HOST,
                "--num-cpus", str(self.cpus_per_node), "--num-gpus", "0", "--disable-usage-stats",
                "--temp-dir", str(temp_dir), "--object-store-memory", str(100 * 1024**2),
                # Every listening port explicit and free: the defaults (52365, 8265, 10001…) collide with
                # other Ray instances on this machine.
                "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]
        if head:
            args += ["--head", "--port", str(self.gcs_port), "--include-dashboard=false",
                     "--dashboard-port", str(free_port())]
        else:
            args += ["--address", self.address]
        session = _Session.spawn(args, self.root / f"n{index}.log", self._node_env())
        node = RayNode(index, head, temp_dir, session)
        self.nodes.append(node)
        return node

    @staticmethod
    def _wait_started(node: RayNode, timeout: float) -> None:
        _wait_until(lambda: "Ray runtime started." in node.session.log.read_text(errors="replace"),
                    what=f"ray start ({'head' if node.head else 'worker'} node {node.index})", timeout=timeout,
                    session=node.session)

    def add_worker(self, timeout: float = 120.0) -> RayNode:
        """Start one more worker node; returns once its ``ray start`` is up (``wait_for_nodes`` to see it
        registered)."""
        node = self._spawn_node(head=False)
        self._wait_started(node, timeout)
        return node

    def remove_worker(self) -> RayNode:
        """SIGKILL every process of the newest alive worker node (ray start, raylet, log monitor, agents, and
        the ``ray::`` workers running its tasks), like a machine that died; the head and other clusters are
        untouched. Returns once those processes are gone; the driver sees ``NodeDiedError`` for the tasks it
        ran at once, the GCS marks the node dead ~3-5 s later (``wait_for_nodes`` waits for that)."""
        workers = [node for node in self.nodes if not node.head and node.alive]
        if not workers:
            raise RuntimeError(f"Ray cluster at {self.address} has no alive worker node to remove")
        workers[-1].session.stop(grace=0)
        return workers[-1]

    def close(self) -> None:
        """SIGKILL every node's processes, workers first (a ``ray stop --force`` scoped to this cluster)."""
        for node in reversed(self.nodes):
            node.session.stop(grace=0)


@contextlib.contextmanager
def ray_cluster(nodes: int = 2, cpus_per_node: int = 1, timeout: float = 120.0) -> Iterator[RayCluster]:
    """A head and ``nodes - 1`` worker nodes, each a ``ray start --block`` with its own ``--temp-dir``, joined
    and token-authenticated with a fresh token; yields once all ``nodes`` are alive, kills them on exit."""
    root = Path(tempfile.mkdtemp(prefix="ray-"))
    cluster = RayCluster(f"{_HOST}:{free_port()}", secrets.token_hex(32), root, cpus_per_node)
    cluster.token_path.write_text(cluster.token)
    cluster.token_path.chmod(0o600)
    try:
        head = cluster._spawn_node(head=True)
        # Workers start as soon as the GCS listens (they retry joining for ~20 s): their start-up overlaps
        # the head's instead of following it.
        _wait_until(lambda: _port_open(cluster.gcs_port), what="Ray head's GCS", timeout=timeout,
                    session=head.session)
        for node in [head] + [cluster._spawn_node(head=False) for _ in range(nodes - 1)]:
            cluster._wait_started(node, timeout)
        cluster.wait_for_nodes(nodes, timeout)
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------- fixtures

_DATABASES = itertools.count()


@pytest.fixture(scope="session")
def s3_service() -> Iterator[S3Server]:
    """One moto S3 server (bucket ``ablate-test``) for the session."""
    with s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL for the session; tests create their own databases on it."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def mlflow_service(postgres_service: PostgresServer, s3_service: S3Server) -> Iterator[MlflowServer]:
    """A fresh MLflow server per test, on its own PostgreSQL database, artifacts under ``s3://ablate-test/DB``."""
    database = f"mlflow_{next(_DATABASES)}"
    with mlflow_server(postgres_service.create_database(database), s3_service, artifacts_prefix=database) as server:
        yield server


@pytest.fixture
def ray_multinode() -> Iterator[RayCluster]:
    """A fresh two-node Ray cluster (1 CPU each, token auth) per test; ``remove_worker()`` drops a node."""
    with ray_cluster(nodes=2, cpus_per_node=1) as cluster:
        yield cluster
