#!/usr/bin/env python
"""Releases of the book and of iemlib: one version for both.

    make release VERSION=x.y.z              # = python tools/release.py cut x.y.z
    python tools/release.py notes x.y.z     # the CHANGELOG section of x.y.z (the release notes)
    python tools/release.py check           # exit 1 if the version strings disagree

``cut`` refuses to start unless the working tree is clean (no changed and no untracked files), x.y.z is
three numbers, newer than every release tag and not older than ``iemlib.__version__``, the tag does not
exist yet, and ``CHANGELOG.md`` lists changes under ``## Unreleased``. Then, in one commit tagged
``vx.y.z`` ("Release vx.y.z"):

* ``iemlib/__init__.py``: ``__version__ = "x.y.z"`` (pyproject reads it; the one version string);
* ``_config.yml``: ``iemlib_ref: vx.y.z`` (every chapter's setup cell installs that tag's iemlib) and
  ``repository.branch: vx.y.z`` (a page built from the tag opens the tag's notebooks on Colab and Binder);
* every notebook's setup cell rewritten (``tools/nbtools.py sync chapters``);
* ``CHANGELOG.md``: ``## Unreleased`` becomes ``## [x.y.z] - date``, under a new empty ``## Unreleased``;
* ``CITATION.cff`` and ``.zenodo.json``: version and date.

A second commit sets ``repository.branch`` back to the branch it named before (``main``): the site built
from ``main`` opens ``main``'s notebooks, which install the latest release's iemlib. Nothing is pushed; the
script prints the command that does it. A pushed tag runs ``.github/workflows/release.yml``, which builds
the book and its PDF and publishes them as a GitHub release (and Zenodo, when connected, gives it a DOI).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
TAG_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


class ReleaseError(RuntimeError):
    pass


def _git(*args: str, root: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def parse_version(text: str) -> tuple[int, int, int]:
    m = VERSION_RE.match(text)
    if not m:
        raise ReleaseError(f"VERSION must be three numbers, x.y.z; got {text!r}")
    return tuple(int(x) for x in m.groups())  # type: ignore[return-value]


# --- the version strings, where they live ---------------------------------------------------------

def package_version(root: Path = ROOT) -> str:
    m = re.search(r'^__version__ = "([^"]+)"', (root / "iemlib" / "__init__.py").read_text(), flags=re.M)
    if not m:
        raise ReleaseError("iemlib/__init__.py: no __version__ line")
    return m.group(1)


def _sub_once(pattern: str, repl: str, text: str, what: str, flags: int = re.M) -> str:
    new, n = re.subn(pattern, repl, text, count=1, flags=flags)
    if n != 1:
        raise ReleaseError(f"{what}: the line to change is not there")
    return new


def set_package_version(version: str, root: Path = ROOT) -> None:
    p = root / "iemlib" / "__init__.py"
    p.write_text(_sub_once(r'^__version__ = "[^"]*"', f'__version__ = "{version}"', p.read_text(), str(p)))


_BRANCH = r"(^repository:[ \t]*\n(?:[ \t]+.*\n|[ \t]*\n)*?[ \t]+branch:[ \t]*)(\S+)"


def config_values(root: Path = ROOT) -> tuple[str, str]:
    """(iemlib_ref, repository.branch) of _config.yml."""
    text = (root / "_config.yml").read_text()
    ref = re.search(r"^iemlib_ref:[ \t]*(\S+)", text, flags=re.M)
    branch = re.search(_BRANCH, text, flags=re.M)
    if not ref or not branch:
        raise ReleaseError("_config.yml: iemlib_ref or repository.branch missing")
    return ref.group(1), branch.group(2)


def set_config(root: Path = ROOT, *, ref: str | None = None, branch: str | None = None) -> None:
    p = root / "_config.yml"
    text = p.read_text()
    if ref is not None:
        text = _sub_once(r"^iemlib_ref:[ \t]*\S+", f"iemlib_ref: {ref}", text, "_config.yml iemlib_ref")
    if branch is not None:
        text = _sub_once(_BRANCH, rf"\g<1>{branch}", text, "_config.yml repository.branch")
    p.write_text(text)


def set_citation(version: str, date: str, root: Path = ROOT) -> None:
    p = root / "CITATION.cff"
    text = _sub_once(r"^version:.*$", f'version: "{version}"', p.read_text(), "CITATION.cff version")
    if re.search(r"^date-released:", text, flags=re.M):
        text = _sub_once(r"^date-released:.*$", f'date-released: "{date}"', text, "CITATION.cff date-released")
    else:
        text = _sub_once(r"^(version:.*)$", rf'\1\ndate-released: "{date}"', text, "CITATION.cff version")
    p.write_text(text)
    z = root / ".zenodo.json"
    meta = json.loads(z.read_text())
    meta["version"] = version
    meta["publication_date"] = date
    z.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


# --- the changelog ------------------------------------------------------------------------------------

_SECTION = re.compile(r"^## (.+?)[ \t]*$", flags=re.M)


def changelog_section(text: str, heading: str) -> tuple[int, int] | None:
    """Start and end offsets of the body of the ``## heading`` section (heading matched by prefix)."""
    heads = list(_SECTION.finditer(text))
    for k, m in enumerate(heads):
        if m.group(1).startswith(heading):
            end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
            return m.end(), end
    return None


def unreleased_changes(root: Path = ROOT) -> str:
    text = (root / "CHANGELOG.md").read_text()
    span = changelog_section(text, "Unreleased")
    if span is None:
        raise ReleaseError("CHANGELOG.md: no '## Unreleased' section")
    body = text[span[0]:span[1]].strip()
    if not re.search(r"^\s*[-*] \S", body, flags=re.M):
        raise ReleaseError("CHANGELOG.md: nothing listed under '## Unreleased'; say what the release changes")
    return body


