"""iemlib's declared ranges: Colab's versions installable unchanged, and each lower bound tested.

`make colab-check` runs everything at the versions in tools/colab/pip-freeze-subset.txt; `make
test` at the newest versions the ranges admit. A lower bound is therefore tested when it is
Colab's version: checked here for every runtime dependency (torch is the documented exception:
Colab's 2.11 cannot be installed on this machine, the checks run 2.13.0).
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PINS_TEXT = (ROOT / "tools" / "colab" / "pip-freeze-subset.txt").read_text()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PINS = {
    _norm(m.group(1)): Version(m.group(2))
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", PINS_TEXT, flags=re.M)
}
COLAB_TORCH = Version(re.search(r"Colab ships torch ([\d.]+)", PINS_TEXT).group(1))
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]


def _lower(req: Requirement) -> Version:
    lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
    assert len(lows) == 1, f"{req}: one lower bound (>=) expected"
    return lows[0]


def test_pin_file_names_its_source_and_date():
    assert re.search(r"googlecolab/backend-info.*\n# commit [0-9a-f]{40} of \d{4}-\d\d-\d\d", PINS_TEXT)
    assert "Python 3.13" in PINS_TEXT and "torch" in PINS_TEXT


@pytest.mark.parametrize("req", RUNTIME, ids=lambda r: r.name)
def test_runtime_range_admits_colab_and_its_lower_bound_is_colabs_version(req):
    name = _norm(req.name)
    colab = COLAB_TORCH if name == "torch" else PINS[name]
    # Installing iemlib on Colab changes nothing that is preinstalled ...
    assert req.specifier.contains(colab, prereleases=True), f"{req} excludes Colab's {colab}"
    # ... and the lower bound is the version the colab check runs.
    if name == "torch":
        assert _lower(req) == Version(f"{colab.major}.{colab.minor}"), (req, colab)
    else:
        assert _lower(req) == colab, f"{req}: lower bound should be Colab's tested {colab}"
    # The version `make test` runs is admitted too.
    assert req.specifier.contains(Version(installed_version(req.name)).base_version)


def test_ipywidgets_7_and_8_are_both_admitted():
    req = next(r for r in RUNTIME if r.name == "ipywidgets")
    assert req.specifier.contains("7.7.1") and req.specifier.contains("8.1.5")


@pytest.mark.parametrize("extra", ["book", "test", "browser"])
def test_extras_lower_bounds_are_at_most_what_is_installed(extra):
    for r in PROJECT["optional-dependencies"][extra]:
        req = Requirement(r)
        try:
            have = Version(installed_version(req.name))
        except Exception:  # browser extra: installed by make browser-test only
            continue
        assert _lower(req) <= have, (req, have)
        if _norm(req.name) in PINS:  # also run by the colab check, at Colab's version
            assert _lower(req) <= PINS[_norm(req.name)], (req, PINS[_norm(req.name)])


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = {}
    for item in env:
        if isinstance(item, str):
            m = re.match(r"([A-Za-z0-9_.-]+)(.*)", item)
            conda[_norm(m.group(1))] = m.group(2)
        else:
            for p in item["pip"]:
                m = re.match(r"([A-Za-z0-9_.-]+)(.*)", p)
                conda[_norm(m.group(1))] = m.group(2)
    for req in RUNTIME:
        assert conda.get(_norm(req.name)) is not None, f"{req.name} missing from environment.yml"
        assert sorted(conda[_norm(req.name)].split(",")) == sorted(str(req.specifier).split(",")), req
    assert PROJECT["requires-python"] == ">=3.11" and any(str(i).startswith("python>=3.11") for i in env)
