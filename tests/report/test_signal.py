"""The trace summary ``ablate run`` prints first: per variant, the deepest block from its first to its last probe."""

from __future__ import annotations

from typing import Any

from ablate.report import signal_summary
from ablate.report._signal import SINGLE_SEED, deepest_site


def test_the_deepest_site_is_the_last_block_in_depth_order_not_the_final_norm() -> None:
    keys = ["feat/g0.b3/entropy", "feat/g1.b10/entropy", "feat/g1.b2/entropy", "feat/final/entropy", "feat/g1.b2/msq"]
    assert deepest_site(keys) == "g1.b10"
    assert deepest_site(["train/loss", "feat/final/entropy"]) is None


def test_one_row_per_variant_over_its_finished_cells(store: dict[str, Any]) -> None:
    text = signal_summary("ablation", store["uri"])
    lines = text.splitlines()
    assert lines[0] == "The deepest probed block g1.b3, step 1 → 20 (mean over each variant's cells):"
    header = lines[1]
    assert header.split()[:3] == ["variant", "cells", "entropy"] and header.rstrip().endswith("PSNR (dB)")
    rows = {ln.split()[0]: ln for ln in lines[3:6]}
    assert set(rows) == {"token_ln", "i_ln", "batch_norm"}
    assert rows["token_ln"].split()[1] == "2"  # the diverged seed-2 cell is not averaged in
    assert " ± " in rows["i_ln"]  # two seeds: their spread
    # the synthetic token_ln loses entropy and grows; i_ln does neither
    ent0, ent1 = (float(v) for v in rows["token_ln"].split()[2:5:2])
    assert ent1 < ent0
    assert "not a ranking" not in text


def test_given_cells_the_rows_follow_their_order(store: dict[str, Any]) -> None:
    from ablate.track import RunStore

    runs = RunStore(store["uri"]).runs("single-seed")
    order = {"batch_norm": 0, "token_ln": 1, "i_ln": 2}
    cells = [r["cell"] for r in sorted(runs, key=lambda r: order[r["norm"]])]
    rows = signal_summary("single-seed", store["uri"], cells).splitlines()[3:6]
    assert [row.split()[0] for row in rows] == ["batch_norm", "token_ln", "i_ln"]
    assert [row.split()[0] for row in signal_summary("single-seed", store["uri"], cells[1:]).splitlines()[3:5]] \
        == ["token_ln", "i_ln"]


def test_a_single_seed_says_its_psnr_is_no_ranking(store: dict[str, Any]) -> None:
    text = signal_summary("single-seed", store["uri"])
    assert " ".join(text.split()).endswith(SINGLE_SEED) and "7 dB" in text
    assert max(len(line) for line in text.splitlines()[4:]) <= 100  # the notes are wrapped
    assert signal_summary("single-seed", store["uri"], cells=["nope"]) == ""
    assert signal_summary("all-diverged", store["uri"]) == ""  # nothing finished: nothing to say
    assert signal_summary("no-such-experiment", store["uri"]) == ""
