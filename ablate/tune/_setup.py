"""What a sweep and a search share: their options and summary, Ray's start, the trial resources and the
setup both begin with. Imports nothing else of ``ablate.tune``: ``_sweep`` and ``_search`` both build on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

from ablate.errors import AblateError
from ablate.naming import safe_name
from ablate.status import CellStatus

if TYPE_CHECKING:
    from ablate.spec import CellSpec, ExperimentSpec
    from ablate.track import Tracker

    from ._storage import CheckpointStore


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep (nothing here changes a cell's result, so nothing here is in a cell id)."""

    state_dir: Path = Path(".ablate")
    address: str | None = None  # an existing Ray cluster; RAY_ADDRESS wins when set
    storage: str | None = None  # checkpoints and Ray Tune's state: a folder or s3://…; None: state_dir
    storage_endpoint: str | None = None  # an S3-compatible server; None: AWS_ENDPOINT_URL(_S3)
    keep_checkpoints: int = 1  # checkpoints kept per cell, the latest first
    tracking_uri: str | None = None  # CLI value; MLFLOW_TRACKING_URI, then the spec, then SQLite
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    force: bool = False  # rerun cells that already finished
    max_retries: int | None = None  # CLI value; the spec's resources.max_retries otherwise
    dashboard: bool = True  # build the dashboard at the end and log it to the sweep run
    stream: TextIO | None = None


@dataclass
class SweepSummary:
    experiment: str
    parent_run_id: str
    tracking_uri: str
    statuses: dict[str, CellStatus] = field(default_factory=dict)  # cell id -> status
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    mlflow_s: float = 0.0
    cell_s: dict[str, float] = field(default_factory=dict)
    dashboard: Path | None = None
    failures: dict[str, str] = field(default_factory=dict)  # cell id -> failure class of failed cells
    log_file: Path | None = None  # Ray's own output during the sweep

    @property
    def ok(self) -> bool:
        """Every cell finished or diverged (divergence is a result, not an error)."""
        return all(CellStatus(s).done for s in self.statuses.values())


@dataclass
class Setup:
    """What a sweep and a search both start with."""

    stream: TextIO
    state_dir: Path  # resolved and created
    cells: list[CellSpec]  # the expanded grid (a search's base cells)
    tracker: Tracker
    # per experiment: two experiments may hold the identical cell and must not share its checkpoint
    store: CheckpointStore
    log_file: Path  # <state>/logs/<experiment>-<time>.log: Ray's own output (see ray_output_to)


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """Start (or join) Ray once per process, quietly; an initialized Ray is reused as it is."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard per trial
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "16")
    if ray.is_initialized():
        return
    addr = os.environ.get("RAY_ADDRESS") or address
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                              "log_to_driver": False, "configure_logging": True}
    if addr:
        connect_ray(addr, kwargs)
    else:
        try:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
        except (OSError, RuntimeError, ConnectionError) as err:  # e.g. a temp folder too deep for its sockets
            what = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise AblateError(f"could not start a local Ray: {what} (check RAY_TMPDIR / the temp folder: "
                              "Ray's socket paths must stay under 107 bytes, and its disk must have room)") from None


# Joining a cluster: one attempt with short timeouts. Ray's defaults retry for 20 s or more, printing a
# warning each second, before a wrong address or token comes out as a traceback. Each is an environment
# variable, so a slow network can have longer ones.
_CONNECT_ENV = {"RAY_gcs_server_port_wait_time_s": "1", "RAY_gcs_rpc_server_connect_timeout_s": "2",
                "RAY_py_gcs_connect_timeout_s": "3"}
_TOKEN_SOURCES = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"


def connect_ray(address: str, init_kwargs: dict[str, Any]) -> None:
    """Join the Ray cluster at ``address``, with token authentication when a token is at hand; a
    refusal is an AblateError of one line that says what to check."""
    import ray
    from ray.exceptions import AuthenticationError

    changed = _token_auth_if_available()
    for key, value in _CONNECT_ENV.items():
        if key not in os.environ:
            os.environ[key] = value
            changed = True
    if changed:
        _reload_ray_config()
    with tempfile.TemporaryFile() as log:
        try:
            with _stderr_to(log):  # Ray's C++ client warns on fd 2 while it tries; the reason is in there
                ray.init(address=address, **init_kwargs)
        except (ConnectionError, RuntimeError, AuthenticationError) as err:
            log.seek(0)
            raise AblateError(_refusal(address, err, log.read().decode(errors="replace"))) from None
        log.seek(0)
        sys.stderr.write(log.read().decode(errors="replace"))  # joined: what Ray said is worth seeing


def _token_auth_if_available() -> bool:
    """Set ``RAY_AUTH_MODE=token`` when it is unset and a token is at hand: given an explicit address, a
    driver sends its token only in that mode (Ray turns it on by itself for ``auto`` and local clusters)."""
    if "RAY_AUTH_MODE" in os.environ:
        return False
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    files = [Path(path).expanduser()] if path else [Path.home() / ".ray" / "auth_token"]
    if os.environ.get("RAY_AUTH_TOKEN") or any(f.is_file() for f in files):
        os.environ["RAY_AUTH_MODE"] = "token"
        return True
    return False


def _reload_ray_config() -> None:
    """Ray reads its ``RAY_…`` settings once per process, at import; have it read them again."""
    try:
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")
    except (ImportError, AttributeError):  # another Ray: the settings reach only the processes it starts
        pass


@contextlib.contextmanager
def _stderr_to(file: IO[bytes]) -> Iterator[None]:
    """Point file descriptor 2 (what C++ code writes to, not only ``sys.stderr``) at ``file``."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _refusal(address: str, err: BaseException, said: str) -> str:
    """One line: why joining ``address`` failed and what to check."""
    from ray.exceptions import AuthenticationError

    where = f"cannot join the Ray cluster at {address}"
    if isinstance(err, AuthenticationError):
        return f"{where}: token authentication is on but there is no token here (set {_TOKEN_SOURCES})"
    if ("InvalidAuthToken" in said or "Unauthenticated" in said) and os.environ.get("RAY_AUTH_MODE") != "token":
        return f"{where}: it needs a token and there is none here (set {_TOKEN_SOURCES})"
    if "InvalidAuthToken" in said or "Unauthenticated" in said:
        return (f"{where}: it refused this machine's token (check {_TOKEN_SOURCES}: the cluster's own token, "
                "`ray get-auth-token` on its head)")
    if isinstance(err, ConnectionError):
        return f"{where}: no answer (check --address or RAY_ADDRESS: the head's host:port, reachable from here)"
    text = str(err).strip()
    return f"{where}: {text.splitlines()[0] if text else type(err).__name__}"


