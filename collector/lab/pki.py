"""A throwaway PKI for the lab: CAs, intermediates and server certificate chains, good and broken.

The lab's WinRM HTTPS endpoints must be verifiable the way a real estate is (CA file, SAN, EKU),
so tests exercise certificate validation and channel binding instead of switching them off. The
lab's gateway and session host endpoints serve *named variants* (``variant_chain``): the chains
admins actually meet in the field (expired, wrong name, self-signed, SHA-1, RSA-1024, missing
intermediate, wrong order, no serverAuth EKU, an SSL-inspection CA), one defect each, so every
certificate check can be shown to catch its own case and only that. ``malformed_chain`` gives a
good chain one certificate that breaks an X.509 rule yet is properly signed (``MALFORMED_VARIANTS``:
a duplicated extension, version 5, a malformed name or subjectAltName).

Keys are EC P-256 unless a variant needs RSA: generating them is fast enough to do per test run,
and nothing is persisted.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Back-date validity a little so a test host whose clock is slightly behind still accepts the chain.
_CLOCK_SKEW = datetime.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rdp-collector lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _utc_now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """CA: keyCertSign + cRLSign (RFC 5280 validators insist); leaf: what a TLS server key does."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


@dataclass(frozen=True)
class LabCA:
    """A CA (root or intermediate); a root's ``cert_pem`` is what a client uses as its trust anchor."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(
        cls,
        common_name: str = "rdp-collector lab CA",
        days: int = 3650,
        *,
        path_length: int | None = 0,
        key: PrivateKey | None = None,
        now: datetime.datetime | None = None,
    ) -> LabCA:
        """A self-signed root that RFC 5280 path validation accepts (critical CA:TRUE and keyCertSign).

        ``path_length=0`` (the default) allows no intermediate below it; pass ``None`` or 1 for a
        root that issues intermediates.
        """
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = _utc_now(now)
        name = _name(common_name)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key)

    def issue_intermediate(
        self,
        common_name: str,
        days: int = 1825,
        *,
        key: PrivateKey | None = None,
        aia_url: str | None = None,
        now: datetime.datetime | None = None,
    ) -> LabCA:
        """An issuing CA below this one (pathLen 0: it issues leaves only)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = _utc_now(now)
        public = key.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if aia_url:
            builder = builder.add_extension(_aia(aia_url), critical=False)
        return LabCA(cert=builder.sign(self.key, hashes.SHA256()), key=key)

    def issue_leaf(
        self,
        names: Sequence[str],
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        *,
        not_before: datetime.datetime,
        not_after: datetime.datetime,
        eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
        signature_hash: str = "sha256",
        aia_url: str | None = None,
    ) -> x509.Certificate:
        """A TLS server certificate for ``names`` (SAN; the first is the CN); ``eku=None`` omits EKU.

        ``signature_hash`` "sha1" or "md5" needs an RSA issuer: cryptography no longer signs with
        them, so the certificate is signed with SHA-256 and re-signed (``_resign``).
        """
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if aia_url:
            builder = builder.add_extension(_aia(aia_url), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        if signature_hash != "sha256":
            cert = _resign(cert, self.key, signature_hash)
        return cert

    def issue_server(
        self, dns_names: list[str], ip_addresses: list[str] | None = None, days: int = 365
    ) -> tuple[bytes, bytes]:
        """Issue a TLS server certificate; returns (certificate chain PEM, private key PEM).

        The chain is leaf then CA, as a Windows listener would present it. The first DNS name (or
        else the first address) becomes the subject CN; clients match names against the SAN only.
        """
        ips = list(ip_addresses or [])
        if not dns_names and not ips:
            raise ValueError("a server certificate needs at least one DNS name or IP address")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = self.issue_leaf(
            [*dns_names, *ips],
            key.public_key(),
            not_before=now - _CLOCK_SKEW,
            not_after=now + datetime.timedelta(days=days),
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem
        return chain, _key_pem(key)


def _aia(url: str) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess(
        [x509.AccessDescription(x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))]
    )


# --- legacy signatures ----------------------------------------------------------------------------

_RSA_SHA256_ALG = bytes.fromhex("300d06092a864886f70d01010b0500")  # AlgorithmIdentifier, NULL params
_RSA_LEGACY_OID_LAST_BYTE = {"sha1": 0x05, "md5": 0x04}  # 1.2.840.113549.1.1.{5,4}


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _resign(cert: x509.Certificate, issuer_key: PrivateKey, hash_name: str) -> x509.Certificate:
    """Re-sign an RSA/SHA-256 certificate with SHA-1 or MD5, as legacy CAs did.

    The TBS part's signature AlgorithmIdentifier has the same length for all three, so the OID is
    patched in place, the TBS signed with PKCS#1 v1.5 and the certificate reassembled in DER.
    """
    if not isinstance(issuer_key, rsa.RSAPrivateKey):
        raise ValueError(f"a {hash_name} signature needs an RSA issuer key")
    if hash_name not in _RSA_LEGACY_OID_LAST_BYTE:
        raise ValueError(f"unknown legacy signature hash {hash_name!r}")
    tbs = cert.tbs_certificate_bytes
    if tbs.count(_RSA_SHA256_ALG) != 1:
        raise ValueError("expected one sha256WithRSAEncryption identifier in the TBS certificate")
    legacy_alg = _RSA_SHA256_ALG[:12] + bytes([_RSA_LEGACY_OID_LAST_BYTE[hash_name]]) + _RSA_SHA256_ALG[13:]
    tbs = tbs.replace(_RSA_SHA256_ALG, legacy_alg)
    # Weak on purpose: the lab serves what legacy CAs issued, so the checks can be shown to flag it.
    algorithm = hashes.SHA1() if hash_name == "sha1" else hashes.MD5()  # noqa: S303
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), algorithm)
    bit_string = b"\x03" + _der_len(len(signature) + 1) + b"\x00" + signature
    body = tbs + legacy_alg + bit_string
    return x509.load_der_x509_certificate(b"\x30" + _der_len(len(body)) + body)


