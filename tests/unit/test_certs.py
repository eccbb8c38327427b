"""Chain analysis and the cert.* checks, from certificates built in memory (pure, no sockets).

Every lab variant carries exactly one defect; each must fail (or warn) its own check and pass the
others. The clock is fixed, so expiry arithmetic is exact.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import socket
import threading
import time
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector import certs, workstation
from collector.checks import certs as cert_checks
from collector.lab.pki import AIA_URL, VARIANTS, LabCA, LabPKI
from collector.model import HostTarget, Role, Status
from tests.cert_variants import CERT_CHECK_IDS, EXPECTED_PROBLEMS

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
NAME = "gw01.corp.example"
ENDPOINT = f"{NAME}:443"
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return LabPKI.create(now=NOW)


@pytest.fixture(scope="module")
def trust(pki: LabPKI) -> certs.TrustStore:
    return certs.TrustStore("lab root", (pki.root.cert,))


def der(chain: tuple[x509.Certificate, ...]) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in chain]


def judge(chain, trust: certs.TrustStore, name: str = NAME, **kwargs) -> dict[str, object]:
    results = cert_checks.evaluate_chain(
        der(tuple(chain)),
        server_name=name,
        trust=trust,
        now=kwargs.pop("now", NOW),
        host=name,
        endpoint=ENDPOINT,
        vantage="workstation",
        **kwargs,
    )
    return {r.id: r for r in results}


def problems(results: dict[str, object]) -> dict[str, str]:
    return {i: r.status.value for i, r in results.items() if r.status is not Status.PASS}


def test_the_expectation_table_covers_every_variant() -> None:
    assert set(EXPECTED_PROBLEMS) == set(VARIANTS)
    assert tuple(m.id for m in cert_checks.CHECKS) == CERT_CHECK_IDS


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_trips_its_own_check_and_only_it(variant: str, pki: LabPKI, trust) -> None:
    chain = pki.chain(variant, NAME, now=NOW)
    results = judge(chain.certificates, trust)
    assert list(results) == list(CERT_CHECK_IDS)
    assert problems(results) == EXPECTED_PROBLEMS[variant]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_result_names_endpoint_vantage_and_metadata(variant: str, pki: LabPKI, trust) -> None:
    chain = pki.chain(variant, NAME, now=NOW)
    for result in judge(chain.certificates, trust).values():
        meta = next(m for m in cert_checks.CHECKS if m.id == result.id)
        assert result.endpoint == ENDPOINT
        assert result.host == NAME
        assert result.severity is meta.severity
        assert result.remediation == meta.remediation
        assert result.evidence[0].label == "endpoint" and result.evidence[0].value == ENDPOINT
        assert {e.vantage for e in result.evidence} == {"workstation"}
        assert result.title


def test_problem_evidence_identifies_the_certificate_as_windows_shows_it(pki: LabPKI, trust) -> None:
    chain = pki.chain("expired", NAME, now=NOW)
    leaf = chain.leaf
    result = judge(chain.certificates, trust)["cert.expired"]
    evidence = {e.label: e.value for e in result.evidence}
    thumbprint = hashlib.sha1(leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324
    assert evidence["leaf thumbprint (SHA-1)"] == thumbprint
    assert evidence["leaf subject"] == f"CN={NAME}, O=rdp-collector lab"
    assert evidence["leaf issuer"] == "CN=rdp-collector lab Issuing CA, O=rdp-collector lab"
    assert evidence["leaf validity"] == "2025-05-29 12:00 UTC to 2026-05-29 12:00 UTC"
    assert result.title == f"Certificate {NAME} expired 3 days ago (2026-05-29)"


def test_remediation_says_where_the_certificate_is_bound() -> None:
    for meta in cert_checks.CHECKS:
        assert "Set-Item RDS:\\GatewayServer\\SSLCertificate\\Thumbprint" in meta.remediation, meta.id
        assert "SSLCertificateSHA1Hash" in meta.remediation, meta.id
        assert meta.references, meta.id


def test_chain_incomplete_names_the_missing_issuer_and_its_aia_url(pki: LabPKI, trust) -> None:
    chain = pki.chain("missing-intermediate", NAME, now=NOW)
    result = judge(chain.certificates, trust)["cert.chain-incomplete"]
    evidence = {e.label: e.value for e in result.evidence}
    assert evidence["missing issuer"] == "CN=rdp-collector lab Issuing CA, O=rdp-collector lab"
    assert evidence["AIA caIssuers"] == AIA_URL
    assert AIA_URL in result.title


def test_a_root_with_the_issuers_name_but_another_key_is_a_near_miss(pki: LabPKI) -> None:
    """Found among many anchors by its name alone: the store's look-up must not stop at the name."""
    impostor = LabCA.create("rdp-collector lab Root CA", path_length=1, now=NOW - 30 * DAY)  # same name, new key
    strangers = tuple(LabCA.create(f"Unrelated Root {i}", now=NOW - DAY).cert for i in range(20))
    store = certs.TrustStore("crowded store", (*strangers, impostor.cert))
    chain = pki.chain("good", NAME, now=NOW).certificates
    analysis = certs.analyse_chain(der(chain), server_name=NAME, trust=store, now=NOW)
    assert analysis.path_end is certs.PathEnd.MISSING_ISSUER
    assert analysis.missing_issuer == "CN=rdp-collector lab Root CA, O=rdp-collector lab"
    [miss] = analysis.near_misses
    assert miss.startswith("CN=rdp-collector lab Root CA, O=rdp-collector lab (thumbprint ")
    assert miss.endswith("has the issuer's name, but its key did not sign rdp-collector lab Issuing CA")
    result = judge(chain, store)["cert.chain-incomplete"]
    assert result.status is Status.FAIL
    assert ("near miss", miss) in {(e.label, e.value) for e in result.evidence}


