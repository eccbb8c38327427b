"""The README as the tests that hold it to the truth read it: its text and its fenced blocks."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def fenced(*languages: str, within: str = README) -> list[str]:
    """The bodies of the fenced code blocks of these languages, in order."""
    pattern = "|".join(re.escape(language) for language in languages)
    return re.findall(rf"```(?:{pattern})\n(.*?)```", within, flags=re.DOTALL)
