"""The user's documentation stays a guide: README.md short, every page free of the project's
work-item wording, and every relative link (with its #anchor) pointing at something that exists.

A broken link or a page that speaks of "issue 12" or "this session" is a bug a reader hits
without any code failing, so it is checked like code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 250
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]

# wording that belongs to how the project was built, not to the product
WORK_ITEM = re.compile(
    r"\bissues?\s*#?\d+|\bstop\s*#?\d+|\bthis (?:session|stop)\b|\b(?:earlier|previous|last|next) "
    r"(?:session|stop)\b|\bsession\s*#?\d+",
    re.IGNORECASE,
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks: links and headings live there."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text only
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose(path):
        m = HEADING.match(line)
        if not m:
            continue
        slug = _slug(m.group(1))
        k = seen.get(slug, 0)
        seen[slug] = k + 1
        out.add(slug if k == 0 else f"{slug}-{k}")
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(path: Path) -> list[str]:
    problems = []
    for n, line in _prose(path):
        for m in LINK.finditer(line):
            target = m.group(1) or m.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{_rel(path)}:{n}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where} (no heading #{anchor} in {_rel(dest)})")
    return problems


def test_readme_is_a_short_guide() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_work_item_wording(page: Path) -> None:
    hits = [
        f"{n}: {m.group(0)!r}"
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        for m in WORK_ITEM.finditer(line)
    ]
    assert not hits, f"{page.relative_to(ROOT)} speaks of work items, not the product: {hits}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checks_catch_what_they_claim(tmp_path: Path) -> None:
    """The regex and the link check themselves, on a page with one of each mistake."""
    (tmp_path / "there.md").write_text("# Serving overhead (CPU box)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\nSee [ok](there.md#serving-overhead-cpu-box), [self](#top), [web](https://x.org),\n"
        "[gone](missing.md), [bad anchor](there.md#nope).\n```\n[in code](nowhere.md)\n```\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2 and "missing.md" in problems[0] and "#nope" in problems[1]
    for text in ("fixed in issue 22", "Issue #7", "this session", "stop 3", "an earlier session"):
        assert WORK_ITEM.search(text), text
    for text in ("ORT session options", "SIGTERM stop grace", "issues a request", "stop_process"):
        assert not WORK_ITEM.search(text), text
