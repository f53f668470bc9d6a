#!/usr/bin/env python
"""Check the PDF edition against the book it was built from (run by `make pdf` and `make student`).

    python tools/pdf_check.py PDF --src _stage --html _build/html --latex _build/latex \\
        [--shots _build/screenshots/pdf] [--executed _stage/chapters --committed chapters]

Checks, each printed with its numbers; any failure makes the exit status 1:

* the PDF exists and opens (``pdfinfo``);
* every page of the book's toc (``SRC/_toc.yml``) is a chapter of the PDF, in the toc's order, numbered as
  the site numbers it (LaTeX's contents file, ``LATEX/*.toc``) and found in the text on pages in that order;
* every figure of the HTML (images in the pages' articles) is embedded, chapter by chapter (``pdfimages``);
* no unresolved reference: no "??" in the text, none reported by LaTeX;
* no raw LaTeX or MyST in the text (``\\frac``, ``$x$``, ``{ref}`...```, ````` ```{note} `````, ...),
  except inside code that the book prints as code;
* every font embedded (``pdffonts``);
* code and output: a line is wrapped only after 88 characters (the notebooks' limit), measured on the
  page in cells of the monospaced font (``pdftotext -bbox``);
* tables: none wider than the text (LaTeX's overfull boxes inside tables, from its log);
* the site links the PDF: HTML/book.pdf is this file and every chapter page's download menu links it.

Sample pages are rendered to PNG (``pdftoppm``) into SHOTS, beside the browser screenshots: the title
page, the contents, the first page of every chapter, the pages with the most figures and with a table.
"""

from __future__ import annotations

import argparse
import filecmp
import html as htmllib
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import yaml

#: The widest code or printed line the notebooks may have (tools/nbtools.py MAX_WIDTH).
MAX_WIDTH = 88
#: Overfull boxes of less than this are invisible (LaTeX reports fractions of a point).
OVERFULL_PT = 1.0
_CONT = "↪"  # Sphinx's mark at the start of a wrapped code line
_VISIBLE_SPACE = "␣"  # ... and at the end of the first part when it broke at a space

RAW_PATTERNS = [
    ("LaTeX command", re.compile(r"\\(?:[a-zA-Z]{2,}|[(\[)\]])")),
    ("dollar math", re.compile(r"(?<![\w$])\$[^$\s][^$\n]{0,80}?(?<!\s)\$(?![\w$])")),
    ("MyST role", re.compile(r"\{[a-z][a-z0-9:_-]*\}`")),
    ("MyST directive", re.compile(r"(?:```|:::)\s*\{[a-z]")),
    ("MyST fence", re.compile(r"^\s*(?:```|:::)", re.M)),
    ("MyST target", re.compile(r"^\s*\([\w:.-]+\)=\s*$", re.M)),
    ("substitution", re.compile(r"\{\{[^}]*\}\}")),
]


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, errors="replace").stdout


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def ok(self, text: str) -> None:
        self.lines.append(f"  ok    {text}")

    def fail(self, text: str) -> None:
        self.lines.append(f"  FAIL  {text}")
        self.failures.append(text)

    def note(self, text: str) -> None:
        self.lines.append(f"        {text}")


def norm(text: str) -> str:
    """Letters and digits only, lower case: what survives line breaks, hyphenation and fonts."""
    text = text.replace("ﬁ", "fi").replace("ﬂ", "fl").replace("ﬀ", "ff")
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def _strip_md(title: str) -> str:
    return re.sub(r"[`*_]|\{[a-z]+\}", "", title).strip()


def toc_entries(src: Path) -> list[dict]:
    """The pages of the book in toc order: file, title, and the number the site gives it (or None)."""
    toc = yaml.safe_load((src / "_toc.yml").read_text())
    out = [{"file": toc["root"], "part": None, "numbered": False}]
    for part in toc.get("parts", []):
        for ch in part["chapters"]:
            out.append({"file": ch["file"], "part": part.get("caption"), "numbered": bool(part.get("numbered"))})
    k = 0
    for e in out:
        if e["numbered"]:
            k += 1
            e["number"] = k
        else:
            e["number"] = None
        e["title"] = page_title(src / e["file"])
    return out


