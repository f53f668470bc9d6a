# Implicit EM, executable: two commands.
#   make book  -> set up .venv, execute every notebook once, build _build/html, and write the notebooks
#                 for Jupyter and Colab (MyST converted) to _build/notebooks
#   make test  -> the same set-up, unit + property tests, every notebook executed once
#                 (pytest --nbmake), and the book built from those executed notebooks
#                 with warnings as errors.
#   make student -> the student edition: _build/student/html (solutions hidden), _build/student/book.pdf
#                 and _build/student/notebooks (solutions removed, MyST converted for Jupyter and Colab,
#                 quick-check answers folded: ready to hand out).
#   make pdf   -> the book as one PDF, _build/pdf/book.pdf, from the notebooks `make book` executed.
#   make release VERSION=x.y.z -> set the version everywhere, commit and tag vx.y.z (RELEASING.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Installed first, and only when torch is absent. Override for another wheel, e.g.
#   make book TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
# Outside _build/: nbmake skips any path with a "_build" component.
STAGE := _stage
NB_WORKERS ?= 2
NB_TIMEOUT ?= 600

.PHONY: setup book test unit notebooks html stage bench strip sync clean student colab-check browser-test mathjax linkcheck \
        tex pdf stage-sources release notebooks-for-colab

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[book,test]"
	@touch $@

setup: $(VENV)/.installed

unit: setup
	$(PY) -m pytest -n $(NB_WORKERS) tests

# Copy the book's sources to $(STAGE) so that execution writes outputs there, never into
# the committed (stripped) notebooks. The staged config turns Jupyter Book's own execution
# off: the notebooks are executed exactly once, by nbmake.
stage:
	@rm -rf $(STAGE) && mkdir -p $(STAGE)
	@cp -r _config.yml _toc.yml chapters $(STAGE)/
	@mkdir -p $(STAGE)/tools && cp -r tools/sphinx $(STAGE)/tools/
	@sed -i 's/^\(\s*execute_notebooks:\).*/\1 "off"/' $(STAGE)/_config.yml

