"""Certificate chain analysis: a chain as an endpoint sent it, judged against a trust store.

Capture and judgement stay apart. Probes capture the chain as sent (DER, verification off, so an
untrusted chain is still seen); this module parses it, builds the path the way a Windows client
does (each issuer found by name *and* signature among the certificates sent and the trust
anchors), and runs RFC 5280 path validation with ``cryptography.x509.verification``. The result is
a ``ChainAnalysis`` of facts; ``collector.checks.certs`` turns it into ``cert.*`` check results.

Analysis is pure: it takes ``now`` and the trust store as parameters. The only I/O here is in the
trust-store loaders at the bottom (system bundle, CA files), which callers run at the edge.

Trust is always *someone's*: the workstation's system store plus an inventory CA bundle answer
"does the workstation trust this endpoint"; a client's own root store (collected over WinRM) passed
as ``roots`` answers the question that decides a 0x904: "would this client trust it".
"""

from __future__ import annotations

import datetime
import enum
import functools
import hashlib
import ipaddress
import os
import ssl
import sys
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAX_PATH_LENGTH = 8
"""Longest path we build (leaf to anchor); real RDS chains have 2 to 4 certificates."""

WEAK_SIGNATURE_HASHES = frozenset({"md2", "md4", "md5", "sha1"})
"""Signature hashes with practical collisions: CAs stopped issuing them, validators refuse them."""

MIN_KEY_BITS = {"RSA": 2048, "DSA": 2048, "EC": 256}
"""Smallest key sizes current CA/Browser Forum rules and Windows' weak-key policy accept."""

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "Server Authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "Client Authentication",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "Code Signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "Secure Email",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "Time Stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSP Signing",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string: "Any Purpose",
    "1.3.6.1.4.1.311.54.1.2": "Remote Desktop Authentication",
}
SERVER_AUTH_OIDS = frozenset(
    {ExtendedKeyUsageOID.SERVER_AUTH.dotted_string, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string}
)
"""EKUs that allow TLS server use (Windows also accepts its Remote Desktop Authentication EKU on
a session host listener; we report that by name but judge serverAuth, which gateways require)."""


def thumbprint(der: bytes) -> str:
    """How Windows names a certificate: SHA-1 of its DER, upper-case hex (an identifier, not security)."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


class CertificateError(ValueError):
    """A certificate or bundle that cannot be read; the message names the source."""


# --- one certificate, as facts ------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    """The facts of one certificate that a diagnosis needs, as an admin would look them up."""

    subject: str
    """Subject DN, most specific first (``CN=gw01.corp.example, O=Corp``), as Windows shows it."""
    issuer: str
    """Issuer DN in the same form."""
    common_name: str
    """The subject CN, or the whole subject when it has none."""
    thumbprint: str
    """SHA-1 of the DER, uppercase hex: what ``Get-ChildItem Cert:\\`` and RD Gateway Manager show."""
    serial: str
    """Serial number, uppercase hex."""
    not_before: datetime.datetime
    """Start of validity (UTC)."""
    not_after: datetime.datetime
    """End of validity (UTC)."""
    dns_names: tuple[str, ...]
    """subjectAltName dNSName entries (clients match the name they connect to against these)."""
    ip_addresses: tuple[str, ...]
    """subjectAltName iPAddress entries."""
    has_san: bool
    """Whether a subjectAltName extension is present at all (without one, only the CN is left)."""
    signature_algorithm: str
    """The issuer's signature algorithm, e.g. ``sha256WithRSAEncryption``."""
    signature_hash: str
    """Its hash (``sha1``, ``sha256``...), empty for algorithms with a built-in hash (Ed25519)."""
    key_type: str
    """``RSA``, ``EC``, ``DSA``, ``Ed25519`` or ``Ed448``."""
    key_bits: int
    """Key size in bits (the curve size for EC)."""
    is_ca: bool
    """basicConstraints CA:TRUE."""
    self_issued: bool
    """Subject equals issuer (a root, or a self-signed server certificate)."""
    self_signed: bool
    """Self-issued and its signature verifies with its own key."""
    eku: tuple[str, ...] | None
    """extendedKeyUsage OIDs (dotted), or None when the extension is absent (any purpose)."""
    aia_ca_issuers: tuple[str, ...]
    """Authority Information Access caIssuers URLs: where a client can fetch the issuer."""
    der: bytes = field(repr=False, compare=False)

    @property
    def validity(self) -> str:
        return f"{_fmt_time(self.not_before)} to {_fmt_time(self.not_after)}"

    @property
    def eku_names(self) -> tuple[str, ...]:
        return tuple(_EKU_NAMES.get(o, o) for o in self.eku or ())

    @property
    def key(self) -> str:
        return f"{self.key_type} {self.key_bits}" if self.key_bits else self.key_type