def release_changelog(version: str, date: str, url: str, root: Path = ROOT) -> None:
    p = root / "CHANGELOG.md"
    text = p.read_text()
    text = _sub_once(r"^## Unreleased[ \t]*$", f"## Unreleased\n\n## [{version}] - {date}", text,
                     "CHANGELOG.md '## Unreleased'")
    link = f"[{version}]: {url}/releases/tag/v{version}"
    p.write_text(text.rstrip("\n") + ("\n\n" if not re.search(r"^\[[\d.]+\]: ", text, flags=re.M) else "\n")
                 + link + "\n")


def notes(version: str, root: Path = ROOT) -> str:
    text = (root / "CHANGELOG.md").read_text()
    span = changelog_section(text, f"[{version}]")
    if span is None:
        raise ReleaseError(f"CHANGELOG.md: no section for {version}")
    body = text[span[0]:span[1]]
    return re.sub(r"^\[[\d.]+\]: .*\n?", "", body, flags=re.M).strip() + "\n"


# --- checks and the release ------------------------------------------------------------------------

def release_tags(root: Path = ROOT) -> list[tuple[int, int, int]]:
    tags = _git("tag", "--list", "v*", root=root).split()
    return sorted(tuple(int(x) for x in TAG_RE.match(t).groups()) for t in tags if TAG_RE.match(t))


def consistency_problems(root: Path = ROOT) -> list[str]:
    version = package_version(root)
    ref, _ = config_values(root)
    out = []
    if ref != f"v{version}":
        out.append(f"_config.yml iemlib_ref is {ref}, iemlib.__version__ is {version}")
    cff = re.search(r'^version:\s*"?([^"\s]+)"?', (root / "CITATION.cff").read_text(), flags=re.M)
    if not cff or cff.group(1) != version:
        out.append(f"CITATION.cff version is {cff.group(1) if cff else None}, iemlib.__version__ is {version}")
    zen = json.loads((root / ".zenodo.json").read_text()).get("version")
    if zen != version:
        out.append(f".zenodo.json version is {zen}, iemlib.__version__ is {version}")
    return out


def preflight(version: str, root: Path = ROOT) -> None:
    new = parse_version(version)
    status = _git("status", "--porcelain", root=root)
    if status:
        raise ReleaseError("the working tree is not clean (commit or remove these first):\n" + status)
    tags = release_tags(root)
    if tags and new <= tags[-1]:
        raise ReleaseError(f"{version} is not newer than the latest release, v{'.'.join(map(str, tags[-1]))}")
    current = package_version(root)
    if new < parse_version(current):
        raise ReleaseError(f"{version} is older than iemlib.__version__ ({current})")
    if _git("tag", "--list", f"v{version}", root=root):
        raise ReleaseError(f"tag v{version} exists")
    unreleased_changes(root)


def cut(version: str, date: str | None = None, root: Path = ROOT) -> str:
    """Commit and tag the release of ``version``; returns the tag."""
    preflight(version, root)
    date = date or dt.date.today().isoformat()
    tag = f"v{version}"
    _, dev_branch = config_values(root)
    if TAG_RE.match(dev_branch):
        dev_branch = "main"
    import yaml  # the book's set-up has it (and nbtools below needs it)

    url = str(yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"]).rstrip("/")
    set_package_version(version, root)
    set_config(root, ref=tag, branch=tag)
    set_citation(version, date, root)
    release_changelog(version, date, url, root)
    subprocess.run([sys.executable, str(root / "tools" / "nbtools.py"), "sync", "chapters"], cwd=root, check=True)
    problems = consistency_problems(root)
    if problems:
        raise ReleaseError("after setting the version: " + "; ".join(problems))
    _git("add", "-A", root=root)
    _git("commit", "-q", "-m", f"Release {tag}", "-m",
         f"iemlib {version}; every chapter's setup cell installs {tag}; launch buttons of a site built from "
         f"this commit open the notebooks of {tag}.", root=root)
    _git("tag", "-a", "--cleanup=verbatim", tag, "-m", f"Implicit EM, executable {tag}\n\n{notes(version, root)}",
         root=root)
    set_config(root, branch=dev_branch)
    _git("commit", "-q", "-am", f"Back to development after {tag}: repository.branch is {dev_branch} again",
         root=root)
    return tag


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cut", help="set the version everywhere, commit and tag")
    c.add_argument("version")
    c.add_argument("--date", help="release date, YYYY-MM-DD (default: today)")
    n = sub.add_parser("notes", help="print the CHANGELOG section of a version")
    n.add_argument("version")
    sub.add_parser("check", help="exit 1 if the version strings disagree")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "notes":
            print(notes(args.version), end="")
        elif args.cmd == "check":
            problems = consistency_problems()
            for p in problems:
                print(p, file=sys.stderr)
            if not problems:
                print(f"version {package_version()}: iemlib, _config.yml, CITATION.cff and .zenodo.json agree")
            return 1 if problems else 0
        else:
            branch = _git("rev-parse", "--abbrev-ref", "HEAD")
            tag = cut(args.version, args.date)
            print(f"Released {tag}: commit 'Release {tag}' (tagged) and a commit back to development, on {branch}.")
            print(f"Check them (git show {tag}), then publish: git push origin {branch} {tag}")
    except (ReleaseError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"release: {exc}{(': ' + detail.strip()) if detail else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
