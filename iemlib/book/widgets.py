"""Interactive explorers that also render as static figures.

:class:`ResponsibilityExplorer` (chapter 3) shows ``K`` sliders for the distances ``d_j``, bars
for the responsibilities ``r_j``, and bars for the gradient ``dL/dd_j`` of ``L = log sum_j
exp(-d_j)`` (the maximized objective) computed by *autograd*, next to ``-r_j``.

Widgets need a live kernel. The explorer's ``_repr_mimebundle_`` therefore returns both the
ipywidgets view and an ``image/png`` of its current state: Jupyter shows the live widget, the
HTML book (whose configuration drops the widget-view mime type) shows the PNG. It works with
ipywidgets 7.7 (what Colab ships) and 8.
:func:`responsibility_figure` is the same picture as a plain matplotlib figure.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._validation import as_float_array, check_positive
from ..objectives import lse, responsibilities
from .plotting import color

__all__ = ["autograd_lse_gradient", "responsibility_figure", "ResponsibilityExplorer"]


def _check_d(d: Any) -> np.ndarray:
    arr = as_float_array(d, "d", ndim=1)
    arr = arr.detach().cpu().numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
    return arr.astype(np.float64)


def autograd_lse_gradient(d: Any) -> np.ndarray:
    """``dL/dd`` for ``L = lse(d)`` (the maximized objective) by torch autograd, float64 numpy."""
    arr = _check_d(d)
    t = torch.tensor(arr, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(lse(t), t)
    return g.numpy()


def _draw(fig: Figure, d: np.ndarray) -> dict[str, Any]:
    """Draw the two panels on ``fig``; return the artists for later updates."""
    K = d.size
    r = responsibilities(d)
    g = autograd_lse_gradient(d)
    idx = np.arange(K)
    ax_r, ax_g = fig.subplots(1, 2)
    bars_r = ax_r.bar(idx, r, color=[color(j) for j in range(K)], edgecolor="black", linewidth=0.5)
    ax_r.set_ylim(0, 1.05)
    ax_r.set_xticks(idx, [f"{j + 1}" for j in idx])
    ax_r.set_xlabel("component j")
    ax_r.set_ylabel(r"responsibility $r_j$")
    w = 0.38
    bars_g = ax_g.bar(idx - w / 2, g, width=w, color=color(0), label=r"autograd $\partial L/\partial d_j$")
    bars_m = ax_g.bar(idx + w / 2, -r, width=w, color=color(1), hatch="//", label=r"$-r_j$")
    ax_g.set_ylim(-1.05, 0.05)
    ax_g.set_xticks(idx, [f"{j + 1}" for j in idx])
    ax_g.set_xlabel("component j")
    ax_g.set_ylabel("gradient of L (maximized)")
    ax_g.axhline(0, color="black", linewidth=0.8)
    ax_g.legend(loc="lower right", fontsize=8)
    title = fig.suptitle("")
    _update(
        {"bars_r": bars_r, "bars_g": bars_g, "bars_m": bars_m, "title": title, "ax_r": ax_r}, d
    )
    fig.tight_layout()
    return {"bars_r": bars_r, "bars_g": bars_g, "bars_m": bars_m, "title": title, "ax_r": ax_r}


def _update(artists: dict[str, Any], d: np.ndarray) -> None:
    r = responsibilities(d)
    g = autograd_lse_gradient(d)
    for bar, val in zip(artists["bars_r"], r):
        bar.set_height(val)
    for bar, val in zip(artists["bars_g"], g):
        bar.set_height(val)
    for bar, val in zip(artists["bars_m"], -r):
        bar.set_height(val)
    err = float(np.max(np.abs(g + r)))
    artists["title"].set_text(
        f"L = {float(lse(d)):.3f}   max |dL/dd + r| = {err:.1e}   d = ["
        + ", ".join(f"{v:.2f}" for v in d)
        + "]"
    )
    artists["title"].set_fontsize(9)


def responsibility_figure(d: Sequence[float] | np.ndarray | torch.Tensor, *, figsize: tuple[float, float] = (8.0, 3.2)) -> Figure:
    """Static version of the explorer at distances ``d`` (1-D, finite): responsibilities, and the
    autograd gradient of ``L`` (maximized) beside ``-r_j``. Returns a matplotlib Figure (not
    registered with pyplot, so it is displayed only when returned or shown explicitly)."""
    arr = _check_d(d)
    if not (isinstance(figsize, tuple) and len(figsize) == 2):
        raise ValueError(f"figsize must be a (width, height) tuple, got {figsize!r}")
    fig = Figure(figsize=(check_positive(figsize[0], "figsize"), check_positive(figsize[1], "figsize")))
    FigureCanvasAgg(fig)
    _draw(fig, arr)
    return fig


def _png(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def _widget_view_bundle(widget: Any, **kwargs: Any) -> dict[str, Any]:
    """The mimebundle Jupyter uses to show ``widget`` live, under ipywidgets 7 and 8.

    ipywidgets 8 widgets have ``_repr_mimebundle_``. ipywidgets 7 (7.7.1 is what Colab ships)
    display themselves through ``_ipython_display_`` instead; build the same widget-view entry
    (protocol version 2.0, the widget's model id) that it would publish."""
    if hasattr(widget, "_repr_mimebundle_"):
        return dict(widget._repr_mimebundle_(**kwargs) or {})
    bundle: dict[str, Any] = {"text/plain": repr(widget)}
    if getattr(widget, "_view_name", None) is not None:
        bundle[WIDGET_VIEW_MIME] = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}
        handle = getattr(widget, "_handle_displayed", None)
        if handle is not None:
            handle()
    return bundle


