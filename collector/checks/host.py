"""Checks on the host itself, from the host probe."""

from __future__ import annotations

from datetime import datetime

from collector.checks import Check, Verdict
from collector.model import Evidence, HostFacts, Role, Severity, Status

# Kerberos refuses tickets past 5 minutes of skew (the domain's default MaxClockSkew).
KERBEROS_TOLERANCE_S = 300
WARN_AT_S = 60


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def time_skew(facts: HostFacts) -> Verdict:
    probe = facts.probes["host"]
    vantage = f"{facts.target.name} (WinRM probe host) vs. the workstation"
    host_now, received = probe.data.get("utc_now"), probe.received_utc
    if not host_now or not received:
        return Verdict(
            Status.UNKNOWN,
            "The host's clock could not be compared",
            (Evidence("why unknown", "the host clock or the receipt time is missing", vantage),),
        )
    # The host read its clock while the probe ran, before the answer arrived: allow for that.
    skew = (_parse(host_now) - _parse(received)).total_seconds()
    if -probe.duration_s - 1 <= skew <= 1:
        skew = 0.0
    evidence = (
        Evidence("host clock (UTC)", host_now, vantage),
        Evidence("workstation clock at receipt (UTC)", received, vantage),
        Evidence("skew", f"{skew:+.0f} s (host minus workstation)", vantage),
    )
    if abs(skew) > KERBEROS_TOLERANCE_S:
        return Verdict(
            Status.FAIL, f"Clock is {abs(skew) / 60:.0f} minutes off: Kerberos and NLA will fail", evidence
        )
    if abs(skew) > WARN_AT_S:
        return Verdict(Status.WARN, f"Clock is {abs(skew):.0f} s off the workstation's", evidence)
    return Verdict(Status.PASS, "Clock agrees with the workstation", evidence)


CHECKS = (
    Check(
        id="host.time-skew",
        title="Host clock within Kerberos tolerance",
        severity=Severity.CRITICAL,
        roles=frozenset(Role),
        needs=("host",),
        remediation=(
            "Past 5 minutes of skew Kerberos refuses tickets, so NLA (CredSSP) and the RD Gateway's "
            "authentication fail; mstsc may only show 0x904 / 0x7.\n"
            "On the host: w32tm /query /status; w32tm /resync /force\n"
            "Domain members follow the domain hierarchy (w32tm /config /syncfromflags:domhier /update); "
            "the PDC emulator needs a reliable external source. If every host shows the same skew, the "
            "workstation's own clock is the one that is wrong."
        ),
        references=("Kerberos MaxClockSkew (5 minutes)", "Security 4625 status 0xC0000133"),
        evaluate=time_skew,
    ),
)
