"""``ablate report``: the ablation table of an experiment, for papers (Markdown, CSV or LaTeX).

    ablate report quickstart --format latex
    ablate report quickstart --eval            # the test-set table `ablate eval` filled
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._options import state_dir_option, tracking_option


@click.command("report")
@click.argument("experiment", metavar="NAME")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True,
              help="md: Markdown tables; csv: one row per (variant, column) with every number; latex: tabular.")
@click.option("--spec", default=None, metavar="SPEC",
              help="Dashboard spec whose table layout to use (default: the norm-ablation layout).")
@click.option("--metric", default=None, metavar="KEY", help="Summary metric to tabulate (default: final/psnr).")
@click.option("--baseline", default=None, metavar="VARIANT",
              help="Variant for paired differences (default: the experiment's first variant).")
@click.option("--eval", "test_sets", is_flag=True,
              help="The test-set table instead (after `ablate eval`): variants × sets, PSNR/SSIM and fp16.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of printing.")
@state_dir_option
@tracking_option
def command(experiment: str, fmt: str, spec: str | None, metric: str | None, baseline: str | None,
            test_sets: bool, output: Path | None, state_dir: Path, tracking_uri: str | None) -> None:
    """Print the ablation table of experiment NAME: mean ± std over seeds (n beside every number; a
    best per column only when every variant has two seeds or more), paired differences against the
    baseline (95% bootstrap CI over seed pairs, paired t-test p, Holm-adjusted when several variants
    are compared) and the factor importance of the grid's axes (ANOVA).

    \b
        ablate report quickstart
        ablate report quickstart --format latex --metric final/ssim
        ablate report quickstart --format csv -o table.csv
        ablate report quickstart --eval --format latex

    With --eval: rows are the variants (in the experiment's order) after the task's baseline
    (bicubic for SR), column groups the eval: test sets, columns PSNR, SSIM and PSNR in each low
    precision; mean ± std over seeds, the best in bold only when every row has two seeds or more.
    """
    from ablate.track import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, None, state_dir)
    table: Any
    if test_sets:
        if metric or baseline:
            raise click.UsageError("--metric and --baseline are for the ablation table, not --eval")
        from ablate.report import eval_table  # each table's module imported only when asked for

        table = eval_table(experiment, uri, spec, state_dir=state_dir)
    else:
        from ablate.report import ablation_table

        table = ablation_table(experiment, uri, spec, state_dir=state_dir, metric=metric, baseline=baseline)
    text = table.to_format(fmt)
    if fmt == "md" and not test_sets:  # a search's experiment: what each variant's study spent
        from ablate.report import budget_text
        from ablate.tune import read_budgets, storage_url

        text += budget_text(read_budgets(storage_url(uri, state_dir), experiment))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
    if fmt == "csv":  # notes would corrupt the CSV on stdout
        for note in table.notes:
            click.echo(f"note: {note}", err=True)