# --- named variant chains -------------------------------------------------------------------------

AIA_URL = "http://pki.corp.example/aia/rdp-collector-lab-issuing-ca.crt"

VARIANTS: Mapping[str, str] = {
    "good": "root > issuing CA > leaf, sent as leaf + issuing CA",
    "expires-soon": "as good, but the leaf expires in 10 days",
    "expired": "as good, but the leaf expired 3 days ago",
    "not-yet-valid": "as good, but the leaf becomes valid in 10 days",
    "wrong-name": "as good, but the leaf names another host only",
    "self-signed": "a self-signed leaf, like the listener certificate Windows makes for itself",
    "sha1": "leaf signed with sha1WithRSAEncryption by a legacy RSA issuing CA (sent with it)",
    "rsa1024": "as good, but the leaf key is RSA-1024",
    "missing-intermediate": "leaf sent alone; its issuing CA is not in the chain (AIA points at it)",
    "wrong-order": "leaf, root, issuing CA: the issuer of each certificate does not follow it",
    "no-server-auth": "as good, but the leaf's EKU is Client Authentication only",
    "inspection": "same name and SAN, re-signed by an SSL-inspection CA the client does not trust",
}


@dataclass(frozen=True)
class LabChain:
    """A server chain for the lab endpoints: what the server sends, its key, what a client trusts."""

    variant: str
    server_name: str
    certificates: tuple[x509.Certificate, ...]
    """As the server sends them, leaf first (wrong on purpose in some variants)."""
    key: PrivateKey
    trust: tuple[x509.Certificate, ...]
    """The roots a lab client trusts (the lab root; never the inspection CA)."""

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def chain_pem(self) -> bytes:
        return _pem(self.certificates)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    @property
    def trust_pem(self) -> bytes:
        return _pem(self.trust)

    @property
    def tls(self) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM), the shape the lab servers take."""
        return self.chain_pem, self.key_pem


@dataclass(frozen=True)
class LabPKI:
    """A two-tier PKI (root, issuing CA) like an internal AD CS deployment."""

    root: LabCA
    issuing: LabCA

    @classmethod
    def create(cls, now: datetime.datetime | None = None) -> LabPKI:
        """Root and issuing CA valid from two years before ``now``, so even the expired variant's
        leaf was issued while its CAs were valid (as in a real PKI)."""
        issued = _utc_now(now) - datetime.timedelta(days=730)
        root = LabCA.create("rdp-collector lab Root CA", days=3650, path_length=1, now=issued)
        issuing = root.issue_intermediate("rdp-collector lab Issuing CA", days=1825, now=issued)
        return cls(root=root, issuing=issuing)

    def chain(self, variant: str, server_name: str, *, now: datetime.datetime | None = None) -> LabChain:
        """The named variant (see ``VARIANTS``) for ``server_name``; validity is relative to ``now``."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown chain variant {variant!r}; known: {', '.join(VARIANTS)}")
        now = _utc_now(now)
        day = datetime.timedelta(days=1)
        not_before, not_after = now - _CLOCK_SKEW, now + 365 * day
        names = [server_name]
        key: PrivateKey = ec.generate_private_key(ec.SECP256R1())
        issuer = self.issuing
        eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,)
        signature_hash, aia_url = "sha256", None

        if variant == "expires-soon":
            not_after = now + 10 * day
        elif variant == "expired":
            not_before, not_after = now - 368 * day, now - 3 * day
        elif variant == "not-yet-valid":
            not_before = now + 10 * day
        elif variant == "wrong-name":
            names = ["remote.other.example"]
        elif variant == "rsa1024":
            key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (weak on purpose)
        elif variant == "no-server-auth":
            eku = (ExtendedKeyUsageOID.CLIENT_AUTH,)
        elif variant == "missing-intermediate":
            aia_url = AIA_URL
        elif variant == "sha1":
            legacy_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            issuer = self.root.issue_intermediate("rdp-collector lab Legacy CA", key=legacy_key, now=now - 730 * day)
            signature_hash = "sha1"
        elif variant == "inspection":
            issuer = LabCA.create("Contoso SSL Inspection CA", now=now - 730 * day)

        if variant == "self-signed":
            sent: tuple[x509.Certificate, ...] = (_self_signed_leaf(names, key, not_before, not_after),)
        else:
            leaf = issuer.issue_leaf(
                names,
                key.public_key(),
                not_before=not_before,
                not_after=not_after,
                eku=eku,
                signature_hash=signature_hash,
                aia_url=aia_url,
            )
            if variant == "missing-intermediate":
                sent = (leaf,)
            elif variant == "wrong-order":
                sent = (leaf, self.root.cert, issuer.cert)
            else:
                sent = (leaf, issuer.cert)
        return LabChain(variant=variant, server_name=server_name, certificates=sent, key=key, trust=(self.root.cert,))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _self_signed_leaf(
    names: Sequence[str], key: PrivateKey, not_before: datetime.datetime, not_after: datetime.datetime
) -> x509.Certificate:
    """A self-signed server certificate: CA:FALSE, serverAuth, SAN = names (the Windows listener default)."""
    name = _name(names[0])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .sign(key, hashes.SHA256())
    )


