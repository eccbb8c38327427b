"""What changed since the previous complete run: new, resolved and still-failing problems.

Pure: takes two runs, returns the difference. A problem is a check result whose status is fail
or warn, identified by host, check id and endpoint, so the same check failing on another
endpoint is a different problem.
"""

from __future__ import annotations

from collections.abc import Iterable

from collector.model import CheckResult, HostChanges, HostReport, RunChanges, RunReport


def _key(result: CheckResult) -> str:
    return f"{result.id} @ {result.endpoint}" if result.endpoint else result.id


def problems(host: HostReport) -> set[str]:
    return {_key(c) for c in host.checks if c.is_problem}


def _by_name(hosts: Iterable[HostReport]) -> dict[str, HostReport]:
    return {h.name.lower(): h for h in hosts}


def compare(previous: RunReport, current: RunReport) -> RunChanges:
    """The difference between two runs, per host of the current run (inventory order)."""
    before = _by_name(previous.hosts)
    now = _by_name(current.hosts)
    changes = []
    for host in current.hosts:
        old = problems(before[host.name.lower()]) if host.name.lower() in before else set()
        new = problems(host)
        changes.append(
            HostChanges(
                host=host.name,
                new=tuple(sorted(new - old)),
                resolved=tuple(sorted(old - new)),
                still_failing=tuple(sorted(new & old)),
            )
        )
    return RunChanges(
        previous_run_id=previous.run_id,
        hosts=tuple(changes),
        hosts_added=tuple(h.name for h in current.hosts if h.name.lower() not in before),
        hosts_removed=tuple(h.name for h in previous.hosts if h.name.lower() not in now),
    )
