"""host.time-skew: the host's clock against the workstation's, allowing for the probe's run time."""

from __future__ import annotations

import pytest

from collector import checks
from collector.model import HostFacts, HostTarget, ProbeResult, Role, Status
from tests.builders import host_probe


def skew_result(probe: ProbeResult):
    f = HostFacts(target=HostTarget(name="h1", address="h1", roles=(Role.CLIENT,)), probes={"host": probe})
    return next(r for r in checks.evaluate(f, checks.registry().of_file("host")) if r.id == "host.time-skew")


@pytest.mark.parametrize(
    ("host_utc", "received", "status", "skew"),
    [
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", Status.PASS, "+0 s"),  # within the probe's run time
        ("2026-01-01T00:01:30Z", "2026-01-01T00:00:00Z", Status.WARN, "+90 s"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:07:00Z", Status.FAIL, "-420 s"),
        ("2026-01-01T00:05:00Z", "2026-01-01T00:00:00Z", Status.WARN, "+300 s"),  # exactly 5 min: still OK
    ],
)
def test_time_skew(host_utc: str, received: str, status: Status, skew: str) -> None:
    r = skew_result(host_probe(host_utc, received))
    assert r.status is status
    assert r.evidence[2].value.startswith(skew)
    assert r.id == "host.time-skew" and r.severity.value == "critical"


def test_failing_skew_names_kerberos() -> None:
    r = skew_result(host_probe("2026-01-01T00:00:00Z", "2026-01-01T00:07:00Z"))
    assert r.title == "Clock is 7 minutes off: Kerberos and NLA will fail"
    assert "w32tm /resync" in r.remediation


def test_missing_receipt_time_is_unknown() -> None:
    assert skew_result(host_probe(received_utc="")).status is Status.UNKNOWN