def variant_chain(
    variant: str,
    server_name: str,
    *,
    pki: LabPKI | None = None,
    now: datetime.datetime | None = None,
) -> LabChain:
    """Build one named variant chain (a fresh PKI unless ``pki`` is given, so trust stays per test)."""
    return (pki or LabPKI.create(now=now)).chain(variant, server_name, now=now)


# --- malformed certificates -----------------------------------------------------------------------
#
# Properly signed certificates that break an X.509 rule, for the lab and the tests: a certificate
# built normally has its TBSCertificate edited in DER and is signed again with the issuer's key.
# A TLV reader and writer are enough for these few edits (no ASN.1 library is installed).

MALFORMED_VARIANTS: Mapping[str, str] = {
    "duplicate-extension": "its subjectAltName extension twice (a CA without one: its first extension)",
    "bad-version": "version field 5 (only 0, 1 and 2 exist: v1 to v3)",
    "bad-subject": "subject O as a PrintableString holding '_' and '@', which PrintableString forbids",
    "bad-subject-encoding": "subject O as a UTF8String whose bytes are not UTF-8",
    "bad-san": "an iPAddress entry of 5 bytes in its subjectAltName (4 or 16 exist)",
    "unsupported-san": "an x400Address entry in its subjectAltName (valid ASN.1 that cryptography does not read)",
}
"""The defects ``malformed_der`` gives a certificate, by name (the lab serves them by name)."""

