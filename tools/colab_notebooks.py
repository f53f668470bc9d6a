#!/usr/bin/env python
"""The notebooks a reader runs: the chapters with their MyST converted to what Jupyter and Colab render.

    python tools/colab_notebooks.py build CHAPTERS OUT [--env PICKLE] [--base-url URL]
    python tools/colab_notebooks.py check OUT      # render with plain CommonMark; exit 1 on MyST left over

The book's notebooks are MyST: directives (``:::{admonition}``, ``:::{dropdown}``, ``{exercise}``),
roles (``{cite:p}``, ``{numref}``, ``{doc}``) and targets (``(label)=``). Jupyter Book renders them;
Colab and a JupyterLab without ``jupyterlab-myst`` show them as raw text, quick-check answers included.
``build`` writes two editions of every chapter, from the committed (stripped) notebooks:

- ``OUT/chapters/``: the reader's notebooks (the rocket button and the README open these);
- ``OUT/student/``: the student notebooks, solutions removed as ``tools/student.py`` removes them.

What becomes what:

- an admonition (``{admonition}``, ``{note}``, ``{tip}``, ...) becomes a blockquote with its title in
  bold; a ``{dropdown}`` (every quick check's answer) becomes an HTML ``<details>`` block, folded
  until the reader opens it; an ``{exercise}`` becomes a blockquote "Exercise 4.2" with its label;
- a gated solution (``{solution-start}`` ... ``{solution-end}``) becomes a heading "Solution to
  Exercise 4.2", its prose folded in ``<details>`` and its code cells folded with Colab's form
  mode (``# @title``; a plain comment in Jupyter);
- ``{cite:t}`` and ``{cite:p}`` become author–year text, and the chapter's references are listed in
  a last cell; ``{numref}``, ``{ref}``, ``{doc}`` and ``{eq}`` become links to the published pages,
  numbered as the site numbers them (read from the Sphinx environment of the HTML build,
  ``_build/.doctrees/environment.pickle``); ``(label)=`` targets are dropped;
- a figure declared in a code cell's ``mystnb`` metadata gets its caption, "Fig. 4.2. ...", in a
  Markdown cell under the cell; cells the site folds (``hide-input``) are folded in Colab's form mode.

Anything else in MyST syntax is an error, so that a new directive cannot slip through unconverted.
``check`` renders every Markdown cell with markdown-it-py's CommonMark preset (no MyST plugin) and
fails on any directive, role or target syntax in the result.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import student  # noqa: E402  (tools/student.py: which cells are solutions)

_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>:{3,}|`{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")
_OPTION = re.compile(r"^[ \t]*:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
_ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]*)`")
_ROLE_OR_CODE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]*)`|``[^`]+``|`[^`\n]+`")
_TARGET = re.compile(r"^[ \t]*\((?P<label>[\w:-]+)\)=[ \t]*$", re.M)
_ADMONITIONS = {"note": "Note", "tip": "Tip", "important": "Important", "warning": "Warning",
                "caution": "Caution", "hint": "Hint", "seealso": "See also", "attention": "Attention"}
_NUMFIG_FORMAT = {"figure": "Fig. %s", "table": "Table %s", "code-block": "Listing %s",
                  "section": "Section %s", "exercise": "Exercise %s"}
#: What ``check`` reports: MyST syntax that plain CommonMark leaves as text.
LEFTOVER = {
    "directive": re.compile(r"(:{3,}|`{3,})\{[\w:-]+\}"),
    "role": re.compile(r"\{[\w:-]+\}`"),
    "target": re.compile(r"^\([\w:-]+\)=\s*$", re.M),
    "option": re.compile(r"^:(class|label|name|open):", re.M),
    "relative link": re.compile(r"\]\((?![a-z]+:|#)[^)\s]+\.(md|ipynb)(#[^)\s]*)?\)"),
}


class ConversionError(ValueError):
    pass


# --------------------------------------------------------------------------------------------
# References: labels, numbers, titles (from the HTML build), citations (from the .bib file)


@dataclass
class Resolver:
    """Turns labels and citation keys into links and author–year text."""

    base_url: str
    labels: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # label -> (doc, id, title)
    titles: dict[str, str] = field(default_factory=dict)  # docname -> title
    secnumbers: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    fignumbers: dict[str, dict[str, dict[str, tuple[int, ...]]]] = field(default_factory=dict)
    equations: dict[str, tuple[str, int]] = field(default_factory=dict)
    bib: dict[str, dict] = field(default_factory=dict)
    cited: list[str] = field(default_factory=list)

    @classmethod
    def from_build(cls, env_pickle: Path, bibfile: Path, base_url: str) -> "Resolver":
        with open(env_pickle, "rb") as fh:
            env = pickle.load(fh)
        std = env.domaindata["std"]
        labels = {k: tuple(v) for k, v in std["labels"].items()}
        for k, (doc, lid) in std["anonlabels"].items():
            labels.setdefault(k, (doc, lid, ""))
        titles = {doc: node.astext() for doc, node in env.titles.items()}
        eqs = {k: (v[0], v[1]) for k, v in env.domaindata.get("math", {}).get("objects", {}).items()}
        return cls(base_url=base_url.rstrip("/") + "/", labels=labels, titles=titles,
                   secnumbers=dict(env.toc_secnumbers), fignumbers=dict(env.toc_fignumbers),
                   equations=eqs, bib=read_bib(bibfile))

    def url(self, doc: str, anchor: str = "") -> str:
        return f"{self.base_url}{doc}.html" + (f"#{anchor}" if anchor else "")

    def _label(self, label: str) -> tuple[str, str, str]:
        if label not in self.labels:
            raise ConversionError(f"unknown label {label!r}")
        return self.labels[label]

    def number(self, label: str) -> tuple[str, str]:
        """(kind, "8.2") of a numbered label: a figure, an exercise, a section, a chapter."""
        doc, lid, _ = self._label(label)
        for kind, ids in self.fignumbers.get(doc, {}).items():
            if lid in ids:
                return kind, ".".join(map(str, ids[lid]))
        secs = self.secnumbers.get(doc, {})
        for key in (f"#{lid}", ""):
            if key in secs and (key or self._is_title(doc, lid)):
                return "section", ".".join(map(str, secs[key]))
        raise ConversionError(f"label {label!r} has no number (an unnumbered page? use {{ref}})")

    def _is_title(self, doc: str, lid: str) -> bool:
        return self.labels.get(lid, (None,))[0] == doc

    def numref(self, text: str) -> str:
        fmt, label = _split_target(text)
        kind, num = self.number(label)
        doc, lid, _ = self._label(label)
        shown = (fmt or _NUMFIG_FORMAT.get(kind, "%s")).replace("%s", num).replace("{number}", num)
        return f"[{shown}]({self.url(doc, lid)})"

    def ref(self, text: str) -> str:
        shown, label = _split_target(text)
        doc, lid, title = self._label(label)
        if not shown:
            shown = title or self.titles.get(doc, label)
        return f"[{shown}]({self.url(doc, lid)})"

    def doc(self, text: str, current: str) -> str:
        shown, target = _split_target(text)
        if target.startswith("/"):
            doc = target.lstrip("/")
        else:
            doc = str(Path(current).parent / target).replace("\\", "/")
            doc = re.sub(r"(^|/)\./", r"\1", doc)
        if doc not in self.titles:
            raise ConversionError(f"{{doc}} to an unknown page {target!r} (from {current})")
        return f"[{shown or self.titles[doc]}]({self.url(doc)})"

    def eq(self, text: str) -> str:
        _, label = _split_target(text)
        if label not in self.equations:
            raise ConversionError(f"unknown equation {label!r}")
        doc, num = self.equations[label]
        return f"[({num})]({self.url(doc, 'equation-' + label)})"

    def cite(self, keys: str, parenthetical: bool) -> str:
        parts = []
        for key in [k.strip() for k in keys.split(",") if k.strip()]:
            if key not in self.bib:
                raise ConversionError(f"unknown citation key {key!r}")
            if key not in self.cited:
                self.cited.append(key)
            e = self.bib[key]
            parts.append(f"{e['authors']}, {e['year']}" if parenthetical else f"{e['authors']} ({e['year']})")
        return f"({'; '.join(parts)})" if parenthetical else ", ".join(parts)

    def references_cell(self) -> str:
        lines = ["## References", ""]
        for key in sorted(self.cited, key=lambda k: (self.bib[k]["sort"], self.bib[k]["year"])):
            lines.append(f"- {self.bib[key]['full']}")
        return "\n".join(lines) + "\n"


def _split_target(text: str) -> tuple[str, str]:
    """``"shown <target>"`` -> (shown, target); ``"target"`` -> ("", target)."""
    m = re.match(r"^(.*?)\s*<([^<>]+)>\s*$", text, flags=re.S)
    return (m.group(1).strip(), m.group(2).strip()) if m else ("", text.strip())


def _latex_to_text(s: str) -> str:
    import codecs

    import latexcodec  # noqa: F401  (pybtex's dependency; registers the "ulatex" codec)

    s = codecs.decode(s, "ulatex")
    s = re.sub(r"\\[a-zA-Z]+\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\['`^\"~=.]\{?([a-zA-Z])\}?", r"\1", s)
    s = s.replace("{", "").replace("}", "").replace("\\&", "&").replace("--", "–").replace("~", " ")
    return re.sub(r"\s+", " ", s).strip()


def read_bib(path: Path) -> dict[str, dict]:
    """Each entry's author–year label ("Dempster et al.", "1977") and a one-line reference."""
    from pybtex.database import parse_file

    out = {}
    for key, entry in parse_file(str(path)).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [_latex_to_text(" ".join(p.prelast_names + p.last_names)) for p in people]
        if not last:
            authors = _latex_to_text(entry.fields.get("organization", entry.fields.get("title", key)))
        elif len(last) == 1:
            authors = last[0]
        elif len(last) == 2:
            authors = f"{last[0]} and {last[1]}"
        else:
            authors = f"{last[0]} et al."
        full_names = []
        for p in people:
            first = " ".join(n[0] + "." for n in p.first_names + p.middle_names if n)
            full_names.append(_latex_to_text(" ".join(p.prelast_names + p.last_names)) + (f", {first}" if first else ""))
        year = entry.fields.get("year", "n.d.")
        title = _latex_to_text(entry.fields.get("title", ""))
        venue = _latex_to_text(entry.fields.get("journal", entry.fields.get("booktitle", entry.fields.get(
            "publisher", entry.fields.get("howpublished", entry.fields.get("note", ""))))))
        link = entry.fields.get("doi")
        link = f"https://doi.org/{link}" if link else entry.fields.get("url", "")
        full = f"{'; '.join(full_names) or authors} ({year}). {title}."
        if venue:
            full += f" *{venue}*."
        if link:
            full += f" <{link}>"
        out[key] = {"authors": authors, "year": year, "full": full, "sort": (last[0] if last else authors).lower()}
    return out


