"""The exit codes every command keeps (DESIGN §3), the rule that turns results into one, and the
error that means the last of them."""

from __future__ import annotations

from collections.abc import Iterable

from collector.model import CheckResult, Severity, Status

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or configuration: exit 2 with this message, no traceback."""


def counted_severity(result: CheckResult) -> Severity | None:
    """The level at which a result counts for --fail-on: a warn is never above 'warning'."""
    if result.status is Status.FAIL:
        return result.severity
    if result.status is Status.WARN:
        return min(result.severity, Severity.WARNING, key=lambda s: s.rank)
    return None


def exit_code(results: Iterable[CheckResult], fail_on: Severity) -> int:
    """1 when a result counts at or above ``fail_on`` (a warn counts at most as warning), else 0."""
    for result in results:
        level = counted_severity(result)
        if level is not None and level.rank >= fail_on.rank:
            return EXIT_FOUND
    return EXIT_OK
