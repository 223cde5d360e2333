"""ablate.report.table: fixed-width plain-text tables."""

from __future__ import annotations

from ablate.report import table


def test_columns_align_and_numbers_right_align() -> None:
    rows = [{"id": "a1", "norm": "token_ln", "psnr": 31.25, "ok": True},
            {"id": "b22", "norm": "i_ln", "psnr": 7.5, "ok": False}]
    out = table(rows, ["id", "norm", "psnr", "ok"])
    assert out.splitlines() == [
        "id   norm       psnr  ok",
        "---  --------  -----  -----",
        "a1   token_ln  31.25  true",
        "b22  i_ln        7.5  false",
    ]


def test_default_columns_missing_values_headers_and_nested_values() -> None:
    rows = [{"a": 1, "b": None}, {"a": 2, "c": [0.9, 0.99], "d": {"name": "adam", "lr": 0.0002}}]
    out = table(rows, headers={"a": "A"}).splitlines()
    assert out[0].split() == ["A", "b", "c", "d"]
    assert out[2].split() == ["1", "-", "-", "-"]
    assert out[3].split() == ["2", "-", "0.9,0.99", "name=adam,lr=0.0002"]
    assert all(line == line.rstrip() for line in out)


def test_values_never_break_a_row() -> None:
    out = table([{"x": "two\nlines"}])
    assert out.splitlines()[-1] == "two lines"


def test_empty_rows_print_the_header() -> None:
    assert table([], ["id", "norm"]).splitlines() == ["id  norm", "--  ----"]
