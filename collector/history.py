"""What changed since the previous complete run: new, resolved and still-failing problems.

Pure: takes the previous run's problems and the current run, returns the difference. A problem
is a check result whose status is fail or warn, identified by host, check id and endpoint, so
the same check failing on another endpoint is a different problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import IO, Any

from collector.model import (
    SCHEMA_VERSION,
    CheckResult,
    HostChanges,
    HostReport,
    RunChanges,
    RunReport,
    Status,
    json_kind,
)

_PROBLEM_STATUSES = frozenset({Status.FAIL.value, Status.WARN.value})  # CheckResult.is_problem, as JSON


def _problem_key(check_id: str, endpoint: str) -> str:
    return f"{check_id} @ {endpoint}" if endpoint else check_id


def _key(result: CheckResult) -> str:
    return _problem_key(result.id, result.endpoint)


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

    @classmethod
    def read(cls, results: IO[str]) -> Baseline:
        """From a results.json, each host record cut down to its name and problems as soon as it
        is parsed: reading a large run's results costs about one host's worth of memory, not the
        whole run's. Raises ValueError, naming what is wrong, on what is not such a file."""

        def slim(record: dict[str, Any]) -> Any:
            if "checks" in record and isinstance(record.get("facts"), dict):
                try:
                    name = record["facts"]["target"]["name"]
                    found = frozenset(
                        _problem_key(c["id"], c.get("endpoint") or "")
                        for c in record["checks"]
                        if c["status"] in _PROBLEM_STATUSES
                    )
                except (KeyError, TypeError, AttributeError) as exc:
                    raise ValueError(f"a host record is damaged ({type(exc).__name__}: {exc})") from None
                if not isinstance(name, str):
                    raise ValueError(f"a host record names no host ({name!r})")
                return name, found
            return record

        data = json.load(results, object_hook=slim)
        if not isinstance(data, dict):
            raise ValueError(f"it holds a JSON {json_kind(data)}, not an object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"results schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
        run_id, hosts = data.get("run_id"), data.get("hosts")
        if not isinstance(run_id, str) or not isinstance(hosts, list) or not all(isinstance(h, tuple) for h in hosts):
            raise ValueError("its run_id or its host records are not what this version writes")
        return cls(run_id, dict(hosts))

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
