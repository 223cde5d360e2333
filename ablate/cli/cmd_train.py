"""`ablate train`: one cell, in-process, no Ray; with ``--tracking-uri`` a driver of its experiment like a
sweep (it claims the experiment and holds the lease until it ends, Ctrl-C included)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from ablate.errors import AblateError

from ._options import load, state_dir_option


def pick_cell(cells: list, wanted: str | None, file: str):  # type: ignore[no-untyped-def]
    if wanted is None:
        if len(cells) == 1:
            return cells[0]
        ids = ", ".join(c.id for c in cells[:8]) + (", …" if len(cells) > 8 else "")
        raise AblateError(f"{file}: has {len(cells)} cells; pick one with --cell ID ({ids}; "
                          f"`ablate plan {file}` lists them)")
    hits = [c for c in cells if c.id.startswith(wanted)]
    if len(hits) != 1:
        what = "no cell" if not hits else f"{len(hits)} cells"
        raise AblateError(f"--cell {wanted!r}: {what} of {file} match; expected one of "
                          f"{', '.join(c.id for c in cells[:8])}{', …' if len(cells) > 8 else ''}")
    return hits[0]


@click.command("train")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--cell", "cell_id", default=None, metavar="ID", help="Which cell (an id or a unique prefix).")
@click.option("--tracking-uri", default=None, metavar="URI", help="Also log the cell to this MLflow store.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Override train.steps (a quick try).")
@state_dir_option
def command(file: str, cell_id: str | None, tracking_uri: str | None, steps: int | None, state_dir: Path) -> None:
    """Train one cell of an experiment in this process (no Ray), with a progress bar.

    \b
        ablate train experiments/quickstart.yaml --cell e5926b
        ablate train experiments/quickstart.yaml --cell 17e7c2 --steps 50 --tracking-uri sqlite:///mlflow.db
    """
    import dataclasses

    from ablate.spec import expand
    from ablate.train import PrintReporter, run_cell

    spec = load(file)
    cell = pick_cell(expand(spec), cell_id, file)
    if steps is not None:
        cell = dataclasses.replace(cell, train=dataclasses.replace(cell.train, steps=steps))
    click.echo(f"cell {cell.id}: {cell.norm.label()} rescale={cell.rescale} · {cell.backbone.label()} · "
               f"{cell.task.label()} · seed {cell.seed} · {cell.train.steps} steps")
    tracker: Any = None
    run_id = parent = ""
    reporter: Any = PrintReporter(cell.train.steps)
    if tracking_uri:
        from ablate.track import Tracker

        tracker = Tracker(tracking_uri, state_dir.resolve())
    try:
        if tracker is not None:
            parent = _claim(tracker, spec, cell)
            run_id = _start_cell(tracker, parent, cell)
            reporter = _Tee(reporter, tracker, run_id)
        result = run_cell(cell, reporter)
    except BaseException as err:
        if parent:  # never leave the runs "running"
            _end(tracker, parent, run_id, err)
        raise
    else:
        if tracker is not None:
            from ablate.track import State, impl_tags

            tracker.set_tags(run_id, impl_tags(result.provenance))
            tracker.end_cell(run_id, result.status, result.reason, result.summary)
            tracker.end_sweep(parent, State.FINISHED)
    finally:
        if tracker is not None:
            tracker.close()  # the claim on the experiment ends with the command, however it ends
    rows = [(k, v) for k, v in sorted(result.summary.items()) if not k.startswith("time/")]
    width = max(len(k) for k, _ in rows)
    click.echo(f"\nstatus: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    for key, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else str(value)
        click.echo(f"  {key:<{width}}  {shown}")
    if tracker is not None:
        click.echo(f"logged to {tracking_uri} (run {run_id})")
    if result.status != "finished":
        raise SystemExit(1)


def _claim(tracker: Any, spec: Any, cell: Any) -> str:
    """Claim the experiment as a sweep does — refused in one line while another driver runs it, the
    runs of a gone one ended as killed — and start the sweep run, which holds the lease; its id."""
    from ablate.spec import plan_rows
    from ablate.track import Tag

    for note in tracker.claim(spec.name, then="then run `ablate train` again"):
        click.echo(note)
    parent: str = tracker.start_sweep(spec.name, spec.hash, spec.source_text, plan_rows([cell]),
                                      tags={Tag.MODE: "train"}, driver=True)
    return parent


def _start_cell(tracker: Any, parent: str, cell: Any) -> str:
    """The cell's run (a rerun of the cell continues its run: the points it holds are not logged again)."""
    from ablate.track import cell_run_identity

    run_name, tags = cell_run_identity(cell, cell.norm_label())
    run_id: str = tracker.start_cell(parent, cell.id, run_name, cell.flat_params(), tags)
    return run_id


def _end(tracker: Any, parent: str, run_id: str, err: BaseException) -> None:
    """End the runs of a cell that raised: killed on Ctrl-C (a rerun continues the cell's run), else failed."""
    from ablate.track import State

    killed = isinstance(err, KeyboardInterrupt)
    if run_id:
        tracker.end_cell(run_id, "killed" if killed else "failed", str(err) or type(err).__name__)
    tracker.end_sweep(parent, State.KILLED if killed else State.FAILED)


class _Tee:
    """The progress bar, and every report logged to the cell's run (each (key, step) once: the
    Tracker drops what the run holds, so a rerun after Ctrl-C logs only what is new)."""

    def __init__(self, inner, tracker, run_id) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.tracker, self.run_id = inner, tracker, run_id

    def report(self, step, metrics, traces=None, checkpoint=None) -> None:  # type: ignore[no-untyped-def]
        from ablate.train import flatten_traces

        self.inner.report(step, metrics, traces, checkpoint)
        self.tracker.log(self.run_id, {**metrics, **flatten_traces(traces)}, step)
