"""The README and the pages it links (docs/*.md, benchmarks/README.md) as the tests that hold them
to the truth read them: their text and their fenced blocks, by document or all together."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _document_names() -> tuple[str, ...]:
    pages = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md"))
    return ("README.md", *pages, "benchmarks/README.md")


# Every document, by its path from the repository root: the README first, then docs/, then benchmarks/.
DOCUMENTS: dict[str, str] = {name: (ROOT / name).read_text(encoding="utf-8") for name in _document_names()}
README = DOCUMENTS["README.md"]


def document(name: str) -> str:
    """The text of one document, named by its path from the repository root (``docs/lab.md``)."""
    return DOCUMENTS[name]


def fenced(*languages: str, within: str = README) -> list[str]:
    """The bodies of the fenced code blocks of these languages, in order."""
    pattern = "|".join(re.escape(language) for language in languages)
    return re.findall(rf"```(?:{pattern})\n(.*?)```", within, flags=re.DOTALL)


def fenced_everywhere(*languages: str) -> list[tuple[str, str]]:
    """(document, body) of the fenced code blocks of these languages in every document, in order."""
    return [(name, block) for name, text in DOCUMENTS.items() for block in fenced(*languages, within=text)]


def section(text: str, start: str, end: str | None = None) -> str:
    """The part of a document from the line ``start`` to the next heading of the same level, or
    to ``end`` when given."""
    begin = text.index(start)
    if end is not None:
        return text[begin : text.index(end, begin)]
    level = start.split(" ", 1)[0]
    after = text.find(f"\n{level} ", begin + len(start))
    return text[begin:] if after == -1 else text[begin : after + 1]
