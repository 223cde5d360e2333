"""``ablate eval``'s driver: what each finished cell still lacks, its checkpoint, the runner, and the
metrics written back to the cell's own MLflow run (the one writer, on the driver).

    from ablate.evaluate import EvalOptions, run_eval
    from ablate.spec import load_experiment
    summary = run_eval(load_experiment("experiments/quickstart.yaml"), EvalOptions())   # in-process

Per cell (finished or diverged, the latest run of its id) and set: nothing is redone that the run
already holds — a set or precision is evaluated when its metric is missing or the set was scored with
another ``self_ensemble`` setting (``force`` redoes everything). The checkpoint is the cell's local
``<state>/checkpoints/<experiment>/<cell>/state.pt`` or else the run's artifact ``checkpoint/state.pt``
(downloaded to ``<state>/eval/<experiment>/<run id>/``), so a store can be evaluated from another
machine. The task's baseline (``eval/<set>/psnr_input``) is computed once per task and set, here,
before any cell runs — a bad test image stops the command in one line before any work is spent.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ablate.errors import AblateError
from ablate.naming import safe_name
from ablate.status import DONE, CellStatus

from ._job import EvalJob, JobResult, SetResult, SetWork, evaluate_reference, metric_key, run_job

if TYPE_CHECKING:
    from ablate.spec import CellSpec, EvalSpec, ExperimentSpec
    from ablate.track import Tracker

OnSet = Callable[[EvalJob, SetResult], None]
OnJob = Callable[[EvalJob, JobResult], None]


class Runner(Protocol):
    """Runs the jobs somewhere, calling ``on_set`` for each set result and ``on_job`` for each job."""

    description: str

    def __call__(self, jobs: Sequence[EvalJob], on_set: OnSet, on_job: OnJob) -> None: ...


class LocalRunner:
    """Every job in this process, one after the other; set results are reported as they complete."""

    description = "in this process"

    def __call__(self, jobs: Sequence[EvalJob], on_set: OnSet, on_job: OnJob) -> None:
        for job in jobs:
            on_job(job, run_job(job, on_set=functools.partial(on_set, job)))


@dataclass(frozen=True)
class EvalOptions:
    """How to run an evaluation (nothing here changes a number)."""

    state_dir: Path = Path(".ablate")
    tracking_uri: str | None = None  # CLI value; MLFLOW_TRACKING_URI, then the spec, then SQLite
    force: bool = False  # evaluate again what the runs already hold
    device: str = "auto"  # where each cell runs: auto (CUDA when the worker has a GPU), cpu, cuda[:N]
    stream: TextIO | None = None


@dataclass
class EvalSummary:
    experiment: str
    tracking_uri: str
    evaluated: list[str] = field(default_factory=list)  # cell ids evaluated now
    up_to_date: list[str] = field(default_factory=list)  # cell ids whose runs held everything
    skipped: dict[str, str] = field(default_factory=dict)  # cell id -> why it was not evaluated
    failed: dict[str, str] = field(default_factory=dict)  # cell id -> what went wrong (a set's or the cell's)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def checkpoint_dir(state_dir: Path, experiment: str, cell_id: str) -> Path:
    """``<state>/checkpoints/<experiment>/<cell>``: where ``ablate run`` left the cell's checkpoint."""
    return Path(state_dir) / "checkpoints" / safe_name(experiment) / cell_id


def baseline_name(task: Any) -> str:
    """What the task's baseline is called in tables: bicubic (upscaling, SR) or input (the LQ itself)."""
    return "bicubic" if task.scale > 1 else "input"


def set_tag(set_name: str) -> str:
    """The run tag recording how a set was scored (JSON: data, self_ensemble, seed, index, images…)."""
    from ablate.track import Tag

    return f"{Tag.EVAL}{set_name}"


