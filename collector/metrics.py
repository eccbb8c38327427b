"""Prometheus textfile export of a run, for node_exporter's textfile collector.

Counts by status and severity, collection duration per host, and days until each certificate
the hosts reported expires; written atomically so a scrape never reads half a file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from collector.model import RunReport

PREFIX = "rdp_collector"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def certificates(run: RunReport) -> Iterator[tuple[str, str, str, str]]:
    """(host, where, subject, not_after) for every certificate a host reported holding."""
    for host in run.hosts:
        probes = host.facts.probes
        if "gateway" in probes and probes["gateway"].data.get("certificate"):
            cert = probes["gateway"].data["certificate"]
            yield host.name, "gateway", cert["subject"], cert["not_after"]
        if "rdp_config" in probes and probes["rdp_config"].data.get("listener_certificate"):
            cert = probes["rdp_config"].data["listener_certificate"]
            yield host.name, "rdp-listener", cert["subject"], cert["not_after"]


def render(run: RunReport) -> str:
    """The metrics text for one run (pure)."""
    finished = _parse(run.finished)
    lines = [
        f"# HELP {PREFIX}_checks Check results of the last run by status and severity.",
        f"# TYPE {PREFIX}_checks gauge",
    ]
    counts = Counter((c.status.value, c.severity.value) for h in run.hosts for c in h.checks)
    for (status, severity), n in sorted(counts.items()):
        lines.append(f"{PREFIX}_checks{_labels(status=status, severity=severity)} {n}")
    lines += [
        f"# HELP {PREFIX}_host_problems Failing or warning checks per host in the last run.",
        f"# TYPE {PREFIX}_host_problems gauge",
    ]
    for host in run.hosts:
        lines.append(f"{PREFIX}_host_problems{_labels(host=host.name)} {sum(1 for c in host.checks if c.is_problem)}")
    lines += [
        f"# HELP {PREFIX}_host_collected 1 when the host was collected, 0 when collection failed.",
        f"# TYPE {PREFIX}_host_collected gauge",
    ]
    lines += [f"{PREFIX}_host_collected{_labels(host=h.name)} {int(h.collected)}" for h in run.hosts]
    lines += [
        f"# HELP {PREFIX}_collection_duration_seconds Time spent collecting each host.",
        f"# TYPE {PREFIX}_collection_duration_seconds gauge",
    ]
    lines += [f"{PREFIX}_collection_duration_seconds{_labels(host=h.name)} {h.facts.duration_s:.3f}" for h in run.hosts]
    lines += [
        f"# HELP {PREFIX}_certificate_expiry_days Days from the run's end until a certificate expires.",
        f"# TYPE {PREFIX}_certificate_expiry_days gauge",
    ]
    for name, where, subject, not_after in certificates(run):
        days = (_parse(not_after) - finished).total_seconds() / 86400
        lines.append(f"{PREFIX}_certificate_expiry_days{_labels(host=name, where=where, subject=subject)} {days:.1f}")
    lines += [
        f"# HELP {PREFIX}_run_duration_seconds Wall time of the last run.",
        f"# TYPE {PREFIX}_run_duration_seconds gauge",
        f"{PREFIX}_run_duration_seconds {(finished - _parse(run.started)).total_seconds():.3f}",
        f"# HELP {PREFIX}_last_run_timestamp_seconds When the last run finished (Unix time).",
        f"# TYPE {PREFIX}_last_run_timestamp_seconds gauge",
        f"{PREFIX}_last_run_timestamp_seconds {finished.timestamp():.0f}",
    ]
    return "\n".join(lines) + "\n"


def name_problem(path: Path) -> str | None:
    """Why node_exporter would never read ``path``, said before the run rather than noticed the
    morning after in an empty dashboard: its textfile collector reads only ``*.prom`` files."""
    if path.suffix != ".prom":
        return "node_exporter's textfile collector reads only files whose names end in .prom"
    return None
