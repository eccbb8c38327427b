"""Certificate rows for the reports: parsed from the probes' base64 DER, days left from the run."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collector import certview
from collector.model import HostFacts, HostTarget, ProbeResult, Role

RUN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def make_cert(
    cn: str, not_after: datetime, issuer: tuple[x509.Certificate, Any] | None = None, dns: tuple[str, ...] = ()
) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp")]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


CA = make_cert("Corp Root CA", RUN + timedelta(days=3650))
GW = make_cert("gw01.corp.example", RUN + timedelta(days=20, hours=1), CA, ("gw01.corp.example", "rdg.corp.example"))
OLD = make_cert("rdsh01.corp.example", RUN - timedelta(seconds=1), CA)


def windows_thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER, as certlm.msc shows it; computed by cryptography, not by the code under test."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - an identifier, not security


def certificate(leaf: x509.Certificate, chain: list[str], status: list[str] | None = None) -> dict[str, Any]:
    return {
        "thumbprint": windows_thumbprint(leaf),
        "subject": leaf.subject.rfc4514_string(),
        "issuer": leaf.issuer.rfc4514_string(),
        "not_before": None,
        "not_after": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "has_private_key": True,
        "private_key_readable": True,
        "chain_der": chain,
        "chain_status": status or [],
    }


def facts(name: str, roles: tuple[Role, ...], probes: dict[str, dict[str, Any]]) -> HostFacts:
    return HostFacts(
        target=HostTarget(name=name, address=name, roles=roles),
        probes={p: ProbeResult(p, 1, data) for p, data in probes.items()},
    )


def test_gateway_chain_rows_state_the_facts() -> None:
    gw = facts(
        "gw01.corp.example",
        (Role.GATEWAY,),
        {"gateway": {"certificate": certificate(GW[0], [b64(GW[0]), b64(CA[0])], ["UntrustedRoot"])}},
    )
    [chain] = certview.host_chains(gw, RUN)
    assert (chain.host, chain.probe, chain.field) == ("gw01.corp.example", "gateway", "certificate")
    assert chain.where == "RD Gateway SSL certificate, in the gateway's own store"
    assert chain.host_status == ("UntrustedRoot",)
    leaf, root = chain.certs
    assert leaf.position == 0 and root.position == 1
    assert leaf.common_name == "gw01.corp.example"
    assert leaf.subject == "O=Corp,CN=gw01.corp.example"
    assert leaf.issuer == "O=Corp,CN=Corp Root CA"
    assert leaf.dns_names == ("gw01.corp.example", "rdg.corp.example")
    assert leaf.days_left == 20 and not leaf.expired
    assert leaf.not_after == (RUN + timedelta(days=20, hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert leaf.thumbprint == windows_thumbprint(GW[0])
    assert not leaf.self_issued and root.self_issued
    assert root.days_left == 3650


def test_days_left_is_counted_from_the_reference_not_the_clock() -> None:
    listener = {"rdp_config": {"listener_certificate": certificate(OLD[0], [b64(OLD[0])])}}
    sh = facts("rdsh01.corp.example", (Role.SESSION_HOST,), listener)
    [row] = certview.host_chains(sh, RUN)[0].certs
    assert row.days_left == -1 and row.expired  # one second past expiry is already a day late
    [earlier] = certview.host_chains(sh, RUN - timedelta(days=10))[0].certs
    assert earlier.days_left == 9 and not earlier.expired
    assert certview.host_chains(sh, RUN)[0].where == "RDP listener certificate, in the session host's own store"


def test_client_view_names_the_endpoint_and_skips_attempts_that_saw_nothing() -> None:
    seen = {
        "name": "gw01.corp.example",
        "port": 443,
        "connected": True,
        "policy_errors": "None",
        "chain_der": [b64(GW[0]), b64(CA[0])],
        "chain_status": [],
        "protocol": "Tls12",
        "error": None,
    }
    failed = {**seen, "connected": False, "chain_der": [], "error": "refused"}
    client = facts("c1.corp.example", (Role.CLIENT,), {"client": {"gateway_tls": seen, "trusted_roots": []}})
    [chain] = certview.host_chains(client, RUN)
    assert (chain.where, chain.endpoint) == ("chain the client received from its gateway", "gw01.corp.example:443")
    nothing = facts("c2.corp.example", (Role.CLIENT,), {"client": {"gateway_tls": failed, "trusted_roots": []}})
    assert certview.host_chains(nothing, RUN) == ()


def test_unreadable_der_is_a_row_that_says_so() -> None:
    gw = facts(
        "gw.corp.example", (Role.GATEWAY,), {"gateway": {"certificate": certificate(GW[0], ["bm90IGEgY2VydA==", "@@"])}}
    )
    rows = certview.host_chains(gw, RUN)[0].certs
    assert [r.error.split(" (")[0] for r in rows] == ["not a readable certificate"] * 2
    assert all(r.days_left is None and r.thumbprint == "" for r in rows)


def test_a_certificate_described_without_der_shows_the_hosts_own_words() -> None:
    described = certificate(GW[0], [])
    gw = facts("gw.corp.example", (Role.GATEWAY,), {"gateway": {"certificate": described}})
    [row] = certview.host_chains(gw, RUN)[0].certs
    assert row.subject == "O=Corp,CN=gw01.corp.example" and row.thumbprint == described["thumbprint"]
    assert row.days_left == 20 and "no DER" in row.error


def test_chains_in_other_probes_are_shown_with_their_field_path() -> None:
    other = facts("ws.corp.example", (Role.CLIENT,), {"tls_probe": {"endpoints": [{"chain_der": [b64(CA[0])]}]}})
    [chain] = certview.host_chains(other, RUN)
    assert chain.where == "tls_probe probe, field endpoints.0"
    assert chain.certs[0].common_name == "Corp Root CA"


def test_fleet_certificates_are_distinct_and_soonest_first() -> None:
    gw = facts(
        "gw.corp.example", (Role.GATEWAY,), {"gateway": {"certificate": certificate(GW[0], [b64(GW[0]), b64(CA[0])])}}
    )
    sh = facts(
        "sh.corp.example",
        (Role.SESSION_HOST,),
        {"rdp_config": {"listener_certificate": certificate(OLD[0], [b64(OLD[0]), b64(CA[0])])}},
    )
    chains = [*certview.host_chains(gw, RUN), *certview.host_chains(sh, RUN)]
    fleet = certview.fleet_certificates(chains)
    assert [f.row.common_name for f in fleet] == ["rdsh01.corp.example", "gw01.corp.example", "Corp Root CA"]
    assert [h for h, _ in fleet[2].seen] == ["gw.corp.example", "sh.corp.example"]


def test_parse_time_accepts_iso_utc_and_refuses_garbage() -> None:
    assert certview.parse_time("2026-03-01T12:00:00Z") == RUN
    assert certview.parse_time("2026-03-01T12:00:00") == RUN
    assert certview.parse_time("") is None and certview.parse_time("yesterday") is None


@pytest.mark.skipif(
    "endpoints" not in HostFacts.__dataclass_fields__, reason="this model has no workstation endpoint probes yet"
)
def test_chains_the_workstation_received_are_shown_with_their_endpoint() -> None:
    seen = {"probe": "check-tls", "endpoint": "gw01.corp.example:443", "chain_der": [b64(GW[0]), b64(CA[0])]}
    refused = {"probe": "check-rdp", "endpoint": "gw01.corp.example:3389", "chain_der": [], "problem": "refused"}
    gw = facts("gw01.corp.example", (Role.GATEWAY,), {})
    gw = dataclasses.replace(gw, endpoints={"gw01.corp.example:443": seen, "gw01.corp.example:3389": refused})
    [chain] = certview.host_chains(gw, RUN)
    assert (chain.where, chain.endpoint, chain.probe) == (
        "chain the workstation received over TLS",
        "gw01.corp.example:443",
        "workstation check-tls",
    )
    assert [r.common_name for r in chain.certs] == ["gw01.corp.example", "Corp Root CA"]