def _fmt_time(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _dn(name: x509.Name) -> str:
    """Most specific RDN first, comma and space separated, like the Windows certificate dialog."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def _key_facts(cert: x509.Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, 0


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # a malformed extension: treat as absent, the validator reports it
        return None


def cert_info(cert: x509.Certificate) -> CertInfo:
    """Facts of one parsed certificate."""
    san = _extension(cert, x509.SubjectAlternativeName)
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    if isinstance(san, x509.SubjectAlternativeName):
        dns_names = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
    eku_ext = _extension(cert, x509.ExtendedKeyUsage)
    eku = tuple(o.dotted_string for o in eku_ext) if isinstance(eku_ext, x509.ExtendedKeyUsage) else None
    bc = _extension(cert, x509.BasicConstraints)
    aia = _extension(cert, x509.AuthorityInformationAccess)
    urls: tuple[str, ...] = ()
    if isinstance(aia, x509.AuthorityInformationAccess):
        urls = tuple(
            str(d.access_location.value)
            for d in aia
            if d.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        )
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        hash_alg = cert.signature_hash_algorithm
        signature_hash = hash_alg.name if hash_alg is not None else ""
    except UnsupportedAlgorithm:
        signature_hash = "unknown"
    try:
        signature_algorithm = cert.signature_algorithm_oid._name
    except AttributeError:  # pragma: no cover - every OID object has _name in supported versions
        signature_algorithm = cert.signature_algorithm_oid.dotted_string
    key_type, key_bits = _key_facts(cert)
    der = cert.public_bytes(serialization.Encoding.DER)
    self_issued = cert.subject == cert.issuer
    return CertInfo(
        subject=_dn(cert.subject),
        issuer=_dn(cert.issuer),
        common_name=str(cns[0].value) if cns else _dn(cert.subject),
        thumbprint=thumbprint(der),
        serial=format(cert.serial_number, "X"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns_names,
        ip_addresses=ips,
        has_san=san is not None,
        signature_algorithm=signature_algorithm,
        signature_hash=signature_hash,
        key_type=key_type,
        key_bits=key_bits,
        is_ca=bool(isinstance(bc, x509.BasicConstraints) and bc.ca),
        self_issued=self_issued,
        self_signed=self_issued and issued_by(cert, cert),
        eku=eku,
        aia_ca_issuers=urls,
        der=der,
    )


def parse_chain(chain: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """DER certificates as sent; raises CertificateError naming the position of a bad one."""
    certs = []
    for i, der in enumerate(chain, 1):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise CertificateError(f"certificate #{i} of the chain cannot be parsed: {exc}") from None
    return tuple(certs)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` names and signed ``cert``: the test a client applies while building a path.

    The signature is checked by hand rather than with ``verify_directly_issued_by`` because that
    refuses SHA-1 and MD5; a legacy chain still *links*, and cert.weak-signature says why it is bad.
    """
    if cert.issuer != issuer.subject:
        return False
    try:
        key = issuer.public_key()
        hash_alg = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey):
            params = cert.signature_algorithm_parameters
            if not isinstance(params, padding.PKCS1v15 | padding.PSS) or hash_alg is None:
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, params, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            params = cert.signature_algorithm_parameters
            if not isinstance(params, ec.ECDSA):
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        elif isinstance(key, dsa.DSAPublicKey) and hash_alg is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, hash_alg)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def weak_signature(info: CertInfo) -> str | None:
    """Why this certificate's signature is weak, or None."""
    if info.signature_hash in WEAK_SIGNATURE_HASHES:
        return f"signed with {info.signature_algorithm} ({info.signature_hash.upper()})"
    return None


def weak_key(info: CertInfo) -> str | None:
    """Why this certificate's key is too small, or None."""
    minimum = MIN_KEY_BITS.get(info.key_type)
    if minimum is not None and info.key_bits < minimum:
        return f"{info.key_type} key of {info.key_bits} bits (at least {minimum} needed)"
    return None