def test_a_reissued_root_with_the_same_key_is_the_same_anchor(pki: LabPKI) -> None:
    reissued = (
        x509.CertificateBuilder()
        .subject_name(pki.root.cert.subject)
        .issuer_name(pki.root.cert.subject)
        .public_key(pki.root.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .sign(pki.root.key, hashes.SHA256())
    )
    store = certs.TrustStore("new root", (reissued,))
    chain = (*pki.chain("good", NAME, now=NOW).certificates, pki.root.cert)  # the server sends its old root
    analysis = certs.analyse_chain(der(chain), server_name=NAME, trust=store, now=NOW)
    assert analysis.path_end is certs.PathEnd.TRUSTED
    assert analysis.path[-1].thumbprint == certs.cert_info(reissued).thumbprint  # the store's anchor ends it
    # The old root alone is the anchor itself: same name, same key.
    alone = certs.analyse_chain(der((pki.root.cert,)), server_name=NAME, trust=store, now=NOW)
    assert alone.path_end is certs.PathEnd.TRUSTED and len(alone.path) == 1


def test_an_expired_intermediate_is_named_as_such(pki: LabPKI, trust) -> None:
    old = pki.root.issue_intermediate("Old Issuing CA", days=400, now=NOW - 500 * DAY)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = old.issue_leaf([NAME], key.public_key(), not_before=NOW - 200 * DAY, not_after=NOW + 100 * DAY)
    result = judge((leaf, old.cert), trust)["cert.expired"]
    assert result.status is Status.FAIL
    assert result.title == "Certificate Old Issuing CA expired 100 days ago (2026-02-21)"
    assert ("chain #2 subject", "CN=Old Issuing CA, O=rdp-collector lab") in {
        (e.label, e.value) for e in result.evidence
    }


def test_expires_soon_threshold_is_configurable(pki: LabPKI, trust) -> None:
    soon = pki.chain("expires-soon", NAME, now=NOW).certificates
    good = pki.chain("good", NAME, now=NOW).certificates
    assert judge(soon, trust)["cert.expires-soon"].status is Status.WARN
    assert judge(soon, trust, expires_soon_days=5)["cert.expires-soon"].status is Status.PASS
    assert judge(good, trust)["cert.expires-soon"].status is Status.PASS
    long = judge(good, trust, expires_soon_days=400)["cert.expires-soon"]
    assert long.status is Status.WARN
    assert long.title == f"Certificate {NAME} expires in 365 days (2027-06-01)"
    with pytest.raises(ValueError, match="must not be negative"):
        judge(good, trust, expires_soon_days=-1)


def test_a_self_signed_certificate_in_the_trust_store_is_trusted_but_still_flagged(pki: LabPKI) -> None:
    chain = pki.chain("self-signed", NAME, now=NOW)
    results = judge(chain.certificates, certs.TrustStore("imported by hand", (chain.leaf,)))
    assert problems(results) == {"cert.self-signed": "warn"}
    assert "trusted here only" in results["cert.self-signed"].title


def test_the_clients_own_root_store_decides_trust(pki: LabPKI) -> None:
    """An SSL-inspection chain is untrusted from the workstation, but trusted by a client whose
    root store has the proxy's CA (pushed by GPO): the view that decides a client's 0x904."""
    chain = pki.chain("inspection", NAME, now=NOW)
    inspection_ca = chain.certificates[1]
    workstation = certs.workstation_trust(include_system=False, roots=(pki.root.cert,), roots_label="lab root")
    client = certs.workstation_trust(
        include_system=False, roots=(inspection_ca,), roots_label="client01 LocalMachine\\Root"
    )
    assert judge(chain.certificates, workstation)["cert.untrusted"].status is Status.FAIL
    from_client = judge(chain.certificates, client)["cert.untrusted"]
    assert from_client.status is Status.PASS
    assert from_client.title == "The chain leads to the trusted root Contoso SSL Inspection CA"
    assert ("trust store", "client01 LocalMachine\\Root (1 certificates)") in {
        (e.label, e.value) for e in from_client.evidence
    }


def test_rfc5280_structure_is_enforced_by_cryptographys_validator(pki: LabPKI, trust) -> None:
    """An issuing CA without keyUsage links by name and signature, but RFC 5280 validation refuses it."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuing = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "No KeyUsage CA")]))
        .issuer_name(pki.root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 1000 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.root.key.public_key()), critical=False)
        .sign(pki.root.key, hashes.SHA256())
    )
    ca = LabCA(cert=issuing, key=key)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = ca.issue_leaf([NAME], leaf_key.public_key(), not_before=NOW - DAY, not_after=NOW + 90 * DAY)
    results = judge((leaf, issuing), trust)
    assert problems(results) == {"cert.untrusted": "fail"}
    assert results["cert.untrusted"].title.startswith("The path to rdp-collector lab Root CA breaks RFC 5280:")


def test_md5_signatures_and_small_keys_are_weak(pki: LabPKI, trust) -> None:
    legacy = pki.root.issue_intermediate(
        "Legacy CA", key=rsa.generate_private_key(public_exponent=65537, key_size=2048), now=NOW - 10 * DAY
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = legacy.issue_leaf(
        [NAME], leaf_key.public_key(), not_before=NOW - DAY, not_after=NOW + 90 * DAY, signature_hash="md5"
    )
    result = judge((leaf, legacy.cert), trust)["cert.weak-signature"]
    assert result.status is Status.FAIL
    assert result.title == f"Certificate {NAME} is signed with md5WithRSAEncryption (MD5)"

    info = certs.cert_info(pki.root.cert)
    assert certs.weak_key(dataclasses.replace(info, key_type="EC", key_bits=224)) == (
        "EC key of 224 bits (at least 256 needed)"
    )
    assert certs.weak_key(dataclasses.replace(info, key_type="RSA", key_bits=2048)) is None
    assert certs.weak_key(dataclasses.replace(info, key_type="Ed25519", key_bits=256)) is None


def test_an_issuing_ca_that_excludes_server_auth_fails_the_eku_check(pki: LabPKI, trust) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issuing = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Client Auth Only CA")]))
        .issuer_name(pki.root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 1000 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.root.key.public_key()), critical=False)
        .sign(pki.root.key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = LabCA(issuing, key).issue_leaf([NAME], leaf_key.public_key(), not_before=NOW - DAY, not_after=NOW + 9 * DAY)
    result = judge((leaf, issuing), trust)["cert.no-server-auth-eku"]
    assert result.status is Status.FAIL
    assert (
        result.title == "Issuing CA Client Auth Only CA is limited to Client Authentication: no Server Authentication"
    )


def test_order_problems_name_duplicates_and_strangers(pki: LabPKI, trust) -> None:
    good = pki.chain("good", NAME, now=NOW).certificates
    stranger = LabCA.create("Unrelated CA", now=NOW - DAY).cert
    analysis = certs.analyse_chain(
        [*der(good), der((good[1],))[0], der((stranger,))[0]], server_name=NAME, trust=trust, now=NOW
    )
    assert analysis.order_problems == (
        "#3 rdp-collector lab Issuing CA is sent twice",
        "#4 Unrelated CA is not on the path to the root (sent but not needed)",
    )
    assert [c.common_name for c in analysis.unused] == ["Unrelated CA"]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("gw01.corp.example", "GW01.corp.example.", True),
        ("*.corp.example", "gw01.corp.example", True),
        ("*.corp.example", "a.gw01.corp.example", False),
        ("*.corp.example", "corp.example", False),
        ("*.example", "corp.example", False),
        ("gw*.corp.example", "gw01.corp.example", False),
        ("gw01.corp.example", "gw02.corp.example", False),
    ],
)
def test_dns_name_matching(pattern: str, name: str, matches: bool) -> None:
    assert certs._dns_match(pattern, name) is matches


def test_a_certificate_without_san_matches_on_its_cn_with_a_warning(pki: LabPKI, trust) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .issuer_name(pki.issuing.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 90 * DAY)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.issuing.key.public_key()), critical=False)
        .sign(pki.issuing.key, hashes.SHA256())
    )
    results = judge((leaf, pki.issuing.cert), trust)
    assert problems(results) == {"cert.name-mismatch": "warn"}
    assert problems(judge((leaf, pki.issuing.cert), trust, name="gw02.corp.example")) == {"cert.name-mismatch": "fail"}


def test_ip_address_names_match_ip_san_entries(pki: LabPKI, trust) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = pki.issuing.issue_leaf(["192.0.2.10"], key.public_key(), not_before=NOW - DAY, not_after=NOW + 90 * DAY)
    assert judge((leaf, pki.issuing.cert), trust, name="192.0.2.10")["cert.name-mismatch"].status is Status.PASS
    assert judge((leaf, pki.issuing.cert), trust, name="192.0.2.11")["cert.name-mismatch"].status is Status.FAIL


def test_an_unreadable_chain_gives_unknown_results_never_pass(trust) -> None:
    results = cert_checks.evaluate_chain(
        [b"not a certificate"],
        server_name=NAME,
        trust=trust,
        now=NOW,
        host=NAME,
        endpoint=ENDPOINT,
        vantage="workstation",
    )
    assert {r.status for r in results} == {Status.UNKNOWN}
    assert len(results) == len(CERT_CHECK_IDS)
    assert "certificate #1 of the chain cannot be parsed" in results[0].evidence[1].value
    with pytest.raises(certs.CertificateError, match="sent no certificate"):
        certs.analyse_chain([], server_name=NAME, trust=trust, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        certs.analyse_chain([b"x"], server_name=NAME, trust=trust, now=NOW.replace(tzinfo=None))


def test_ca_files_load_as_pem_or_der_and_bad_ones_say_why(tmp_path, pki: LabPKI) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_bytes(pki.root.cert_pem + pki.issuing.cert_pem)
    der_file = tmp_path / "ca.cer"
    der_file.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.DER))
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"hello")
    assert [c.subject for c in certs.load_ca_file(pem)] == [pki.root.cert.subject, pki.issuing.cert.subject]
    assert certs.load_ca_file(der_file) == (pki.root.cert,)
    with pytest.raises(certs.CertificateError, match="neither PEM certificates nor a DER certificate"):
        certs.load_ca_file(junk)
    with pytest.raises(certs.CertificateError, match="cannot read"):
        certs.load_ca_file(tmp_path / "missing.pem")
    store = certs.workstation_trust([pem], include_system=False)
    assert store.label == f"{pem} (2 certificates)"
    assert len(store.roots) == 2


def test_a_hosts_trust_store_is_built_once_per_version_of_its_ca_file(tmp_path, pki: LabPKI) -> None:
    """Hundreds of hosts name the same CA file: one store (and one subject index) for all of them,
    until the file on disk changes."""
    pem = tmp_path / "corp-ca.pem"
    pem.write_bytes(pki.root.cert_pem)
    target = HostTarget(name="rdsh01.corp.example", address="10.0.0.1", roles=(Role.SESSION_HOST,), ca_file=str(pem))
    first = workstation.trust_for(target)
    assert workstation.trust_for(dataclasses.replace(target, name="rdsh02.corp.example")) is first
    assert first.roots[-1] == pki.root.cert
    assert first.label.endswith(f"{pem} (1 certificates)")
    pem.write_bytes(pki.root.cert_pem + pki.issuing.cert_pem)
    second = workstation.trust_for(target)
    assert second is not first
    assert second.roots[-2:] == (pki.root.cert, pki.issuing.cert)
    pem.unlink()
    with pytest.raises(certs.CertificateError, match="cannot read"):
        workstation.trust_for(target)


def test_a_host_whose_ca_file_cannot_be_read_is_judged_against_system_roots_and_says_so(tmp_path) -> None:
    with socket.socket() as unused:  # a port nothing listens on: the probe ends at once
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    missing = tmp_path / "gone.pem"
    target = HostTarget(
        name="rdsh01.corp.example", address="127.0.0.1", roles=(Role.SESSION_HOST,), ca_file=str(missing), rdp_port=port
    )
    endpoints, _results = workstation.probe_endpoints(target)
    [endpoint] = endpoints.values()
    assert endpoint["trust_problem"].startswith(f"the CA file {missing} could not be read (cannot read {missing}")
    assert endpoint["trust_problem"].endswith("judged against system roots only")
    assert endpoint["trust"] == workstation.trust_for(dataclasses.replace(target, ca_file="")).label
    assert endpoint["trust"].startswith("system store (")


def test_the_system_store_is_found(monkeypatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    roots, source = certs.system_roots()
    assert source in (*certs.SYSTEM_BUNDLES, "/usr/lib/ssl/cert.pem")
    assert len(roots) > 50
    store = certs.workstation_trust()
    assert store.label.startswith(f"system store ({source}, ")


def test_a_system_bundle_read_by_many_hosts_at_once_passes_on_no_deprecation_warning(
    tmp_path, monkeypatch, pki: LabPKI
) -> None:
    """The first hosts of a run load the bundle together; the warning a pre-RFC 5280 root raises
    must stay hidden for all of them (``catch_warnings`` is process-wide, not per thread)."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.root.cert_pem)
    parse = certs.load_pem_certificates
    calls = []

    def legacy_root(data: bytes, source: str):
        calls.append(source)
        time.sleep(0.01 if len(calls) == 1 else 0.05)  # the first reader is done while the others still parse
        warnings.warn("Parsed a serial number which wasn't positive", CryptographyDeprecationWarning, stacklevel=1)
        return parse(data, source)

    monkeypatch.setattr(certs, "load_pem_certificates", legacy_root)
    certs._system_bundle.cache_clear()
    loaded = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=lambda: loaded.append(certs._system_bundle(str(bundle)))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    certs._system_bundle.cache_clear()
    assert [w.message for w in caught] == []
    assert len(loaded) == 4 and {c[0].subject for c in loaded} == {pki.root.cert.subject}