def page_title(stem: Path) -> str:
    nb, md = stem.with_suffix(".ipynb"), stem.with_suffix(".md")
    if nb.exists():
        cells = json.loads(nb.read_text())["cells"]
        text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                         for c in cells if c["cell_type"] == "markdown")
    else:
        text = md.read_text()
    m = re.search(r"^# (.+)$", text, flags=re.M)
    return _strip_md(m.group(1)) if m else stem.name


def latex_toc(latex: Path) -> list[tuple[str, str, str]]:
    """(level, number, title) of the chapter and part lines of LaTeX's contents file."""
    toc = next(latex.glob("*.toc"), None)
    if toc is None:
        return []
    out = []
    for line in toc.read_text(errors="replace").splitlines():
        m = re.match(r"\\contentsline \{(part|chapter)\}\{(.*)\}\{[^{}]*\}\{[^{}]*\}%?$", line)
        if not m:
            continue
        body = m.group(2)
        num = re.match(r"\\numberline \{([^{}]*)\}", body)
        number = num.group(1) if num else ""
        if num:
            body = body[num.end():]
        out.append((m.group(1), number, _tex_to_text(body)))
    return out


def _tex_to_text(tex: str) -> str:
    tex = tex.replace(r"\sphinxhyphen {}", "-").replace(r"\sphinxhyphen{}", "-")
    tex = re.sub(r"\\[a-zA-Z@]+\s*", "", tex)
    return re.sub(r"[{}]", "", tex).strip()


