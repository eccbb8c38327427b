"""Reachability as a host itself sees it: the article's nslookup and Test-NetConnection, and
the WinHTTP proxy in front of the gateway."""

from __future__ import annotations

from collector.checks import Verdict, failed_steps, judges, not_read
from collector.model import Evidence, HostFacts, Status


def _v(facts: HostFacts) -> str:
    return f"{facts.target.name} (WinRM probe network)"


@judges("net.dns-unresolved")
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


@judges("net.tcp-blocked")
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


@judges("net.proxy")
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
