"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from servers import mlflow_service, postgres_service, ray_multinode, s3_service  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run the small CPU models of the tests on one torch thread: a second intra-op thread buys little
    at this size and, on a busy 2-core machine, stalls on OpenMP barriers (measured on the backbone
    tests: 13 s on one thread vs 63 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _ablate_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """ablate's user cache (the empty MLflow store every new SQLite store copies) in pytest's cache,
    kept across sessions (this session's temp folder with ``-p no:cacheprovider``), never in ~/.cache;
    the same folder the ``prepared_store`` fixtures pass."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("ablate-mlflow") if cache is not None else tmp_path_factory.getbasetemp() / "ablate-mlflow"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATE_CACHE_DIR", str(folder))
        yield


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """One local Ray for the whole session (``run_sweep`` reuses an initialized Ray, so every sweep
    pays Ray's start-up once); yields its address so a subprocess ``ablate run`` can join it."""
    import logging

    import ray

    started = not ray.is_initialized()
    if started:
        # log_to_driver off: worker output would otherwise interleave with pytest's capture
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


# The modules that take longest (each alone on the 2-core machine, 2026-12-05: wall seconds, and the cores
# it keeps busy on average), handed out first and in this order. pytest-xdist gives each worker a second
# module while its first has two tests or fewer left, so the first four go 1 and 3 to one worker, 2 and 4
# to the other. The team-server test mostly waits (its tracking server is down for 30 s): it goes first,
# then the faults on its worker, while the other worker runs the two that keep both cores busy (the
# quickstart and the smoke benchmark, 55 s together); then the longest first.
LONG_MODULES = (
    "tests/tune/test_team_server.py",  # 62 s, 0.4 cores
    "tests/cli/test_eval_cmd.py",  # 23 s, 1.4
    "tests/tune/test_faults.py",  # 71 s, 1.1
    "tests/benchmarks/test_bench_gpu.py",  # 32 s, 1.5
    "tests/tune/test_multinode.py",  # 51 s, 0.9
    "tests/tune/test_search_e2e.py",  # 38 s, 1.0
    "tests/train/test_compile_clean.py",  # 30 s, 1.0
    "tests/track/test_tracker_retry.py",  # 28 s, 0.5
    "tests/cli/test_train_cmd.py",  # 27 s, 1.1
    "tests/test_servers.py",  # 25 s, 0.8
    "tests/tune/test_lease.py",  # 18 s, 0.7
    "tests/test_extending.py",  # 18 s, 1.0
    "tests/tune/test_storage.py",  # 17 s, 0.9
    "tests/tune/test_packing.py",  # 16 s, 1.1
    "tests/cli/test_run_cmd.py",  # 15 s, 1.0
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that starts Ray must be marked ``slow``: ``pytest -m "not slow"`` (``make test-fast``) is
    the inner loop, and one Ray start costs more than the rest of it.

    Modules run long ones first: those of ``LONG_MODULES`` in its order, then the other modules holding a
    slow test, then the rest (each group in collection order). With ``-n`` (pytest-xdist, ``--dist
    loadfile --no-loadscope-reorder``: without it xdist orders modules by their number of tests) the long
    end-to-end modules start at once and the many short ones even out the end, instead of one long module
    starting last while the other worker idles."""
    root = config.rootpath
    slow_modules = {getattr(item, "module", None) for item in items if item.get_closest_marker("slow") is not None}

    def order(item: pytest.Item) -> tuple[int, bool]:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        rank = LONG_MODULES.index(path) if path in LONG_MODULES else len(LONG_MODULES)
        return rank, getattr(item, "module", None) not in slow_modules

    items.sort(key=order)
    unmarked = [item.nodeid for item in items
                if "ray_session" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError("these tests start Ray; mark them @pytest.mark.slow:\n  " + "\n  ".join(unmarked))