SERVABLE_AT: Mapping[str, tuple[int, ...]] = {
    "duplicate-extension": (1,),
    "bad-version": (0, 1),
    "bad-subject": (0, 1),
    "bad-subject-encoding": (),
    "bad-san": (0,),
    "unsupported-san": (0,),
}
"""Where in a served chain (0 = the leaf, 1 = the issuing CA) OpenSSL loads each variant with
``SSLContext.load_cert_chain``, so a real TLS server can send it. OpenSSL refuses its own
certificate with a duplicated extension (X509V3 "invalid certificate") but sends such a CA; it
cannot decode a UTF8String that is not UTF-8 at all, so that variant is for probe data only. The
subjectAltName variants need a certificate that has one: the leaf. A subject variant on the issuing
CA loads, but the leaf's issuer field then names another CA, so the chain no longer links."""

_SAN_OID = bytes.fromhex("0603551d11")  # OBJECT IDENTIFIER 2.5.29.17 (subjectAltName)
_O_OID = bytes.fromhex("060355040a")  # OBJECT IDENTIFIER 2.5.4.10 (organizationName)
_CN_OID = bytes.fromhex("0603550403")  # OBJECT IDENTIFIER 2.5.4.3 (commonName)
_BAD_ORGANIZATION = {
    "bad-subject": (0x13, b"rdp_collector lab @ corp"),  # PrintableString: '_' and '@' are not in its alphabet
    "bad-subject-encoding": (0x0C, b"rdp-collector lab \xff\xfe"),  # UTF8String: 0xFF never occurs in UTF-8
}
_BAD_SAN_ENTRY = {
    "bad-san": (0x87, bytes([192, 0, 2, 10, 1])),  # iPAddress [7]: 4 or 16 bytes, never 5
    "unsupported-san": (0xA3, b""),  # x400Address [3]
}


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV (single-byte tag)."""
    return bytes([tag]) + _der_len(len(content)) + content


def _der_at(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """(tag, where the content starts, where the TLV ends) of the DER TLV at ``offset``."""
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    start = offset + 2 + (first & 0x7F)
    return tag, start, start + int.from_bytes(data[offset + 2 : start], "big")


def _der_content(tlv: bytes) -> bytes:
    _, start, end = _der_at(tlv)
    return tlv[start:end]


def _der_children(tlv: bytes) -> list[bytes]:
    """The TLVs inside a constructed TLV (a SEQUENCE, a SET, an explicit tag), each whole."""
    _, position, end = _der_at(tlv)
    children = []
    while position < end:
        _, _, child_end = _der_at(tlv, position)
        children.append(tlv[position:child_end])
        position = child_end
    return children


def _extension_list(tbs: list[bytes]) -> list[bytes]:
    if tbs[-1][0] != 0xA3:
        raise ValueError("the certificate has no extensions to edit")
    return _der_children(_der_content(tbs[-1]))


def _with_extensions(tbs: list[bytes], extensions: list[bytes]) -> list[bytes]:
    return [*tbs[:-1], _der(0xA3, _der(0x30, b"".join(extensions)))]


def _edit_tbs(tbs: list[bytes], variant: str) -> list[bytes]:
    """The TBSCertificate's fields (version, serial, signature, issuer, validity, subject, key,
    extensions) with the defect ``variant`` names."""
    if variant not in MALFORMED_VARIANTS:
        raise ValueError(f"unknown malformed variant {variant!r}; known: {', '.join(MALFORMED_VARIANTS)}")
    if tbs[0][0] != 0xA0:
        raise ValueError("expected an X.509 v3 certificate (an explicit version field)")
    if variant == "bad-version":
        return [_der(0xA0, _der(0x02, b"\x05")), *tbs[1:]]
    if variant in _BAD_ORGANIZATION:
        common_names = [
            attribute
            for rdn in _der_children(tbs[5])
            for attribute in _der_children(rdn)
            if _der_children(attribute)[0] == _CN_OID
        ]
        organization = _der(0x31, _der(0x30, _O_OID + _der(*_BAD_ORGANIZATION[variant])))
        subject = organization + b"".join(_der(0x31, cn) for cn in common_names)
        return [*tbs[:5], _der(0x30, subject), *tbs[6:]]
    extensions = _extension_list(tbs)
    sans = [e for e in extensions if _der_children(e)[0] == _SAN_OID]
    if variant == "duplicate-extension":
        twice = sans[0] if sans else extensions[0]
        at = extensions.index(twice) + 1
        return _with_extensions(tbs, [*extensions[:at], twice, *extensions[at:]])
    if not sans:
        raise ValueError(f"{variant} needs a certificate with a subjectAltName (a leaf)")
    parts = _der_children(sans[0])
    names = _der_content(_der_content(parts[-1])) + _der(*_BAD_SAN_ENTRY[variant])
    san = _der(0x30, b"".join([*parts[:-1], _der(0x04, _der(0x30, names))]))
    return _with_extensions(tbs, [san if e is sans[0] else e for e in extensions])


def malformed_der(cert: x509.Certificate, issuer_key: PrivateKey, variant: str) -> bytes:
    """``cert`` with the defect ``variant`` names (see ``MALFORMED_VARIANTS``), signed again by
    ``issuer_key`` with the certificate's own signature algorithm, as DER.

    DER rather than a parsed certificate: cryptography refuses some of these at load time (the
    version, a PrintableString), the others when a field is first read. The signature is genuine,
    so only the defect stands between the certificate and a validator.
    """
    tbs = _der(0x30, b"".join(_edit_tbs(_der_children(cert.tbs_certificate_bytes), variant)))
    hash_algorithm = cert.signature_hash_algorithm
    if hash_algorithm is None:
        raise ValueError("re-signing needs a signature algorithm with a hash (RSA or ECDSA)")
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        signature = issuer_key.sign(tbs, ec.ECDSA(hash_algorithm))
    else:
        signature = issuer_key.sign(tbs, padding.PKCS1v15(), hash_algorithm)
    algorithm = _der_children(cert.public_bytes(serialization.Encoding.DER))[1]  # signatureAlgorithm, as signed
    return _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature))


def _der_pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class MalformedChain:
    """A ``good`` chain (leaf, issuing CA) with one certificate malformed: DER, since
    cryptography cannot load all of them."""

    variant: str
    position: int
    """Which certificate carries the defect: 0 the leaf, 1 the issuing CA."""
    server_name: str
    der: tuple[bytes, ...]
    """As the server sends them, leaf first."""
    key: PrivateKey
    trust: tuple[x509.Certificate, ...]

    @property
    def servable(self) -> bool:
        """Whether OpenSSL loads this chain into a server context (see ``SERVABLE_AT``)."""
        return self.position in SERVABLE_AT[self.variant]

    @property
    def chain_pem(self) -> bytes:
        return b"".join(_der_pem(d) for d in self.der)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    @property
    def tls(self) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM), the shape the lab servers take (when ``servable``)."""
        return self.chain_pem, self.key_pem


def malformed_chain(
    variant: str,
    server_name: str,
    *,
    position: int = 0,
    pki: LabPKI | None = None,
    now: datetime.datetime | None = None,
) -> MalformedChain:
    """The ``good`` chain for ``server_name`` with certificate ``position`` (0 the leaf, 1 the
    issuing CA) given the defect ``variant`` and signed again by its issuer (the issuing CA, or
    the root). A fresh PKI unless ``pki`` is given."""
    if position not in (0, 1):
        raise ValueError("position must be 0 (the leaf) or 1 (the issuing CA)")
    pki = pki or LabPKI.create(now=now)
    good = pki.chain("good", server_name, now=now)
    der = [c.public_bytes(serialization.Encoding.DER) for c in good.certificates]
    signer = pki.issuing.key if position == 0 else pki.root.key
    der[position] = malformed_der(good.certificates[position], signer, variant)
    return MalformedChain(variant, position, server_name, tuple(der), good.key, good.trust)