# Chapter 8 (the longest) first, so that the others share the second worker meanwhile; one BLAS thread
# per notebook, since NB_WORKERS notebooks already share the cores (chapter 8's trainer runs its own
# single-threaded workers either way).
NB_ENV ?= OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
notebooks: setup stage
	$(NB_ENV) $(PY) -m pytest -p no:cacheprovider -n $(NB_WORKERS) --nbmake --overwrite \
	    --nbmake-timeout=$(NB_TIMEOUT) --durations=0 \
	    $$(ls $(STAGE)/chapters/08*.ipynb; ls $(STAGE)/chapters/*.ipynb | grep -v '/08')

# MathJax served from the build (tools/sphinx/local_mathjax.py) when npm can fetch mathjax@3 once
# into $(MATHJAX_CACHE); from the CDN otherwise.
MATHJAX_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/implicit-em-book/mathjax
export MATHJAX_DIR := $(MATHJAX_CACHE)
mathjax:
	@test -f $(MATHJAX_CACHE)/node_modules/mathjax/es5/tex-mml-chtml.js \
	  || npm install --silent --no-audit --no-fund --prefix $(MATHJAX_CACHE) mathjax@3 \
	  || echo "make mathjax: npm could not fetch mathjax@3; the book will load MathJax from the CDN"

# No printed line wider than the page (code lines: tests/test_book.py).
html: setup mathjax
	$(PY) tools/nbtools.py widths $(STAGE)/chapters
	$(PY) tools/reading_time.py --check chapters/instructors.md $(STAGE)/chapters
	$(VENV)/bin/jupyter-book build $(STAGE) --path-output . -W -n --keep-going
	@echo "Open the book: file://$(CURDIR)/_build/html/index.html"

book: notebooks html notebooks-for-colab

# The notebooks a reader runs in Jupyter or Colab (tools/colab_notebooks.py): MyST converted to
# CommonMark + HTML (admonitions as blockquotes, answers and solutions in <details>, citations as
# author-year text with the chapter's references, cross-references as links to the published pages,
# numbered as the HTML build numbered them), written to $(COLAB_NB)/chapters (the reader's) and
# $(COLAB_NB)/student (solutions removed), then rendered with plain CommonMark and checked for MyST
# left over. The Pages workflow publishes $(COLAB_NB) on the `notebooks` branch, which the launch
# buttons open (tools/sphinx/reading.py).
COLAB_NB := _build/notebooks
notebooks-for-colab: setup
	@test -f _build/.doctrees/environment.pickle || { echo "notebooks-for-colab: no HTML build; run make book"; exit 1; }
	$(PY) tools/colab_notebooks.py build chapters $(COLAB_NB)

test: unit book

# The PDF edition: Jupyter Book's LaTeX builder with XeLaTeX, on the notebooks `make book` executed in
# $(STAGE) (no second execution; tools/sphinx/pdf_edition.py numbers the chapters as the site does and
# fits tables and equations to the page). It writes _build/pdf/book.pdf, copies it to _build/html/book.pdf
# (every page's download menu links it) and checks it (tools/pdf_check.py: chapters in order, every figure,
# no "??", no raw LaTeX or MyST, fonts embedded, code and tables within the page; sample pages rendered
# into _build/screenshots/pdf/). The stage's configuration, toc and Markdown pages are refreshed first.
# TeX Live comes from Debian's packages, installed when missing (about 80 MB, a minute; no
# texlive-fonts-extra: tools/sphinx/texmf/bbm.sty stands in for the one file of it the build loads).
TEX_PACKAGES ?= texlive-xetex texlive-latex-extra texlive-fonts-recommended latexmk \
                fonts-dejavu-core fonts-dejavu-extra poppler-utils
PDF_DIR := _build/pdf
tex:
	@if ! command -v xelatex >/dev/null || ! command -v latexmk >/dev/null || ! command -v pdffonts >/dev/null \
	    || ! kpsewhich tabulary.sty fncychap.sty ucharclasses.sty rsfs10.tfm >/dev/null \
	    || ! test -f /usr/share/fonts/truetype/dejavu/DejaVuMathTeXGyre.ttf; then \
	  if [ "$$(id -u)" != 0 ]; then echo "tex: TeX Live is missing; as root: make tex (or apt-get install $(TEX_PACKAGES))"; exit 1; fi; \
	  echo "tex: installing $(TEX_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(TEX_PACKAGES) >/dev/null; \
	fi

# The book's sources other than the executed notebooks, copied again into $(STAGE).
stage-sources:
	@cp _config.yml _toc.yml $(STAGE)/ && cp chapters/*.md chapters/*.bib $(STAGE)/chapters/
	@rm -rf $(STAGE)/tools && mkdir -p $(STAGE)/tools && cp -r tools/sphinx $(STAGE)/tools/
	@sed -i 's/^\(\s*execute_notebooks:\).*/\1 "off"/' $(STAGE)/_config.yml

pdf: setup tex
	@ls $(STAGE)/chapters/*.ipynb >/dev/null 2>&1 || { echo "pdf: no executed notebooks in $(STAGE); run make book first"; exit 1; }
	@$(MAKE) --no-print-directory stage-sources
	@rm -rf _build/latex
	$(VENV)/bin/jupyter-book build $(STAGE) --path-output . --builder pdflatex -W -n --keep-going
	@mkdir -p $(PDF_DIR) && cp _build/latex/book.pdf $(PDF_DIR)/book.pdf
	@if [ -d _build/html ]; then cp $(PDF_DIR)/book.pdf _build/html/book.pdf; fi
	$(PY) tools/pdf_check.py $(PDF_DIR)/book.pdf --src $(STAGE) --html _build/html --latex _build/latex \
	    --shots _build/screenshots/pdf --executed $(STAGE)/chapters --committed chapters --json $(PDF_DIR)/check.json
	@echo "The PDF: $(CURDIR)/$(PDF_DIR)/book.pdf"

# The student edition (tools/student.py). A chapter executed by `make book` ($(STAGE)/chapters)
# is reused with its outputs (solution cells dropped) when its cells match the committed notebook;
# otherwise the committed notebook is built without execution (no outputs; seconds, not minutes).
# The HTML and the PDF (built like `make pdf`'s, into $(STUDENT)/book.pdf) are checked for solution text
# before the target succeeds; the PDF also passes tools/pdf_check.py.
STUDENT := _build/student
student: setup tex
	$(PY) tools/student.py stage $(STAGE)/chapters $(STUDENT)/src
	@rm -rf $(STUDENT)/html $(STUDENT)/latex $(STUDENT)/_build
	$(VENV)/bin/jupyter-book build $(STUDENT)/src --path-output $(STUDENT) -W -n --keep-going
	@mv $(STUDENT)/_build/html $(STUDENT)/html && rm -rf $(STUDENT)/_build
	$(VENV)/bin/jupyter-book build $(STUDENT)/src --path-output $(STUDENT) --builder pdflatex -W -n --keep-going
	@mv $(STUDENT)/_build/latex $(STUDENT)/latex && rm -rf $(STUDENT)/_build
	@cp $(STUDENT)/latex/book.pdf $(STUDENT)/book.pdf && cp $(STUDENT)/book.pdf $(STUDENT)/html/book.pdf
	$(PY) tools/colab_notebooks.py build chapters $(COLAB_NB)
	@rm -rf $(STUDENT)/notebooks && cp -r $(COLAB_NB)/student $(STUDENT)/notebooks
	$(PY) tools/student.py check-html $(STUDENT)/html chapters
	$(PY) tools/student.py check-pdf $(STUDENT)/book.pdf chapters
	$(PY) tools/pdf_check.py $(STUDENT)/book.pdf --src $(STUDENT)/src --html $(STUDENT)/html --latex $(STUDENT)/latex \
	    --shots _build/screenshots/student-pdf
	@echo "Student book: file://$(CURDIR)/$(STUDENT)/html/index.html; PDF: $(STUDENT)/book.pdf; notebooks: $(STUDENT)/notebooks/"

# Delivery checks (run by .ci/run after make test).
# colab-check: a fresh venv pinned to what Colab ships (tools/colab/pip-freeze-subset.txt),
# iemlib installed as the setup cell does, no pinned package changed, every notebook executed.
COLAB_PYTHON ?= $(PYTHON)
COLAB_VENV ?= .venv-colab
COLAB_TORCH ?= $(TORCH_SPEC)
# Seconds per cell; above NB_TIMEOUT because chapter 8 shares the CPU with the other notebooks.
COLAB_NB_TIMEOUT ?= 1200
colab-check:
	bash tools/colab/check.sh "$(COLAB_PYTHON)" "$(COLAB_VENV)" "$(COLAB_TORCH)" "$(NB_WORKERS)" "$(COLAB_NB_TIMEOUT)"

# browser-test: the built book (_build/html, from make book / make test) served on 127.0.0.1 and
# opened page by page in Debian's headless Chromium, driven by Playwright, with the network closed
# (tools/browser/test_site.py). Playwright never downloads a browser here: it is given CHROMIUM.
CHROMIUM ?= /usr/bin/chromium
browser-test: setup
	@test -f _build/html/index.html || { echo "browser-test: no _build/html; run make book first"; exit 1; }
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@$(PY) -c "import playwright" 2>/dev/null || PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -e ".[browser]"
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest -p no:cacheprovider -v -s tools/browser

# External links of the book (Sphinx's linkcheck builder; needs the network; run weekly by CI).
linkcheck: setup stage
	$(VENV)/bin/jupyter-book build $(STAGE) --path-output . --builder linkcheck

# A release (tools/release.py): refuses a dirty tree or a version not newer than the last release tag; sets
# iemlib.__version__, _config.yml's iemlib_ref and repository.branch, every setup cell, CHANGELOG.md,
# CITATION.cff and .zenodo.json; commits "Release vX.Y.Z", tags it, and commits repository.branch back.
# Nothing is pushed. The release commit's own checks: `python tools/release.py check`.
VERSION ?=
RELEASE_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
release:
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=x.y.z"; exit 2; }
	$(RELEASE_PY) tools/release.py cut $(VERSION)

bench: setup
	$(PY) bench/notebook_times.py

# Maintenance: rewrite every notebook's setup cell from _config.yml, strip outputs.
sync: setup
	$(PY) tools/nbtools.py sync chapters
strip: setup
	$(PY) tools/nbtools.py strip chapters

clean:
	rm -rf _build .pytest_cache .hypothesis
