"""``ablate eval``: every finished cell on the spec's test sets, whole images, metrics back to its MLflow run.

    ablate eval experiments/quickstart.yaml && ablate report quickstart --eval
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._options import cluster_options, load, state_dir_option, tracking_option


@click.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
@tracking_option
@cluster_options
@click.option("--local", is_flag=True, help="Evaluate in this process, one cell after another (no Ray).")
@click.option("--force", is_flag=True, help="Evaluate again what the cells' runs already hold.")
@click.option("--device", default="auto", show_default=True, metavar="DEVICE",
              help="auto (CUDA when the worker has a GPU), cpu, cuda or cuda:N.")
def command(file: str, state_dir: Path, tracking_uri: str | None, address: str | None, cpus_per_trial: float | None,
            gpus_per_trial: float | None, max_concurrent: int | None, local: bool, force: bool, device: str) -> None:
    """Score every finished cell of an experiment on the test sets of its eval: section (default: the
    scikit-image set ``skimage``): whole images under the task's protocol (mod-crop, fixed-seed
    degradation, Y channel and border crop for SR), in each precision, plus the task's baseline
    (bicubic for SR). Metrics land on each cell's MLflow run as eval/<set>/psnr, eval/<set>/ssim,
    eval/<set>/psnr_fp16…; a rerun evaluates only what is missing.

    \b
        ablate eval experiments/quickstart.yaml
        ablate eval experiments/paper/hat-mini-sr.yaml --gpus-per-trial 1
        ablate eval experiments/quickstart.yaml --local --force

    Exit status 1 when a cell could not be evaluated.
    """
    from ablate.evaluate import EvalOptions, LocalRunner, Runner, run_eval

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise click.BadParameter(f"expected auto, cpu, cuda or cuda:N, got {device!r}", param_hint="--device")
    spec = load(file)
    runner: Runner
    if local:
        runner = LocalRunner()
    else:
        from ablate.tune import RayEvalRunner

        runner = RayEvalRunner.for_spec(spec, address, cpus_per_trial, gpus_per_trial, max_concurrent)
    opts = EvalOptions(state_dir=state_dir, tracking_uri=tracking_uri, force=force, device=device)
    summary = run_eval(spec, opts, runner)
    parts = [f"{len(summary.evaluated)} evaluated"]
    if summary.up_to_date:
        parts.append(f"{len(summary.up_to_date)} already evaluated")
    if summary.failed:
        parts.append(f"{len(summary.failed)} failed")
    if summary.skipped:
        parts.append(f"{len(summary.skipped)} not evaluated ("
                     + ", ".join(sorted({why.split(':')[0] for why in summary.skipped.values()})) + ")")
    where = f" --state-dir {state_dir}" if state_dir != Path(".ablate") else ""
    uri = f" --tracking-uri {summary.tracking_uri}" if tracking_uri or spec.tracking.uri else ""
    click.echo(f"\n{spec.name}: {', '.join(parts)} in {summary.wall_s:.0f} s; the table: "
               f"`ablate report {spec.name} --eval{where}{uri}`")
    for cell_id, why in summary.failed.items():
        click.echo(f"cell {cell_id}: {why}", err=True)
    if summary.failed:
        sys.exit(1)
