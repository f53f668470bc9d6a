"""The GitHub workflows and .ci/run call the Makefile's targets, so CI here and there run the same thing."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / ".github" / "workflows").glob("*.yml"))}
MAKEFILE = (ROOT / "Makefile").read_text()
TARGETS = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", MAKEFILE, flags=re.M))


def _on(wf: dict) -> dict:
    # YAML 1.1 reads the key `on` as True.
    return wf.get("on", wf.get(True)) or {}


def _steps(wf: dict) -> list[dict]:
    return [s for job in wf["jobs"].values() for s in job.get("steps", [])]


def _make_targets(text: str) -> list[str]:
    """Targets of the shell lines that run make (`make a b VAR=value`), in order."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("make "):
            continue
        for word in shlex.split(line, comments=True)[1:]:
            if word in {"&&", "||", ";", "|"}:
                break
            if "=" not in word and not word.startswith("-"):
                out.append(word)
    return out


def _runs(wf: dict) -> str:
    return "\n".join(s.get("run", "") for s in _steps(wf))


def _uses(wf: dict) -> list[str]:
    return [s["uses"].split("@")[0] for s in _steps(wf) if "uses" in s]


def test_there_are_workflows():
    assert {"test.yml", "pages.yml", "weekly.yml"} <= set(WORKFLOWS)


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_every_make_call_names_a_makefile_target(name):
    targets = _make_targets(_runs(WORKFLOWS[name]))
    assert targets, f"{name} calls no make target"
    assert set(targets) <= TARGETS, set(targets) - TARGETS


def test_pull_requests_run_make_test():
    wf = WORKFLOWS["test.yml"]
    assert "pull_request" in _on(wf)
    assert "test" in _make_targets(_runs(wf))


def test_main_builds_and_deploys_to_pages_with_caches():
    wf = WORKFLOWS["pages.yml"]
    assert _on(wf)["push"]["branches"] == ["main"]
    uses = _uses(wf)
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    assert any(s.get("with", {}).get("cache") == "pip" for s in _steps(wf)), "no pip cache"
    caches = [s for s in _steps(wf) if s.get("uses", "").startswith("actions/cache")]
    assert any("chapters/**" in s["with"]["key"] for s in caches), "no executed-notebook cache keyed on the chapters"
    targets = _make_targets(_runs(wf))
    assert "notebooks" in targets and "html" in targets
    upload = next(s for s in _steps(wf) if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"


def test_weekly_colab_check_and_link_check():
    wf = WORKFLOWS["weekly.yml"]
    assert _on(wf)["schedule"][0]["cron"].split()[-1] in {"0", "1", "2", "3", "4", "5", "6"}
    targets = _make_targets(_runs(wf))
    assert "colab-check" in targets and "linkcheck" in targets


def test_ci_run_calls_the_same_targets():
    ci = (ROOT / ".ci" / "run").read_text()
    targets = _make_targets(ci)
    assert targets[:3] == ["test", "colab-check", "browser-test"]
    assert set(targets) <= TARGETS