class _ArticleImages(HTMLParser):
    """Count <img> inside the page's <article> (the launch-button logos are outside it)."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.images = 0

    def handle_starttag(self, tag, attrs):
        if tag == "article":
            self.depth += 1
        elif tag == "img" and self.depth:
            self.images += 1

    def handle_endtag(self, tag):
        if tag == "article" and self.depth:
            self.depth -= 1


def html_figures(html: Path, entries: list[dict]) -> dict[str, int]:
    out = {}
    for e in entries:
        page = html / f"{e['file']}.html"
        if page.exists():
            p = _ArticleImages()
            p.feed(page.read_text(errors="replace"))
            out[e["file"]] = p.images
    return out


def pdf_pages_text(pdf: Path) -> list[str]:
    return run("pdftotext", "-layout", str(pdf), "-").split("\f")[:-1] or [""]


def pdf_images_per_page(pdf: Path, n_pages: int) -> list[int]:
    counts = [0] * (n_pages + 1)
    for line in run("pdfimages", "-list", str(pdf)).splitlines()[2:]:
        cols = line.split()
        if len(cols) > 2 and cols[2] == "image":
            counts[int(cols[0])] += 1
    return counts


def code_whitelist(paths: list[Path]) -> str:
    """Everything the book prints as code: code cells, their text outputs, code spans and blocks of its
    Markdown. Text found here may hold backslashes, dollars and braces legitimately."""
    chunks: list[str] = []
    for p in paths:
        if p.suffix == ".ipynb":
            for c in json.loads(p.read_text())["cells"]:
                src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                if c["cell_type"] == "code":
                    chunks.append(src)
                    for o in c.get("outputs", []):
                        text = o.get("text") or (o.get("data") or {}).get("text/plain") or ""
                        chunks.append("".join(text) if isinstance(text, list) else text)
                        md = (o.get("data") or {}).get("text/markdown")
                        if md:
                            chunks += re.findall(r"`([^`\n]+)`", "".join(md) if isinstance(md, list) else md)
                else:
                    chunks += _md_code(src)
        elif p.suffix == ".md":
            chunks += _md_code(p.read_text())
    return "\n".join(chunks)


def _md_code(text: str) -> list[str]:
    out = re.findall(r"^```[^\n{]*\n(.*?)^```", text, flags=re.M | re.S)
    out += re.findall(r"(`+)(.+?)\1", text)
    return [x if isinstance(x, str) else x[1] for x in out]


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def check(pdf: Path, src: Path, html: Path, latex: Path, shots: Path | None,
          executed: Path | None = None, committed: Path | None = None) -> Report:
    r = Report()
    if not pdf.is_file():
        r.fail(f"{pdf}: no such file")
        return r
    info = run("pdfinfo", str(pdf))
    n_pages = int(re.search(r"^Pages:\s+(\d+)", info, flags=re.M).group(1))
    size = pdf.stat().st_size
    r.data.update(pdf=str(pdf), pages=n_pages, bytes=size)
    r.ok(f"{pdf}: {n_pages} pages, {size / 1e6:.1f} MB")

    entries = toc_entries(src)
    pages = [re.sub(r"\((?:continued from previous page|continues on next page)\)", "", p) for p in pdf_pages_text(pdf)]
    pages_norm = [norm(p) for p in pages]

    # --- chapters: LaTeX's contents in the toc's order, numbered as on the site; found in the text in order
    ltoc = [t for t in latex_toc(latex) if t[0] == "chapter"]
    expected = [(str(e["number"]) if e["number"] else "", e["title"]) for e in entries]
    got = [(num, title) for _, num, title in ltoc]
    bad = [f"{i + 1}: expected {exp!r}, contents have {g!r}" for i, (exp, g) in
           enumerate(zip(expected, got)) if exp[0] != g[0] or norm(exp[1]) != norm(g[1])]
    if len(got) != len(expected):
        bad.append(f"{len(got)} chapters in the contents, {len(expected)} pages in the toc")
    if bad:
        r.fail("chapters (contents vs toc): " + "; ".join(bad[:5]))
    else:
        numbered = [n for n, _ in got if n]
        r.ok(f"chapters: {len(got)} in the toc's order; numbered {numbered[0]}-{numbered[-1]} as on the site, "
             f"{sum(1 for n, _ in got if not n)} unnumbered "
             f"({', '.join(t for n, t in got if not n and t != entries[0]['title'])[:160]})")
    # The text: each title on a page after the previous one's (the contents pages come first).
    start = next((i for i, p in enumerate(pages) if re.search(r"^\s*Contents\s*$", p, flags=re.M)), 0)
    last_contents = start
    while last_contents + 1 < len(pages) and re.search(r"\.\s\.\s\.", pages[last_contents + 1]):
        last_contents += 1
    at, found = last_contents + 1, []
    for e in entries:
        key = norm(e["title"])
        # A chapter opens a page (no running head there): its title is at the top of the page's text.
        hit = next((i for i in range(at, len(pages)) if key in pages_norm[i][:len(key) + 40]), None)
        if hit is None:
            r.fail(f"chapter {e['title']!r} not found in the text after page {at + 1}")
            found.append(None)
            continue
        found.append(hit)
        at = hit
    if None not in found:
        r.ok(f"chapter titles in the text in order, from page {found[0] + 1} to page {found[-1] + 1}")
    r.data["chapter_pages"] = {e["file"]: (p + 1 if p is not None else None) for e, p in zip(entries, found)}

    # --- figures: per chapter, as many embedded images as the HTML page shows
    per_page = pdf_images_per_page(pdf, n_pages)
    html_counts = html_figures(html, entries)
    pdf_counts, mism = {}, []
    for k, e in enumerate(entries):
        if found[k] is None:
            continue
        nxt = next((p for p in found[k + 1:] if p is not None), len(pages))
        # a chapter runs from its first page to the page before the next chapter's (chapters open a page)
        pdf_counts[e["file"]] = sum(per_page[found[k] + 1: nxt + 1])
        if e["file"] in html_counts and html_counts[e["file"]] != pdf_counts[e["file"]]:
            mism.append(f"{e['file']}: HTML {html_counts[e['file']]}, PDF {pdf_counts[e['file']]}")
    total_html, total_pdf = sum(html_counts.values()), sum(per_page)
    missing_html = [e["file"] for e in entries if e["file"] not in html_counts]
    if not html_counts:
        r.fail(f"figures: no HTML pages in {html} to count them in (build the HTML first)")
    elif mism or total_html != total_pdf:
        r.fail(f"figures: {total_pdf} embedded, {total_html} in the HTML; " + "; ".join(mism[:6]))
    else:
        r.ok(f"figures: {total_pdf} embedded = {total_html} in the HTML, chapter by chapter"
             + (f" ({len(missing_html)} pages without HTML: {missing_html})" if missing_html else ""))
    r.data.update(figures_pdf=total_pdf, figures_html=total_html)

    # --- unresolved references
    whitelist = _squash(code_whitelist(sorted(src.glob("chapters/*.ipynb")) + sorted(src.glob("chapters/*.md"))))

    def in_code(line: str) -> bool:
        core = _squash(line.replace(_CONT, "").replace(_VISIBLE_SPACE, ""))
        return len(core) >= 4 and core in whitelist

    log = next(latex.glob("*.log"), None)
    log_text = log.read_text(errors="replace") if log else ""
    # LaTeX reports references undefined on early passes too; only the last pass's report counts.
    last_pass = log_text.rsplit("LaTeX2e <", 1)[-1]
    undefined = re.findall(r"(?:Reference|Citation) `([^']+)' on page \d+ undefined", last_pass)
    qq = [ln.strip() for p in pages for ln in p.splitlines() if "??" in ln and not in_code(ln)]
    if qq or undefined or "There were undefined references" in last_pass:
        r.fail(f"unresolved references: {len(qq)} '??' in the text {qq[:3]}, LaTeX: {sorted(set(undefined))[:5]}")
    else:
        r.ok("references: no '??' in the text, none undefined in LaTeX's log")

    # --- raw LaTeX or MyST in the text
    raw_hits = []
    for i, p in enumerate(pages):
        for ln in p.splitlines():
            for name, rx in RAW_PATTERNS:
                m = rx.search(ln)
                if m and not in_code(ln):
                    raw_hits.append(f"p. {i + 1}: {name}: {ln.strip()[:90]!r}")
                    break
    if raw_hits:
        r.fail(f"raw LaTeX or MyST in the text ({len(raw_hits)} lines): " + "; ".join(raw_hits[:5]))
    else:
        r.ok("no raw LaTeX or MyST in the text (code the book prints as code aside)")

    # --- fonts
    rows = run("pdffonts", str(pdf)).splitlines()[2:]
    fonts = [ln for ln in rows if ln.strip()]
    not_emb = [ln.split()[0] for ln in fonts if not re.search(r"\s(yes|no)\s+(yes|no)\s+(yes|no)\s+\d+\s+\d+\s*$", ln)
               or re.search(r"\s(yes|no)\s+(yes|no)\s+(yes|no)\s+\d+\s+\d+\s*$", ln).group(1) != "yes"]
    families = sorted({re.sub(r"^[A-Z]{6}\+", "", ln.split()[0]).split("-")[0] for ln in fonts})
    if not fonts or not_emb:
        r.fail(f"fonts: {len(not_emb)} of {len(fonts)} not embedded: {not_emb[:5]}")
    else:
        r.ok(f"fonts: {len(fonts)}, all embedded ({', '.join(families)})")

    # --- code and output lines: wrapped only when wider than MAX_WIDTH
    breaks = wrapped_code_lines(pdf)
    short = [b for b in breaks if b[1] <= MAX_WIDTH]
    if short:
        r.fail(f"code: {len(short)} lines of at most {MAX_WIDTH} characters are wrapped, e.g. "
               f"page {short[0][0]}: {short[0][1]} characters")
    else:
        least = min((b[1] for b in breaks), default=None)
        r.ok(f"code and output: lines of {MAX_WIDTH} characters fit; {len(breaks)} wider lines wrapped "
             f"(the shortest has {least if least is not None else '-'} characters)")
    r.data["wrapped_code_lines"] = len(breaks)

    # --- tables: nothing overfull inside a table
    tex = next((p for p in latex.glob("*.tex") if p.stem == Path(log).stem), None) if log else None
    table_lines: list[tuple[int, int]] = []
    n_tables = 0
    if tex:
        stack = []
        for no, line in enumerate(tex.read_text(errors="replace").splitlines(), 1):
            if re.search(r"\\begin\{(tabulary|tabular|longtable)\}", line):
                stack.append(no)
                n_tables += 1
            if re.search(r"\\end\{(tabulary|tabular|longtable)\}", line) and stack:
                table_lines.append((stack.pop(), no))
    over = [(float(m.group(1)), int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"Overfull \\hbox \(([\d.]+)pt too wide\) (?:in paragraph|in alignment) at lines (\d+)--(\d+)", last_pass)]
    in_tables = [o for o in over if o[0] > OVERFULL_PT and any(a <= o[1] <= b + 1 for a, b in table_lines)]
    elsewhere = [o for o in over if o[0] > OVERFULL_PT and o not in in_tables]
    detected = [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\) detected", last_pass)
                if float(x) > OVERFULL_PT]
    if not tex:
        r.fail(f"tables: no LaTeX source in {latex} to check them against")
    elif in_tables:
        r.fail(f"tables: {len(in_tables)} lines wider than the text, e.g. book.tex lines {in_tables[0][1]}-{in_tables[0][2]} "
               f"({in_tables[0][0]:.1f} pt)")
    else:
        r.ok(f"tables: {n_tables}, all within the text width")
    if elsewhere or detected:
        r.note(f"elsewhere, {len(elsewhere) + len(detected)} lines stick out of the text by more than {OVERFULL_PT} pt "
               f"(widest {max([o[0] for o in elsewhere] + detected):.1f} pt; LaTeX's log has them)")

    # --- the site links the PDF
    site_pdf = html / pdf.name
    linked = [e["file"] for e in entries if (html / f"{e['file']}.html").exists()
              and re.search(rf'href="[^"]*{re.escape(pdf.name)}"', (html / f"{e['file']}.html").read_text(errors="replace"))]
    with_html = [e["file"] for e in entries if (html / f"{e['file']}.html").exists()]
    if not site_pdf.is_file() or not filecmp.cmp(site_pdf, pdf, shallow=False):
        r.fail(f"site: {site_pdf} is not this PDF")
    elif len(linked) != len(with_html):
        r.fail(f"site: {len(with_html) - len(linked)} pages do not link {pdf.name}, e.g. "
               f"{sorted(set(with_html) - set(linked))[:3]}")
    else:
        r.ok(f"site: {site_pdf} is this PDF, and all {len(linked)} pages link it (download menu, 'Book (.pdf)')")

    # --- executed notebooks older than the chapters?
    if executed and committed:
        stale = [p.name for p in sorted(committed.glob("*.ipynb")) if (executed / p.name).exists()
                 and _sources(committed / p.name) != _sources(executed / p.name)]
        if stale:
            r.note(f"warning: {len(stale)} executed notebooks differ from the committed chapters "
                   f"({', '.join(stale[:4])}): run `make book` to refresh them")

    # --- sample pages
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        for old in shots.glob("*.png"):
            old.unlink()
        sample: dict[int, str] = {1: "title", start + 1: "contents"}
        for e, p in zip(entries, found):
            if p is not None:
                label = f"chapter-{e['number']}" if e["number"] else Path(e["file"]).name
                sample.setdefault(p + 1, label)
        if any(per_page):
            most = max(range(1, n_pages + 1), key=lambda i: per_page[i])
            sample.setdefault(most, "figures")
        # the page that looks most like a table (rows of four or more columns)
        table_rows = [len(re.findall(r"^\s*\S+(?:\s\S+)*(?:\s{3,}\S+(?:\s\S+)*){3,}\s*$", p, flags=re.M))
                      for p in pages]
        if max(table_rows[start + 1:] or [0]) >= 5:
            sample.setdefault(max(range(start + 1, len(pages)), key=lambda i: table_rows[i]) + 1, "table")
        for page, label in sorted(sample.items()):
            prefix = shots / f"p{page:03d}-{label}"
            run("pdftoppm", "-r", "60", "-png", "-singlefile", "-f", str(page), "-l", str(page), str(pdf), str(prefix))
        r.ok(f"sample pages: {len(sample)} rendered to {shots}/ (60 dpi)")
        r.data["sample_pages"] = {str(k): v for k, v in sorted(sample.items())}
    return r


_WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')


def wrapped_code_lines(pdf: Path) -> list[tuple[int, int]]:
    """(page, characters) of every code or output line Sphinx wrapped: the part before the break and the
    part after it, in character cells of the monospaced font.

    Sphinx marks a wrapped line's continuation with a hook arrow, and the continuation's text starts two
    character cells right of the block's margin; the part before the break is the text line above it.
    (A line of three parts counts as two wraps, each of at least the width of a full line.)"""
    out = []
    xml = run("pdftotext", "-bbox", str(pdf), "-")
    for page_no, page in enumerate(xml.split("<page ")[1:], 1):
        words = [(float(a), float(b), float(c), float(d), htmllib.unescape(w)) for a, b, c, d, w in _WORD.findall(page)]
        hooks = [w for w in words if w[4] == _CONT]
        if not hooks:
            continue
        lines: dict[int, list] = {}
        for w in words:
            if w[4] != _CONT:
                lines.setdefault(round(w[1]), []).append(w)
        ys = sorted(lines)
        for hook in hooks:
            # the continuation: the text line whose first word starts where the hook ends
            cont = [y for y in ys if abs(y - hook[1]) <= 4 and abs(min(lines[y])[0] - hook[2]) < 1.5]
            if not cont:
                continue
            text = sorted(lines[cont[0]])
            cw = _cell_width(text)
            if not cw:
                continue
            margin = hook[2] - 2 * cw
            above = [y for y in ys if y < cont[0] and min(lines[y])[0] >= margin - 1]
            if not above or cont[0] - above[-1] > 14:
                continue  # the first part is on the previous page
            head = sorted(lines[above[-1]])
            before = (head[-1][2] - margin) / cw
            after = (text[-1][2] - hook[2]) / cw
            out.append((page_no, round(before + after)))
    return out


def _cell_width(words: list) -> float | None:
    """The advance of one character in a line of monospaced words (median over its ASCII words)."""
    widths = sorted((w[2] - w[0]) / len(w[4]) for w in words if w[4].isascii() and len(w[4]) >= 3)
    return widths[len(widths) // 2] if widths else None


def _sources(p: Path) -> list:
    cells = json.loads(p.read_text())["cells"]
    return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"]) for c in cells]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pdf", type=Path)
    ap.add_argument("--src", type=Path, required=True, help="the book source the PDF was built from (_toc.yml)")
    ap.add_argument("--html", type=Path, required=True, help="the HTML built from the same source")
    ap.add_argument("--latex", type=Path, required=True, help="the LaTeX build folder (.tex, .toc, .log)")
    ap.add_argument("--shots", type=Path, help="folder for the sample pages (PNG)")
    ap.add_argument("--executed", type=Path, help="executed notebooks (to warn when older than --committed)")
    ap.add_argument("--committed", type=Path)
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args(argv)
    r = check(args.pdf, args.src, args.html, args.latex, args.shots, args.executed, args.committed)
    print(f"pdf-check: {args.pdf}")
    print("\n".join(r.lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**r.data, "failures": r.failures}, indent=1))
    print(f"pdf-check: {'FAILED, ' + str(len(r.failures)) + ' problems' if r.failures else 'all checks passed'}")
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
