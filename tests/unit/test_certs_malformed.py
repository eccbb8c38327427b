"""Malformed but properly signed certificates: read in one guarded step, judged as results, never raised.

cryptography refuses these with several exception types, some at load time and some only when a
field is first read. Each must become a reason in words wherever a certificate is met: the chain
analysis and the cert.* checks, the report's certificate rows, and the workstation's own TLS probe
of an endpoint (a real loopback TLS server sends the chain), which keeps its observation.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from collector import certs, certview, endpoint_cli, workstation
from collector.checks import certs as cert_checks
from collector.lab import pki as lab_pki
from collector.lab.endpoints import GatewayServer, RdpListenerServer, server_context
from collector.lab.pki import MALFORMED_VARIANTS, SERVABLE_AT, VARIANTS, LabPKI, malformed_chain
from collector.model import WHY_UNKNOWN, HostFacts, HostTarget, ProbeResult, Role, Status
from tests.cert_variants import CERT_CHECK_IDS, EXPECTED_PROBLEMS

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
NAME = "gw01.corp.example"
ENDPOINT = f"{NAME}:443"

REASONS = {
    "duplicate-extension": "duplicated extension 2.5.29.17 (subjectAltName)",
    "bad-version": "invalid X.509 version 5 (only 0, 1 and 2 exist: v1, v2 and v3)",
    "bad-subject": "a name attribute holds an invalid PrintableString value (malformed DER: invalid value)",
    "bad-subject-encoding": "its subject cannot be read (malformed DER: invalid value)",
    "bad-san": "its extensions cannot be read (an iPAddress name that is neither an IPv4 nor an IPv6 address)",
    "unsupported-san": (
        "its extensions hold a general name of a type that cannot be read "
        "(x400Address/EDIPartyName are not supported types)"
    ),
}
"""What each variant (on the leaf) reads as: the reason an admin is shown."""

ISSUING_CA_REASONS = {
    "duplicate-extension": "duplicated extension 2.5.29.19 (basicConstraints)",
    "bad-version": REASONS["bad-version"],
    "bad-subject": REASONS["bad-subject"],
    "bad-subject-encoding": REASONS["bad-subject-encoding"],
}
"""The variants that apply to the issuing CA (it has no subjectAltName), sent second."""

SERVED = [(v, p) for v in MALFORMED_VARIANTS for p in SERVABLE_AT[v]]


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return LabPKI.create(now=NOW)


@pytest.fixture(scope="module")
def trust(pki: LabPKI) -> certs.TrustStore:
    return certs.TrustStore("lab root", (pki.root.cert,))


def sha1(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - how Windows names a certificate


def chain_message(variant: str, position: int) -> str:
    reason = REASONS[variant] if position == 0 else ISSUING_CA_REASONS[variant]
    return f"certificate #{position + 1} of the chain cannot be parsed: {reason}"


def judge(chain, trust: certs.TrustStore) -> dict[str, object]:
    results = cert_checks.evaluate_chain(
        chain, server_name=NAME, trust=trust, now=NOW, host=NAME, endpoint=ENDPOINT, vantage="workstation"
    )
    return {r.id: r for r in results}


# --- the builder ----------------------------------------------------------------------------------


def test_every_variant_has_a_reason_and_a_serving_rule() -> None:
    assert set(REASONS) == set(MALFORMED_VARIANTS) == set(SERVABLE_AT)
    assert not set(MALFORMED_VARIANTS) & set(VARIANTS)  # the good-or-broken table stays one defect each


@pytest.mark.parametrize("variant", list(MALFORMED_VARIANTS))
def test_a_malformed_certificate_is_genuinely_signed_by_its_issuer(variant: str, pki: LabPKI) -> None:
    """Only the defect stands between it and a validator: the signature over the edited TBS is good."""
    chain = malformed_chain(variant, NAME, pki=pki, now=NOW)
    tbs, algorithm, bit_string = lab_pki._der_children(chain.der[0])
    assert (
        algorithm
        == lab_pki._der_children(pki.chain("good", NAME, now=NOW).leaf.public_bytes(serialization.Encoding.DER))[1]
    )
    signature = lab_pki._der_content(bit_string)[1:]
    issuer_key = pki.issuing.key.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    issuer_key.verify(signature, tbs, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature otherwise
    assert chain.der[1] == pki.issuing.cert.public_bytes(serialization.Encoding.DER)


def test_the_builder_refuses_what_it_cannot_make(pki: LabPKI) -> None:
    with pytest.raises(ValueError, match="unknown malformed variant 'nope'"):
        malformed_chain("nope", NAME, pki=pki)
    with pytest.raises(ValueError, match="bad-san needs a certificate with a subjectAltName"):
        malformed_chain("bad-san", NAME, position=1, pki=pki)
    with pytest.raises(ValueError, match="position must be 0"):
        malformed_chain("bad-version", NAME, position=2, pki=pki)


@pytest.mark.parametrize("position", [0, 1])
@pytest.mark.parametrize("variant", list(MALFORMED_VARIANTS))
def test_openssl_loads_the_servable_variants_into_a_server_context(variant: str, position: int, pki: LabPKI) -> None:
    try:
        chain = malformed_chain(variant, NAME, position=position, pki=pki, now=NOW)
    except ValueError:
        assert position not in SERVABLE_AT[variant]
        return
    if chain.servable:
        assert isinstance(server_context(*chain.tls), ssl.SSLContext)
    else:
        with pytest.raises(ssl.SSLError):
            server_context(*chain.tls)


# --- read in one guarded step -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(MALFORMED_VARIANTS))
def test_each_variant_reads_as_its_reason_in_words(variant: str, pki: LabPKI) -> None:
    der = malformed_chain(variant, NAME, pki=pki, now=NOW).der[0]
    read = certs.read_certificate(der)
    assert read == certs.UnreadableCertificate(REASONS[variant], sha1(der), der)


@pytest.mark.parametrize("variant", ["duplicate-extension", "bad-subject-encoding", "bad-san", "unsupported-san"])
def test_a_certificate_cryptography_loaded_but_cannot_read_is_a_reason_too(variant: str, pki: LabPKI) -> None:
    """These load; the field raises when first read. Handing the loaded object in changes nothing."""
    der = malformed_chain(variant, NAME, pki=pki, now=NOW).der[0]
    loaded = x509.load_der_x509_certificate(der)
    assert certs.read_certificate(loaded) == certs.UnreadableCertificate(REASONS[variant], sha1(der), der)
    with pytest.raises(certs.CertificateError, match="the certificate cannot be parsed: "):
        certs.cert_info(loaded)
    assert certs.issued_by(loaded, pki.issuing.cert) is False  # links to nothing
    assert certs.describe_der(der) == f"an unreadable certificate ({REASONS[variant]}), thumbprint {sha1(der)}"
    assert certs.issuer_of_der(der) == f"an issuer that cannot be read ({REASONS[variant]})"


def test_garbage_and_nothing_are_reasons_too() -> None:
    assert certs.read_certificate(b"not a certificate").reason == "malformed DER: short data"
    assert certs.read_certificate(b"") == certs.UnreadableCertificate("malformed DER: short data", "", b"")


def test_a_good_certificate_reads_as_it_always_did(pki: LabPKI) -> None:
    leaf = pki.chain("good", NAME, now=NOW).leaf
    der = leaf.public_bytes(serialization.Encoding.DER)
    read = certs.read_certificate(der)
    assert isinstance(read, certs.ReadCertificate)
    assert read.info == certs.cert_info(leaf)
    assert (read.subject_rfc4514, read.issuer_rfc4514, read.subject_cn) == (
        f"CN={NAME},O=rdp-collector lab",
        "CN=rdp-collector lab Issuing CA,O=rdp-collector lab",
        NAME,
    )
    assert read.info.dns_names == (NAME,) and read.info.eku == ("1.3.6.1.5.5.7.3.1",)
    assert read.spki == leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert read.tbs == leaf.tbs_certificate_bytes and read.thumbprint == sha1(der)
    assert certs.issued_by(read, pki.issuing.cert) and not certs.issued_by(read, pki.root.cert)
    assert certs.describe_der(der) == (
        f"CN={NAME},O=rdp-collector lab, issued by CN=rdp-collector lab Issuing CA,O=rdp-collector lab, "
        f"thumbprint {sha1(der)}"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.subject_cn = "other"  # type: ignore[misc]


# --- the chain analysis and the cert.* checks ------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "position"), [(v, 0) for v in MALFORMED_VARIANTS] + [(v, 1) for v in ISSUING_CA_REASONS]
)
def test_a_chain_with_an_unreadable_certificate_says_which_and_why(
    variant: str, position: int, pki: LabPKI, trust
) -> None:
    chain = malformed_chain(variant, NAME, position=position, pki=pki, now=NOW)
    with pytest.raises(certs.UnreadableChainError) as raised:
        certs.analyse_chain(chain.der, server_name=NAME, trust=trust, now=NOW)
    assert str(raised.value) == chain_message(variant, position)
    assert raised.value.position == position + 1
    assert raised.value.unreadable.thumbprint == sha1(chain.der[position])
    assert isinstance(raised.value, certs.CertificateError)


@pytest.mark.parametrize(
    ("variant", "position"), [(v, 0) for v in MALFORMED_VARIANTS] + [(v, 1) for v in ISSUING_CA_REASONS]
)
def test_every_cert_check_of_such_a_chain_is_unknown_with_the_reason(
    variant: str, position: int, pki: LabPKI, trust
) -> None:
    chain = malformed_chain(variant, NAME, position=position, pki=pki, now=NOW)
    message = chain_message(variant, position)
    results = judge(chain.der, trust)
    assert list(results) == list(CERT_CHECK_IDS)
    for meta in cert_checks.CHECKS:
        result = results[meta.id]
        assert result.status is Status.UNKNOWN
        assert result.title == f"{meta.title}: not judged ({message})"
        assert [(e.label, e.value) for e in result.evidence] == [
            ("endpoint", ENDPOINT),
            (WHY_UNKNOWN, message),
            (f"certificate #{position + 1} thumbprint (SHA-1)", sha1(chain.der[position])),
        ]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_good_and_broken_chains_are_judged_as_before_whichever_form_they_come_in(
    variant: str, pki: LabPKI, trust
) -> None:
    sent = pki.chain(variant, NAME, now=NOW).certificates
    der = [c.public_bytes(serialization.Encoding.DER) for c in sent]
    read = certs.read_chain(der)
    assert [r.info for r in read] == [certs.cert_info(c) for c in sent]
    by_der = certs.analyse_chain(der, server_name=NAME, trust=trust, now=NOW)
    assert certs.analyse_chain(read, server_name=NAME, trust=trust, now=NOW) == by_der
    assert certs.analyse_chain(sent, server_name=NAME, trust=trust, now=NOW) == by_der
    problems = {i: r.status.value for i, r in judge(read, trust).items() if r.status is not Status.PASS}
    assert problems == EXPECTED_PROBLEMS[variant]


def test_a_root_that_cannot_be_read_anchors_nothing_and_breaks_nothing(pki: LabPKI) -> None:
    broken_root = x509.load_der_x509_certificate(
        lab_pki.malformed_der(pki.root.cert, pki.root.key, "duplicate-extension")
    )
    store = certs.TrustStore("a CA file with a bad root", (broken_root, pki.root.cert))
    assert [a.certificate for a in store.anchors] == [pki.root.cert]
    good = pki.chain("good", NAME, now=NOW).certificates
    assert {r.status for r in judge(good, store).values()} == {Status.PASS}
    only_broken = certs.TrustStore("only the bad root", (broken_root,))
    assert judge(good, only_broken)["cert.untrusted"].status is Status.UNKNOWN  # the path stops: issuer missing
    assert judge(good, only_broken)["cert.chain-incomplete"].status is Status.FAIL


# --- the report's certificate rows (probe data) ---------------------------------------------------------


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


@pytest.mark.parametrize("variant", list(MALFORMED_VARIANTS))
def test_a_host_reporting_such_a_certificate_gets_a_row_that_says_why(variant: str, pki: LabPKI) -> None:
    chain = malformed_chain(variant, NAME, pki=pki, now=NOW)
    facts = HostFacts(
        target=HostTarget(name=NAME, address=NAME, roles=(Role.GATEWAY,)),
        probes={"gateway": ProbeResult("gateway", 1, {"certificate": {"chain_der": [b64(d) for d in chain.der]}})},
    )
    [view] = certview.host_chains(facts, NOW)
    bad, issuing = view.certs
    assert bad.error == f"not a readable certificate ({REASONS[variant]}); SHA-1 of its bytes {sha1(chain.der[0])}"
    assert (bad.subject, bad.thumbprint, bad.days_left) == ("", "", None)
    assert issuing.error == "" and issuing.common_name == "rdp-collector lab Issuing CA"
    assert issuing.thumbprint == sha1(chain.der[1])
    assert [f.row.thumbprint for f in certview.fleet_certificates([view])] == [issuing.thumbprint]


# --- the workstation's own TLS probe, against a real TLS server ---------------------------------------


@pytest.mark.parametrize(("variant", "position"), SERVED)
def test_check_tls_of_a_server_sending_it_keeps_its_observation_and_says_why(
    variant: str, position: int, pki: LabPKI, trust
) -> None:
    chain = malformed_chain(variant, NAME, position=position, pki=pki, now=NOW)
    message = chain_message(variant, position)
    with GatewayServer(chain.tls) as gateway:
        report = workstation.check_tls(NAME, address="127.0.0.1", port=gateway.port, trust=trust, now=NOW, timeout=5)
    assert report.handshake is not None and report.handshake.ok and report.handshake.chain == chain.der
    assert report.chain == () and report.chain_problem == message and report.connection_problem == ""
    results = {r.id: r for r in report.results}
    assert {results[i].status for i in CERT_CHECK_IDS} == {Status.UNKNOWN}
    assert {results[i].why_unknown for i in CERT_CHECK_IDS} == {message}
    assert results["net.tls-handshake"].status is Status.PASS
    assert results["rdg.http-transport"].status is Status.PASS
    text = endpoint_cli.render_text(report)  # what `collect check-tls` prints: a line, not a traceback
    assert "unknown critical 11 checks" in text and f"not judged ({message})" in text


def test_a_collection_keeps_the_hosts_endpoint_results_and_the_reason(pki: LabPKI) -> None:
    """The run's path: probe_endpoints for a gateway and a session host serving malformed chains."""
    gateway_chain = malformed_chain("duplicate-extension", NAME, position=1, pki=pki)
    listener_chain = malformed_chain("bad-version", NAME, pki=pki)
    with GatewayServer(gateway_chain.tls) as gateway, RdpListenerServer(listener_chain.tls) as listener:
        target = HostTarget(
            name=NAME,
            address="127.0.0.1",
            roles=(Role.GATEWAY, Role.SESSION_HOST),
            gateway_port=gateway.port,
            rdp_port=listener.port,
        )
        endpoints, results = workstation.probe_endpoints(target)
    tls, rdp = endpoints[f"{NAME}:{gateway.port}"], endpoints[f"{NAME}:{listener.port}"]
    assert tls["chain_problem"] == chain_message("duplicate-extension", 1)
    assert tls["chain_der"] == [b64(d) for d in gateway_chain.der]
    assert rdp["chain_problem"] == chain_message("bad-version", 0)
    assert rdp["chain_der"] == [b64(d) for d in listener_chain.der]
    by_endpoint = {(r.id, r.endpoint): r for r in results}
    for endpoint, chain_problem in ((f"{NAME}:{gateway.port}", tls), (f"{NAME}:{listener.port}", rdp)):
        assert by_endpoint[("cert.untrusted", endpoint)].why_unknown == chain_problem["chain_problem"]
        assert by_endpoint[("net.tls-handshake", endpoint)].status is Status.PASS
    assert by_endpoint[("rdp.negotiation", f"{NAME}:{listener.port}")].status is Status.PASS
    # The host page shows the unreadable certificate as a row that says why.
    facts = HostFacts(target=target, probes={}, endpoints=endpoints)
    rows = {view.endpoint: view.certs for view in certview.host_chains(facts, NOW)}
    assert rows[f"{NAME}:{gateway.port}"][1].error.startswith(
        "not a readable certificate (duplicated extension 2.5.29.19 (basicConstraints)); SHA-1 of its bytes "
    )


@pytest.mark.parametrize("variant", ["bad-version", "bad-subject", "bad-san", "unsupported-san"])
def test_a_verifying_openssl_client_accepts_what_cryptography_cannot_read(variant: str, pki: LabPKI) -> None:
    """Why such a chain is unknown rather than failed: whether a client refuses it depends on its
    parser. OpenSSL, verifying against the root with the host name checked, connects."""
    chain = malformed_chain(variant, NAME, pki=pki)
    context = ssl.create_default_context(cadata=pki.root.cert_pem.decode())
    with (
        GatewayServer(chain.tls) as gateway,
        socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert isinstance(certs.read_certificate(chain.der[0]), certs.UnreadableCertificate)


def test_a_verifying_openssl_client_refuses_a_ca_with_a_duplicated_extension(pki: LabPKI) -> None:
    chain = malformed_chain("duplicate-extension", NAME, position=1, pki=pki)
    context = ssl.create_default_context(cadata=pki.root.cert_pem.decode())
    with (
        GatewayServer(chain.tls) as gateway,
        socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname=NAME)
