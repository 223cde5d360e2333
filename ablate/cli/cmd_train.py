"""`ablate train`: one cell, in-process, no Ray."""

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
        from ablate.norms import resolve_norm
        from ablate.spec import plan_rows
        from ablate.track import Tracker, cell_run_identity

        tracker = Tracker(tracking_uri, state_dir.resolve())
        parent = tracker.start_sweep(spec.name, spec.hash, spec.source_text, plan_rows([cell]),
                                     tags={"ablate.mode": "train"})
        run_name, tags = cell_run_identity(cell, resolve_norm(cell.norm.to_config(), cell.rescale).name)
        run_id = tracker.start_cell(parent, cell.id, run_name, cell.flat_params(), tags)
        reporter = _Tee(reporter, tracker, run_id)
    try:
        result = run_cell(cell, reporter)
    except BaseException as err:
        if tracker is not None:  # never leave the runs "running"
            killed = isinstance(err, KeyboardInterrupt)
            tracker.end_cell(run_id, "killed" if killed else "failed", str(err) or type(err).__name__)
            tracker.end_sweep(parent, "KILLED" if killed else "FAILED")
        raise
    if tracker is not None:
        tracker.end_cell(run_id, result.status, result.reason, result.summary)
        tracker.end_sweep(parent, "FINISHED")
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


class _Tee:
    def __init__(self, inner, tracker, run_id) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.tracker, self.run_id = inner, tracker, run_id

    def report(self, step, metrics, traces=None, checkpoint=None) -> None:  # type: ignore[no-untyped-def]
        from ablate.train import flatten_traces

        self.inner.report(step, metrics, traces, checkpoint)
        self.tracker.log(self.run_id, {**metrics, **flatten_traces(traces)}, step)
