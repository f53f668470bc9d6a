"""Tests of iemlib.book.widgets: static rendering, the mimebundle, and live updates."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from iemlib.objectives import responsibilities
from iemlib.book.widgets import ResponsibilityExplorer, autograd_lse_gradient, responsibility_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_mimebundle_has_widget_view_and_png():
    e = ResponsibilityExplorer([0.0, 1.0, 2.0, 3.0])
    bundle = e._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    # The live view points at the explorer's own box, under ipywidgets 7 (Colab) and 8 alike.
    assert view["model_id"] == e.widget.model_id and view["version_major"] == 2
    assert "image/png" in bundle and "text/plain" in bundle
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(PNG_MAGIC)
    assert e.png().startswith(PNG_MAGIC)


def test_bars_show_responsibilities_and_autograd_gradient():
    d = [0.5, 1.0, 2.0]
    e = ResponsibilityExplorer(d)
    v = e.values()
    r = responsibilities(np.array(d))
    np.testing.assert_allclose(v["r"], r, rtol=1e-14)
    np.testing.assert_allclose(v["minus_r"], -r, rtol=1e-14)
    np.testing.assert_allclose(v["grad"], -r, rtol=1e-12, atol=1e-15)


def test_moving_a_slider_updates_bars_and_png():
    e = ResponsibilityExplorer([0.5, 1.0, 2.0])
    before_png = e.png()
    before = e.values()
    e.sliders[0].value = 3.0
    after = e.values()
    np.testing.assert_array_equal(e.d, [3.0, 1.0, 2.0])
    r = responsibilities(np.array([3.0, 1.0, 2.0]))
    np.testing.assert_allclose(after["r"], r, rtol=1e-14)
    np.testing.assert_allclose(after["grad"], -r, rtol=1e-12, atol=1e-15)
    assert after["r"][0] < before["r"][0]  # moved away: less responsibility
    assert after["r"][1] > before["r"][1]
    assert e.png() != before_png
    assert e.image.value == e.png()
    assert "3.0" in repr(e)


def test_autograd_gradient_values():
    d = np.array([0.0, np.log(3.0)])
    np.testing.assert_allclose(autograd_lse_gradient(d), [-0.75, -0.25], rtol=1e-14)
    np.testing.assert_allclose(autograd_lse_gradient(torch.tensor([1.0, 1.0])), [-0.5, -0.5])


def test_static_figure():
    fig = responsibility_figure([1.0, 2.0, 0.0])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, responsibilities(np.array([1.0, 2.0, 0.0])), rtol=1e-14)


def test_bad_input():
    with pytest.raises(ValueError, match="^d "):
        responsibility_figure([np.nan, 1.0])
    with pytest.raises(ValueError, match="^d "):
        responsibility_figure(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="^d "):
        autograd_lse_gradient([])
    with pytest.raises(ValueError, match="figsize"):
        responsibility_figure([1.0], figsize=(0, 3))
    with pytest.raises(ValueError, match="figsize"):
        responsibility_figure([1.0], figsize=5)
    with pytest.raises(ValueError, match="^d must have at most 8"):
        ResponsibilityExplorer(np.zeros(9))
    with pytest.raises(ValueError, match="^d must lie in"):
        ResponsibilityExplorer([10.0, 0.0], d_range=6.0)
    with pytest.raises(ValueError, match="d_range"):
        ResponsibilityExplorer([0.0], d_range=-1)
    with pytest.raises(ValueError, match="^d "):
        ResponsibilityExplorer("abc")


def test_widget_view_bundle_under_both_ipywidgets_apis():
    """ipywidgets 8 widgets have _repr_mimebundle_; ipywidgets 7 (Colab's 7.7.1) do not.
    Both paths give the same widget-view entry. The colab check runs this file under 7.7.1,
    `make test` under 8."""
    from iemlib.book.widgets import WIDGET_VIEW_MIME, _widget_view_bundle

    class V7Like:  # what an ipywidgets 7 widget offers: a view name and a model id, no mimebundle
        _view_name = "VBoxView"
        model_id = "abc123"

        def __init__(self):
            self.displayed = 0

        def _handle_displayed(self):
            self.displayed += 1

        def __repr__(self):
            return "V7Like()"

    w = V7Like()
    b = _widget_view_bundle(w)
    assert b[WIDGET_VIEW_MIME] == {"version_major": 2, "version_minor": 0, "model_id": "abc123"}
    assert b["text/plain"] == "V7Like()" and w.displayed == 1

    class V8Like:
        def _repr_mimebundle_(self, **kwargs):
            return {WIDGET_VIEW_MIME: {"version_major": 2, "version_minor": 1, "model_id": "x"}}

    assert _widget_view_bundle(V8Like())[WIDGET_VIEW_MIME]["model_id"] == "x"


def test_installed_ipywidgets_is_a_supported_major_version():
    import ipywidgets

    major, minor = (int(x) for x in ipywidgets.__version__.split(".")[:2])
    assert (major, minor) >= (7, 7) and major in (7, 8), ipywidgets.__version__