def trial_resources(spec: ExperimentSpec, opts: SweepOptions) -> tuple[float, float, int | None]:
    """(CPUs, GPUs per trial, max concurrent trials): the command line wins over the spec's
    ``resources``; defaults 1 CPU, 0 GPU, as many trials as the resources allow."""
    res = spec.resources
    cpus = opts.cpus_per_trial or res.cpus_per_trial or 1
    # 0 GPUs on the command line is a choice, not a missing value
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else res.gpus_per_trial or 0
    max_conc = opts.max_concurrent or res.max_concurrent
    return cpus, gpus, max_conc


def max_retries(spec: ExperimentSpec, opts: SweepOptions) -> int:
    """How often a cell whose worker died is retried: the command line wins over ``resources.max_retries``."""
    return opts.max_retries if opts.max_retries is not None else spec.resources.max_retries


def prepare(spec: ExperimentSpec, opts: SweepOptions) -> Setup:
    """The output stream, the state folder (created), the expanded cells, the MLflow tracker and the
    experiment's checkpoint store (checked to be reachable)."""
    from ablate.spec import expand
    from ablate.track import Tracker, resolve_tracking_uri

    from ._storage import CheckpointStore

    state_dir = Path(opts.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    store = CheckpointStore.open(opts.storage, state_dir, spec.name, endpoint=opts.storage_endpoint,
                                 keep=opts.keep_checkpoints)
    store.check()
    cells = expand(spec)
    uri = resolve_tracking_uri(opts.tracking_uri, spec.tracking.uri, opts.state_dir)
    return Setup(opts.stream or sys.stdout, state_dir, cells, Tracker(uri, opts.state_dir), store,
                 state_dir / "logs" / f"{ray_run_name(spec.name)}.log")


def ray_run_name(experiment: str, *parts: str) -> str:
    """The Ray Tune run folder's name: the experiment, ``parts``, the start time."""
    return "-".join((safe_name(experiment), *parts, time.strftime("%Y%m%d-%H%M%S")))


@contextlib.contextmanager
def ray_output_to(log_file: Path) -> Iterator[None]:
    """While a Tune run lasts, what Ray itself prints goes to ``log_file``, not over the progress table.

    Two channels: the ``ray`` loggers (Tune's "Trial task failed" with its traceback, "Trials did not
    complete", warnings), whose handlers are swapped for the file; and the driver's error listener,
    which prints notices such as "(raylet) A worker died or was killed…" to ``sys.stdout`` from a
    thread, so stdout is redirected (the table and our own messages go to a stream captured before).
    Worker output is not forwarded to the driver at all (``log_to_driver=False``); it stays in Ray's
    session folder.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    ray_logger = logging.getLogger("ray")
    saved = (ray_logger.handlers[:], ray_logger.level)
    with open(log_file, "a", encoding="utf-8") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} Ray's output for this run (the workers' own "
                  "logs are in Ray's session folder, by default /tmp/ray/session_latest/logs)\n")
        out.flush()
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ray_logger.handlers = [handler]
        ray_logger.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(out):
                yield
        finally:
            ray_logger.handlers, level = saved
            ray_logger.setLevel(level)