@dataclass
class _Todo:
    """What one cell's run still lacks."""

    cell: CellSpec
    run: dict[str, Any]
    sets: list[SetWork] = field(default_factory=list)  # model metrics to compute
    # sets not known to be scored with this setting (--force, a changed setting): their points are logged
    # again, where otherwise a point the run holds is not (exactly once)
    rescored: set[str] = field(default_factory=set)
    reference: list[str] = field(default_factory=list)  # sets lacking the task baseline's metrics


def _todo(cell: CellSpec, run: dict[str, Any], ev: EvalSpec, force: bool) -> _Todo:
    from ablate.train import VAL_SEED

    todo = _Todo(cell, run)
    metrics, tags = run["metrics"], run["tags"]
    for name, comp in ev.sets:
        if force or metric_key(name, "psnr", "input") not in metrics:
            todo.reference.append(name)
        try:
            scored = json.loads(tags.get(set_tag(name), "null")) or {}
        except ValueError:
            scored = {}
        same = scored.get("self_ensemble") == ev.self_ensemble and scored.get("seed") == VAL_SEED
        precisions = tuple(p for p in ev.precisions
                           if force or not same or metric_key(name, "psnr", p) not in metrics)
        if precisions:
            todo.sets.append(SetWork(name, comp.to_config(), precisions))
            if force or not same:
                todo.rescored.add(name)
    return todo


