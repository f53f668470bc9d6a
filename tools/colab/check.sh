#!/usr/bin/env bash
# The Colab check (`make colab-check`): does the book install and run in Colab's environment as
# Colab ships it, without changing any preinstalled package?
#   1. a fresh virtual environment pinned to Colab's versions (tools/colab/pip-freeze-subset.txt);
#   2. iemlib installed the way every notebook's setup cell installs it (`pip install "iemlib @ ..."`,
#      from this checkout instead of the repository URL), with no constraints;
#   3. `pip freeze --all` before and after: every pinned package must be unchanged;
#   4. the widget tests under Colab's ipywidgets 7.7.1; every notebook a Colab reader opens (the chapters converted
#      from MyST by `make book`, _build/notebooks/chapters) executed in that environment.
# Usage: tools/colab/check.sh PYTHON VENV TORCH_SPEC WORKERS CELL_TIMEOUT_SECONDS
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${1:-python3}; VENV=${2:-.venv-colab}; TORCH=${3:-torch==2.13.0}; WORKERS=${4:-2}; TIMEOUT=${5:-1200}
PINS=tools/colab/pip-freeze-subset.txt
OUT=_build/colab
PY=$VENV/bin/python
# Kernels quiet about debugpy and frozen modules (Python 3.11 + Colab's ipykernel 6.17).
export PYDEVD_DISABLE_FILE_VALIDATION=1
strip_warnings() { grep -v -e 'is ignored: it is neither a file nor a directory' -e "^$" || true; }

echo "== colab-check: Colab's packages as of googlecolab/backend-info $(grep -m1 -o "commit [0-9a-f]\{40\} of [0-9-]*" $PINS)"
echo "   Colab: Python 3.13.15, torch 2.11.0+cpu; here: $($PYTHON --version 2>&1), $TORCH (+cpu, see $PINS)"
rm -rf "$VENV" "$OUT" && mkdir -p "$OUT"
"$PYTHON" -m venv "$VENV"
"$PY" -m pip install --quiet "$(grep -m1 '^pip==' $PINS)" 2>&1 | strip_warnings
# --no-deps: the list is a closed set (pip check below fails on anything missing), and resolving
# 105 exact pins again only costs time.
"$PY" -m pip install --quiet --no-deps -r "$PINS" 2>&1 | strip_warnings
# torch's own dependencies are pinned above; see the pin file for why --no-deps.
# $TORCH is unquoted on purpose: it may carry options (--index-url ...).
"$PY" -m pip install --quiet --no-deps $TORCH 2>&1 | strip_warnings
"$PY" -m pip freeze --all | LC_ALL=C sort > "$OUT/freeze-before.txt"
echo "   pinned environment ready after $SECONDS s"

# The setup cell: %pip install --quiet "iemlib @ git+<repository url>"
"$PY" -m pip install --quiet "iemlib @ file://$PWD" 2>&1 | strip_warnings
"$PY" -m pip freeze --all | LC_ALL=C sort > "$OUT/freeze-after.txt"

changed=$(LC_ALL=C comm -23 "$OUT/freeze-before.txt" "$OUT/freeze-after.txt")
added=$(LC_ALL=C comm -13 "$OUT/freeze-before.txt" "$OUT/freeze-after.txt" | sed 's/ @ .*//')
echo "   pinned packages: $(grep -c . "$OUT/freeze-before.txt")"
echo "   packages added: $(echo $added)"
if [ -n "$changed" ]; then
  echo "   packages changed: installing iemlib changed these preinstalled packages:"
  echo "$changed" | sed 's/^/     /'
  LC_ALL=C comm -13 "$OUT/freeze-before.txt" "$OUT/freeze-after.txt" | sed 's/^/     now: /'
  exit 1
fi
echo "   packages changed: none"
"$PY" -m pip check | sed 's/^/   pip check: /'
"$PY" -c "import ipywidgets, numpy, torch, iemlib; print('   ipywidgets', ipywidgets.__version__, '| numpy', numpy.__version__, '| torch', torch.__version__, '| iemlib', iemlib.__version__)"

echo "   iemlib installed and checked after $SECONDS s"
echo "== widget tests under ipywidgets $("$PY" -c 'import ipywidgets; print(ipywidgets.__version__)')"
"$PY" -m pytest -q -p no:cacheprovider --noconftest -W ignore::DeprecationWarning tests/test_widgets.py

echo "== every notebook a Colab reader opens (converted from MyST by make book: _build/notebooks) executed"
test -d _build/notebooks/chapters || { echo "colab-check: no _build/notebooks; run make book first"; exit 1; }
rm -rf "$OUT/chapters" && mkdir -p "$OUT/chapters" && cp _build/notebooks/chapters/*.ipynb "$OUT/chapters/"
# The longest notebook (chapter 8) first, so that the others share the second worker meanwhile.
nbs=$(ls "$OUT"/chapters/08*.ipynb 2>/dev/null; ls "$OUT"/chapters/*.ipynb | grep -v '/08')
# One BLAS thread per notebook: the workers already share the cores (as in `make notebooks`).
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
  "$PY" tools/colab/run_notebooks.py "$OUT/executed" --workers "$WORKERS" --timeout "$TIMEOUT" $nbs
echo "colab-check: done in $SECONDS s"
