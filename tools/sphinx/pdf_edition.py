"""The PDF edition of the book (Jupyter Book's LaTeX builder, XeLaTeX), and the site's link to it.

``make pdf`` builds the executed notebooks of ``make book`` with ``jupyter-book build --builder
pdflatex``; this extension makes that LaTeX say what the HTML says:

* **Macros.** Every macro the HTML's MathJax knows (``mathjax3_config.tex.macros`` in
  ``_config.yml``, e.g. ``\\R``) is defined for LaTeX too, from that one list.
* **Numbers.** Sphinx's LaTeX writer numbers every chapter in one sequence; the site numbers only the
  chapters of numbered parts (chapter 8's companion, the appendix and the back matter have no number).
  Before each chapter the PDF is told the number the site gives it (Sphinx's own section numbers,
  ``env.toc_secnumbers``), or that it has none; parts are not numbered (the site shows captions).
  Figures, tables and equations of an unnumbered chapter are numbered 1, 2, ... as on the site.
* **Tables.** Every table gets column widths computed here (the auto-layout rule of HTML tables: each
  column at least its longest word, the rest shared in proportion to the longest cell) and the largest
  font size, from ``\\small`` down, at which those widths fit the text width; cells are ragged right.
  Sphinx's default (tabulary, justified) squeezes a column of numbers below its widest number.
* **Equations.** A display equation wider than the line is scaled down to the line's width (the site
  scrolls it); equations that fit are set as Sphinx sets them.
* **Version.** The title page names the iemlib release the chapters install (``iemlib_ref``), and says
  so when the book was built from a development branch rather than from that release.
* **Link.** On the site, each page's download menu gets "Book (.pdf)": ``book.pdf`` at the root of the
  HTML, which ``make pdf`` writes (and the Pages workflow publishes).

The LaTeX settings themselves (engine, fonts, code font size, preamble) are in ``_config.yml``.
"""

from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.builders.latex.nodes import thebibliography
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: The PDF's file name, in _build/pdf/ and at the root of the HTML site.
PDF_NAME = "book.pdf"

#: LaTeX support for the per-chapter numbering (see ChapterNumbers).
NUMBERING_PREAMBLE = r"""
% --- pdf_edition: chapter numbers as the site gives them ---
\makeatletter
\newcounter{iem@secnumdepth}\newcounter{iem@unnumbered}
\AtBeginDocument{\setcounter{iem@secnumdepth}{\value{secnumdepth}}%
  \ifdefined\theHchapter\let\iem@theHchapter\theHchapter\else\def\iem@theHchapter{\arabic{chapter}}\fi}
% A part of the site's navigation: a caption, no number.
\newcommand{\iemPart}{\setcounter{secnumdepth}{-2}}
% A chapter the site numbers #1.
\newcommand{\iemNumberedChapter}[1]{\setcounter{secnumdepth}{\value{iem@secnumdepth}}%
  \setcounter{chapter}{\numexpr#1-1\relax}\let\theHchapter\iem@theHchapter}
% A chapter the site does not number: no number, its own figures 1, 2, ... (unique link targets).
\newcommand{\iemUnnumberedChapter}{\setcounter{secnumdepth}{-1}\setcounter{chapter}{0}%
  \stepcounter{iem@unnumbered}\edef\theHchapter{u\arabic{iem@unnumbered}}%
  \setcounter{figure}{0}\setcounter{table}{0}\setcounter{equation}{0}%
  \ifdefined\c@literalblock\setcounter{literalblock}{0}\fi}
% The front page's text, after the contents: an unnumbered chapter with the page's title.
\newcommand{\iemFrontPage}[1]{\chapter*{#1}\addcontentsline{toc}{chapter}{#1}\markboth{#1}{#1}}
% The bibliography inside the chapter of the bibliography page (OneBibliography): no second heading.
\def\iem@nochapter*#1{}
\newenvironment{iem@bibinchapter}[1]{\let\iem@chapter\chapter\let\chapter\iem@nochapter
  \begin{thebibliography}{#1}\let\chapter\iem@chapter}{\end{thebibliography}}
\newcommand{\iemBibliographyInChapter}{\let\iem@sphinxbib\sphinxthebibliography
  \let\iem@endsphinxbib\endsphinxthebibliography
  \let\sphinxthebibliography\iem@bibinchapter\let\endsphinxthebibliography\endiem@bibinchapter}
\newcommand{\iemBibliographyDone}{\let\sphinxthebibliography\iem@sphinxbib
  \let\endsphinxthebibliography\iem@endsphinxbib}
% A display equation no wider than the line (FitEquations).
\newsavebox{\iem@eqbox}
\newcommand{\iemFitWidth}[1]{\sbox{\iem@eqbox}{$\displaystyle #1$}%
  \ifdim\wd\iem@eqbox>\linewidth\resizebox{\linewidth}{!}{\usebox{\iem@eqbox}}\else\usebox{\iem@eqbox}\fi}
\makeatother
% --- end pdf_edition ---
"""


