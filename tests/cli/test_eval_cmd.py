"""``ablate eval`` and ``ablate report --eval`` as a user runs them.

The slow test is the README's quickstart, ending in ``ablate eval`` and ``ablate report --eval``, on a
10-step copy of ``experiments/quickstart.yaml`` from a clean state folder: the ``ablate`` commands
in subprocesses (with the real stdout), attached to the session's Ray. The copy evaluates in fp32
only, on 96×96 crops of the quickstart's two test pictures (a ``folder`` set named ``crops``): on
this machine the whole pictures cost 7 cells about 35 CPU-seconds of attention over 60,000 tokens, and
float16 about 4× fp32's time (no fast float16 matmul or convolution on this CPU). The ``skimage`` set of
whole pictures is checked in tests/evaluate/test_testsets.py; evaluation in float16 and bfloat16, a
rerun that evaluates only what is missing, and the low-precision columns of the table are covered on
small crops in tests/evaluate and tests/report. That the numbers are the trainer's own on identical
images (the bicubic baseline included) is checked in tests/evaluate/test_driver.py on cells small
enough to train in the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _ablate(ray_address: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR")}
    env["RAY_ADDRESS"] = ray_address
    return subprocess.run([sys.executable, "-c", "from ablate.cli import main; main()", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=1800)


def test_eval_without_runs_or_with_a_bad_device_is_one_line(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from ablate.testing.synthetic import prepared_store

    spec = tmp_path / "one.yaml"
    spec.write_text("name: nothing-run\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n")
    state = tmp_path / "state"
    cache = getattr(request.config, "cache", None)
    prepared_store(state, cache.mkdir("ablate-mlflow") if cache is not None else tmp_path / "template")
    res = CliRunner().invoke(main, ["eval", str(spec), "--local", "--state-dir", str(state)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith(
        "error: experiment 'nothing-run' has no finished cell in sqlite:")
    res = CliRunner().invoke(main, ["eval", str(spec), "--device", "tpu"])
    assert res.exit_code == 2 and "expected auto, cpu, cuda or cuda:N, got 'tpu'" in res.output


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 7 cells trained, then evaluated: minutes on a busy 2-core machine
def test_quickstart_run_eval_report(ray_session: str, tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data

    quick = (ROOT / "experiments" / "quickstart.yaml").read_text()
    sets = "  sets: {skimage: skimage}"
    assert "steps: 200" in quick and "every: 25" in quick and "precisions: [fp32, fp16]" in quick and sets in quick
    small = (quick.replace("steps: 200", "steps: 10").replace("every: 25", "every: 5")
             .replace("precisions: [fp32, fp16]", "precisions: [fp32]")
             .replace(sets, "  sets: {crops: {name: folder, path: crops}}"))
    (tmp_path / "experiments" / "crops").mkdir(parents=True)
    for name in ("coffee", "chelsea"):  # the skimage set's pictures, their centre 96×96
        picture = getattr(data, name)()
        top, left = (picture.shape[0] - 96) // 2, (picture.shape[1] - 96) // 2
        Image.fromarray(picture[top:top + 96, left:left + 96]).save(tmp_path / "experiments" / "crops" / f"{name}.png")
    (tmp_path / "experiments" / "quickstart.yaml").write_text(small)
    run = _ablate(ray_session, tmp_path, "run", "experiments/quickstart.yaml", "--no-dashboard")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "quickstart: 7 finished" in run.stdout
    # the traces come before where the results are, with the warning that one seed's PSNR ranks nothing
    assert run.stdout.index("The deepest probed block") < run.stdout.index("results: MLflow")
    assert "one seed per variant is not a ranking" in run.stdout
    ev = _ablate(ray_session, tmp_path, "eval", "experiments/quickstart.yaml")
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert "evaluating 7 cells of 'quickstart' on crops; precisions fp32; on Ray (1 CPU per cell)" in ev.stdout
    assert "bicubic · sr-x2" in ev.stdout and "[7/7]" in ev.stdout and "quickstart: 7 evaluated" in ev.stdout
    report = _ablate(ray_session, tmp_path, "report", "quickstart", "--eval")
    assert report.returncode == 0, report.stdout + report.stderr
    print(report.stdout)
    lines = report.stdout.splitlines()
    assert "| variant | n | crops PSNR | crops SSIM |" in lines
    rows = [line.split(" | ")[0][2:] for line in lines if line.startswith("| ") and "variant" not in line]
    # the experiment's order: the grid (norm slowest, then rescale), then the included i_ln
    assert rows == ["bicubic", "token_ln", "token_ln+rescale", "batch_norm", "batch_norm+rescale", "global_ln",
                    "global_ln+rescale", "i_ln"]
    from ablate.track import Tracker

    cells = Tracker(None, tmp_path / ".ablate").cell_runs("quickstart", latest=True)
    assert len(cells) == 7
    for c in cells:
        m = c["metrics"]
        assert 10 < m["eval/crops/psnr"] < 60 and 0 < m["eval/crops/ssim"] <= 1, c["norm"]
        assert not [k for k in m if k.startswith("eval/crops/psnr_")
                    and k != "eval/crops/psnr_input"], m  # the precisions asked for only
    # the bicubic baseline is one number for the task: every cell carries the same
    assert len({c["metrics"]["eval/crops/psnr_input"] for c in cells}) == 1
