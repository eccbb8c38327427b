"""Checks on the host itself, from the host probe."""

from __future__ import annotations

from datetime import datetime

from collector.checks import Verdict, failed_steps, judges, not_read
from collector.model import WHY_UNKNOWN, Evidence, HostFacts, Status

# Kerberos refuses tickets past 5 minutes of skew (the domain's default MaxClockSkew).
KERBEROS_TOLERANCE_S = 300
WARN_AT_S = 60


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def clock_skew_s(facts: HostFacts) -> float | None:
    """The host's clock minus the workstation's, in seconds; None when it was not measured.

    The host read its clock while the probe ran, before the answer arrived, and both clocks are
    read to the second: a difference within the probe's run time (and 1 s) is no skew."""
    probe = facts.probes.get("host")
    if probe is None or not probe.data.get("utc_now") or not probe.received_utc:
        return None
    skew = (_parse(probe.data["utc_now"]) - _parse(probe.received_utc)).total_seconds()
    return 0.0 if -probe.duration_s - 1 <= skew <= 1 else skew


@judges("host.time-skew")
def time_skew(facts: HostFacts) -> Verdict:
    probe = facts.probes["host"]
    vantage = f"{facts.target.name} (WinRM probe host) vs. the workstation"
    host_now, received = probe.data.get("utc_now"), probe.received_utc
    skew = clock_skew_s(facts)
    if skew is None:
        return Verdict(
            Status.UNKNOWN,
            "The host's clock could not be compared",
            (Evidence(WHY_UNKNOWN, "the host clock or the receipt time is missing", vantage),),
        )
    evidence = (
        Evidence("host clock (UTC)", str(host_now), vantage),
        Evidence("workstation clock at receipt (UTC)", received, vantage),
        Evidence("skew", f"{skew:+.0f} s (host minus workstation)", vantage),
    )
    if abs(skew) > KERBEROS_TOLERANCE_S:
        return Verdict(Status.FAIL, f"Clock is {abs(skew) / 60:.0f} minutes off: Kerberos and NLA will fail", evidence)
    if abs(skew) > WARN_AT_S:
        return Verdict(Status.WARN, f"Clock is {abs(skew):.0f} s off the workstation's", evidence)
    return Verdict(Status.PASS, "Clock agrees with the workstation", evidence)


@judges("host.secure-channel")
def secure_channel(facts: HostFacts) -> Verdict:
    data = facts.probes["host"].data
    vantage = f"{facts.target.name} (WinRM probe host)"
    if data["part_of_domain"] is None:
        why = failed_steps(facts, "host", "Win32_ComputerSystem") or "Win32_ComputerSystem did not say"
        return not_read("Whether the host is domain-joined could not be read", why, vantage)
    evidence = (
        Evidence("domain", f"{data['domain']} (joined: {data['part_of_domain']})", vantage),
        Evidence("Test-ComputerSecureChannel", str(data["secure_channel"]), vantage),
    )
    if not data["part_of_domain"]:
        return Verdict(Status.PASS, "Not domain-joined: no secure channel to test", evidence)
    if data["secure_channel"] is False:
        return Verdict(Status.FAIL, "The domain secure channel is broken: domain logons to this host fail", evidence)
    if data["secure_channel"] is None:
        why = failed_steps(facts, "host", "Test-ComputerSecureChannel") or "Test-ComputerSecureChannel did not answer"
        return Verdict(
            Status.UNKNOWN, "The secure channel could not be tested", (*evidence, Evidence(WHY_UNKNOWN, why, vantage))
        )
    return Verdict(Status.PASS, "The domain secure channel is healthy", evidence)


@judges("host.tls-protocols")
def tls_protocols(facts: HostFacts) -> Verdict:
    settings = facts.probes["host"].data["schannel"]
    vantage = f"{facts.target.name} (WinRM probe host)"
    if why := failed_steps(facts, "host", "SCHANNEL"):
        return not_read("The SCHANNEL protocol settings could not be read", why, vantage)
    evidence = tuple(
        Evidence(
            f"SCHANNEL {s['protocol']} {s['side']}",
            f"Enabled={s['enabled']}, DisabledByDefault={s['disabled_by_default']}",
            vantage,
        )
        for s in settings
    ) or (Evidence("SCHANNEL overrides", "none (OS defaults: TLS 1.2 on)", vantage),)
    off = [
        f"{s['protocol']} {s['side']}"
        for s in settings
        if s["protocol"] == "TLS 1.2" and (s["enabled"] == 0 or s["disabled_by_default"] == 1)
    ]
    if off:
        return Verdict(
            Status.FAIL,
            f"TLS 1.2 is disabled ({', '.join(off)}): RDP over TLS and the gateway fail",
            evidence,
        )
    legacy_on = [
        f"{s['protocol']} {s['side']}"
        for s in settings
        if s["protocol"] in ("SSL 3.0", "TLS 1.0", "TLS 1.1") and s["enabled"] not in (None, 0)
    ]
    if legacy_on:
        return Verdict(Status.WARN, f"Legacy protocols explicitly enabled: {', '.join(legacy_on)}", evidence)
    return Verdict(Status.PASS, "TLS 1.2 is available", evidence)


ORACLE = {0: "Force Updated Clients", 1: "Mitigated", 2: "Vulnerable"}


@judges("host.credssp-oracle")
def credssp_oracle(facts: HostFacts) -> Verdict:
    value = facts.probes["host"].data["credssp_oracle"]
    vantage = f"{facts.target.name} (WinRM probe host)"
    if why := failed_steps(facts, "host", "crypto policy"):
        return not_read("The CredSSP encryption oracle policy could not be read", why, vantage)
    evidence = (Evidence("AllowEncryptionOracle", f"{value} ({ORACLE.get(value, 'not set: default')})", vantage),)
    if value == 2:
        return Verdict(Status.WARN, "CredSSP encryption oracle set to Vulnerable", evidence)
    if value == 0:
        return Verdict(Status.WARN, "CredSSP 'Force Updated Clients': unpatched peers are refused", evidence)
    return Verdict(Status.PASS, "CredSSP encryption oracle policy is default or Mitigated", evidence)


@judges("host.pending-reboot")
def pending_reboot(facts: HostFacts) -> Verdict:
    reasons = facts.probes["host"].data["pending_reboot"]
    vantage = f"{facts.target.name} (WinRM probe host)"
    if why := failed_steps(facts, "host", "pending reboot"):
        return not_read("Whether a reboot is pending could not be read", why, vantage)
    evidence = (Evidence("pending reboot", ", ".join(reasons) or "none", vantage),)
    if reasons:
        return Verdict(Status.WARN, "A reboot is pending", evidence)
    return Verdict(Status.PASS, "No reboot pending", evidence)