class _Evaluation:
    """One ``run_eval``: the tracker, the progress lines and the summary."""

    def __init__(self, spec: ExperimentSpec, ev: EvalSpec, opts: EvalOptions, tracker: Tracker) -> None:
        self.spec, self.ev, self.opts, self.tracker = spec, ev, opts, tracker
        self.stream = opts.stream or sys.stdout
        self.state_dir = Path(opts.state_dir).resolve()
        self.summary = EvalSummary(spec.name, tracker.tracking_uri)
        self.runs: dict[str, str] = {}  # cell id -> run id
        self.labels: dict[str, str] = {}  # cell id -> run name
        self.steps: dict[str, int] = {}  # cell id -> its run's last step: eval metrics are logged there
        self.rescored: dict[str, set[str]] = {}  # cell id -> its _Todo.rescored
        self.tasks: dict[str, tuple[str, str]] = {}  # cell id -> (task label, its baseline's name)
        self.index = {name: i for i, (name, _) in enumerate(ev.sets)}
        self.varying: set[str] = set()  # backbone, task: what progress lines must name to tell cells apart
        self.done = 0
        self.total = 0

    def say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, n: int | None, label: str, text: str) -> None:
        """One progress line: ``[n/total]``, the cell (or baseline) label, then ``text``; columns aligned."""
        width = max([len(v) for v in self.labels.values()] + [20])
        count = f"[{n}/{self.total}]" if n is not None else ""
        self.say(f"  {count:<{len(str(self.total)) * 2 + 3}} {label:<{width}}  {text}")

    # checkpoints ----------------------------------------------------------------------------
    def checkpoint(self, todo: _Todo) -> Path | None:
        """The cell's checkpoint file: the local one, else the run's artifact (downloaded once)."""
        from ablate.track import download_artifact
        from ablate.train import CHECKPOINT_FILE

        local = checkpoint_dir(self.state_dir, self.spec.name, todo.cell.id) / CHECKPOINT_FILE
        if local.is_file():
            return local
        run_id = todo.run["run_id"]
        cached = self.state_dir / "eval" / safe_name(self.spec.name) / run_id
        if (cached / CHECKPOINT_FILE).is_file():
            return cached / CHECKPOINT_FILE
        return download_artifact(self.tracker.tracking_uri, run_id, f"checkpoint/{CHECKPOINT_FILE}", cached)

    # references ------------------------------------------------------------------------------
    def references(self, todos: list[_Todo]) -> None:
        """The task baseline on each set, once per (task, set), logged to every run that lacks it."""
        from ablate.tasks import resolve_task

        wanted: dict[tuple[str, str], list[_Todo]] = {}
        tasks: dict[str, Any] = {}
        for todo in todos:
            task = resolve_task(todo.cell.task)
            tasks.setdefault(task.label, task)
            self.tasks[todo.cell.id] = (task.label, baseline_name(task))
            for name in todo.reference:
                wanted.setdefault((task.label, name), []).append(todo)
        sets = dict(self.ev.sets)
        for (label, name), users in wanted.items():
            res = evaluate_reference(tasks[label], name, sets[name].to_config())
            self.line(None, f"{baseline_name(tasks[label])} · {label}", self._scores(res))
            for todo in users:
                self.tracker.log(todo.run["run_id"], res.metrics, self.steps[todo.cell.id], again=self.opts.force)
        self.tracker.flush()

    # results ---------------------------------------------------------------------------------
    def on_set(self, job: EvalJob, res: SetResult) -> None:
        if res.error:
            self.line(self.done + 1, self.labels[job.key], f"{res.name}: failed: {res.error}")
            return
        from ablate.train import VAL_SEED

        run_id = self.runs[job.key]
        self.tracker.log(run_id, res.metrics, self.steps[job.key], again=res.name in self.rescored[job.key])
        comp = dict(self.ev.sets)[res.name]
        self.tracker.set_tags(run_id, {set_tag(res.name): json.dumps({
            "data": comp.to_config(), "self_ensemble": self.ev.self_ensemble, "seed": VAL_SEED,
            "index": self.index[res.name], "task": self.tasks[job.key][0], "baseline": self.tasks[job.key][1],
            "images": res.images, "tiled": res.tiled, "tile": job.tile, "overlap": job.overlap}, sort_keys=True)})
        tiled = f", {res.tiled} tiled" if res.tiled else ""
        self.line(self.done + 1, self.labels[job.key], self._scores(res) + tiled)

    def on_job(self, job: EvalJob, result: JobResult) -> None:
        self.done += 1
        self.tracker.flush()
        errors = [f"{s.name}: {s.error}" for s in result.sets if s.error]
        if result.error:
            self.line(self.done, self.labels[job.key], f"failed: {result.error}")
            errors.insert(0, result.error)
        if errors:
            self.summary.failed[job.key] = "; ".join(errors)
        else:
            self.summary.evaluated.append(job.key)

    def _scores(self, res: SetResult) -> str:
        m = res.metrics
        parts = [f"{res.name:<12}"]
        for p in ("fp32", *(q for q in self.ev.precisions if q != "fp32"), "input"):
            psnr, ssim = m.get(metric_key(res.name, "psnr", p)), m.get(metric_key(res.name, "ssim", p))
            if psnr is not None and ssim is not None:
                tag = "" if p in ("fp32", "input") else f" {p}"
                parts.append(f"PSNR{tag} {psnr:.2f}  SSIM{tag} {ssim:.4f}")
        parts.append(f"({res.images} image{'s' if res.images != 1 else ''}, {res.seconds:.1f} s)")
        return "  ".join(parts)


def _header(spec: ExperimentSpec, ev: EvalSpec, n: int, runner: Runner) -> str:
    sets = ", ".join(name for name, _ in ev.sets)
    extras = [f"precisions {', '.join(ev.precisions)}"]
    if ev.self_ensemble:
        extras.append("self-ensemble ×8")
    if ev.tile is not None:
        extras.append(f"tiles of {ev.tile} px (overlap {ev.tile_overlap})")
    return (f"evaluating {n} cell{'s' if n != 1 else ''} of {spec.name!r} on {sets}; "
            f"{'; '.join(extras)}; {runner.description}")