# --- names --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameMatch:
    """How the name a client connects to compares with what the leaf certificate names."""

    server_name: str
    """The name the client connects to (the inventory name, sent as SNI)."""
    matched: bool
    """Whether a client that checks names accepts the certificate for ``server_name``."""
    via: str
    """What matched: ``subjectAltName DNS:x``, ``subject CN x (no subjectAltName)``, or empty."""
    presented: tuple[str, ...]
    """Every name the certificate presents (SAN entries, or the CN when there is no SAN)."""


def _dns_match(pattern: str, name: str) -> bool:
    """RFC 6125 matching: case-insensitive; a wildcard only as the whole leftmost label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]  # ".corp.example"
    head, _, rest = name.partition(".")
    return bool(head) and "." + rest == suffix and suffix.count(".") >= 2


def match_name(info: CertInfo, server_name: str) -> NameMatch:
    """Match like Windows: SAN first; only a certificate without any SAN falls back to the CN."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(server_name)
    except ValueError:
        ip = None
    if info.has_san:
        presented = tuple(f"DNS:{n}" for n in info.dns_names) + tuple(f"IP:{a}" for a in info.ip_addresses)
        if ip is not None:
            hit = next((a for a in info.ip_addresses if ipaddress.ip_address(a) == ip), None)
            via = f"subjectAltName IP:{hit}" if hit else ""
        else:
            hit = next((n for n in info.dns_names if _dns_match(n, server_name)), None)
            via = f"subjectAltName DNS:{hit}" if hit else ""
        return NameMatch(server_name, bool(via), via, presented)
    cn = info.common_name
    matched = ip is None and _dns_match(cn, server_name)
    via = f"subject CN {cn} (no subjectAltName)" if matched else ""
    return NameMatch(server_name, matched, via, (f"CN:{cn}",))


# --- the chain ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustStore:
    """Trust anchors and where they came from (named in every trust verdict)."""

    label: str
    """E.g. ``workstation system store (/etc/ssl/certs/ca-certificates.crt) + corp-ca.pem``."""
    roots: tuple[x509.Certificate, ...]

    @functools.cached_property
    def by_subject(self) -> Mapping[x509.Name, tuple[x509.Certificate, ...]]:
        """Anchors by subject: path building looks an issuer up instead of comparing it with every
        certificate of a system store (a few hundred) at each step."""
        index: dict[x509.Name, list[x509.Certificate]] = {}
        for root in self.roots:
            index.setdefault(root.subject, []).append(root)
        return {subject: tuple(found) for subject, found in index.items()}


class PathEnd(enum.StrEnum):
    """Where building the path from the leaf stopped."""

    TRUSTED = "trusted"
    """At a certificate in the trust store."""
    UNTRUSTED_ROOT = "untrusted-root"
    """At a self-signed certificate that is not in the trust store."""
    MISSING_ISSUER = "missing-issuer"
    """At a certificate whose issuer was neither sent nor found in the trust store."""
    TOO_LONG = "too-long"
    """Longer than MAX_PATH_LENGTH (a loop or an absurd chain)."""


