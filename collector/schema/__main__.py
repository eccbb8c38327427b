"""Regenerate the shipped schema from the model: ``python -m collector.schema``."""

from __future__ import annotations

from pathlib import Path

from collector.schema import FILENAME, dumps, generate

if __name__ == "__main__":
    path = Path(__file__).with_name(FILENAME)
    path.write_text(dumps(generate()), encoding="utf-8")
    print(f"wrote {path}")
