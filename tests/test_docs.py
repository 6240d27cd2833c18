"""The docs stay true to the code: generated pages are current, every variable is documented,
links lead somewhere, and the README stays short."""

import re
import subprocess
from pathlib import Path

import pytest

from bscore_assets import docs_reference

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 150
VARIABLE = re.compile(r"BSCORE_[A-Z_]+")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _pages():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", sorted(docs_reference.PAGES))
def test_generated_pages_are_current(page):
    committed = (ROOT / page).read_text(encoding="utf-8") if (ROOT / page).exists() else ""
    assert committed == docs_reference.PAGES[page](), (
        f"{page} is out of date with the code: regenerate it with `{docs_reference.REGENERATE}` and commit it")


def _source_files():
    try:  # the checkout's files, tracked or new, without .venv, node_modules and other ignored ones
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        skip = {".venv", "node_modules", ".git", ".bscore", "build", "test-artifacts"}
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    for name in names:
        path = ROOT / name
        if path.suffix in (".py", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg") or path.name in (
                "Makefile", "Dockerfile"):
            if path.is_file() and not path.is_symlink():
                yield path


def test_every_variable_in_the_code_is_in_the_configuration_page():
    found = {}
    for path in _source_files():
        for name in VARIABLE.findall(path.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(name, path.relative_to(ROOT))
    assert "BSCORE_HOME" in found  # the scan sees the sources at all
    page = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(BSCORE_[A-Z_]+)`", page))
    missing = {name: str(where) for name, where in sorted(found.items()) if name not in documented}
    assert not missing, (f"variables read in the code but not in docs/configuration.md: {missing}; document them "
                         f"(Settings field metadata or OTHER_VARIABLES) and run `{docs_reference.REGENERATE}`")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set:
    seen, anchors = {}, set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_relative_link_points_at_a_file_that_exists():
    broken = []
    for page in _pages():
        for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z+.-]*:", target):
                continue  # http(s), mailto: not ours to check
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no heading #{anchor} there)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail into a docs/ page and link it")
