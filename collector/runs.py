"""The output folder across runs: find the previous complete run, and prune old ones.

A run folder is named by its UTC start (``20261126T021500Z``, ``-2`` on a clash); ``latest``
names the newest complete one. Retention never removes the run ``latest`` points at, and never
touches anything that is not a run folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from collector.history import Baseline

RUN_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")


def latest_run(output: Path) -> Path | None:
    """The run folder ``latest`` points at (a symlink, or ``latest.txt`` where there are none)."""
    link = output / "latest"
    if link.is_symlink() or link.is_dir():
        target = link.resolve()
        return target if target.is_dir() else None
    text = output / "latest.txt"
    if text.is_file():
        folder = output / text.read_text(encoding="utf-8").strip()
        return folder if folder.is_dir() and RUN_NAME.match(folder.name) else None
    return None


def previous_baseline(output: Path) -> tuple[Baseline | None, str]:
    """What the next run compares with: the latest complete run's problems, or None and why not
    (a message, never an exception)."""
    folder = latest_run(output)
    if folder is None:
        return None, "no previous run"
    try:
        with (folder / "results.json").open(encoding="utf-8") as results:
            return Baseline.read(results), ""
    except OSError as exc:
        return None, f"previous run {folder.name} has no readable results.json ({exc.strerror or exc})"
    except ValueError as exc:
        return None, f"previous run {folder.name} cannot be compared: {exc}"
    except RecursionError:
        return None, f"previous run {folder.name} cannot be compared: its results.json nests too deeply"


def prune(output: Path, keep: int) -> list[str]:
    """Delete the oldest run folders beyond ``keep``; the one ``latest`` names always stays."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    runs = sorted(
        (p for p in output.iterdir() if p.is_dir() and not p.is_symlink() and RUN_NAME.match(p.name)),
        key=lambda p: p.name,
    )
    current = latest_run(output)
    protected = {current.name} if current else set()
    removed = []
    for folder in runs[: max(0, len(runs) - keep)]:
        if folder.name in protected:
            continue
        shutil.rmtree(folder)
        removed.append(folder.name)
    return removed
