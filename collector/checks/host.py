"""Checks on the host itself, from the host probe."""

from __future__ import annotations

from datetime import datetime

from collector.checks import Check, Verdict, failed_steps, not_read
from collector.model import WHY_UNKNOWN, Evidence, HostFacts, Role, Severity, Status

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
        Evidence("host clock (UTC)", host_now, vantage),
        Evidence("workstation clock at receipt (UTC)", received, vantage),
        Evidence("skew", f"{skew:+.0f} s (host minus workstation)", vantage),
    )
    if abs(skew) > KERBEROS_TOLERANCE_S:
        return Verdict(Status.FAIL, f"Clock is {abs(skew) / 60:.0f} minutes off: Kerberos and NLA will fail", evidence)
    if abs(skew) > WARN_AT_S:
        return Verdict(Status.WARN, f"Clock is {abs(skew):.0f} s off the workstation's", evidence)
    return Verdict(Status.PASS, "Clock agrees with the workstation", evidence)


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


def pending_reboot(facts: HostFacts) -> Verdict:
    reasons = facts.probes["host"].data["pending_reboot"]
    vantage = f"{facts.target.name} (WinRM probe host)"
    if why := failed_steps(facts, "host", "pending reboot"):
        return not_read("Whether a reboot is pending could not be read", why, vantage)
    evidence = (Evidence("pending reboot", ", ".join(reasons) or "none", vantage),)
    if reasons:
        return Verdict(Status.WARN, "A reboot is pending", evidence)
    return Verdict(Status.PASS, "No reboot pending", evidence)


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
    Check(
        id="host.secure-channel",
        title="Domain secure channel is healthy",
        severity=Severity.CRITICAL,
        roles=frozenset(Role),
        needs=("host",),
        remediation=(
            "A broken secure channel makes domain logons (and so NLA and the gateway's authentication) fail "
            "with 'the trust relationship between this workstation and the primary domain failed'. Repair "
            "as a domain admin on the host: Test-ComputerSecureChannel -Repair -Credential (Get-Credential), "
            "or Reset-ComputerMachinePassword; rejoin the domain if that fails."
        ),
        references=("article: domain trust", "Test-ComputerSecureChannel"),
        evaluate=secure_channel,
    ),
    Check(
        id="host.tls-protocols",
        title="TLS 1.2 is enabled in SCHANNEL",
        severity=Severity.CRITICAL,
        roles=frozenset(Role),
        needs=("host",),
        remediation=(
            "Remove the overrides that disable TLS 1.2 under HKLM\\SYSTEM\\CurrentControlSet\\Control\\"
            "SecurityProviders\\SCHANNEL\\Protocols\\TLS 1.2\\Client and \\Server (Enabled=1, "
            "DisabledByDefault=0) and reboot. Set SchUseStrongCrypto=1 for .NET. Both ends of every hop "
            "(client, gateway, session host) must share a protocol."
        ),
        references=("Schannel 36871, 36874, 36888",),
        evaluate=tls_protocols,
    ),
    Check(
        id="host.credssp-oracle",
        title="CredSSP encryption oracle policy",
        severity=Severity.WARNING,
        roles=frozenset(Role),
        needs=("host",),
        remediation=(
            "'Force Updated Clients' (0) refuses unpatched peers and 'Vulnerable' (2) accepts them insecurely. "
            "Patch every client and server, then use 'Mitigated' (1) or remove the policy: Computer "
            "Configuration > Administrative Templates > System > Credentials Delegation > Encryption Oracle "
            "Remediation."
        ),
        references=("CVE-2018-0886", "AllowEncryptionOracle"),
        evaluate=credssp_oracle,
    ),
    Check(
        id="host.pending-reboot",
        title="No reboot pending",
        severity=Severity.INFO,
        roles=frozenset(Role),
        needs=("host",),
        remediation=(
            "Changes to SCHANNEL, CredSSP, certificates bound to services and installed updates may not apply "
            "until the host restarts: schedule a reboot."
        ),
        references=("Component Based Servicing RebootPending", "Windows Update RebootRequired"),
        evaluate=pending_reboot,
    ),
)
