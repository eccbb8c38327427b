"""One run, stage by stage: inventory -> collect -> judge -> reports. No terminal in sight.

The command line (``collector.cli``) parses arguments, resolves passwords and prints; this module
does the run it describes and says what happened through an ``Observer``: each host as it is
judged, warnings, notes. Each stage after collection is a bulkhead (cross-host checks, connection
paths): one that fails costs the run that stage, never the hosts' own results or the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from collector import history, incident, inventory, metrics, path, report, runs
from collector.checks import fleet as fleet_checks
from collector.credentials import Secret
from collector.model import HostReport, RunChanges, RunReport
from collector.runner import DEFAULT_CONCURRENCY, RunOptions, run_hosts, utc_now


class Observer(Protocol):
    """What a run tells whoever started it (the CLI prints it; tests record it)."""

    def host_done(self, host: HostReport, *, revised: bool = False) -> None:
        """A host was judged (``revised``: judged again by the cross-host checks)."""

    def warn(self, message: str) -> None:
        """Something the administrator should know; the run goes on."""

    def note(self, message: str) -> None:
        """Housekeeping worth a line when not quiet (old runs removed, say)."""


@dataclass(frozen=True)
class RunSettings:
    """Where and how a run goes, beyond the inventory."""

    output: Path
    concurrency: int = DEFAULT_CONCURRENCY
    options: RunOptions = field(default_factory=RunOptions)
    inventory_label: str = ""  # what the report calls the inventory (default: its path)
    keep: int | None = None  # keep the newest N run folders
    metrics_file: Path | None = None
    tool_version: str = "0+unknown"


@dataclass(frozen=True)
class RunOutcome:
    run: RunReport
    folder: Path  # the published run folder


class OutputError(Exception):
    """The run folder cannot be written (a full or read-only disk); the message says where."""


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM: the pages of hosts that finished are in ``partial``, 'latest' is kept."""

    def __init__(self, partial: Path) -> None:
        super().__init__(str(partial))
        self.partial = partial


def preflight(inv: inventory.Inventory, settings: RunSettings) -> list[str]:
    """Warnings about the run's own settings, before any host is contacted (pure)."""
    warnings = [
        f"certificate validation is off for {target.name} (cert_validation: false)"
        for target in inv.targets
        if not target.cert_validation
    ]
    if settings.metrics_file is not None and (problem := metrics.name_problem(settings.metrics_file)):
        warnings.append(f"--metrics {settings.metrics_file}: {problem}")
    return warnings


def run(
    inv: inventory.Inventory,
    passwords: Mapping[str, Secret | None],
    settings: RunSettings,
    observer: Observer,
) -> RunOutcome:
    """Collect, judge and report every host of ``inv``; the run folder is published at the end.
    Raises ``OutputError`` when the folder cannot be written, ``RunInterrupted`` on Ctrl-C."""
    for warning in preflight(inv, settings):
        observer.warn(warning)
    output = settings.output
    started = utc_now()
    baseline, why_not = runs.previous_baseline(output) if output.is_dir() else (None, "no previous run")
    if baseline is None and why_not != "no previous run":
        observer.warn(f"{why_not}; changes since the previous run are not shown")
    # Partial folders of runs that were killed or crashed: their owner process is gone.
    abandoned = runs.remove_stale_partials(output)
    if abandoned:
        observer.note(f"removed {len(abandoned)} partial folder(s) of runs that did not finish: {', '.join(abandoned)}")
    try:
        # Hosts that cross-host checks and connection paths read stay whole in memory; the run
        # keeps a summary of every other host once its page and record are written.
        writer = report.RunWriter(
            output, report.new_run_id(), whole=path.joined_names(inv.targets), backlog=settings.concurrency
        )
    except OSError as exc:
        raise OutputError(f"cannot write to {output}: {exc.strerror or exc}") from None
    so_far = RunReport(
        run_id=writer.run_id,
        started=started,
        finished="",
        tool_version=settings.tool_version,
        workstation=socket.gethostname(),
        inventory=settings.inventory_label or inv.path,
        hosts=(),
    )

    def host_done(host: HostReport) -> HostReport:
        changes = None
        if baseline is not None:
            changes = RunChanges(baseline.run_id, (history.host_changes(baseline, host),))
        kept = writer.write_host_soon(host, dataclasses.replace(so_far, changes=changes))
        observer.host_done(host)
        return kept

    try:
        hosts = run_hosts(
            inv.targets,
            passwords,
            concurrency=settings.concurrency,
            on_host_done=host_done,
            options=settings.options,
        )
        hosts = _cross_host_checks(hosts, observer)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception, KeyboardInterrupt):
            writer.wait()  # the pages of hosts that finished are kept
        raise RunInterrupted(writer.partial) from None
    finished = utc_now()
    try:
        # Each client's way to its session hosts, joined across the three hosts' facts and events.
        paths = incident.incident_paths(hosts, since_hours=settings.options.since_hours, now=finished)
    except Exception as exc:  # a bulkhead, as for the cross-host checks
        observer.warn(f"the connection paths could not be joined ({type(exc).__name__}: {exc}); this run has none")
        paths = ()
    run_report = dataclasses.replace(so_far, finished=finished, hosts=tuple(hosts), paths=paths)
    if baseline is not None:
        run_report = dataclasses.replace(run_report, changes=history.compare(baseline, run_report))
    try:
        folder = writer.finish(run_report)
    except OSError as exc:
        # A full or vanished disk: what was written stays in the partial folder, 'latest' is kept.
        raise OutputError(
            f"cannot write the run folder {writer.partial}: {exc.strerror or exc}; 'latest' still points "
            "at the previous complete run"
        ) from None
    for name, why in writer.unrendered.items():
        observer.warn(f"the report of {name} could not be rendered ({why}); its page says so")
    if settings.metrics_file is not None:
        try:
            report.atomic_write(settings.metrics_file, metrics.render(run_report))
        except OSError as exc:
            observer.warn(f"cannot write metrics to {settings.metrics_file}: {exc.strerror or exc}")
    if settings.keep is not None:
        removed = runs.prune(output, settings.keep)
        if removed:
            observer.note(f"removed {len(removed)} old run(s) (--keep {settings.keep})")
    return RunOutcome(run_report, folder)


def _cross_host_checks(hosts: list[HostReport], observer: Observer) -> list[HostReport]:
    """Cross-host checks need every host; the pages they change are written again at the end."""
    try:
        judged = fleet_checks.evaluate_fleet(hosts)
    except Exception as exc:  # a bulkhead: every host's own results are published regardless
        observer.warn(f"the cross-host checks failed ({type(exc).__name__}: {exc}); this run has none")
        return hosts
    for before, after in zip(hosts, judged, strict=True):
        if after is not before and history.problems(after) != history.problems(before):
            observer.host_done(after, revised=True)
    return list(judged)