def _latex_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "&%$#_{}" else ch for ch in text)


def _latex_macro(name: str, body) -> str:
    """``\\providecommand`` + ``\\renewcommand`` of one MathJax macro (``"..."`` or ``["...", nargs]``)."""
    if isinstance(body, (list, tuple)):
        text, nargs = body[0], int(body[1]) if len(body) > 1 else 0
    else:
        text, nargs = str(body), 0
    args = f"[{nargs}]" if nargs else ""
    return f"\\providecommand{{\\{name}}}{{}}\\renewcommand{{\\{name}}}{args}{{{text}}}"


def mathjax_macros_as_latex(config) -> str:
    macros = ((getattr(config, "mathjax3_config", None) or {}).get("tex") or {}).get("macros") or {}
    return "\n".join(_latex_macro(k, v) for k, v in macros.items())


def release_line(iemlib_ref: str, branch: str) -> str:
    """What the title page says after "Version" (Sphinx's ``release``): the release (``0.2.0``) when the
    book is built from it (the release commit names its own tag as the branch), else the release its
    setup cells install and the branch (``0.2.0+ (main)``)."""
    version = iemlib_ref.removeprefix("v")
    if not version or not branch or branch == iemlib_ref:
        return version
    return f"{version}+ ({branch})"


def _book_config(app: Sphinx) -> dict:
    """The book's own ``_config.yml`` (Jupyter Book passes Sphinx only the keys it knows)."""
    import yaml

    path = Path(app.confdir) / "_config.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _config_inited(app: Sphinx, config) -> None:
    latex = dict(config.latex_elements or {})
    macros = mathjax_macros_as_latex(config)
    latex["preamble"] = "\n".join(p for p in (macros, NUMBERING_PREAMBLE, latex.get("preamble", "")) if p)
    config.latex_elements = latex


def _builder_inited(app: Sphinx) -> None:
    """For the LaTeX builder only: exercise numbers as on the site, and the title page's version."""
    if app.builder.name != "latex":
        return
    # sphinx-jupyterbook-latex sets numfig_secnum_depth to 2 for a book in parts, which LaTeX's own figure
    # numbers need (chapter.figure) but which numbers sphinx-exercise's exercises by section (1.10.1 where the
    # site says 1.1). Sphinx's numbers (env.toc_fignumbers) are made while reading: read with the site's depth,
    # write with the one LaTeX needs.
    if app.config.numfig_secnum_depth != 1:
        app.env_pdf_numfig_depth = app.config.numfig_secnum_depth  # type: ignore[attr-defined]
        app.config.numfig_secnum_depth = 1
    if app.config.release:
        return
    book = _book_config(app)
    branch = str((book.get("repository") or {}).get("branch") or "")
    version = release_line(str(book.get("iemlib_ref") or ""), branch)
    if version:
        app.builder.context["release"] = version
        app.builder.context["releasename"] = "Version"


