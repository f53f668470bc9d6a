"""The release procedure (`make release VERSION=...`, tools/release.py), run on a throwaway clone.

The clone is made from this repository's HEAD; the working tree's own versions of the files the procedure
reads or writes are committed on top, so what is tested is what is checked out here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import release  # noqa: E402

#: Files the procedure reads or writes (chapters/*.ipynb too).
RELEASE_FILES = ["Makefile", "CHANGELOG.md", "CITATION.cff", ".zenodo.json", "_config.yml", "iemlib/__init__.py",
                 "tools/release.py", "tools/nbtools.py"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def make_release(repo: Path, version: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "release", f"VERSION={version}", f"PY={sys.executable}"],
                          cwd=repo, capture_output=True, text=True)


@pytest.fixture
def clone(tmp_path):
    if not (ROOT / ".git").exists() or shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("needs git, make and a git checkout")
    repo = tmp_path / "book"
    subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(repo)], check=True)
    git(repo, "config", "user.name", "Release Test")
    git(repo, "config", "user.email", "release-test@example.invalid")
    git(repo, "config", "commit.gpgsign", "false")
    git(repo, "config", "tag.gpgsign", "false")
    for name in RELEASE_FILES:
        if (ROOT / name).exists():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    for nb in (ROOT / "chapters").glob("*.ipynb"):
        shutil.copy2(nb, repo / "chapters" / nb.name)
    git(repo, "add", "-A")
    if git(repo, "status", "--porcelain"):
        git(repo, "commit", "-q", "-m", "test: the working tree's release files")
    # Something to release.
    log = repo / "CHANGELOG.md"
    log.write_text(log.read_text().replace("## Unreleased\n", "## Unreleased\n\n### Fixed\n- A change made by the test.\n", 1))
    git(repo, "commit", "-qam", "test: a change to release")
    return repo


def _next_version(repo: Path) -> str:
    tags = release.release_tags(repo)
    current = release.parse_version(release.package_version(repo))
    base = max([current] + tags)
    return f"{base[0]}.{base[1] + 1}.0"


def test_a_release_sets_every_version_string_commits_and_tags(clone):
    version = _next_version(clone)
    tag = f"v{version}"
    head_before = git(clone, "rev-parse", "HEAD")
    r = make_release(clone, version)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "git push origin" in r.stdout and tag in r.stdout
    # Two commits: the tagged release, then back to development.
    commits = git(clone, "log", "--format=%s", f"{head_before}..HEAD").splitlines()
    assert commits == [f"Back to development after {tag}: repository.branch is main again", f"Release {tag}"]
    assert git(clone, "rev-parse", f"{tag}^{{commit}}") == git(clone, "rev-parse", "HEAD~1")
    assert git(clone, "status", "--porcelain") == ""

    # The tagged tree: one version everywhere, the launch buttons on the tag, every setup cell on the tag.
    def at_tag(path: str) -> str:
        return git(clone, "show", f"{tag}:{path}")

    assert f'__version__ = "{version}"' in at_tag("iemlib/__init__.py")
    cfg = yaml.safe_load(at_tag("_config.yml"))
    assert cfg["iemlib_ref"] == tag and cfg["repository"]["branch"] == tag
    url = cfg["repository"]["url"].rstrip("/")
    nbs = [p for p in git(clone, "ls-tree", "--name-only", tag, "chapters/").splitlines() if p.endswith(".ipynb")]
    assert nbs
    for p in nbs:
        nb = json.loads(at_tag(p))
        setup = [c for c in nb["cells"] if "setup" in c.get("metadata", {}).get("tags", [])]
        src = "".join(setup[0]["source"]) if isinstance(setup[0]["source"], list) else setup[0]["source"]
        assert f'"git+{url}@{tag}"' in src, p
        assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), p
    assert yaml.safe_load(at_tag("CITATION.cff"))["version"] == version
    assert json.loads(at_tag(".zenodo.json"))["version"] == version
    log = at_tag("CHANGELOG.md")
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d\d-\d\d$", log, flags=re.M)
    assert log.index("## Unreleased") < log.index(f"## [{version}]")
    assert f"[{version}]: {url}/releases/tag/{tag}" in log
    assert "A change made by the test." in release.notes(version, clone)
    # The tag's message carries the release notes.
    message = git(clone, "tag", "-l", "--format=%(contents)", tag)
    assert "A change made by the test." in message and "### Fixed" in message

    # After the release: development on main again, same version and pin.
    cfg_head = yaml.safe_load((clone / "_config.yml").read_text())
    assert cfg_head["repository"]["branch"] == "main" and cfg_head["iemlib_ref"] == tag
    assert release.consistency_problems(clone) == []


def test_a_dirty_tree_is_refused(clone):
    (clone / "README.md").write_text((clone / "README.md").read_text() + "\nAn uncommitted line.\n")
    head, tags = git(clone, "rev-parse", "HEAD"), git(clone, "tag", "-l")
    r = make_release(clone, _next_version(clone))
    assert r.returncode != 0 and "not clean" in r.stderr and "README.md" in r.stderr
    assert git(clone, "rev-parse", "HEAD") == head and git(clone, "tag", "-l") == tags
    git(clone, "checkout", "--", "README.md")
    (clone / "stray.txt").write_text("untracked")
    r = make_release(clone, _next_version(clone))
    assert r.returncode != 0 and "stray.txt" in r.stderr


def test_a_version_that_is_not_newer_is_refused(clone):
    version = _next_version(clone)
    assert make_release(clone, version).returncode == 0
    log = clone / "CHANGELOG.md"
    log.write_text(log.read_text().replace("## Unreleased\n", "## Unreleased\n\n- Another change.\n", 1))
    git(clone, "commit", "-qam", "test: another change")
    head = git(clone, "rev-parse", "HEAD")
    for bad in (version, "0.0.1", "1.2", "v1.2.3", "1.2.3rc1"):
        r = make_release(clone, bad)
        assert r.returncode != 0, bad
        assert "not newer" in r.stderr or "three numbers" in r.stderr or "older" in r.stderr, (bad, r.stderr)
    assert git(clone, "rev-parse", "HEAD") == head


def test_nothing_under_unreleased_is_refused(clone):
    log = clone / "CHANGELOG.md"
    text = log.read_text()
    start = text.index("## Unreleased") + len("## Unreleased")
    end = text.index("\n## ", start)
    log.write_text(text[:start] + "\n" + text[end:])
    git(clone, "commit", "-qam", "test: an empty Unreleased section")
    r = make_release(clone, _next_version(clone))
    assert r.returncode != 0 and "nothing listed" in r.stderr


def test_make_release_needs_a_version(clone):
    r = subprocess.run(["make", "--no-print-directory", "release"], cwd=clone, capture_output=True, text=True)
    assert r.returncode != 0 and "usage: make release VERSION=" in r.stdout + r.stderr


def test_the_version_strings_agree_here():
    """In this checkout: iemlib, _config.yml's pin, CITATION.cff and .zenodo.json name one version."""
    assert release.consistency_problems() == []
    assert release.config_values()[0] == f"v{release.package_version()}"


def test_changelog_sections():
    text = "# C\n\n## Unreleased\n\n- x\n\n## [0.2.0] - 2026-01-01\n\n- y\n\n[0.2.0]: https://e/releases/tag/v0.2.0\n"
    a, b = release.changelog_section(text, "Unreleased")
    assert text[a:b].strip() == "- x"
    assert release.parse_version("1.10.0") > release.parse_version("1.9.3")
    with pytest.raises(release.ReleaseError):
        release.parse_version("1.0")