# --------------------------------------------------------------------------------------------
# Markdown: directives, roles, targets


@dataclass
class Context:
    resolver: Resolver
    doc: str  # e.g. "chapters/04_unsupervised"
    exercise_numbers: dict[str, str] = field(default_factory=dict)

    def exercise_number(self, label: str) -> str:
        try:
            return self.resolver.number(label)[1]
        except ConversionError:
            return self.exercise_numbers.setdefault(label, str(len(self.exercise_numbers) + 1))


def _roles(text: str, ctx: Context) -> str:
    r = ctx.resolver

    def one(m: re.Match) -> str:
        role, body = m.group("role"), m.group("text")
        if role == "numref":
            return r.numref(body)
        if role == "ref":
            return r.ref(body)
        if role == "doc":
            return r.doc(body, ctx.doc)
        if role == "eq":
            return r.eq(body)
        if role in ("cite:p", "cite:ps", "cite"):
            return r.cite(body, parenthetical=True)
        if role in ("cite:t", "cite:ts"):
            return r.cite(body, parenthetical=False)
        if role == "math":
            return f"${body}$"
        if role in ("sub", "sup"):
            return f"<{role}>{body}</{role}>"
        raise ConversionError(f"{ctx.doc}: no conversion for the role {{{role}}}")

    # Left to right, a role or an inline code span, whichever starts first: code spans are left alone
    # (`` `{cite:p}` `` written as an example stays an example).
    def either(m: re.Match) -> str:
        return one(m) if m.group("role") else m.group(0)

    return _ROLE_OR_CODE.sub(either, text)