@dataclass(frozen=True)
class ChainAnalysis:
    """Everything the cert.* checks decide from, for one chain seen from one vantage point."""

    server_name: str
    """The name the client connected to (SNI) and that the certificate must carry."""
    now: datetime.datetime
    """The moment validity was judged at."""
    trust_label: str
    """Which trust store the path was built against."""
    sent: tuple[CertInfo, ...]
    """The chain as the endpoint sent it, leaf first."""
    path: tuple[CertInfo, ...]
    """The path built from the leaf; ends with the trust anchor when ``path_end`` is TRUSTED."""
    path_end: PathEnd
    """Where path building stopped."""
    missing_issuer: str = ""
    """The issuer DN that could not be found (MISSING_ISSUER)."""
    missing_issuer_urls: tuple[str, ...] = ()
    """AIA caIssuers URLs of the certificate whose issuer is missing: where Windows would fetch it."""
    near_misses: tuple[str, ...] = ()
    """Certificates with the right issuer name whose key did not sign (a renewed CA, a wrong file)."""
    unused: tuple[CertInfo, ...] = ()
    """Certificates sent that are not on the path (not needed, or from another chain)."""
    order_problems: tuple[str, ...] = ()
    """How the sent order differs from leaf, issuer, issuer's issuer... (RFC 5246 7.4.2)."""
    name: NameMatch | None = None
    """The leaf against ``server_name``."""
    rfc5280_error: str | None = None
    """cryptography's RFC 5280 verdict on the path with time, name and EKU set aside (those have
    their own checks); None when it accepts the path or was not run (see ``rfc5280_note``)."""
    rfc5280_note: str = ""
    """Why RFC 5280 validation was not run or is not conclusive."""
    strict_error: str | None = None
    """cryptography's full server verification (now, name, serverAuth) message, None when it passes;
    the cert.untrusted check falls back on it when no other check explains a rejection."""

    @property
    def leaf(self) -> CertInfo:
        return self.sent[0]

    @property
    def anchor(self) -> CertInfo | None:
        return self.path[-1] if self.path_end is PathEnd.TRUSTED else None

    @property
    def judged(self) -> tuple[CertInfo, ...]:
        """The certificates whose own properties matter: the path (anchor included)."""
        return self.path


def _same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Same subject and key: a re-issued root with the same key is the same trust anchor."""
    if a.subject != b.subject:
        return False
    try:
        return a.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == b.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, UnsupportedAlgorithm):
        return a == b


def _label(info: CertInfo) -> str:
    return info.common_name


def _build_path(
    certs: Sequence[x509.Certificate], trust: TrustStore
) -> tuple[list[x509.Certificate], PathEnd, list[x509.Certificate]]:
    """(path, where it ended, certificates that carry the missing issuer's name but did not sign)."""
    path = [certs[0]]
    pool = list(certs[1:])
    while len(path) <= MAX_PATH_LENGTH:
        current = path[-1]
        if any(_same_cert(current, r) for r in trust.by_subject.get(current.subject, ())):
            return path, PathEnd.TRUSTED, []
        named_issuers = trust.by_subject.get(current.issuer, ())
        anchor = next((r for r in named_issuers if issued_by(current, r)), None)
        if anchor is not None:
            path.append(anchor)
            return path, PathEnd.TRUSTED, []
        if current.subject == current.issuer and issued_by(current, current):
            return path, PathEnd.UNTRUSTED_ROOT, []
        issuer = next((c for c in pool if not any(c is p for p in path) and issued_by(current, c)), None)
        if issuer is None:
            near = [c for c in (*pool, *named_issuers) if c.subject == current.issuer and c is not current]
            return path, PathEnd.MISSING_ISSUER, near
        path.append(issuer)
    return path, PathEnd.TOO_LONG, []


def _order_problems(sent: Sequence[CertInfo], path: Sequence[CertInfo]) -> list[str]:
    """Compare the sent order with the path order: extra certificates, duplicates, wrong order."""
    problems = []
    thumbs = [c.thumbprint for c in sent]
    for i, info in enumerate(sent):
        if info.thumbprint in thumbs[:i]:
            problems.append(f"#{i + 1} {_label(info)} is sent twice")
    on_path = {c.thumbprint for c in path}
    for i, info in enumerate(sent[1:], 2):
        if info.thumbprint not in on_path:
            problems.append(f"#{i} {_label(info)} is not on the path to the root (sent but not needed)")
    sent_on_path = [c for c in dict.fromkeys(thumbs[1:]) if c in on_path]
    expected = [c.thumbprint for c in path[1:] if c.thumbprint in sent_on_path]
    if sent_on_path != expected:
        by_thumb = {c.thumbprint: c for c in sent}
        problems.append(
            "sent as "
            + ", ".join(_label(by_thumb[t]) for t in [thumbs[0], *sent_on_path])
            + "; the order a client expects is "
            + ", ".join(_label(by_thumb[t]) for t in [thumbs[0], *expected])
        )
    return problems


def _short_error(exc: Exception) -> str:
    """cryptography's messages carry Rust debug output; keep the readable head."""
    text = str(exc).split(" (encountered processing", 1)[0].strip()
    return text if len(text) <= 240 else text[:237] + "..."


def _neutral_time(path: Sequence[x509.Certificate], now: datetime.datetime) -> datetime.datetime | None:
    """A moment when every certificate on the path is valid (``now`` if it is one), so RFC 5280
    judges structure, not dates; None when there is no such moment."""
    start = max(c.not_valid_before_utc for c in path)
    end = min(c.not_valid_after_utc for c in path)
    if start <= now <= end:
        return now
    if start <= end:
        return start + (end - start) / 2
    return None


def _subject(server_name: str) -> verification.DNSName | verification.IPAddress:
    try:
        return verification.IPAddress(ipaddress.ip_address(server_name))
    except ValueError:
        return verification.DNSName(server_name)


def _rfc5280(
    path: Sequence[x509.Certificate], intermediates: Sequence[x509.Certificate], at: datetime.datetime
) -> str | None:
    """RFC 5280 structure of the path (signatures, CA flags, key usage, path length), with the
    validity period, the name and the EKU set aside: those have their own checks."""
    ee_policy = (
        verification.ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, None)
        .may_be_present(x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None)
    )
    builder = (
        verification.PolicyBuilder()
        .store(verification.Store([path[-1]]))
        .time(at)
        .max_chain_depth(MAX_PATH_LENGTH)
        .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
    )
    try:
        builder.build_client_verifier().verify(path[0], list(intermediates))
    except verification.VerificationError as exc:
        return _short_error(exc)
    return None


