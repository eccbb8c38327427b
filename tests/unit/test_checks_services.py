"""rdp.service-stopped and rdg.service-stopped: pass, warn, fail and unknown from recorded facts."""

from __future__ import annotations

import pytest

from collector import checks
from collector.model import CollectionFailure, CollectionProblem, ProbeError, ProbeResult, Role, Status
from tests.builders import facts, service

SERVICE_CHECKS = checks.registry().of_file("services")
SH = (Role.SESSION_HOST,)
GW = (Role.GATEWAY,)


def result(host_facts, check_id):
    return next(r for r in checks.evaluate(host_facts, SERVICE_CHECKS) if r.id == check_id)


@pytest.mark.parametrize(
    ("services", "status", "title_part"),
    [
        (
            [service("TermService"), service("UmRdpService"), service("SessionEnv")],
            Status.PASS,
            "are running",
        ),
        (
            [service("TermService", "Stopped"), service("UmRdpService"), service("SessionEnv")],
            Status.FAIL,
            "TermService not running",
        ),
        (
            [service("TermService", present=False), service("UmRdpService"), service("SessionEnv")],
            Status.FAIL,
            "TermService not running",
        ),
        (
            [service("TermService"), service("UmRdpService", "Stopped"), service("SessionEnv")],
            Status.WARN,
            "UmRdpService not running",
        ),
        (
            [service("TermService", "Running", "Disabled"), service("UmRdpService"), service("SessionEnv")],
            Status.WARN,
            "TermService disabled",
        ),
    ],
)
def test_rdp_service_stopped(services, status, title_part) -> None:
    r = result(facts(SH, services), "rdp.service-stopped")
    assert r.status is status
    assert title_part in r.title
    assert [e.label for e in r.evidence] == ["TermService", "UmRdpService", "SessionEnv"]
    assert all(e.vantage == "h1.corp.example (WinRM probe services)" for e in r.evidence)


def test_stopped_evidence_and_remediation() -> None:
    r = result(facts(SH, [service("TermService", "Stopped", "Disabled")]), "rdp.service-stopped")
    assert r.evidence[0].value == "Stopped, start mode Disabled, runs as LocalSystem"
    assert r.evidence[1].value == "not reported by the probe"
    assert "Start-Service -Name TermService" in r.remediation
    assert r.severity.value == "critical"


@pytest.mark.parametrize(
    ("services", "status"),
    [
        ([service("TSGateway"), service("W3SVC"), service("IAS", present=False)], Status.PASS),
        ([service("TSGateway", "Stopped"), service("W3SVC"), service("IAS")], Status.FAIL),
        ([service("TSGateway"), service("W3SVC"), service("IAS", "Stopped")], Status.WARN),
    ],
)
def test_rdg_service_stopped(services, status) -> None:
    assert result(facts(GW, services), "rdg.service-stopped").status is status


def test_checks_apply_only_to_their_roles() -> None:
    ids = [r.id for r in checks.evaluate(facts((Role.CLIENT,), []), SERVICE_CHECKS)]
    assert "rdp.service-stopped" not in ids and "rdg.service-stopped" not in ids
    both = [r.id for r in checks.evaluate(facts((Role.GATEWAY, Role.SESSION_HOST), []), SERVICE_CHECKS)]
    assert both == ["rdp.service-stopped", "rdg.service-stopped"]


def test_unknown_when_host_not_collected_never_pass() -> None:
    problem = CollectionProblem(CollectionFailure.UNREACHABLE, "connection refused by 10.0.0.1:5986")
    results = checks.evaluate(facts(SH, None, problems=(problem,)), SERVICE_CHECKS)
    assert [(r.id, r.status) for r in results] == [
        ("collect.unreachable", Status.FAIL),
        ("rdp.service-stopped", Status.UNKNOWN),
    ]
    assert results[0].evidence[0].value == "connection refused by 10.0.0.1:5986"
    assert "host not collected (unreachable)" in results[1].evidence[0].value


def test_unknown_when_the_probe_failed() -> None:
    problem = CollectionProblem(CollectionFailure.BAD_OUTPUT, "probe services: output is not JSON", "services")
    [bad, svc] = checks.evaluate(facts(SH, None, problems=(problem,)), SERVICE_CHECKS)
    assert (bad.id, bad.evidence[0].label) == ("collect.bad-output", "probe services")
    assert svc.status is Status.UNKNOWN
    assert "probe services failed (bad-output)" in svc.evidence[0].value


def test_unknown_when_the_probe_step_failed_on_the_host() -> None:
    f = facts(SH, [])
    f = type(f)(
        target=f.target,
        probes={
            "services": ProbeResult(
                "services", 1, {"services": []}, errors=(ProbeError("Win32_Service", "Access denied"),)
            )
        },
    )
    r = result(f, "rdp.service-stopped")
    assert r.status is Status.UNKNOWN
    assert r.evidence[-1].value == "Win32_Service: Access denied"


def test_services_requested_follow_roles() -> None:
    from collector.checks.services import services_for

    assert services_for(SH) == ["TermService", "UmRdpService", "SessionEnv"]
    assert services_for(GW) == ["TSGateway", "W3SVC", "IAS"]
    assert services_for((Role.CLIENT,)) == []