def _quote(text: str) -> str:
    return "\n".join(("> " + line) if line.strip() else ">" for line in text.strip("\n").splitlines())


def _blocks(lines: list[str], ctx: Context) -> list[str]:
    """Convert the directives in ``lines`` (recursively); return Markdown lines."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        fence = m.group("fence")
        close = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
        j = i + 1
        depth = 0
        while j < len(lines):
            inner = _OPEN.match(lines[j])
            if inner and inner.group("fence")[0] == fence[0] and len(inner.group("fence")) == len(fence):
                depth += 1
            elif close.match(lines[j]):
                if depth == 0:
                    break
                depth -= 1
            j += 1
        if j == len(lines) and m.group("name") not in ("solution-start", "solution-end"):
            raise ConversionError(f"{ctx.doc}: unclosed directive {{{m.group('name')}}}")
        body = lines[i + 1:j]
        options = {}
        while body and _OPTION.match(body[0]):
            o = _OPTION.match(body[0])
            options[o.group("key")] = o.group("value").strip()
            body = body[1:]
        out.extend(_directive(m.group("name"), m.group("arg").strip(), options, body, ctx))
        i = j + 1
    return out


def _directive(name: str, arg: str, options: dict, body: list[str], ctx: Context) -> list[str]:
    inner = "\n".join(_blocks(body, ctx)).strip("\n")
    if name == "dropdown":
        title = _roles(arg, ctx) or "Show"
        return ["<details>", f"<summary>{title}</summary>", "", inner, "", "</details>", ""]
    if name == "admonition" or name in _ADMONITIONS:
        title = _roles(arg, ctx) if name == "admonition" else _ADMONITIONS[name]
        if name != "admonition" and arg:
            inner = (arg + "\n" + inner).strip()
        if "dropdown" in options.get("class", ""):
            return ["<details>", f"<summary>{title}</summary>", "", inner, "", "</details>", ""]
        return [_quote(f"**{title}**\n\n{inner}" if title else inner), ""]
    if name == "exercise":
        label = options.get("label", "")
        num = ctx.exercise_number(label) if label else ""
        head = f"**Exercise {num}**" + (f" (`{label}`)" if label else "") + (f": {arg}" if arg else "")
        return [_quote(f"{head}\n\n{inner}"), ""]
    if name == "solution-start":
        num = ctx.exercise_number(arg) if arg else ""
        return [f"#### Solution to Exercise {num}".rstrip(), "", "<details>",
                "<summary>Show the solution (try the exercise first)</summary>", "", inner, "", "</details>", ""]
    if name == "solution-end":
        return []
    raise ConversionError(f"{ctx.doc}: no conversion for the directive {{{name}}}")


_LINK = re.compile(r"\]\((?P<target>(?![a-z]+:|#)[^)\s]+?\.(?:md|ipynb))(?P<anchor>#[^)\s]*)?\)")


def _links(text: str, ctx: Context) -> str:
    """Relative links to the book's pages (``[notation](notation.md)``) -> the published pages."""

    def one(m: re.Match) -> str:
        doc = str(Path(ctx.doc).parent / m.group("target")).rsplit(".", 1)[0]
        doc = re.sub(r"(^|/)\./", r"\1", doc)
        if doc not in ctx.resolver.titles:
            raise ConversionError(f"{ctx.doc}: a link to an unknown page {m.group('target')!r}")
        return f"]({ctx.resolver.url(doc, (m.group('anchor') or '').lstrip('#'))})"

    return _LINK.sub(one, text)


