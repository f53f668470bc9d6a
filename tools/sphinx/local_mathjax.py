"""Serve MathJax from the book itself when a local copy is available, from the CDN otherwise.

A local copy is the npm package ``mathjax@3``, fetched once into a cache by ``make mathjax``
(``npm install --prefix $(MATHJAX_CACHE) mathjax@3``). When ``$MATHJAX_DIR`` (or the default
cache) holds ``node_modules/mathjax/es5/tex-mml-chtml.js``, this extension points ``mathjax_path``
at ``_static/mathjax/tex-mml-chtml.js`` and copies the parts of MathJax that page needs (the
combined TeX/MathML-to-CHTML build, its fonts and lazily loaded components, the licence) into
the build. Then every equation typesets with no network. Without a local copy, nothing changes:
Sphinx's default, the jsDelivr CDN, is used and the build says so.

It also sets the theme's ``default_mode`` (an html_context value) to ``auto`` and drops repeated inline scripts from each page: sphinx-thebe's configuration script is
registered twice (once with filename None, once with ""), and a page that declares ``const THEBE_JS_URL`` twice
throws "Identifier 'THEBE_JS_URL' has already been declared" in the browser.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)
ENTRY = "tex-mml-chtml.js"
# Combined builds other than ENTRY are never loaded by the page; everything else in es5/ may be
# (input/tex extensions on demand, output/chtml fonts, ui menu, a11y, sre).
_SKIP_TOP = {"tex-chtml-full.js", "tex-chtml-full-speech.js", "tex-chtml.js", "tex-mml-svg.js", "tex-svg.js",
             "tex-svg-full.js", "mml-chtml.js", "mml-svg.js", "node-main.js"}


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "implicit-em-book" / "mathjax"


def find_local_mathjax() -> Path | None:
    """The es5 directory of a local mathjax@3 package, or None."""
    root = Path(os.environ.get("MATHJAX_DIR") or default_cache())
    for es5 in (root / "node_modules" / "mathjax" / "es5", root / "es5", root):
        if (es5 / ENTRY).is_file():
            return es5
    return None


def _config_inited(app: Sphinx, config) -> None:
    # A first-time visitor has no stored light/dark mode; without a default the theme logs
    # "Got invalid theme mode: ." as a console error on every page. Follow the system setting.
    config.html_context.setdefault("default_mode", "auto")
    es5 = find_local_mathjax()
    app.env_local_mathjax = es5  # type: ignore[attr-defined]
    if es5 is None:
        logger.info("local_mathjax: no local mathjax@3 found (run `make mathjax`); pages load MathJax from the CDN")
        return
    config.mathjax_path = f"mathjax/{ENTRY}"
    logger.info(f"local_mathjax: serving MathJax from the build (_static/mathjax, copied from {es5})")


def _build_finished(app: Sphinx, exc: Exception | None) -> None:
    es5 = getattr(app, "env_local_mathjax", None)
    if exc is not None or es5 is None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(es5, dest, ignore=lambda d, names: [n for n in names if Path(d) == es5 and n in _SKIP_TOP])
    for extra in ("LICENSE", "package.json"):
        if (es5.parent / extra).is_file():
            shutil.copy2(es5.parent / extra, dest / extra)


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set = set()
    kept = []
    for js in scripts:
        # The same inline script arrives once with filename None, once with "".
        key = (str(getattr(js, "filename", js) or ""),
               tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept  # in place: later handlers (sphinx.ext.mathjax) add to this same list


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