def _strict(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    server_name: str,
    now: datetime.datetime,
) -> str | None:
    """Full server verification as a strict client does it; None when it passes."""
    if not roots:
        return "no trust anchors"
    try:
        subject = _subject(server_name)
    except ValueError as exc:
        return f"{server_name!r} is not a DNS name or IP address: {exc}"
    builder = (
        verification.PolicyBuilder().store(verification.Store(list(roots))).time(now).max_chain_depth(MAX_PATH_LENGTH)
    )
    try:
        builder.build_server_verifier(subject).verify(leaf, list(intermediates))
    except verification.VerificationError as exc:
        return _short_error(exc)
    return None


def analyse_chain(
    chain: Sequence[bytes | x509.Certificate],
    *,
    server_name: str,
    trust: TrustStore,
    now: datetime.datetime,
) -> ChainAnalysis:
    """Analyse a chain as sent (leaf first, DER or parsed) for ``server_name`` at ``now``.

    Raises CertificateError for an empty chain or one that cannot be parsed.
    """
    if not chain:
        raise CertificateError("the endpoint sent no certificate")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    certs = tuple(c if isinstance(c, x509.Certificate) else parse_chain([c])[0] for c in chain)
    infos: dict[int, CertInfo] = {}

    def info(c: x509.Certificate) -> CertInfo:
        if id(c) not in infos:
            infos[id(c)] = cert_info(c)
        return infos[id(c)]

    sent = tuple(info(c) for c in certs)
    path, end, near = _build_path(certs, trust)
    path_infos = tuple(info(c) for c in path)
    on_path = {i.thumbprint for i in path_infos}
    unused = tuple(i for i in sent[1:] if i.thumbprint not in on_path)

    rfc5280_error: str | None = None
    note = ""
    if end is not PathEnd.TRUSTED:
        note = "no path to a trusted root, so RFC 5280 validation was not run"
    elif len(path) == 1:
        note = "the certificate itself is a trust anchor; there is no path to validate"
    elif any(weak_signature(i) for i in path_infos[:-1]) or any(weak_key(i) for i in path_infos):
        note = (
            "cryptography's RFC 5280 validator refuses weak signatures and keys outright; the path was "
            "built by signature checks only (see cert.weak-signature, cert.weak-key)"
        )
    elif (at := _neutral_time(path, now)) is None:
        note = "no moment at which every certificate on the path is valid (see cert.expired)"
    else:
        rfc5280_error = _rfc5280(path, certs[1:], at)

    return ChainAnalysis(
        server_name=server_name,
        now=now,
        trust_label=trust.label,
        sent=sent,
        path=path_infos,
        path_end=end,
        missing_issuer=_dn(path[-1].issuer) if end is PathEnd.MISSING_ISSUER else "",
        missing_issuer_urls=path_infos[-1].aia_ca_issuers if end is PathEnd.MISSING_ISSUER else (),
        near_misses=tuple(
            f"{info(c).subject} (thumbprint {info(c).thumbprint}) has the issuer's name, "
            f"but its key did not sign {path_infos[-1].common_name}"
            for c in near
        ),
        unused=unused,
        order_problems=tuple(_order_problems(sent, path_infos)),
        name=match_name(sent[0], server_name),
        rfc5280_error=rfc5280_error,
        rfc5280_note=note,
        strict_error=_strict(certs[0], certs[1:], trust.roots, server_name, now),
    )


