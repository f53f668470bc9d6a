"""Two things a reader of the site meets: optional sections folded, and launch buttons that open notebooks
Colab can render.

1. **For the skeptic.** A chapter's optional material (controls, robustness sweeps, reproduction
   forensics) sits in sections whose title starts with "For the skeptic". In the HTML book the body
   of each such section is folded in a ``<details>`` element under its (visible) title, so the
   chapter reads as its core; a reader opens a section with one click, and a link to an anchor
   inside one (the page's table of contents, a cross-reference) opens it. The PDF keeps every
   section open (the raw HTML is ignored by the LaTeX builder).
2. **Launch buttons.** The theme's Colab and Binder buttons point at the repository's ``main``
   branch, whose notebooks are MyST (Colab shows the markup raw). They are pointed instead at the
   branch that the Pages workflow publishes the converted notebooks to (``tools/colab_notebooks.py``):
   ``notebooks`` for a book built from ``main``, ``notebooks-<tag>`` for a release (whose
   ``repository.branch`` is its tag).
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

SKEPTIC = "For the skeptic"

_FOLD_SCRIPT = """
document.addEventListener("DOMContentLoaded", () => {
  const openFor = (id) => {
    if (!id) return;
    const el = document.getElementById(decodeURIComponent(id));
    let d = el && el.closest("details.skeptic");
    while (d) { d.open = true; d = d.parentElement && d.parentElement.closest("details.skeptic"); }
  };
  openFor(location.hash.slice(1));
  window.addEventListener("hashchange", () => openFor(location.hash.slice(1)));
  document.querySelectorAll('a[href^="#"]').forEach((a) =>
    a.addEventListener("click", () => openFor(a.getAttribute("href").slice(1))));
});
"""

_FOLD_STYLE = """
details.skeptic { border-left: 3px solid var(--pst-color-border, #ccc); padding-left: 0.8em; margin: 0.5em 0 1.5em; }
details.skeptic > summary { cursor: pointer; font-style: italic; color: var(--pst-color-text-muted, #555); }
details.skeptic[open] > summary { margin-bottom: 0.8em; }
"""


def is_skeptic(section: nodes.section) -> bool:
    title = section.next_node(nodes.title)
    return title is not None and title.parent is section and title.astext().startswith(SKEPTIC)


def fold_skeptic_sections(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    if app.builder.format != "html":
        return
    for section in list(doctree.findall(nodes.section)):
        if not is_skeptic(section) or len(section.children) < 2:
            continue
        opening = ('<details class="skeptic"><summary>An optional section for the skeptic: '
                   "click to show it (the chapter reads without it)</summary>")
        section.insert(1, nodes.raw("", opening, format="html"))
        section.append(nodes.raw("", "</details>", format="html"))


def notebooks_branch(branch: str) -> str:
    """Where the converted notebooks of a book built from ``branch`` live."""
    return "notebooks" if branch in ("", "main", "master") else f"notebooks-{branch}"


def _rewrite(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "url" and isinstance(value, str):
                obj[key] = _launch_url(value, old, new)
            else:
                _rewrite(value, old, new)
    elif isinstance(obj, list):
        for item in obj:
            _rewrite(item, old, new)
    return obj


def _launch_url(url: str, old: str, new: str) -> str:
    if "colab.research.google.com/github/" in url:
        return re.sub(r"(/github/[^/]+/[^/]+/blob/)" + re.escape(old) + "/", r"\g<1>" + new + "/", url)
    if "/v2/gh/" in url:  # Binder
        return re.sub(r"(/v2/gh/[^/]+/[^/]+/)" + re.escape(old) + r"(\?|$)", r"\g<1>" + new + r"\2", url)
    return url


def launch_converted_notebooks(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    branch = app.config.html_theme_options.get("repository_branch", "main") or "main"
    if "header_buttons" in context:
        _rewrite(context["header_buttons"], branch, notebooks_branch(branch))


def setup(app: Sphinx) -> dict:
    app.connect("doctree-resolved", fold_skeptic_sections)
    app.connect("html-page-context", launch_converted_notebooks, priority=700)  # after the theme's (501)
    app.add_js_file(None, body=_FOLD_SCRIPT)
    app.add_js_file(None, body=f"document.head.insertAdjacentHTML('beforeend', `<style>{_FOLD_STYLE}</style>`);")
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