def convert_markdown(text: str, ctx: Context) -> str:
    """One Markdown cell's MyST as CommonMark with HTML (what Jupyter and Colab render)."""
    text = _TARGET.sub("", text)
    out = "\n".join(_blocks(text.split("\n"), ctx))
    out = _links(_roles(out, ctx), ctx)
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip("\n") + "\n" if out.strip() else ""


# --------------------------------------------------------------------------------------------
# Notebooks


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _set(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def _fold_code(cell: dict, title: str) -> None:
    """Colab's form mode shows ``title`` instead of the code (a comment anywhere else)."""
    src = _src(cell)
    if src.lstrip().startswith("# @title") or src.lstrip().startswith("#@title"):
        return
    title = title.replace('"', "'").replace("{", "(").replace("}", ")")
    _set(cell, f'# @title {title} {{display-mode: "form"}}\n' + src)


def convert_notebook(nb: dict, resolver: Resolver, doc: str) -> dict:
    """The reader's edition of one chapter (the input is not modified)."""
    nb = copy.deepcopy(nb)
    ctx = Context(resolver, doc)
    resolver.cited = []
    cells = []
    in_solution = False
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = _src(cell)
            if "{solution-start}" in src:
                in_solution = True
            if "{solution-end}" in src:
                in_solution = False
            text = convert_markdown(src, ctx)
            if text:
                _set(cell, text)
                cells.append(cell)
            continue
        if cell["cell_type"] == "code":
            tags = set(cell.get("metadata", {}).get("tags", []))
            mystnb = cell.get("metadata", {}).get("mystnb", {})
            figure = mystnb.get("figure") if isinstance(mystnb, dict) else None
            if in_solution:
                _fold_code(cell, "Solution code (double-click to show)")
            elif tags & {"hide-input", "remove-input"} and "setup" not in tags:
                _fold_code(cell, "Figure code (double-click to show)" if figure else "Code (double-click to show)")
            cells.append(cell)
            if figure and figure.get("caption"):
                name = figure.get("name", "")
                num = ""
                if name:
                    try:
                        num = resolver.number(name)[1]
                    except ConversionError:
                        num = ""
                caption = convert_markdown(figure["caption"], ctx).strip()
                head = f"**Fig. {num}.**" if num else "**Figure.**"
                cells.append({"cell_type": "markdown", "metadata": {}, "source": [f"{head} {caption}\n"]})
            continue
        cells.append(cell)
    if resolver.cited:
        cells.append({"cell_type": "markdown", "metadata": {}, "source": resolver.references_cell().splitlines(True)})
    for c in cells:
        c.pop("id", None)
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    nb["cells"] = cells
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    nb.setdefault("metadata", {})["colab"] = {"provenance": [], "toc_visible": True}
    return nb


def student_edition(nb: dict) -> dict:
    """The chapter without its solutions (tools/student.py's rule)."""
    return student.student_notebook(copy.deepcopy(nb))


def base_url_from_config(config: Path) -> str:
    cfg = yaml.safe_load(config.read_text())
    url = (cfg.get("html") or {}).get("baseurl")
    if not url:
        raise SystemExit(f"{config}: html.baseurl (the published book's address) is not set")
    return url


def build(chapters: Path, out: Path, env_pickle: Path, base_url: str, bibfile: Path) -> list[Path]:
    resolver = Resolver.from_build(env_pickle, bibfile, base_url)
    written = []
    for edition in ("chapters", "student"):
        (out / edition).mkdir(parents=True, exist_ok=True)
    for path in sorted(chapters.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        doc = f"chapters/{path.stem}"
        for edition, source in (("chapters", nb), ("student", student_edition(nb))):
            converted = convert_notebook(source, resolver, doc)
            target = out / edition / path.name
            target.write_text(json.dumps(converted, indent=1, ensure_ascii=False) + "\n")
            written.append(target)
    (out / "README.md").write_text(_readme(base_url))
    # Binder builds its environment from the branch's requirements.txt: the iemlib the setup cells install.
    import nbtools

    (out / "requirements.txt").write_text(f"iemlib @ git+{nbtools.repository_url()}@{nbtools.iemlib_ref()}\n")
    return written


def _readme(base_url: str) -> str:
    return (
        "# Implicit EM, executable: the notebooks to run\n\n"
        "Generated from the book's sources by `make notebooks-for-colab` (tools/colab_notebooks.py); do not\n"
        "edit them here. `chapters/` holds the reader's notebooks, `student/` the student edition (no solutions).\n"
        "Each notebook installs the `iemlib` release it was written for in its first code cell.\n\n"
        f"The book: {base_url}\n"
    )


# --------------------------------------------------------------------------------------------
# The check: plain CommonMark, no MyST


def leftovers(nb: dict) -> list[str]:
    """MyST syntax that a plain CommonMark renderer leaves in the text of ``nb``'s Markdown cells."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark")
    problems = []
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        src = _src(cell)
        html = md.render(src)
        # Math is left to MathJax; a brace in a formula is not a role.
        plain = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$", " ", src, flags=re.S)
        for what, pattern in LEFTOVER.items():
            for m in pattern.finditer(plain):
                problems.append(f"cell {k}: {what} {m.group(0)!r}")
        if re.search(r"\{(cite|numref|ref|doc|eq)[^}]*\}", re.sub(r"<code>.*?</code>", "", html)):
            problems.append(f"cell {k}: a role in the rendered HTML")
    return problems


def check(out: Path) -> int:
    bad = 0
    paths = sorted(out.glob("*/*.ipynb"))
    for path in paths:
        problems = leftovers(json.loads(path.read_text()))
        for p in problems:
            print(f"{path}: {p}")
        bad += bool(problems)
    print(f"{len(paths)} converted notebooks rendered with plain CommonMark: "
          + ("no MyST left" if not bad else f"{bad} with MyST left"))
    return 1 if bad or not paths else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("chapters", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--env", type=Path, default=ROOT / "_build" / ".doctrees" / "environment.pickle")
    b.add_argument("--base-url", default=None)
    b.add_argument("--bib", type=Path, default=ROOT / "chapters" / "references.bib")
    c = sub.add_parser("check")
    c.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        if not args.env.exists():
            raise SystemExit(f"{args.env}: no Sphinx environment; build the HTML book first (make html)")
        base = args.base_url or base_url_from_config(ROOT / "_config.yml")
        written = build(args.chapters, args.out, args.env, base, args.bib)
        print(f"{len(written)} notebooks written to {args.out} (chapters/ and student/)")
        return check(args.out)
    return check(args.out)


if __name__ == "__main__":
    sys.exit(main())