# --- trust stores (I/O at the edge) -------------------------------------------------------------

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


def load_pem_certificates(data: bytes, source: str) -> tuple[x509.Certificate, ...]:
    """Every certificate in a PEM bundle; raises CertificateError naming ``source`` if none parse.

    A bundle is parsed block by block, so one certificate cryptography refuses (they exist in
    system stores) does not cost the others.
    """
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        pass
    certs = []
    for block in data.split(_PEM_BEGIN)[1:]:
        try:
            certs.append(x509.load_pem_x509_certificate(_PEM_BEGIN + block))
        except ValueError:
            continue
    if not certs:
        raise CertificateError(f"{source}: no PEM certificate found")
    return tuple(certs)


def load_ca_file(path: str | os.PathLike[str]) -> tuple[x509.Certificate, ...]:
    """A CA bundle from a file (PEM, or a single DER certificate as Windows exports it)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc.strerror or exc}") from None
    if _PEM_BEGIN not in data:
        try:
            return (x509.load_der_x509_certificate(data),)
        except ValueError:
            raise CertificateError(f"{path}: neither PEM certificates nor a DER certificate") from None
    return load_pem_certificates(data, str(path))


SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora
    "/etc/ssl/cert.pem",  # macOS, BSD
)


def system_roots() -> tuple[tuple[x509.Certificate, ...], str]:
    """The workstation's trust anchors and where they came from.

    OpenSSL's configured bundle (``SSL_CERT_FILE``, ``ssl.get_default_verify_paths()``) first, then
    the usual distribution paths; on Windows the LocalMachine Root store. Empty when none is found.
    """
    if sys.platform == "win32" and hasattr(ssl, "enum_certificates"):
        roots = []
        for der, encoding, _trust in ssl.enum_certificates("ROOT"):
            if encoding == "x509_asn":
                try:
                    roots.append(x509.load_der_x509_certificate(der))
                except ValueError:
                    continue
        return tuple(roots), "Windows Root store"
    paths = ssl.get_default_verify_paths()
    candidates: Iterable[str | None] = (
        os.environ.get(paths.openssl_cafile_env),
        paths.cafile,
        paths.openssl_cafile,
        *SYSTEM_BUNDLES,
    )
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            try:
                return _system_bundle(candidate), candidate
            except (OSError, CertificateError):
                continue
    return (), "no system CA bundle found"


_SYSTEM_BUNDLE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _system_bundle(path: str) -> tuple[x509.Certificate, ...]:
    """Parsed once per process. System bundles carry a few roots that predate RFC 5280's rules
    (a negative serial number); cryptography warns about those, which says nothing about the
    endpoint being judged, so the warning is not passed on. The first hosts of a run ask for the
    bundle at once, and ``catch_warnings`` swaps process-wide state: one thread at a time."""
    with _SYSTEM_BUNDLE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return load_pem_certificates(Path(path).read_bytes(), path)


def workstation_trust(
    ca_files: Sequence[str | os.PathLike[str]] = (),
    *,
    roots: Sequence[x509.Certificate] = (),
    roots_label: str = "",
    include_system: bool = True,
) -> TrustStore:
    """The trust store for a vantage point: system roots, CA files (internal PKI) and given roots.

    ``roots`` is for anchors collected elsewhere, e.g. a client's own Root store over WinRM; with
    ``include_system=False`` they alone decide, which is the question "would *that* client trust it".
    Raises CertificateError when a CA file cannot be read.
    """
    parts = []
    anchors: list[x509.Certificate] = []
    if include_system:
        system, source = system_roots()
        anchors += system
        parts.append(f"system store ({source}, {len(system)} roots)")
    for path in ca_files:
        loaded = load_ca_file(path)
        anchors += loaded
        parts.append(f"{path} ({len(loaded)} certificates)")
    if roots:
        anchors += roots
        parts.append(f"{roots_label or 'given roots'} ({len(roots)} certificates)")
    return TrustStore(label=" + ".join(parts) or "no trust anchors", roots=tuple(anchors))
