"""The README is the front door and docs/*.md and benchmarks/README.md the rooms behind it: every
relative link between them points at a file that exists and, with a #fragment, at a heading of
that file (GitHub's anchors), and the README leads to every page."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePosixPath

import pytest

from tests.readme import DOCUMENTS, README, ROOT, section

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def unfenced(text: str) -> str:
    """The text without its fenced blocks, where '#' starts no heading and brackets make no link."""
    return re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.DOTALL | re.MULTILINE)


def prose(text: str) -> str:
    """The text without its fenced blocks and code spans."""
    return re.sub(r"`[^`]*`", "", unfenced(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a document's headings, a repeated one numbered as GitHub numbers it."""
    seen: Counter[str] = Counter()
    found = set()
    for line in unfenced(text).replace("`", "").splitlines():  # a heading's code span keeps its words
        heading = re.match(r"#{1,6} (.+?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            found.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return found


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def relative_links() -> list[tuple[str, str]]:
    return [
        (name, target)
        for name, text in DOCUMENTS.items()
        for target in links(text)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: are not files here
    ]


RELATIVE = relative_links()


def test_the_slugs_are_githubs() -> None:
    assert slug("At 3 a.m., for one endpoint") == "at-3-am-for-one-endpoint"
    assert slug("Choosing --concurrency") == "choosing---concurrency"
    assert slug("What it does not see") == "what-it-does-not-see"
    assert anchors("# A\n\n```sh\n# not a heading\n```\n## A\n### `x.y` z\n") == {"a", "a-1", "xy-z"}


def test_the_documents_link_each_other() -> None:
    per_document = Counter(name for name, _ in RELATIVE)
    assert per_document["README.md"] >= 20, per_document
    assert len(RELATIVE) >= 25, per_document


UNIQUE = list(dict.fromkeys(RELATIVE))


@pytest.mark.parametrize(("name", "target"), UNIQUE, ids=[f"{n} -> {t}" for n, t in UNIQUE])
def test_each_relative_link_points_at_a_file_and_heading_that_exist(name: str, target: str) -> None:
    path, _, fragment = target.partition("#")
    here = PurePosixPath(name).parent
    linked = (ROOT / here / path).resolve() if path else ROOT / name
    assert linked.is_relative_to(ROOT), f"{name}: {target} leaves the repository"
    assert linked.exists(), f"{name}: {target} names no file"
    if fragment:
        assert linked.suffix == ".md", f"{name}: {target} has an anchor into a file that is not Markdown"
        headings = anchors(linked.read_text(encoding="utf-8"))
        assert fragment in headings, f"{name}: #{fragment} is no heading of {path or name}: {sorted(headings)}"


def test_the_readme_leads_to_every_page() -> None:
    more = section(README, "## Where to read more")
    listed = set(links(more))
    pages = {name for name in DOCUMENTS if name != "README.md"}
    assert pages <= listed, f"pages the README's 'Where to read more' does not link: {sorted(pages - listed)}"


def test_the_readme_shows_the_report_pictures() -> None:
    reports = section(README, "## Reports")
    assert {"docs/index.png", "docs/host.png"} <= set(links(reports))
