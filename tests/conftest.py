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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts Ray must be marked ``slow``: ``pytest -m "not slow"`` (``make test-fast``) is
    the inner loop, and one Ray start costs more than the rest of it.

    Modules holding a slow test run first (otherwise in collection order): with ``-n`` (pytest-xdist,
    ``--dist loadfile``) the long end-to-end modules start at once and the many short ones fill the
    workers around them, instead of one long module starting last."""
    slow_modules = {getattr(item, "module", None) for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: getattr(item, "module", None) not in slow_modules)
    unmarked = [item.nodeid for item in items
                if "ray_session" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError("these tests start Ray; mark them @pytest.mark.slow:\n  " + "\n  ".join(unmarked))
