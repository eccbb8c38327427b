"""Checks that need two hosts' facts: what a client receives from its gateway against what the
gateway is configured to serve (the article's SSL inspection cause, Fix 3).

Pure: host reports in, extra results out. They run once every host is collected.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from collector.certs import describe_der, issuer_of_der, thumbprint
from collector.checks import CheckSpec, Verdict, _missing_reason, judges, specs_of
from collector.checks.client import own_validation
from collector.model import WHY_UNKNOWN, CheckResult, Evidence, HostFacts, HostReport, Status

_SPECS = specs_of("fleet")
SSL_INSPECTION = _SPECS["rdg.ssl-inspection"]
DNS_MISMATCH = _SPECS["net.dns-mismatch"]


def _thumbprint(der_b64: str) -> str:
    return thumbprint(base64.b64decode(der_b64))


def _describe(der_b64: str) -> str:
    return describe_der(base64.b64decode(der_b64))


@judges("rdg.ssl-inspection")
def ssl_inspection(client: HostFacts, gateway: HostFacts | None) -> Verdict:
    """The leaf the client received against the gateway's configured certificate (and, where the
    workstation reached the gateway, the leaf served to the workstation)."""
    seen: Mapping[str, Any] | None = client.probes["client"].data.get("gateway_tls")
    client_vantage = f"{client.target.name} (WinRM probe client)"
    if not seen or not seen.get("chain_der"):
        reason = (seen or {}).get("error") or "no TLS connection from the client to its gateway"
        return Verdict(Status.UNKNOWN, SSL_INSPECTION.title, (Evidence(WHY_UNKNOWN, reason, client_vantage),))
    received = seen["chain_der"][0]
    evidence = [
        Evidence("certificate the client received", _describe(received), client_vantage),
        Evidence("client's own chain validation", own_validation(seen), client_vantage),
    ]
    expected: set[str] = set()
    if gateway is not None and "gateway" in gateway.probes:
        data = gateway.probes["gateway"].data
        configured = ((data.get("settings") or {}).get("cert_hash") or "").upper()
        if configured:
            expected.add(configured)
            cert = data.get("certificate")
            described = _describe(cert["chain_der"][0]) if cert and cert.get("chain_der") else configured
            evidence.append(
                Evidence("gateway's configured certificate", described, f"{gateway.target.name} (WinRM probe gateway)")
            )
    if gateway is not None:
        for endpoint, view in gateway.endpoints.items():
            if view.get("probe") == "check-tls" and view.get("chain_der"):
                expected.add(_thumbprint(view["chain_der"][0]))
                evidence.append(
                    Evidence(f"certificate served on {endpoint}", _describe(view["chain_der"][0]), "workstation")
                )
    if not expected:
        evidence.append(Evidence(WHY_UNKNOWN, "the gateway's own certificate was not collected", "collector"))
        return Verdict(Status.UNKNOWN, SSL_INSPECTION.title, tuple(evidence))
    if _thumbprint(received) in expected:
        return Verdict(Status.PASS, "The client receives the gateway's own certificate", tuple(evidence))
    issuer = issuer_of_der(base64.b64decode(received))
    return Verdict(
        Status.FAIL,
        f"The client receives a certificate re-signed by {issuer}: TLS inspection on the path",
        tuple(evidence),
    )


@judges("net.dns-mismatch")
def dns_mismatch(client: HostFacts, hosts: Mapping[str, HostFacts]) -> Verdict | None:
    """Each inventory name the client resolved against the workstation's view of that host;
    None when the client resolved no inventory host."""
    answers = [a for a in client.probes["network"].data["dns"] if a["name"].lower() in hosts]
    if not answers:
        return None
    client_vantage = f"{client.target.name} (WinRM probe network)"
    evidence, differ, unknown = [], [], []
    for answer in answers:
        other = hosts[answer["name"].lower()].workstation_dns
        mine = sorted(answer["addresses"])
        theirs = sorted(other.get("addresses") or [])
        evidence.append(
            Evidence(f"{answer['name']} from the client", ", ".join(mine) or "does not resolve", client_vantage)
        )
        evidence.append(
            Evidence(
                f"{answer['name']} from the workstation",
                ", ".join(theirs) or f"does not resolve ({other.get('error')})",
                f"workstation ({other.get('source', 'not resolved')})",
            )
        )
        if not mine or not theirs:
            unknown.append(answer["name"])
        elif not set(mine) & set(theirs):
            differ.append(answer["name"])
    if differ:
        return Verdict(
            Status.FAIL,
            f"Resolves {', '.join(differ)} to other addresses than the workstation",
            tuple(evidence),
        )
    if unknown and len(unknown) == len(answers):
        return Verdict(Status.UNKNOWN, DNS_MISMATCH.title, tuple(evidence))
    return Verdict(Status.PASS, "Resolves the gateway and session hosts as the workstation does", tuple(evidence))


def _applies(spec: CheckSpec, facts: HostFacts) -> bool:
    """Whether the host is one the check is about: its roles (none named: any host) and what its
    inventory entry must say (a client compared with its gateway needs one)."""
    return (not spec.roles or spec.applies_to(facts.target.roles)) and spec.applies_to_target(facts.target)


def _collected(spec: CheckSpec, facts: HostFacts) -> bool:
    return all(p in facts.probes for p in spec.needs)


def _not_collected(spec: CheckSpec, facts: HostFacts) -> Verdict:
    """Unknown, never pass: the host's probe this check compares was not collected, and why."""
    why = _missing_reason(facts, spec.needs) or f"probe {', '.join(spec.needs)} was not collected"
    return Verdict(Status.UNKNOWN, spec.title, (Evidence(WHY_UNKNOWN, why, "collector"),))


def evaluate_fleet(reports: Sequence[HostReport]) -> list[HostReport]:
    """Every report, with the cross-host results added to the hosts they concern."""
    by_name = {r.name.lower(): r for r in reports}
    facts_by_name = {name: r.facts for name, r in by_name.items()}
    out = []
    for report in reports:
        facts = report.facts
        extra: list[CheckResult] = []
        if _applies(SSL_INSPECTION, facts):
            if _collected(SSL_INSPECTION, facts):
                gateway = by_name.get(facts.target.gateway.lower())
                verdict = ssl_inspection(facts, gateway.facts if gateway else None)
            else:
                verdict = _not_collected(SSL_INSPECTION, facts)
            extra.append(SSL_INSPECTION.result(verdict, host=facts.target.name, endpoint=f"{facts.target.gateway}:443"))
        if _applies(DNS_MISMATCH, facts):
            if _collected(DNS_MISMATCH, facts):
                found = dns_mismatch(facts, facts_by_name)
                if found is not None:
                    extra.append(DNS_MISMATCH.result(found, host=facts.target.name))
            elif all(p in facts.planned for p in DNS_MISMATCH.needs):
                # It would have resolved the inventory's gateway and session hosts.
                extra.append(DNS_MISMATCH.result(_not_collected(DNS_MISMATCH, facts), host=facts.target.name))
        if extra:
            report = dataclasses.replace(report, checks=(*report.checks, *extra))
        out.append(report)
    return out
