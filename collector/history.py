"""What changed since the previous complete run: new, resolved and still-failing problems.

Pure: takes the previous run's problems and the current run, returns the difference. A problem
is a check result whose status is fail or warn, identified by host, check id and endpoint, so
the same check failing on another endpoint is a different problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from collector.model import CheckResult, HostChanges, HostReport, RunChanges, RunReport


def _key(result: CheckResult) -> str:
    return f"{result.id} @ {result.endpoint}" if result.endpoint else result.id


def problems(host: HostReport) -> set[str]:
    return {_key(c) for c in host.checks if c.is_problem}


@dataclass(frozen=True)
class Baseline:
    """All a run needs of the previous one: its id, its hosts and each host's problems (the
    previous results themselves are not kept in memory while a large run goes on)."""

    run_id: str
    problems: Mapping[str, frozenset[str]]  # by host name, in that run's order

    @classmethod
    def of(cls, run: RunReport) -> Baseline:
        return cls(run.run_id, {h.name: frozenset(problems(h)) for h in run.hosts})

    @cached_property
    def _by_lower(self) -> dict[str, frozenset[str]]:
        return {name.lower(): found for name, found in self.problems.items()}

    def of_host(self, name: str) -> frozenset[str] | None:
        """The host's problems in the previous run; None if it was not in it."""
        return self._by_lower.get(name.lower())


def host_changes(baseline: Baseline, host: HostReport) -> HostChanges:
    """One host's changes, known as soon as the host finishes."""
    old = baseline.of_host(host.name) or frozenset()
    new = problems(host)
    return HostChanges(
        host=host.name,
        new=tuple(sorted(new - old)),
        resolved=tuple(sorted(old - new)),
        still_failing=tuple(sorted(new & old)),
    )


def compare(previous: Baseline | RunReport, current: RunReport) -> RunChanges:
    """The difference between two runs, per host of the current run (inventory order)."""
    baseline = previous if isinstance(previous, Baseline) else Baseline.of(previous)
    now = {h.name.lower() for h in current.hosts}
    return RunChanges(
        previous_run_id=baseline.run_id,
        hosts=tuple(host_changes(baseline, h) for h in current.hosts),
        hosts_added=tuple(h.name for h in current.hosts if baseline.of_host(h.name) is None),
        hosts_removed=tuple(n for n in baseline.problems if n.lower() not in now),
    )
