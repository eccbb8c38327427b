"""Reachability as a host itself sees it: the article's nslookup and Test-NetConnection, and
the WinHTTP proxy in front of the gateway."""

from __future__ import annotations

from collector.checks import Check, Verdict, failed_steps, not_read
from collector.model import Evidence, HostFacts, Role, Severity, Status


def _v(facts: HostFacts) -> str:
    return f"{facts.target.name} (WinRM probe network)"


def dns_unresolved(facts: HostFacts) -> Verdict:
    answers = facts.probes["network"].data["dns"]
    evidence = tuple(
        Evidence(f"resolve {a['name']}", ", ".join(a["addresses"]) or f"FAILED: {a['error']}", _v(facts))
        for a in answers
    )
    failed = [a["name"] for a in answers if not a["addresses"]]
    if failed:
        return Verdict(Status.FAIL, f"{', '.join(failed)} does not resolve from this host", evidence)
    return Verdict(Status.PASS, "Every target resolves", evidence)


def tcp_blocked(facts: HostFacts) -> Verdict:
    attempts = facts.probes["network"].data["tcp"]
    evidence = tuple(
        Evidence(
            f"TCP {a['name']}:{a['port']}",
            f"connected in {a['elapsed_ms']} ms" if a["connected"] else f"FAILED: {a['error']}",
            _v(facts),
        )
        for a in attempts
    )
    blocked = [f"{a['name']}:{a['port']}" for a in attempts if not a["connected"]]
    if blocked:
        return Verdict(Status.FAIL, f"No TCP connection to {', '.join(blocked)} from this host", evidence)
    return Verdict(Status.PASS, "Every target port accepts a TCP connection", evidence)


def proxy(facts: HostFacts) -> Verdict:
    winhttp = facts.probes["network"].data["winhttp"]
    if winhttp is None:
        why = failed_steps(facts, "network", "WinHTTP proxy") or "the probe did not report the WinHTTP proxy"
        return not_read("The WinHTTP proxy setting could not be read", why, _v(facts))
    evidence = (
        Evidence("WinHTTP proxy", winhttp.get("proxy") or "direct", _v(facts)),
        Evidence("WinHTTP bypass list", winhttp.get("bypass") or "(none)", _v(facts)),
    )
    if winhttp.get("proxy"):
        return Verdict(Status.WARN, f"A WinHTTP proxy is set ({winhttp['proxy']})", evidence)
    return Verdict(Status.PASS, "No WinHTTP proxy", evidence)


ROLES = frozenset({Role.CLIENT, Role.GATEWAY})
CHECKS = (
    Check(
        id="net.dns-unresolved",
        title="Names resolve from the host",
        severity=Severity.CRITICAL,
        roles=ROLES,
        needs=("network",),
        remediation=(
            "On the host: nslookup NAME (the article's check) and Resolve-DnsName NAME; check the DNS servers "
            "(Get-DnsClientServerAddress), the record in the zone, and a split-DNS view for clients outside the "
            "network (the gateway's public name must resolve there)."
        ),
        references=("article: nslookup", "mstsc 260 / 520: DNS lookup failure"),
        evaluate=dns_unresolved,
    ),
    Check(
        id="net.tcp-blocked",
        title="Target ports accept TCP connections",
        severity=Severity.CRITICAL,
        roles=ROLES,
        needs=("network",),
        remediation=(
            "On the host: Test-NetConnection -ComputerName NAME -Port 443 (gateway) or 3389 (session host), the "
            "article's check. A timeout means a firewall drops it; a refusal means nothing listens there. Check "
            "Windows Firewall on the target, network ACLs, and for the gateway its RAP's allowed ports."
        ),
        references=("article: Test-NetConnection -Port 3389", "mstsc 516: socket connect failed"),
        evaluate=tcp_blocked,
    ),
    Check(
        id="net.proxy",
        title="No WinHTTP proxy in front of the gateway",
        severity=Severity.INFO,
        roles=ROLES,
        needs=("network",),
        remediation=(
            "A proxy between client and gateway must pass RDG_OUT_DATA / websocket traffic and must not inspect "
            "TLS for the gateway's name (the article's Fix 3: an SSL inspection bypass for the gateway, TCP 443 "
            "and UDP 3391). Show it with: netsh winhttp show proxy; add the gateway to the bypass list or the "
            "proxy's inspection exemptions."
        ),
        references=("article Fix 3: disable SSL inspection for RDP traffic", "netsh winhttp show proxy"),
        evaluate=proxy,
    ),
)
