"""iemlib.book.report and the plotting helpers: tables and figures the chapters build in one call."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from iemlib.book.plotting import band, heatmap, legend_key, text_color  # noqa: E402
from iemlib.book.report import Column, markdown_table, mean_ci, mean_range, mean_sd, median_range, report  # noqa: E402


def test_table_layout_and_formats():
    rows = [{"run": "EM", "loss": [1.0, 1.2, 1.1], "n": 3, "ok": True},
            {"run": "a|b", "loss": np.array([2.0, np.nan, 2.2]), "n": 2, "ok": False}]
    text = markdown_table(rows, ["run", Column("loss", fmt=".3f"), "n", "ok"])
    lines = text.splitlines()
    assert lines[0] == "| run | loss | n | ok |" and lines[1] == "|---|---|---|---|"
    # mean ± sample sd (ddof = 1): sd of (1.0, 1.2, 1.1) is 0.1
    assert lines[2] == "| EM | 1.100 ± 0.100 | 3 | yes |"
    # a pipe is escaped; the NaN run is left out and counted
    assert lines[3] == "| a\\|b | 2.100 ± 0.141 (1 NaN) | 2 | no |"


def test_spreads_and_tuples_and_functions():
    rows = [{"v": [3.0, 1.0, 2.0, 10.0]}]
    t = markdown_table(rows, [Column("median", key="v", fmt=".1f", spread="range"),
                              Column("mean", key="v", fmt=".2f", spread="mean"),
                              ("twice", lambda r: 2 * r["v"][0], ".0f"), ("v", ".1f")])
    assert t.splitlines()[2] == "| 2.5 [1.0, 10.0] | 4.00 | 6 | 4.0 ± 4.1 |"


def test_rows_from_dataclasses_and_mapping_of_rows():
    @dataclasses.dataclass(frozen=True)
    class R:
        name: str
        loss: float

    t = markdown_table([R("a", 0.5), R("b", 0.25)], fmt=".2f")
    assert t.splitlines()[0] == "| name | loss |" and t.splitlines()[3] == "| b | 0.25 |"
    t2 = markdown_table({"x": {"loss": 1.0}, "y": R("q", 2.0)}, ["", "loss"], fmt=".1f")
    assert t2.splitlines()[2:] == ["| x | 1.0 |", "| y | 2.0 |"]


def test_report_displays_as_markdown_with_caption():
    t = report([{"a": 1.23456}], caption="± over 5 seeds")
    assert t._repr_markdown_().endswith("\n\n± over 5 seeds") and "| 1.235 |" in str(t)


def test_tensor_values_and_none():
    t = markdown_table([{"x": torch.tensor([1.0, 3.0]), "y": None, "z": np.float32(0.5)}], fmt=".2f")
    assert t.splitlines()[2] == "| 2.00 ± 1.41 | — | 0.50 |"


@pytest.mark.parametrize("bad, match", [
    (dict(rows=[]), "rows must not be empty"),
    (dict(rows=[{"a": 1}], columns=["b"]), "no key 'b'"),
    (dict(rows=[{"a": 1}], columns=[3]), "a column must be"),
    (dict(rows=[object()]), "columns must be given"),
])
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        markdown_table(**bad)


@pytest.mark.parametrize("kw, match", [(dict(spread="iqr"), "spread"), (dict(ddof=2), "ddof"), (dict(fmt="%d"), "fmt")])
def test_bad_column(kw, match):
    with pytest.raises(ValueError, match=match):
        Column("x", **kw)


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=20))
def test_mean_sd_matches_numpy(values):
    a = np.asarray(values)
    assert mean_sd(values, ".6e") == f"{a.mean():.6e} ± {a.std(ddof=1):.6e}"


def test_median_range_and_ci():
    assert median_range([5, 1, 3]) == "3 [1, 5]"
    assert mean_range([5, 1, 3, 7], ".1f") == "4.0 [1.0, 7.0]"
    assert markdown_table([{"v": [1.0, np.nan, 2.0]}], [Column("v", fmt=".2f", spread="minmax")]).splitlines()[2] \
        == "| 1.50 [1.00, 2.00] (1 NaN) |"
    s = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0], ".2f")
    est, lo, hi = (float(v) for v in s.replace("[", "").replace("]", "").replace(",", "").split())
    assert est == 3.0 and 1.0 <= lo < est < hi <= 5.0
    assert mean_ci([1.0, 2.0, 3.0]) == mean_ci([1.0, 2.0, 3.0])  # seeded: the same interval twice


def test_text_color_follows_luminance():
    assert text_color("white") == "black" and text_color("black") == "white"
    assert text_color("#F0E442") == "black" and text_color("#0072B2") == "white"  # Okabe-Ito yellow / blue


def test_heatmap_labels_every_cell_readably():
    fig, ax = plt.subplots()
    M = np.array([[0.0, 0.5], [np.nan, 1.0]])
    heatmap(ax, M, row_labels=["a", "b"], col_labels=["c", "d"], cmap="viridis")
    texts = {t.get_text(): t.get_color() for t in ax.texts}
    assert set(texts) == {"0.000", "0.500", "—", "1.000"}
    assert texts["0.000"] == "white" and texts["1.000"] == "black"  # viridis: dark purple, light yellow
    plt.close(fig)
    with pytest.raises(ValueError, match="2-D"):
        heatmap(ax, [1.0, 2.0])


def test_band_and_legend_key():
    fig, ax = plt.subplots()
    runs = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, np.nan]])
    line = band(ax, np.arange(3), runs, label="x")
    np.testing.assert_allclose(line.get_ydata(), [1.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="runs must have shape"):
        band(ax, np.arange(4), runs)
    assert legend_key("start", "s").get_marker() == "o"
    with pytest.raises(ValueError, match="kind must be"):
        legend_key("arrow", "a")
    plt.close(fig)
