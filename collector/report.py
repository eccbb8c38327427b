"""Write a run folder: one HTML page per host, the fleet index and ``results.json``.

Rendering only presents verdicts that the checks made. Every file is written atomically
(temp file + rename) into a hidden ``.<run>.partial`` folder that becomes ``<run>`` when the run
is complete; ``latest`` moves last. An interrupted run leaves no half-written report and a
``latest`` that still points at the previous complete run.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from collector.model import CheckResult, HostReport, RunReport, Status, to_dict

# The process umask, read once at import (it can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("collector.templates"))),
        autoescape=True,  # every template, whatever its name: host data is never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Inline CSS: each page is one self-contained file (admin networks are often offline).
    env.globals["css"] = resources.files("collector.templates").joinpath("report.css").read_text("utf-8")
    env.filters["sorted_checks"] = sorted_checks
    return env


_ENV: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV


def sorted_checks(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Problems first: by status (fail, warn, unknown, pass), then severity, then catalogue order,
    which runs from causes to symptoms (a stopped service before the port it leaves closed)."""
    order = _catalogue_order()
    return sorted(results, key=lambda c: (-c.status.rank, -c.severity.rank, order.get(c.id, len(order)), c.id))


@functools.cache
def _catalogue_order() -> dict[str, int]:
    from collector.checks import catalogue

    ids = ["collect.unreachable", "collect.auth-failed", "collect.timeout", "collect.bad-output"]
    ids += [c.id for c in catalogue()]
    return {check_id: i for i, check_id in enumerate(ids)}


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a report is as readable as any file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def host_filename(name: str) -> str:
    return f"{name.lower()}.html"


def render_host(report: HostReport, run: dict[str, Any]) -> str:
    return environment().get_template("host.html.j2").render(host=report, run=run, Status=Status)


def render_index(run_report: RunReport) -> str:
    return (
        environment().get_template("index.html.j2").render(run=run_report, host_filename=host_filename, Status=Status)
    )


def results_json(run_report: RunReport) -> str:
    return json.dumps(to_dict(run_report), indent=2, sort_keys=False) + "\n"


def new_run_id(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


class RunWriter:
    """The run folder being written; ``finish`` publishes it, ``abandon`` leaves ``latest`` alone."""

    def __init__(self, output: Path, run_id: str) -> None:
        self.output = output
        output.mkdir(parents=True, exist_ok=True)
        final = output / run_id
        suffix = 1
        while final.exists() or (output / f".{final.name}.partial").exists():
            suffix += 1
            final = output / f"{run_id}-{suffix}"
        self.run_id = final.name
        self.final = final
        self.partial = output / f".{final.name}.partial"
        (self.partial / "hosts").mkdir(parents=True)

    def write_host(self, report: HostReport, run_meta: dict[str, Any]) -> None:
        atomic_write(self.partial / "hosts" / host_filename(report.name), render_host(report, run_meta))

    def finish(self, run_report: RunReport) -> Path:
        """Write results.json and the index, then make the run visible and point ``latest`` at it."""
        atomic_write(self.partial / "results.json", results_json(run_report))
        atomic_write(self.partial / "index.html", render_index(run_report))
        os.replace(self.partial, self.final)
        update_latest(self.output, self.final.name)
        return self.final


def update_latest(output: Path, run_name: str) -> None:
    """Point ``output/latest`` at ``run_name`` atomically (a symlink swapped by rename)."""
    link = output / "latest"
    tmp = output / f".latest.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(run_name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        # No symlinks (Windows without the privilege): a text file naming the run instead.
        tmp.unlink(missing_ok=True)
        atomic_write(output / "latest.txt", run_name + "\n")


def render_run(run_report: RunReport, destination: Path) -> Path:
    """Re-render a whole run (host pages, index, results.json) into ``destination``."""
    meta = run_meta(run_report)
    for host in run_report.hosts:
        atomic_write(destination / "hosts" / host_filename(host.name), render_host(host, meta))
    atomic_write(destination / "results.json", results_json(run_report))
    atomic_write(destination / "index.html", render_index(run_report))
    return destination


def run_meta(run_report: RunReport) -> dict[str, Any]:
    return {
        "run_id": run_report.run_id,
        "started": run_report.started,
        "finished": run_report.finished,
        "tool_version": run_report.tool_version,
        "workstation": run_report.workstation,
        "inventory": run_report.inventory,
    }