class ChapterNumbers(SphinxPostTransform):
    """Before each document of the assembled LaTeX doctree, the number the site gives it (or none)."""

    builders = ("latex",)
    default_priority = 800  # after sphinx-jupyterbook-latex has made the toctree captions parts (700)

    def run(self, **kwargs) -> None:
        root = self.config.root_doc
        # The front page (the root document) opens the book after the contents, under its own title.
        for sect in self.document.findall(nodes.section):
            if sect.get("docname") == root:
                title = self.env.titles[root].astext()
                idx = 1 if sect.children and isinstance(sect[0], nodes.title) else 0
                tex = rf"\iemFrontPage{{{_latex_escape(title)}}}"
                sect.insert(idx, nodes.raw("", tex + "\n", format="latex"))
                break
        for sof in list(self.document.findall(addnodes.start_of_file)):
            doc = sof.get("docname")
            if doc == root:
                continue
            if doc not in self.env.all_docs:  # a part made from a toctree caption
                tex = r"\iemPart"
            else:
                number = (self.env.toc_secnumbers.get(doc) or {}).get("")
                tex = rf"\iemNumberedChapter{{{number[0]}}}" if number else r"\iemUnnumberedChapter"
            sof.insert(0, nodes.raw("", tex + "\n", format="latex"))


class SiteNumbers(SphinxPostTransform):
    """A ``{numref}`` to a chapter, a section or an exercise prints the number the site prints.

    The LaTeX writer renders a numbered reference as ``\\ref{label}`` and leaves the number to LaTeX. For an
    exercise LaTeX has no number and no anchor (sphinx-exercise emits neither; the PDF printed "??"), so the
    reference becomes the site's text, unlinked. For a chapter or section, the text is set from the site's
    section numbers (the same that ChapterNumbers prints in the chapter heads) and stays linked. Runs before
    TableWidths, so that a table's columns are sized for the text they will print. Figures keep LaTeX's ``\\ref``.
    """

    builders = ("latex",)
    default_priority = 790

    def run(self, **kwargs) -> None:
        exercises = {lid for numbers in self.env.toc_fignumbers.values() for lid in numbers.get("exercise", {})}
        labels = self.env.domaindata["std"]["labels"]
        by_id = {lid: doc for doc, lid, _ in labels.values()}
        for ref in list(self.document.findall(addnodes.number_reference)):
            target = ref.get("refid") or ref.get("refuri", "").rpartition("#")[2]
            fmt = ref.get("title", "%s")
            if target in exercises:
                ref.replace_self(nodes.inline("", ref.astext()))
                continue
            doc = by_id.get(target)
            secs = self.env.toc_secnumbers.get(doc, {}) if doc else {}
            number = secs.get(f"#{target}") or (secs.get("") if labels.get(target, ("",))[0] == doc else None)
            if not number or "%s" not in fmt:
                continue
            link = nodes.reference("", "", internal=True, **{k: ref[k] for k in ("refid", "refuri") if k in ref})
            link += nodes.Text(fmt.replace("%s", ".".join(map(str, number))))
            ref.replace_self(link)


#: Text width of the PDF in pt (letter paper, 1 in margins: 6.5 in) and the font sizes (pt) a table may use,
#: with the column padding (\\tabcolsep, pt) that goes with each.
TEXT_WIDTH_PT = 469.0
TABLE_SIZES = ((r"\small", 9.0, 6.0), (r"\footnotesize", 8.0, 4.0), (r"\scriptsize", 7.0, 2.5))
#: Tables of more rows than this (outside output frames) may break across pages.
LONG_TABLE_ROWS = 12
#: Advance of a character in em, on the safe side for DejaVu Serif and Sans (digits 0.64 em; capitals up
#: to 0.77 em; symbols such as ● or ‖ up to 1 em).
def _char_em(ch: str) -> float:
    if ch.isdigit():
        return 0.64
    if ch.isascii():
        return 0.78 if ch.isupper() or ch in "%&@#mwMW" else 0.62
    return 1.0


#: A word longer than this may be hyphenated in a cell; numbers are never broken.
_HYPHENATABLE = 9
#: Long identifiers and labels in a cell may break after these (``include_diagonal_…``, ``KL(Bayes‖model)``).
_BREAK_AFTER = re.compile(r"(?<=[(_/‖=])(?=[^\s)])")
_LONG = 12


def _token_em(token: str) -> float:
    return sum(_char_em(ch) for ch in token)


def _pieces(token: str) -> list[str]:
    return _BREAK_AFTER.split(token) if len(token) > _LONG else [token]


