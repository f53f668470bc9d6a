"""One colour-blind-safe plotting style for every chapter.

The palette is Okabe & Ito's (distinguishable under the common colour-vision deficiencies);
sequential maps use ``cividis``/``viridis``. Call :func:`use_book_style` once per notebook.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt

__all__ = [
    "OKABE_ITO", "PALETTE", "SEQUENTIAL_CMAP", "DIVERGING_CMAP", "use_book_style", "color",
    "band", "heatmap", "text_color", "legend_key",
]

OKABE_ITO: dict[str, str] = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}
#: Order in which categorical series are coloured (yellow last: weak on white).
PALETTE: Sequence[str] = tuple(
    OKABE_ITO[k] for k in ("blue", "orange", "green", "vermillion", "sky", "purple", "black", "yellow")
)
SEQUENTIAL_CMAP = "cividis"
DIVERGING_CMAP = "PuOr"


def color(i: int) -> str:
    """The ``i``-th categorical colour (cycles)."""
    return PALETTE[int(i) % len(PALETTE)]


def use_book_style(dpi: int = 100) -> None:
    """Apply the book's matplotlib style: palette, sizes, grid, and a non-interactive-safe dpi."""
    mpl.rcParams.update(
        {
            "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
            "image.cmap": SEQUENTIAL_CMAP,
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "figure.figsize": (6.4, 4.0),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
            "legend.frameon": False,
            "lines.linewidth": 1.8,
        }
    )
    plt.close("all")


# ------------------------------------------------------------------------------------------------
# Figures that recur: a mean ± sd band over seeds, an annotated heat map, legend keys.
# ------------------------------------------------------------------------------------------------
def band(ax, x, runs, *, color: str | None = None, label: str | None = None, ddof: int = 1,
         alpha: float = 0.25, **plot_kwargs):
    """Plot the mean over runs (rows of ``runs``, shape (n_runs, len(x))) with a ``± sd`` band.

    NaN entries (diverged runs) are left out of the mean and the sd. ``ddof = 1`` by the book's
    convention. Returns the mean line.
    """
    import numpy as np

    a = np.asarray(runs.detach().cpu().numpy() if hasattr(runs, "detach") else runs, dtype=float)
    if a.ndim != 2 or a.shape[1] != len(x):
        raise ValueError(f"runs must have shape (n_runs, {len(x)}), got {a.shape}")
    import warnings

    with warnings.catch_warnings():  # a step where every run but one diverged has no sd: no band there
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(a, 0)
        s = np.nan_to_num(np.nanstd(a, 0, ddof=ddof)) if a.shape[0] > ddof else np.zeros_like(m)
    (line,) = ax.plot(x, m, color=color, label=label, **plot_kwargs)
    ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=alpha, lw=0)
    return line


def text_color(rgba) -> str:
    """Black or white, whichever reads better on a background colour ``rgba`` (relative luminance
    of sRGB, WCAG's formula, threshold 0.179)."""
    import numpy as np

    c = np.asarray(mpl.colors.to_rgba(rgba)[:3], dtype=float)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lum = float(lin @ np.array([0.2126, 0.7152, 0.0722]))
    return "black" if lum > 0.179 else "white"


def heatmap(ax, values, *, row_labels=None, col_labels=None, labels=None, cmap: str = SEQUENTIAL_CMAP,
            vmin=None, vmax=None, fontsize: float = 8, **imshow_kwargs):
    """An annotated heat map of a 2-D array: each cell's text (``labels[i][j]``, default the value to
    three decimals) in black or white by the luminance of its own background. NaN cells are grey
    and labelled by ``labels`` (default ``"—"``). Returns the image (for a colour bar)."""
    import numpy as np

    M = np.asarray(values, dtype=float)
    if M.ndim != 2:
        raise ValueError(f"values must be a 2-D array, got shape {M.shape}")
    cm = (mpl.colormaps[cmap] if isinstance(cmap, str) else cmap).with_extremes(bad="0.75")
    im = ax.imshow(np.ma.masked_invalid(M), cmap=cm, vmin=vmin, vmax=vmax, **imshow_kwargs)
    for (i, j), v in np.ndenumerate(M):
        txt = labels[i][j] if labels is not None else ("—" if not np.isfinite(v) else f"{v:.3f}")
        bg = "0.75" if not np.isfinite(v) else im.cmap(im.norm(v))
        ax.text(j, i, txt, ha="center", va="center", fontsize=fontsize, color=text_color(bg))
    if col_labels is not None:
        ax.set_xticks(range(M.shape[1]), col_labels)
    if row_labels is not None:
        ax.set_yticks(range(M.shape[0]), row_labels)
    ax.grid(False)
    return im


def legend_key(kind: str, label: str, color: str = "0.2", **kwargs):
    """One legend entry (a handle for ``ax.legend(handles=...)``) for the book's recurring marks:
    ``"start"`` (open circle: where a run starts), ``"path"`` (line with dots: a trajectory),
    ``"ellipse"`` (line: a fitted component's level set), ``"point"`` (filled dot), ``"swatch"``
    (thick line: a colour's meaning), ``"dashed"`` (a reference level)."""
    from matplotlib.lines import Line2D

    styles = {
        "start": dict(ls="none", marker="o", mfc="white", mec=color, ms=8),
        "path": dict(color=color, marker="o", ms=2.5, lw=1.2),
        "ellipse": dict(color=color, lw=1.5),
        "point": dict(ls="none", marker="o", color=color, ms=5),
        "swatch": dict(color=color, lw=4),
        "dashed": dict(color=color, lw=1.2, ls="--"),
    }
    if kind not in styles:
        raise ValueError(f"kind must be one of {sorted(styles)}, got {kind!r}")
    return Line2D([], [], label=label, **{**styles[kind], **kwargs})
