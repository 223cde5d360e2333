"""``ablate eval`` on Ray: one Ray task per cell with the sweep's resources, results back to the driver.

    from ablate.evaluate import EvalOptions, run_eval
    from ablate.tune import RayEvalRunner
    run_eval(spec, EvalOptions(), RayEvalRunner.for_spec(spec))      # address, cpus, gpus as `ablate run`

The driver (``ablate.evaluate.run_eval``) stays the only MLflow writer: a task returns its cell's
numbers as plain data and the driver logs them. A task asks for the trial resources a sweep's trial
gets (``resources:`` or the command line), so a GPU cell evaluates on a GPU; a cell whose worker
dies is reported failed and the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._setup import SweepOptions, init_ray, trial_resources

if TYPE_CHECKING:
    from ablate.evaluate import EvalJob, JobResult, OnJob, OnSet
    from ablate.spec import ExperimentSpec


def eval_task(job: EvalJob, threads: int) -> JobResult:
    """What a Ray worker runs: one cell's evaluation on ``threads`` torch threads."""
    import torch

    from ablate.evaluate import run_job

    torch.set_num_threads(max(1, threads))
    return run_job(job)


class RayEvalRunner:
    """Runs evaluation jobs as Ray tasks, at most ``max_concurrent`` at a time (None: as resources allow)."""

    def __init__(self, address: str | None = None, cpus: float = 1.0, gpus: float = 0.0,
                 max_concurrent: int | None = None) -> None:
        self.address, self.cpus, self.gpus, self.max_concurrent = address, cpus, gpus, max_concurrent
        self.description = f"on Ray ({cpus:g} CPU{f', {gpus:g} GPU' if gpus else ''} per cell)"

    @classmethod
    def for_spec(cls, spec: ExperimentSpec, address: str | None = None, cpus: float | None = None,
                 gpus: float | None = None, max_concurrent: int | None = None) -> RayEvalRunner:
        """The resources a sweep of ``spec`` gives each trial (the arguments win over ``resources:``)."""
        opts = SweepOptions(address=address, cpus_per_trial=cpus, gpus_per_trial=gpus, max_concurrent=max_concurrent)
        c, g, m = trial_resources(spec, opts)
        return cls(address, c, g, m)

    def __call__(self, jobs: Sequence[EvalJob], on_set: OnSet, on_job: OnJob) -> None:
        import ray

        from ablate.evaluate import JobResult

        init_ray(self.address, None)
        task = ray.remote(eval_task).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        queue = list(jobs)
        limit = self.max_concurrent or len(queue)
        pending: dict[Any, EvalJob] = {}
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    job = queue.pop(0)
                    pending[task.remote(job, int(max(1, self.cpus)))] = job
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as err:  # the worker died (out of host memory, a crash in native code)
                        lines = str(err).strip().splitlines()
                        result = JobResult(job.key, error=f"{type(err).__name__}: {lines[-1] if lines else ''}"[:500])
                    for res in result.sets:
                        on_set(job, res)
                    on_job(job, result)
        except BaseException:
            for ref in pending:  # Ctrl-C or a driver error: nothing keeps computing for nobody
                ray.cancel(ref, force=True)
            raise