def _cell_widths(text: str) -> tuple[float, float]:
    """(narrowest, natural) width of a cell's text, in em."""
    tokens = text.split()
    if not tokens:
        return 0.0, 0.0

    def least(tok: str) -> float:
        if tok.isalpha() and len(tok) > _HYPHENATABLE:
            return _token_em(tok[:_HYPHENATABLE])
        return max(_token_em(p) for p in _pieces(tok))

    return max(least(t) for t in tokens), _token_em(text) + 0.3 * (len(tokens) - 1)


def _allow_breaks(entry: nodes.Element) -> None:
    """Let LaTeX break the long tokens of a cell where _cell_widths assumed it could."""
    for text in list(entry.findall(nodes.Text)):
        if isinstance(text.parent, (nodes.math, nodes.raw, nodes.literal_block)):
            continue
        words = re.split(r"(\s+)", str(text))
        if not any(len(_pieces(w)) > 1 for w in words):
            continue
        out: list[nodes.Node] = []
        for w in words:
            parts = _pieces(w) if w.strip() else [w]
            for k, part in enumerate(parts):
                if k:
                    out.append(nodes.raw("", r"\allowbreak{}", format="latex"))
                out.append(nodes.Text(part))
        text.parent.replace(text, out)


def table_layout(cells: list[list[str]], width_pt: float = TEXT_WIDTH_PT):
    """Font size, column padding and column widths (pt) for a table of ``cells`` (rows of cell texts).

    Returns ``(size_command, tabcolsep_pt, shares, fits)``: each column's share of the room the padding
    leaves; ``fits`` is False when even the smallest size cannot hold every column's longest word (then
    the shares are those of the longest words)."""
    ncols = max(len(r) for r in cells)
    lo = [0.0] * ncols
    hi = [0.0] * ncols
    for row in cells:
        for j, text in enumerate(row):
            a, b = _cell_widths(text)
            lo[j], hi[j] = max(lo[j], a), max(hi[j], b)
    for command, size, sep in TABLE_SIZES:
        room = width_pt - ncols * (2 * sep + 0.4)
        mins = [size * x + 1.0 for x in lo]
        nats = [max(size * x + 1.0, m) for x, m in zip(hi, mins)]
        if sum(nats) <= room:
            return command, sep, [n / room for n in nats], True
        if sum(mins) <= room:
            spare = (room - sum(mins)) / (sum(nats) - sum(mins))
            return command, sep, [(m + (n - m) * spare) / room for m, n in zip(mins, nats)], True
    return command, sep, [m / sum(mins) for m in mins], False


def _ancestors(node):
    while node.parent is not None:
        node = node.parent
        yield node


class TableWidths(SphinxPostTransform):
    """Column widths and font size for every table of the PDF (see table_layout)."""

    builders = ("latex",)
    default_priority = 810

    def run(self, **kwargs) -> None:
        for table in list(self.document.findall(nodes.table)):
            if any(isinstance(n, nodes.literal_block) for n in table.findall()):
                continue  # Sphinx sets tables with code blocks as tabular; leave them
            prev = table.previous_sibling() if table.parent is not None else None
            if isinstance(prev, addnodes.tabular_col_spec):
                continue  # the author chose the columns
            rows = [[entry.astext() for entry in row.findall(nodes.entry)] for row in table.findall(nodes.row)]
            for entry in list(table.findall(nodes.entry)):
                _allow_breaks(entry)
            rows = [r for r in rows if r]
            if not rows:
                continue
            # A table a cell printed sits in the output frame, indented 20 pt (sphinxVerbatimOutput).
            in_output = any("cell_output" in (a.get("classes") or []) for a in _ancestors(table))
            command, sep, shares, fits = table_layout(rows, TEXT_WIDTH_PT - (20 if in_output else 0))
            pad = len(shares) * (2 * sep + 0.4)
            spec = "".join(
                rf">{{\raggedright\arraybackslash}}p{{\dimexpr(\linewidth-{pad:.1f}pt)*{round(1000 * w)}/1000\relax}}"
                for w in shares
            )
            setup = rf"\def\iemTableSize{{{command}}}\setlength{{\tabcolsep}}{{{sep}pt}}"
            # A long table may break across pages (longtable) rather than leave a page blank before it;
            # not in an output frame, where longtable does not go.
            if len(rows) > LONG_TABLE_ROWS and not in_output and "longtable" not in table["classes"]:
                table["classes"].append("longtable")
            idx = table.parent.index(table)
            table.parent.insert(idx, addnodes.tabular_col_spec(spec=spec))
            table.parent.insert(idx, nodes.raw("", setup + "\n", format="latex"))
            if not fits:
                logger.warning(f"pdf_edition: a table of {len(shares)} columns is too wide for the page even "
                               f"in \\scriptsize; its columns are squeezed", location=table)


