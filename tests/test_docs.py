"""Every document the code, the configuration and the README cite is in the repo.

A citation is a path that starts at the repo's ``docs`` folder (``docs`` + ``/`` + name),
found in the text of the project's own files; links inside ``docs/*.md`` are relative to
that folder. The repo must make sense on its own: nothing cites the docs of a sibling
checkout (``shared`` + ``/docs``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Folders and files whose text is searched for citations.
SCANNED = ("src", "conf", "tests", "benchmarks", "docs", "README.md", "Makefile", "pyproject.toml")
SUFFIXES = {".py", ".md", ".yml", ".yaml", ".toml", ".json", ".txt", ".ini", ".cfg", ""}
SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints"}

# "docs/<path>" not preceded by a path character (so not "<something>/docs/...").
_CITATION = re.compile(r"(?<![\w./-])docs/([\w.-]+(?:/[\w.-]+)*)")
_SIBLING_DOCS = re.compile(r"shared/docs/")
# Relative markdown links [text](target) in docs/*.md, without a scheme or an anchor-only target.
_MD_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|#)([^)\s#]+)")


def _scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix in SUFFIXES
                and not SKIPPED_PARTS.intersection(p.parts)
                and not any(part.endswith(".egg-info") for part in p.parts)
            )
    return files


def _citations() -> dict[str, list[str]]:
    """``{cited path under docs: [file:line, ...]}`` over every scanned file."""
    found: dict[str, list[str]] = {}
    for path in _scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), start=1):
            for match in _CITATION.finditer(line):
                cited = match.group(1).rstrip(".")
                where = f"{path.relative_to(ROOT)}:{lineno}"
                found.setdefault(cited, []).append(where)
    return found


def test_the_scan_finds_the_documents_the_code_is_known_to_cite() -> None:
    """The scan is not vacuous: the protocol and the contract are cited."""
    cited = _citations()
    assert "evaluation-protocol.md" in cited
    assert "racecard_format.md" in cited


@pytest.mark.parametrize("cited", sorted(_citations()))
def test_every_cited_doc_exists(cited: str) -> None:
    where = _citations()[cited]
    assert (DOCS / cited).exists(), (
        f"docs/{cited} is cited by {', '.join(where)} but is not in the repo"
    )


def test_nothing_cites_the_docs_of_a_sibling_checkout() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{lineno}"
        for path in _scanned_files()
        for lineno, line in enumerate(
            path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1
        )
        if _SIBLING_DOCS.search(line) and path != Path(__file__).resolve()
    ]
    assert not offenders, f"cite docs/<name> in this repo instead of a sibling's docs: {offenders}"


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_inside_docs_resolve(doc: str) -> None:
    text = (DOCS / doc).read_text(encoding="utf-8")
    broken = [t for t in _MD_LINK.findall(text) if not (DOCS / t).resolve().exists()]
    assert not broken, f"docs/{doc} links to missing files: {broken}"
