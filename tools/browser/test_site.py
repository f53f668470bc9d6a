"""The built book in a real browser: headless Chromium (Debian's), driven by Playwright.

    .venv/bin/python -m pytest tools/browser          # or: make browser-test

Serves _build/html on 127.0.0.1 and opens every page with the network closed: any request to
another host is blocked and fails the page, so MathJax and every other asset must come from the
build. Per page, in light and in dark mode: no console errors or uncaught exceptions, every
equation typeset by MathJax with no MathJax error, no error or traceback output cell, every
image loaded (naturalWidth > 0) inside a figure with a caption and with alt text, and, in dark
mode, every figure on an opaque background. Also: chapter 3's explorer shows its static figure;
the search page finds "responsibility". Screenshots go to _build/screenshots/{light,dark}/.
The browser is never downloaded: CHROMIUM (default /usr/bin/chromium) must exist.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
PAGES = sorted(
    p.relative_to(HTML).as_posix()
    for p in HTML.rglob("*.html")
    if not (set(p.relative_to(HTML).parts[:-1]) & SKIP_DIRS)
) if HTML.is_dir() else []
RESULTS: dict[str, dict] = {}

if not PAGES:
    pytest.skip(f"no built book in {HTML}: run `make book` first", allow_module_level=True)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - keep pytest's output readable
        pass


@pytest.fixture(scope="session")
def server():
    handler = functools.partial(_Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser_context():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (make browser-test does)")
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    with tempfile.TemporaryDirectory(prefix="iem-chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS[1:],
            viewport={"width": 1280, "height": 900}, service_workers="block",
        )

        def route(r):
            host = urlparse(r.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                r.continue_()
            else:  # the network is closed: the page must not need it
                blocked.append(r.request.url)
                r.abort("internetdisconnected")

        ctx.route("**/*", route)
        ctx.blocked = blocked  # type: ignore[attr-defined]
        yield ctx
        ctx.close()


def _open(ctx, url: str, dark: bool):
    page = ctx.new_page()
    log: list[str] = []
    page.on("console", lambda m: log.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: log.append(f"uncaught: {e}"))
    page.emulate_media(color_scheme="dark" if dark else "light")
    # Dark: a reader who chose dark mode. Light: a first visit (nothing stored; the profile keeps
    # localStorage between pages, so clear it) with a light system theme.
    if dark:
        page.add_init_script("localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark');")
    else:
        page.add_init_script("localStorage.removeItem('mode'); localStorage.removeItem('theme');")
    before = len(ctx.blocked)
    page.goto(url, wait_until="load", timeout=60_000)
    typeset = page.evaluate(
        """async () => {
            if (!document.querySelector('.math')) return 'no math';
            if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return 'MathJax not loaded';
            await MathJax.startup.promise; return 'typeset';
        }"""
    )
    page.wait_for_timeout(150)
    return page, log, typeset, before


CHECKS_JS = """() => {
  const art = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const maths = [...art.querySelectorAll('span.math, div.math')];
  const untypeset = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
  const merrors = [...document.querySelectorAll('mjx-merror, [data-mjx-error]')].map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 60));
  const outs = [...art.querySelectorAll('.cell_output')];
  const errOutputs = outs.filter(o => o.querySelector('.output.traceback, .output.error, .output.stderr')
                                   || /Traceback \\(most recent call last\\)/.test(o.innerText)).length;
  const imgs = [...art.querySelectorAll('img')].map(img => {
    const fig = img.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    return {src: img.getAttribute('src').slice(0, 80), loaded: img.complete && img.naturalWidth > 0,
            alt: (img.getAttribute('alt') || '').trim(), caption: cap ? cap.textContent.trim() : '',
            id: fig ? fig.id : ''};
  });
  return {maths: maths.length, untypeset, merrors, outputs: outs.length, errOutputs, imgs,
          theme: document.documentElement.dataset.theme || ''};
}"""

OPAQUE_JS = """() => {
  const art = document.querySelector('article.bd-article') || document.body;
  const alpha = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return 0; const p = m[1].split(',');
                       return p.length < 4 ? 1 : parseFloat(p[3]); };
  return [...art.querySelectorAll('figure img')].map(img => {
    const cv = document.createElement('canvas'); cv.width = img.naturalWidth; cv.height = img.naturalHeight;
    const g = cv.getContext('2d'); g.drawImage(img, 0, 0);
    let transparent = 0, n = 0;
    const d = g.getImageData(0, 0, cv.width, cv.height).data;
    const step = Math.max(4, 4 * Math.floor(d.length / 4 / 4000));
    for (let i = 3; i < d.length; i += step) { n++; if (d[i] < 250) transparent++; }
    // A transparent pixel is fine if the image, or its figure, paints an opaque background.
    let el = img, bg = 0;
    while (el && el !== art && bg < 1) { bg = Math.max(bg, alpha(getComputedStyle(el).backgroundColor)); el = el.parentElement; }
    return {src: img.getAttribute('src').slice(0, 80), transparentShare: transparent / n, background: bg};
  });
}"""


def _shot(page, mode: str, name: str) -> None:
    out = SHOTS / mode / (name.replace("/", "_").removesuffix(".html") + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)


def _redirect_target(name: str) -> str | None:
    m = re.search(r'http-equiv="refresh" content="\d+;\s*url=([^"]+)"', (HTML / name).read_text(), flags=re.I)
    return m.group(1) if m else None


@pytest.mark.parametrize("name", PAGES)
def test_page(name, server, browser_context):
    url = f"{server}/{name}"
    target = _redirect_target(name)
    if target:  # the root index.html only forwards to the front page
        page = browser_context.new_page()
        page.goto(url)
        page.wait_for_url(f"**/{target.lstrip('./')}", timeout=30_000)
        ok = page.evaluate("() => !!document.querySelector('article.bd-article')")
        page.close()
        RESULTS[name] = {"redirect": target}
        assert ok, f"{name} forwards to {target}, which has no article"
        return
    problems: list[str] = []
    summary: dict = {}
    for dark in (False, True):
        mode = "dark" if dark else "light"
        page, log, typeset, before = _open(browser_context, url, dark)
        r = page.evaluate(CHECKS_JS)
        if r["theme"] != mode:
            problems.append(f"{mode}: the page shows data-theme={r['theme']!r}")
        if dark:
            for o in page.evaluate(OPAQUE_JS):
                if o["transparentShare"] > 0.01 and o["background"] < 1:
                    problems.append(f"dark: figure {o['src']} is {o['transparentShare']:.0%} transparent on a transparent background")
        else:
            summary = {"equations": r["maths"], "images": len(r["imgs"]), "outputs": r["outputs"]}
        problems += [f"{mode}: {m}" for m in log]
        if r["maths"] and typeset != "typeset":
            problems.append(f"{mode}: {typeset}")
        if r["untypeset"]:
            problems.append(f"{mode}: {len(r['untypeset'])} of {r['maths']} equations not typeset, e.g. {r['untypeset'][0]!r}")
        if r["merrors"]:
            problems.append(f"{mode}: MathJax errors: {r['merrors'][:3]}")
        if r["errOutputs"]:
            problems.append(f"{mode}: {r['errOutputs']} error/traceback output cells")
        for img in r["imgs"]:
            if not img["loaded"]:
                problems.append(f"{mode}: image not loaded: {img['src']}")
            if not dark and not img["alt"]:
                problems.append(f"image without alt text: {img['src']}")
            if not dark and not img["caption"]:
                problems.append(f"image without a figure caption: {img['src']}")
        blocked = browser_context.blocked[before:]
        if blocked:
            problems.append(f"{mode}: needs the network: {sorted(set(blocked))[:3]}")
        _shot(page, mode, name)
        page.close()
    summary["problems"] = problems
    RESULTS[name] = summary
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_chapter3_explorer_shows_its_static_figure(server, browser_context, dark):
    page, log, _, _ = _open(browser_context, f"{server}/chapters/03_theorem.html", dark=dark)
    if page.locator("#fig-ch03-explorer").count():
        out = SHOTS / ("dark" if dark else "light") / "explorer-ch03.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        page.locator("#fig-ch03-explorer").screenshot(path=str(out))
    fig = page.evaluate(
        """() => { const f = document.getElementById('fig-ch03-explorer'); if (!f) return null;
                   const img = f.querySelector('img'); const cap = f.querySelector('figcaption');
                   return {img: !!img, w: img ? img.naturalWidth : 0, h: img ? img.naturalHeight : 0,
                           visible: img ? img.getBoundingClientRect().width : 0,
                           caption: cap ? cap.innerText : '',
                           widgetLeft: document.querySelectorAll('.jupyter-widgets, .widget-vbox').length}; }"""
    )
    page.close()
    assert fig is not None, "chapter 3 has no figure #fig-ch03-explorer"
    assert fig["img"] and fig["w"] > 300 and fig["h"] > 100 and fig["visible"] > 300, fig
    assert "explorer" in fig["caption"].lower(), fig
    assert fig["widgetLeft"] == 0, "an empty widget placeholder is rendered"


def test_search_finds_responsibility(server, browser_context):
    page = browser_context.new_page()
    page.goto(f"{server}/search.html?q=responsibility", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.getAttribute('href'))")
    _shot(page, "light", "search-responsibility")
    page.close()
    RESULTS["search.html?q=responsibility"] = {"hits": len(hits)}
    assert any("03_theorem" in h for h in hits), hits


def test_the_page_checks_bite(server, browser_context):
    """Sanity check of the checks themselves: a page with an untypeset equation, a MathJax error,
    a traceback output, an image without alt text or caption and a transparent figure on a
    transparent background is flagged on each count."""
    page = browser_context.new_page()
    page.goto(f"{server}/genindex.html", wait_until="load")  # same origin, so the canvas can read pixels
    page.evaluate(
        """() => new Promise(done => {
            const cv = document.createElement('canvas'); cv.width = 40; cv.height = 20;
            const g = cv.getContext('2d'); g.fillStyle = 'black'; g.fillRect(0, 0, 10, 20);  // 3/4 transparent
            const art = document.querySelector('article.bd-article');
            art.innerHTML = '<span class="math">\\(x\\)</span><mjx-merror data-mjx-error="Undefined control sequence"></mjx-merror>'
              + '<div class="cell_output"><div class="output traceback">Traceback</div></div>'
              + '<img id="noalt"><figure style="background: transparent"><img id="transp" alt="a"><figcaption>c</figcaption></figure>';
            let n = 0; const ready = () => { if (++n === 2) done(); };
            for (const id of ['noalt', 'transp']) { const im = document.getElementById(id); im.onload = ready; im.src = cv.toDataURL(); }
        })"""
    )
    page.add_style_tag(content="img { background: transparent !important; }")
    r = page.evaluate(CHECKS_JS)
    o = page.evaluate(OPAQUE_JS)
    page.close()
    assert r["untypeset"] and r["merrors"] == ["Undefined control sequence"] and r["errOutputs"] == 1
    noalt = next(i for i in r["imgs"] if not i["alt"])
    assert noalt["loaded"] and not noalt["caption"]
    assert len(o) == 1 and o[0]["transparentShare"] > 0.5 and o[0]["background"] < 1


NOTEBOOKS = Path(os.environ.get("BOOK_NOTEBOOKS", ROOT / "_build" / "notebooks"))


def _quick_check_cell(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    for c in nb["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] == "markdown" and "**Quick check**" in src:
            return src
    raise AssertionError(f"{nb_path}: no quick check")


@pytest.mark.parametrize("edition", ["chapters", "student"])
def test_a_converted_quick_check_renders_folded(server, browser_context, edition):
    """A quick check of a notebook converted for Colab (tools/colab_notebooks.py), rendered as plain
    CommonMark with HTML (what Jupyter and Colab render, no MyST) and typeset with the book's MathJax:
    no MyST markup shows, the answer is hidden until its summary is clicked. Screenshots before and
    after the click: _build/screenshots/colab/."""
    from markdown_it import MarkdownIt

    nb_path = NOTEBOOKS / edition / "04_unsupervised.ipynb"
    if not nb_path.exists():
        pytest.fail(f"no {nb_path}: run `make book` (it writes the notebooks for Colab)")
    md = _quick_check_cell(nb_path)
    body = MarkdownIt("commonmark").render(md)
    mathjax = "_static/mathjax/tex-mml-chtml.js" if (HTML / "_static/mathjax/tex-mml-chtml.js").exists() else ""
    page = browser_context.new_page()
    page.goto(f"{server}/genindex.html", wait_until="load")  # same origin: the book's MathJax loads
    page.evaluate(
        """([body, mathjax]) => new Promise(done => {
            document.head.innerHTML = '<style>body{font:15px/1.5 sans-serif;max-width:760px;margin:24px}'
              + 'blockquote{border-left:4px solid #ccc;margin:0;padding:4px 14px;color:#333}</style>';
            document.body.innerHTML = '<div id="cell">' + body + '</div>';
            if (!mathjax) return done();
            window.MathJax = {tex: {inlineMath: [['$', '$']]}, startup: {pageReady: () =>
              MathJax.startup.defaultPageReady().then(done)}};
            const s = document.createElement('script'); s.src = mathjax; document.head.appendChild(s);
        })""",
        [body, mathjax],
    )
    text = page.inner_text("#cell")
    answer = page.locator("#cell details > :not(summary)").first
    closed_visible = answer.is_visible()
    out = SHOTS / "colab"
    out.mkdir(parents=True, exist_ok=True)
    page.locator("#cell").screenshot(path=str(out / f"quick-check-{edition}-folded.png"))
    page.click("#cell details > summary")
    open_visible = answer.is_visible()
    page.locator("#cell").screenshot(path=str(out / f"quick-check-{edition}-open.png"))
    page.close()
    for markup in ("{admonition}", "{dropdown}", ":class:", ":::", "{cite"):
        assert markup not in text, (markup, text)
    assert "Quick check" in text
    assert not closed_visible, "the answer shows before it is unfolded"
    assert open_visible, "the answer does not show after a click on its summary"


def test_skeptic_sections_are_folded_on_the_site(server, browser_context):
    """Every "For the skeptic" section's body is folded under its visible title; a link to an
    anchor inside one opens it (tools/sphinx/reading.py)."""
    folded = {}
    for name in PAGES:
        if not name.startswith("chapters/"):
            continue
        page = browser_context.new_page()
        page.goto(f"{server}/{name}", wait_until="load")
        r = page.evaluate(
            """() => [...document.querySelectorAll('section')].filter(s => {
                   const h = s.querySelector(':scope > h2, :scope > h3');
                   return h && h.textContent.trim().startsWith('For the skeptic'); })
               .map(s => { const d = s.querySelector(':scope > details.skeptic');
                           const inner = d && d.querySelector(':scope > :not(summary)');
                           const target = d && d.querySelector('[id]');
                           return {id: s.id, folded: !!d && !d.open,
                                   hidden: !!inner && (inner.checkVisibility ? !inner.checkVisibility() : inner.getBoundingClientRect().height === 0),
                                   title: s.querySelector(':scope > h2, :scope > h3').getBoundingClientRect().height > 0,
                                   target: target ? target.id : null}; })"""
        )
        if r:
            folded[name] = r
            with_target = [x for x in r if x["target"]]
            if with_target:
                page.goto(f"{server}/{name}#{with_target[0]['target']}", wait_until="load")
                page.wait_for_timeout(100)
                opened = page.evaluate(
                    "(id) => { const e = document.getElementById(id); const d = e.closest('details.skeptic');"
                    " return !!d && d.open; }", with_target[0]["target"])
                assert opened, f"{name}#{with_target[0]['target']}: the link does not open its section"
        page.close()
    RESULTS["skeptic sections"] = {"hits": sum(len(v) for v in folded.values())}
    assert folded, "no chapter has a 'For the skeptic' section"
    for name, sections in folded.items():
        for sec in sections:
            assert sec["folded"] and sec["hidden"] and sec["title"], (name, sec)


def test_write_report():
    """Runs last (file order): the per-page table, for the CI log and _build/screenshots/results.json."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "results.json").write_text(json.dumps(RESULTS, indent=1))
    for name, r in RESULTS.items():
        if "hits" in r:
            print(f"  {name}: {r['hits']} results")
        elif "redirect" in r:
            print(f"  {name:40s} forwards to {r['redirect']}")
        else:
            status = "ok" if not r["problems"] else f"{len(r['problems'])} problems"
            print(f"  {name:40s} {r['equations']:4d} equations  {r['images']:3d} figures  {status}")