def run_eval(spec: ExperimentSpec, opts: EvalOptions | None = None, runner: Runner | None = None) -> EvalSummary:
    """Evaluate every finished (or diverged, with a checkpoint) cell of ``spec`` on its ``eval:`` sets
    and log ``eval/<set>/…`` metrics to each cell's run. AblateError when the experiment has no
    cell that can be evaluated or a test set is unreadable; a cell's own failure is in the summary."""
    from ablate.spec import EvalSpec, expand
    from ablate.track import Tracker, resolve_tracking_uri

    opts = opts or EvalOptions()
    runner = runner or LocalRunner()
    t0 = time.perf_counter()
    ev = spec.eval if spec.eval is not None else EvalSpec()
    uri = resolve_tracking_uri(opts.tracking_uri, spec.tracking.uri, opts.state_dir)
    tracker = Tracker(uri, opts.state_dir)
    ctx = _Evaluation(spec, ev, opts, tracker)
    if spec.eval is None:
        ctx.say("no eval: section in the spec: scoring the default set skimage (precisions fp32, fp16)")
    runs = {r["cell"]: r for r in tracker.cell_runs(spec.name, latest=True)}
    todos: list[_Todo] = []
    cells = expand(spec)
    ctx.varying = {axis for axis in ("backbone", "task")
                   if len({getattr(c, axis).label() for c in cells}) > 1}
    for cell in cells:
        run = runs.get(cell.id)
        if run is None or run["status"] not in DONE:
            ctx.summary.skipped[cell.id] = "not run yet" if run is None else str(run["status"])
            continue
        todo = _todo(cell, run, ev, opts.force)
        if todo.sets or todo.reference:
            todos.append(todo)
        else:
            ctx.summary.up_to_date.append(cell.id)
    if not todos and not ctx.summary.up_to_date:
        raise AblateError(f"experiment {spec.name!r} has no finished cell in {uri}: run "
                          f"`ablate run {spec.file or 'FILE'}` first")
    if ctx.summary.up_to_date:
        ctx.say(f"{len(ctx.summary.up_to_date)} of {len(ctx.summary.up_to_date) + len(todos)} cells already "
                f"evaluated on every set (--force evaluates them again)")
    jobs = _jobs(ctx, todos, ev, opts)
    ctx.total = len(jobs)
    ready = [t for t in todos if t.cell.id not in ctx.summary.skipped]
    if ready:
        ctx.say(_header(spec, ev, len(jobs), runner))
        ctx.references(ready)
    if jobs:
        runner(jobs, ctx.on_set, ctx.on_job)
    tracker.close()
    ctx.summary.wall_s = time.perf_counter() - t0
    return ctx.summary


def _jobs(ctx: _Evaluation, todos: list[_Todo], ev: EvalSpec, opts: EvalOptions) -> list[EvalJob]:
    """One job per cell with model metrics to compute and a checkpoint to compute them from."""
    out = []
    for todo in todos:
        cell, run = todo.cell, todo.run
        ctx.runs[cell.id] = run["run_id"]
        parts = [run.get("norm") or cell.norm.label(), *(getattr(cell, a).label() for a in ("backbone", "task")
                                                          if a in ctx.varying), f"s{cell.seed}"]
        ctx.labels[cell.id] = f"{'·'.join(parts)} ({cell.id[:6]})"
        ctx.steps[cell.id] = int(run["metrics"].get("steps", 0))
        ctx.rescored[cell.id] = todo.rescored
        if not todo.sets:
            continue
        ckpt = ctx.checkpoint(todo)
        if ckpt is None:
            why = "no checkpoint: neither in the state folder nor as the run's artifact"
            if run["status"] == CellStatus.DIVERGED:
                why += " (a diverged cell keeps one only with train.checkpoint_every)"
            ctx.summary.skipped[cell.id] = why
            ctx.say(f"  skipping {ctx.labels[cell.id]}: {why}")
            continue
        finished = run["status"] == CellStatus.FINISHED
        out.append(EvalJob(key=cell.id, label=ctx.labels[cell.id], cell=cell.to_config(), checkpoint=str(ckpt),
                           sets=tuple(todo.sets), self_ensemble=ev.self_ensemble, tile=ev.tile,
                           overlap=ev.tile_overlap, device=opts.device,
                           expect_step=cell.train.steps if finished else None))
    return out
