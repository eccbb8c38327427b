"""rdg.ssl-inspection: the client's received leaf against the gateway's configured and served one."""

from __future__ import annotations

import base64
import dataclasses

from collector.checks import fleet
from collector.lab.pki import LabPKI
from collector.model import HostFacts, HostReport, HostTarget, ProbeResult, Role, Status

PKI = LabPKI.create()
GOOD = PKI.chain("good", "gw.corp.example")
INSPECTED = PKI.chain("inspection", "gw.corp.example")


def b64(chain) -> list[str]:
    from cryptography.hazmat.primitives.serialization import Encoding

    return [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in chain.certificates]


def thumb(chain) -> str:
    import hashlib

    return hashlib.sha1(base64.b64decode(b64(chain)[0])).hexdigest().upper()  # noqa: S324


def client(received: list[str] | None, error: str | None = None) -> HostReport:
    tls = (
        None
        if received is None and error is None
        else {
            "name": "gw.corp.example",
            "port": 443,
            "connected": bool(received),
            "policy_errors": "None",
            "chain_der": received or [],
            "chain_status": [],
            "protocol": "Tls12",
            "error": error,
        }
    )
    facts = HostFacts(
        target=HostTarget(name="ws.corp.example", address="ws", roles=(Role.CLIENT,), gateway="gw.corp.example"),
        probes={"client": ProbeResult("client", 1, {"gateway_tls": tls})},
    )
    return HostReport(facts=facts, checks=())


def gateway(configured: str | None, served: list[str] | None = None) -> HostReport:
    probes = {}
    if configured is not None:
        probes["gateway"] = ProbeResult("gateway", 1, {"settings": {"cert_hash": configured}, "certificate": None})
    endpoints = {"gw.corp.example:443": {"probe": "check-tls", "chain_der": served}} if served else {}
    facts = HostFacts(
        target=HostTarget(name="gw.corp.example", address="gw", roles=(Role.GATEWAY,)),
        probes=probes,
        endpoints=endpoints,
    )
    return HostReport(facts=facts, checks=())


def verdict(reports: list[HostReport]):
    judged = fleet.evaluate_fleet(reports)
    return next(c for c in judged[0].checks if c.id == "rdg.ssl-inspection")


def test_same_certificate_passes() -> None:
    result = verdict([client(b64(GOOD)), gateway(thumb(GOOD), b64(GOOD))])
    assert result.status is Status.PASS and result.endpoint == "gw.corp.example:443"


def test_re_signed_certificate_fails_and_names_the_inspecting_ca() -> None:
    result = verdict([client(b64(INSPECTED)), gateway(thumb(GOOD))])
    assert result.status is Status.FAIL
    assert "re-signed by" in result.title and "TLS inspection on the path" in result.title
    assert "bypass" in result.remediation and "3391" in result.remediation


def test_served_certificate_counts_when_the_gateway_was_not_collected_over_winrm() -> None:
    assert verdict([client(b64(GOOD)), gateway(None, b64(GOOD))]).status is Status.PASS


def test_unknown_without_facts() -> None:
    assert verdict([client(None, "timed out")]).status is Status.UNKNOWN
    assert verdict([client(b64(GOOD)), gateway(None)]).status is Status.UNKNOWN


def test_reports_without_a_gateway_are_unchanged() -> None:
    lone = client(b64(GOOD))
    lone = dataclasses.replace(
        lone, facts=dataclasses.replace(lone.facts, target=dataclasses.replace(lone.facts.target, gateway=""))
    )
    assert fleet.evaluate_fleet([lone]) == [lone]


def with_network(report: HostReport, answers: list[tuple[str, list[str]]]) -> HostReport:
    dns = [{"name": n, "addresses": a, "error": None if a else "No such host is known"} for n, a in answers]
    probes = {**report.facts.probes, "network": ProbeResult("network", 1, {"dns": dns, "tcp": [], "winhttp": None})}
    return dataclasses.replace(report, facts=dataclasses.replace(report.facts, probes=probes))


def resolved_by_workstation(report: HostReport, addresses: list[str]) -> HostReport:
    view = {"name": report.name, "addresses": addresses, "source": "workstation DNS", "error": None}
    return dataclasses.replace(report, facts=dataclasses.replace(report.facts, workstation_dns=view))


def dns_verdict(client_answer: list[str], workstation_answer: list[str]):
    ws = with_network(client(b64(GOOD)), [("gw.corp.example", client_answer), ("elsewhere.example", ["1.1.1.1"])])
    gw = resolved_by_workstation(gateway(thumb(GOOD)), workstation_answer)
    return next(c for c in fleet.evaluate_fleet([ws, gw])[0].checks if c.id == "net.dns-mismatch")


def test_dns_views_that_disagree_fail_and_name_both() -> None:
    result = dns_verdict(["10.9.9.9"], ["10.0.0.5"])
    assert result.status is Status.FAIL
    assert result.title == "Resolves gw.corp.example to other addresses than the workstation"
    assert [e.value for e in result.evidence] == ["10.9.9.9", "10.0.0.5"]  # only inventory hosts are compared


def test_dns_views_that_overlap_pass_and_missing_views_are_unknown() -> None:
    assert dns_verdict(["10.0.0.5", "10.0.0.6"], ["10.0.0.5"]).status is Status.PASS
    assert dns_verdict([], ["10.0.0.5"]).status is Status.UNKNOWN


def test_the_clients_own_validation_reads_as_words_not_a_bare_none() -> None:
    result = verdict([client(b64(INSPECTED)), gateway(thumb(GOOD))])
    [own] = [e.value for e in result.evidence if e.label == "client's own chain validation"]
    assert own == "accepted (SslPolicyErrors None; no chain errors)"


def test_a_refused_chain_names_the_policy_errors_and_the_chain_status() -> None:
    from collector.checks.client import own_validation

    seen = {
        "policy_errors": "RemoteCertificateChainErrors",
        "chain_status": ["UntrustedRoot", "RevocationStatusUnknown"],
    }
    assert own_validation(seen) == (
        "refused (SslPolicyErrors RemoteCertificateChainErrors; UntrustedRoot, RevocationStatusUnknown)"
    )
