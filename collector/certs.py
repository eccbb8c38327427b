"""Certificate chain analysis: a chain as an endpoint sent it, judged against a trust store.

Capture and judgement stay apart. Probes capture the chain as sent (DER, verification off, so an
untrusted chain is still seen); this module parses it, builds the path the way a Windows client
does (each issuer found by name *and* signature among the certificates sent and the trust
anchors), and runs RFC 5280 path validation with ``cryptography.x509.verification``. The result is
a ``ChainAnalysis`` of facts; ``collector.checks.certs`` turns it into ``cert.*`` check results.

Every certificate is read in full once, by ``read_certificate``: the one place cryptography's
parser meets what endpoints, hosts and CA files send. A certificate it cannot read (a duplicated
extension, an invalid version, a malformed name) becomes a reason in words there, and everything
after works on the values read, so no later step meets a parsing exception.

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
import re
import ssl
import sys
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
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


SignatureParameters = padding.PSS | padding.PKCS1v15 | ec.ECDSA | None


@dataclass(frozen=True, eq=False)
class ReadCertificate:
    """A certificate read in full by ``read_certificate``: every property later code uses, already read.

    cryptography parses a certificate's fields when they are first read, and a malformed field
    raises then, wherever that happens to be. Path building, the ``cert.*`` checks and the report
    views therefore work on this object only: plain values, read once, in one guarded step.
    Compared by identity (path building asks "is this the same certificate object").
    """

    info: CertInfo
    """The facts the checks and views state."""
    subject: x509.Name
    """The subject as read (for matching issuer names while building a path)."""
    issuer: x509.Name
    subject_rfc4514: str
    """``subject`` as RFC 4514 prints it, least specific RDN last (``CN=gw01,O=Corp``)."""
    issuer_rfc4514: str
    subject_cn: str
    """The subject's first CN; empty when it has none (``info.common_name`` then shows the subject)."""
    public_key: CertificatePublicKeyTypes | None
    """None when cryptography does not support the key's algorithm (``info.key_type`` is then "unknown")."""
    spki: bytes
    """SubjectPublicKeyInfo DER; empty when ``public_key`` is None."""
    tbs: bytes
    """The signed part (TBSCertificate DER)."""
    signature: bytes
    signature_hash_algorithm: hashes.HashAlgorithm | None
    """None for algorithms with a built-in hash, or one cryptography does not support."""
    signature_parameters: SignatureParameters
    """Padding (RSA) or ECDSA parameters; None when none apply or they cannot be used."""
    certificate: x509.Certificate = field(repr=False)
    """cryptography's object, only to hand to its RFC 5280 validator (which reads the DER itself)."""

    @property
    def der(self) -> bytes:
        return self.info.der

    @property
    def thumbprint(self) -> str:
        return self.info.thumbprint


@dataclass(frozen=True)
class UnreadableCertificate:
    """A certificate that could not be read, and why (in words an admin can act on)."""

    reason: str
    """E.g. ``duplicated extension 2.5.29.17 (subjectAltName)``, ``invalid X.509 version 5 (...)``."""
    thumbprint: str
    """SHA-1 of the bytes received, as Windows would name the certificate; empty when there were none."""
    der: bytes = field(repr=False)


