"""One colour-blind-safe plotting style for every chapter.

The palette is Okabe & Ito's (distinguishable under the common colour-vision deficiencies);
sequential maps use ``cividis``/``viridis``. Call :func:`use_book_style` once per notebook.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt

__all__ = ["OKABE_ITO", "PALETTE", "SEQUENTIAL_CMAP", "DIVERGING_CMAP", "use_book_style", "color"]

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