class ResponsibilityExplorer:
    """Sliders for ``d_1..d_K``; bars for ``r_j`` and for autograd ``dL/dd_j`` beside ``-r_j``.

    Parameters
    ----------
    d : 1-D sequence of finite floats
        Initial distances (``K = len(d)``, 1 to 8 components).
    d_range : float > 0
        The sliders run over ``[-d_range, d_range]``; initial values must lie in it.

    Notes
    -----
    Display the object itself (last expression of a cell). ``explorer.sliders[j].value = ...``
    moves a slider programmatically; :meth:`values` returns what the bars show.
    """

    def __init__(self, d: Sequence[float] | np.ndarray = (0.5, 1.0, 2.0), d_range: float = 6.0) -> None:
        import ipywidgets as widgets

        arr = _check_d(d)
        if arr.size > 8:
            raise ValueError(f"d must have at most 8 components for the explorer, got {arr.size}")
        self.d_range = check_positive(d_range, "d_range")
        if np.any(np.abs(arr) > self.d_range):
            raise ValueError(f"d must lie in [-d_range, d_range] = [-{self.d_range}, {self.d_range}], got {arr.tolist()}")
        self.sliders = [
            widgets.FloatSlider(
                value=float(v), min=-self.d_range, max=self.d_range, step=0.05,
                description=f"d_{j + 1}", continuous_update=False, readout_format=".2f",
            )
            for j, v in enumerate(arr)
        ]
        self.figure = Figure(figsize=(8.0, 3.2))
        FigureCanvasAgg(self.figure)
        self._artists = _draw(self.figure, arr)
        self.image = widgets.Image(value=_png(self.figure), format="png")
        self.widget = widgets.VBox([widgets.HBox([widgets.VBox(self.sliders), self.image])])
        for s in self.sliders:
            s.observe(self._on_change, names="value")

    @property
    def d(self) -> np.ndarray:
        """The current distances (slider values)."""
        return np.array([s.value for s in self.sliders], dtype=np.float64)

    def _on_change(self, change: dict | None = None) -> None:
        _update(self._artists, self.d)
        self.image.value = _png(self.figure)

    def values(self) -> dict[str, np.ndarray]:
        """The heights of the bars now drawn: ``r``, ``grad`` (autograd dL/dd), ``minus_r``."""
        return {
            "r": np.array([b.get_height() for b in self._artists["bars_r"]]),
            "grad": np.array([b.get_height() for b in self._artists["bars_g"]]),
            "minus_r": np.array([b.get_height() for b in self._artists["bars_m"]]),
        }

    def png(self) -> bytes:
        """A PNG of the current state."""
        return _png(self.figure)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        bundle = _widget_view_bundle(self.widget, include=include, exclude=exclude, **kwargs)
        bundle["image/png"] = base64.b64encode(self.png()).decode("ascii")
        bundle["text/plain"] = f"ResponsibilityExplorer(d={self.d.round(3).tolist()})"
        return bundle

    def __repr__(self) -> str:
        return f"ResponsibilityExplorer(d={self.d.round(3).tolist()})"