def read_certificate(source: bytes | x509.Certificate) -> ReadCertificate | UnreadableCertificate:
    """Load a certificate (DER, or one cryptography has loaded) and read every property any later
    code uses, in one guarded step: subject and issuer (and their RFC 4514 and Windows forms),
    serial, validity, public key and its size, signature algorithm, hash and parameters, the
    signed bytes, and every extension with its value (subjectAltName, extendedKeyUsage,
    basicConstraints, keyUsage, authorityInfoAccess... all are parsed when the list is read).

    This is the trust boundary for certificates: what endpoints send, what hosts report in their
    probe data and what CA files hold all pass through here. cryptography refuses malformed
    certificates with several exception types (ValueError, ``x509.InvalidVersion``,
    ``x509.DuplicateExtension``, ``x509.UnsupportedGeneralNameType``...), some at load time and
    some only when a property is first read, and which depends on its version; so ``Exception``
    is caught broadly here, and only here, and becomes the reason in words. Everything after
    this step works on plain values and cannot meet those exceptions.

    An algorithm cryptography does not support (a key type, a signature algorithm) is not a
    malformed certificate: it is read as ``unknown``, as before, and the checks say so.
    """
    step = "DER"
    der = source if isinstance(source, bytes) else b""
    try:
        if isinstance(source, x509.Certificate):
            cert = source
            der = cert.public_bytes(serialization.Encoding.DER)
        else:
            der = bytes(source)
            cert = x509.load_der_x509_certificate(der)
        step = "version"
        _ = cert.version
        step = "serial number"
        serial = format(cert.serial_number, "X")
        step = "subject"
        subject = cert.subject
        subject_rfc4514, subject_dn = subject.rfc4514_string(), _dn(subject)
        cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        subject_cn = str(cns[0].value) if cns else ""
        step = "issuer"
        issuer = cert.issuer
        issuer_rfc4514, issuer_dn = issuer.rfc4514_string(), _dn(issuer)
        step = "validity"
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        step = "public key"
        public_key, key_type, key_bits, spki = _read_key(cert)
        step = "signature algorithm"
        signature_algorithm = getattr(cert.signature_algorithm_oid, "_name", "") or (
            cert.signature_algorithm_oid.dotted_string
        )
        hash_algorithm, signature_hash, parameters = _read_signature_algorithm(cert)
        tbs, signature = cert.tbs_certificate_bytes, cert.signature
        step = "extensions"
        extensions = {type(e.value): e.value for e in cert.extensions}
        step = "subjectAltName"
        san = extensions.get(x509.SubjectAlternativeName)
        dns_names: tuple[str, ...] = ()
        ips: tuple[str, ...] = ()
        if isinstance(san, x509.SubjectAlternativeName):
            dns_names = tuple(san.get_values_for_type(x509.DNSName))
            ips = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
        step = "extendedKeyUsage"
        eku_ext = extensions.get(x509.ExtendedKeyUsage)
        eku = tuple(o.dotted_string for o in eku_ext) if isinstance(eku_ext, x509.ExtendedKeyUsage) else None
        step = "basicConstraints"
        bc = extensions.get(x509.BasicConstraints)
        is_ca = bool(isinstance(bc, x509.BasicConstraints) and bc.ca)
        step = "authorityInfoAccess"
        aia = extensions.get(x509.AuthorityInformationAccess)
        urls: tuple[str, ...] = ()
        if isinstance(aia, x509.AuthorityInformationAccess):
            urls = tuple(
                str(d.access_location.value)
                for d in aia
                if d.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS
                and isinstance(d.access_location, x509.UniformResourceIdentifier)
            )
    except Exception as exc:  # the trust boundary (see the docstring): any failure here is a reason
        return UnreadableCertificate(_why_unreadable(step, exc), thumbprint(der) if der else "", der)
    self_issued = subject == issuer
    info = CertInfo(
        subject=subject_dn,
        issuer=issuer_dn,
        common_name=subject_cn or subject_dn,
        thumbprint=thumbprint(der),
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        dns_names=dns_names,
        ip_addresses=ips,
        has_san=san is not None,
        signature_algorithm=signature_algorithm,
        signature_hash=signature_hash,
        key_type=key_type,
        key_bits=key_bits,
        is_ca=is_ca,
        self_issued=self_issued,
        self_signed=self_issued and _verifies(public_key, tbs, signature, hash_algorithm, parameters),
        eku=eku,
        aia_ca_issuers=urls,
        der=der,
    )
    return ReadCertificate(
        info=info,
        subject=subject,
        issuer=issuer,
        subject_rfc4514=subject_rfc4514,
        issuer_rfc4514=issuer_rfc4514,
        subject_cn=subject_cn,
        public_key=public_key,
        spki=spki,
        tbs=tbs,
        signature=signature,
        signature_hash_algorithm=hash_algorithm,
        signature_parameters=parameters,
        certificate=cert,
    )