class OneBibliography(SphinxPostTransform):
    """Sphinx gathers every citation into one bibliography at the end of the LaTeX document, under its own
    chapter heading. The site shows the entries on the page that holds the ``{bibliography}`` directive
    (its "Bibliography"): the entries move to the end of that chapter, under its heading, wherever it is."""

    builders = ("latex",)
    default_priority = 805

    def run(self, **kwargs) -> None:
        try:
            domain = self.env.get_domain("cite")
        except Exception:  # sphinxcontrib-bibtex absent
            return
        bib_docs = {key.docname for key in getattr(domain, "bibliographies", {})}
        home = next((n for n in self.document.findall(addnodes.start_of_file) if n.get("docname") in bib_docs), None)
        bibs = list(self.document.findall(thebibliography))
        if home is None or not bibs:
            return
        target = next((c for c in home.children if isinstance(c, nodes.section)), home)
        target.append(nodes.raw("", "\\iemBibliographyInChapter\n", format="latex"))
        for bib in bibs:
            bib.parent.remove(bib)
            target.append(bib)
        target.append(nodes.raw("", "\\iemBibliographyDone\n", format="latex"))


class FitEquations(SphinxPostTransform):
    """Display equations as Sphinx writes them (``equation*`` around ``split``), with ``aligned`` in place
    of ``split`` inside ``\\iemFitWidth``, which scales an equation wider than the line down to it."""

    builders = ("latex",)
    default_priority = 820

    def run(self, **kwargs) -> None:
        for node in list(self.document.findall(nodes.math_block)):
            body = node.astext().strip()
            if node.get("nowrap") or not body or "\n\n" in body or "\\label" in body:
                continue  # raw environments (amsmath extension) and multi-part blocks stay as they are
            if node.get("label"):
                env = "equation"
                label = rf"\label{{equation:{node['docname']}:{node['label']}}}"
            else:
                env = "equation" if self.config.math_number_all else "equation*"
                label = ""
            tex = rf"\begin{{{env}}}{label}\iemFitWidth{{\begin{{aligned}}{body}\end{{aligned}}}}\end{{{env}}}"
            node.replace_self(nodes.raw("", tex + "\n", format="latex"))


def _numbers_assigned(app: Sphinx, env) -> list[str]:
    """After Sphinx's toctree collector has numbered figures and exercises (env-get-updated), give LaTeX's
    writer back the depth sphinx-jupyterbook-latex chose."""
    depth = getattr(app, "env_pdf_numfig_depth", None)
    if depth is not None:
        app.config.numfig_secnum_depth = depth
    return []


def _pdf_link(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Add "Book (.pdf)" to the page's download menu (sphinx-book-theme's header buttons)."""
    for button in context.get("header_buttons") or []:
        if button.get("label") == "download-buttons":
            button["buttons"].append({
                "type": "link",
                "url": context["pathto"](PDF_NAME, 1),
                "text": "Book (.pdf)",
                "tooltip": "The whole book as one PDF",
                "icon": "fas fa-book",
                "label": "download-book-pdf-button",
            })


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _config_inited, priority=400)
    app.connect("builder-inited", _builder_inited, priority=600)  # after sphinx-jupyterbook-latex's (500)
    app.connect("env-get-updated", _numbers_assigned, priority=900)  # after the toctree collector (500)
    app.add_post_transform(ChapterNumbers)
    app.add_post_transform(SiteNumbers)
    app.add_post_transform(TableWidths)
    app.add_post_transform(OneBibliography)
    app.add_post_transform(FitEquations)
    app.connect("html-page-context", _pdf_link, priority=600)  # after the theme's buttons (501)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
