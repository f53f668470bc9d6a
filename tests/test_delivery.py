"""Unit tests of the delivery tools: the local-MathJax Sphinx extension and the Colab notebook runner."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "sphinx"))
sys.path.insert(0, str(ROOT / "tools" / "colab"))
import local_mathjax  # noqa: E402
import run_notebooks  # noqa: E402


def _fake_mathjax(root: Path) -> Path:
    es5 = root / "node_modules" / "mathjax" / "es5"
    (es5 / "output" / "chtml" / "fonts").mkdir(parents=True)
    (es5 / "tex-mml-chtml.js").write_text("// entry")
    (es5 / "tex-svg.js").write_text("// unused combined build")
    (es5 / "output" / "chtml" / "fonts" / "a.woff").write_text("font")
    (es5.parent / "LICENSE").write_text("Apache-2.0")
    return es5


def test_local_mathjax_is_found_in_the_cache_or_not_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("MATHJAX_DIR", str(tmp_path))
    assert local_mathjax.find_local_mathjax() is None
    es5 = _fake_mathjax(tmp_path)
    assert local_mathjax.find_local_mathjax() == es5


class _App(SimpleNamespace):
    pass


@pytest.mark.parametrize("present", [True, False])
def test_mathjax_path_is_local_only_when_a_copy_exists(tmp_path, monkeypatch, present):
    monkeypatch.setenv("MATHJAX_DIR", str(tmp_path))
    if present:
        _fake_mathjax(tmp_path)
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    config = SimpleNamespace(mathjax_path=cdn, html_context={})
    app = _App()
    local_mathjax._config_inited(app, config)
    assert config.mathjax_path == ("mathjax/tex-mml-chtml.js" if present else cdn)
    assert config.html_context["default_mode"] == "auto"


def test_build_finished_copies_what_the_page_loads(tmp_path, monkeypatch):
    es5 = _fake_mathjax(tmp_path / "cache")
    out = tmp_path / "html"
    app = _App(env_local_mathjax=es5, outdir=str(out), builder=SimpleNamespace(format="html"))
    local_mathjax._build_finished(app, None)
    dest = out / "_static" / "mathjax"
    assert (dest / "tex-mml-chtml.js").is_file() and (dest / "output" / "chtml" / "fonts" / "a.woff").is_file()
    assert (dest / "LICENSE").read_text() == "Apache-2.0"
    assert not (dest / "tex-svg.js").exists()


def test_repeated_inline_scripts_are_dropped_in_place():
    from sphinx.builders.html._assets import _JavaScript

    scripts = [_JavaScript("a.js"), _JavaScript(None, body="const X = 1"), _JavaScript("b.js"),
               _JavaScript("", body="const X = 1"), _JavaScript("a.js")]
    ctx = {"script_files": scripts}
    local_mathjax._dedupe_scripts(None, "p", "page.html", ctx, None)
    assert ctx["script_files"] is scripts  # later handlers add to this very list
    assert [(s.filename, s.attributes.get("body")) for s in scripts] == [("a.js", None), (None, "const X = 1"), ("b.js", None)]


def test_runner_reports_error_outputs_and_printed_tracebacks():
    nb = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("1")
    ok.outputs = [nbformat.v4.new_output("stream", name="stdout", text="fine\n")]
    bad = nbformat.v4.new_code_cell("1/0")
    bad.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])]
    printed = nbformat.v4.new_code_cell("")
    printed.outputs = [nbformat.v4.new_output("stream", name="stderr", text="Traceback (most recent call last):\n")]
    nb.cells = [ok, bad, printed]
    assert run_notebooks._errors(nb) == ["cell 1: ZeroDivisionError: division by zero", "cell 2: traceback printed on stderr"]


def test_runner_executes_a_notebook_and_fails_on_an_error(tmp_path):
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)")])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise ValueError('boom')")])
    for name, nb in (("good.ipynb", good), ("bad.ipynb", bad)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / name)
    (tmp_path / "out").mkdir()
    name, _, problems = run_notebooks.run_one(str(tmp_path / "good.ipynb"), str(tmp_path / "out"), 60)
    assert problems == [] and name == "good.ipynb"
    executed = nbformat.read(tmp_path / "out" / "good.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "42\n"
    _, _, problems = run_notebooks.run_one(str(tmp_path / "bad.ipynb"), str(tmp_path / "out"), 60)
    assert len(problems) == 1 and "boom" in problems[0]