def _read_key(cert: x509.Certificate) -> tuple[CertificatePublicKeyTypes | None, str, int, bytes]:
    """(key, type, bits, SubjectPublicKeyInfo DER); a key cryptography does not support is "unknown"."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None, "unknown", 0, b""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RSA", key.key_size, spki
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key, "EC", key.curve.key_size, spki
    if isinstance(key, dsa.DSAPublicKey):
        return key, "DSA", key.key_size, spki
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, "Ed25519", 256, spki
    if isinstance(key, ed448.Ed448PublicKey):
        return key, "Ed448", 456, spki
    return key, type(key).__name__, 0, spki


def _read_signature_algorithm(
    cert: x509.Certificate,
) -> tuple[hashes.HashAlgorithm | None, str, SignatureParameters]:
    """(hash algorithm, its name, parameters); an algorithm cryptography does not support is "unknown"."""
    try:
        hash_algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None, "unknown", None
    try:
        parameters = cert.signature_algorithm_parameters
    except (ValueError, UnsupportedAlgorithm):  # e.g. RSA-PSS parameters it cannot use: no signature links
        parameters = None
    return hash_algorithm, hash_algorithm.name if hash_algorithm is not None else "", parameters


_ASN1_PROBLEM = re.compile(r"ParseError \{ kind: (?P<kind>\w+).*?(?:location: \[(?P<where>[^\]]*)\])?\s*\}\s*$")


def _asn1_words(exc: Exception, step: str) -> str:
    """cryptography's message in words: its Rust parser's debug output becomes what and where."""
    text = str(exc)
    if "does not appear to be an IPv4 or IPv6 address" in text:
        return "an iPAddress name that is neither an IPv4 nor an IPv6 address"
    found = _ASN1_PROBLEM.search(text)
    if found is None:
        words = _short_error(exc) or type(exc).__name__
        return words if isinstance(exc, ValueError) else f"{type(exc).__name__}: {words}"
    kind = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", found["kind"]).lower()  # InvalidValue -> invalid value
    places = [p.strip().strip('"') for p in (found["where"] or "").split(",")]
    places = [p for p in places if p and not p.isdigit() and p != step]
    attribute = next((p.split("::", 1)[1] for p in places if p.startswith("AttributeValue::")), "")
    if attribute:
        return f"a name attribute holds an invalid {attribute} value (malformed DER: {kind})"
    return f"malformed DER: {kind}" + (f" in {' > '.join(places)}" if places else "")


def _why_unreadable(step: str, exc: Exception) -> str:
    """Why a certificate could not be read, in words; ``step`` is what was being read."""
    if isinstance(exc, x509.InvalidVersion):
        return f"invalid X.509 version {exc.parsed_version} (only 0, 1 and 2 exist: v1, v2 and v3)"
    if isinstance(exc, x509.DuplicateExtension):
        name = getattr(exc.oid, "_name", "")
        known = f" ({name})" if name and not name.startswith("Unknown") else ""
        return f"duplicated extension {exc.oid.dotted_string}{known}"
    if isinstance(exc, x509.UnsupportedGeneralNameType):
        return f"its {step} hold a general name of a type that cannot be read ({exc})"
    words = _asn1_words(exc, step)
    return words if step == "DER" else f"its {step} cannot be read ({words})"


def _verifies(
    key: CertificatePublicKeyTypes | None,
    tbs: bytes,
    signature: bytes,
    hash_algorithm: hashes.HashAlgorithm | None,
    parameters: SignatureParameters,
) -> bool:
    """Whether ``key`` made ``signature`` over ``tbs`` (the read parts of a certificate)."""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if not isinstance(parameters, padding.PKCS1v15 | padding.PSS) or hash_algorithm is None:
                return False
            key.verify(signature, tbs, parameters, hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(parameters, ec.ECDSA):
                return False
            key.verify(signature, tbs, parameters)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, tbs)
        elif isinstance(key, dsa.DSAPublicKey) and hash_algorithm is not None:
            key.verify(signature, tbs, hash_algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def cert_info(cert: x509.Certificate) -> CertInfo:
    """Facts of one parsed certificate; raises CertificateError (with the reason) if it cannot be read."""
    read = read_certificate(cert)
    if isinstance(read, UnreadableCertificate):
        raise CertificateError(f"the certificate cannot be parsed: {read.reason}")
    return read.info


class UnreadableChainError(CertificateError):
    """A chain holding a certificate that cannot be read: which one (1 = the leaf) and why."""

    def __init__(self, position: int, unreadable: UnreadableCertificate) -> None:
        super().__init__(f"certificate #{position} of the chain cannot be parsed: {unreadable.reason}")
        self.position = position
        self.unreadable = unreadable


def read_chain(chain: Sequence[bytes | x509.Certificate | ReadCertificate]) -> tuple[ReadCertificate, ...]:
    """A chain as sent, each certificate read in full (``read_certificate``); raises
    UnreadableChainError naming the first certificate that cannot be read and why."""
    read = []
    for position, item in enumerate(chain, 1):
        one = item if isinstance(item, ReadCertificate) else read_certificate(item)
        if isinstance(one, UnreadableCertificate):
            raise UnreadableChainError(position, one)
        read.append(one)
    return tuple(read)


def parse_chain(chain: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """DER certificates as sent; raises CertificateError naming the position of a bad one.

    Kept for callers that hand certificates to cryptography themselves: each is read in full
    first (``read_chain``), so a certificate returned here can no longer raise when read."""
    return tuple(r.certificate for r in read_chain(chain))


def describe_der(der: bytes) -> str:
    """One line naming a certificate by its DER, never raising: ``subject, issued by issuer,
    thumbprint T`` (RFC 4514 names), or what could not be read and the thumbprint."""
    read = read_certificate(der)
    if isinstance(read, UnreadableCertificate):
        return f"an unreadable certificate ({read.reason}), thumbprint {read.thumbprint or 'none'}"
    return f"{read.subject_rfc4514}, issued by {read.issuer_rfc4514}, thumbprint {read.thumbprint}"


def issuer_of_der(der: bytes) -> str:
    """The issuer of a certificate by its DER (RFC 4514), never raising: why, when it cannot be read."""
    read = read_certificate(der)
    if isinstance(read, UnreadableCertificate):
        return f"an issuer that cannot be read ({read.reason})"
    return read.issuer_rfc4514


def issued_by(cert: x509.Certificate | ReadCertificate, issuer: x509.Certificate | ReadCertificate) -> bool:
    """Whether ``issuer`` names and signed ``cert``: the test a client applies while building a path.

    The signature is checked by hand rather than with ``verify_directly_issued_by`` because that
    refuses SHA-1 and MD5; a legacy chain still *links*, and cert.weak-signature says why it is bad.
    A certificate that cannot be read links to nothing.
    """
    child = cert if isinstance(cert, ReadCertificate) else read_certificate(cert)
    parent = issuer if isinstance(issuer, ReadCertificate) else read_certificate(issuer)
    if not isinstance(child, ReadCertificate) or not isinstance(parent, ReadCertificate):
        return False
    if child.issuer != parent.subject:
        return False
    return _verifies(
        parent.public_key, child.tbs, child.signature, child.signature_hash_algorithm, child.signature_parameters
    )


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
    def anchors(self) -> tuple[ReadCertificate, ...]:
        """The roots, each read in full once per store; a root that cannot be read anchors nothing
        and is left out (as a PEM block that does not parse is left out of a bundle).

        Reading a system root that predates RFC 5280 (a negative serial number) makes cryptography
        warn, which says nothing about the endpoint being judged: hidden, as when the bundle is
        loaded, one thread at a time (``catch_warnings`` swaps process-wide state)."""
        with _SYSTEM_BUNDLE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return tuple(r for r in map(read_certificate, self.roots) if isinstance(r, ReadCertificate))

    @functools.cached_property
    def by_subject(self) -> Mapping[x509.Name, tuple[ReadCertificate, ...]]:
        """Anchors by subject: path building looks an issuer up instead of comparing it with every
        certificate of a system store (a few hundred) at each step."""
        index: dict[x509.Name, list[ReadCertificate]] = {}
        for root in self.anchors:
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


def _same_cert(a: ReadCertificate, b: ReadCertificate) -> bool:
    """Same subject and key: a re-issued root with the same key is the same trust anchor."""
    if a.subject != b.subject:
        return False
    if a.spki and b.spki:
        return a.spki == b.spki
    return a.der == b.der


def _label(info: CertInfo) -> str:
    return info.common_name


def _build_path(
    certs: Sequence[ReadCertificate], trust: TrustStore
) -> tuple[list[ReadCertificate], PathEnd, list[ReadCertificate]]:
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
        if current.info.self_signed:
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


def _neutral_time(path: Sequence[CertInfo], now: datetime.datetime) -> datetime.datetime | None:
    """A moment when every certificate on the path is valid (``now`` if it is one), so RFC 5280
    judges structure, not dates; None when there is no such moment."""
    start = max(c.not_before for c in path)
    end = min(c.not_after for c in path)
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
    chain: Sequence[bytes | x509.Certificate | ReadCertificate],
    *,
    server_name: str,
    trust: TrustStore,
    now: datetime.datetime,
) -> ChainAnalysis:
    """Analyse a chain as sent (leaf first: DER, parsed, or read) for ``server_name`` at ``now``.

    Raises CertificateError for an empty chain, and UnreadableChainError (a CertificateError) for
    one with a certificate that cannot be read in full, naming which and why; nothing else a
    certificate's content can cause escapes.
    """
    if not chain:
        raise CertificateError("the endpoint sent no certificate")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    certs = read_chain(chain)
    sent = tuple(c.info for c in certs)
    path, end, near = _build_path(certs, trust)
    path_infos = tuple(c.info for c in path)
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
    elif (at := _neutral_time(path_infos, now)) is None:
        note = "no moment at which every certificate on the path is valid (see cert.expired)"
    else:
        rfc5280_error = _rfc5280([c.certificate for c in path], [c.certificate for c in certs[1:]], at)

    return ChainAnalysis(
        server_name=server_name,
        now=now,
        trust_label=trust.label,
        sent=sent,
        path=path_infos,
        path_end=end,
        missing_issuer=path_infos[-1].issuer if end is PathEnd.MISSING_ISSUER else "",
        missing_issuer_urls=path_infos[-1].aia_ca_issuers if end is PathEnd.MISSING_ISSUER else (),
        near_misses=tuple(
            f"{c.info.subject} (thumbprint {c.info.thumbprint}) has the issuer's name, "
            f"but its key did not sign {path_infos[-1].common_name}"
            for c in near
        ),
        unused=unused,
        order_problems=tuple(_order_problems(sent, path_infos)),
        name=match_name(sent[0], server_name),
        rfc5280_error=rfc5280_error,
        rfc5280_note=note,
        strict_error=_strict(
            certs[0].certificate,
            [c.certificate for c in certs[1:]],
            [a.certificate for a in trust.anchors],
            server_name,
            now,
        ),
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
