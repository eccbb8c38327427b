"""A throwaway PKI for the lab: CAs, intermediates and server certificate chains, good and broken.

The lab's WinRM HTTPS endpoints must be verifiable the way a real estate is (CA file, SAN, EKU),
so tests exercise certificate validation and channel binding instead of switching them off. The
lab's gateway and session host endpoints serve *named variants* (``variant_chain``): the chains
admins actually meet in the field (expired, wrong name, self-signed, SHA-1, RSA-1024, missing
intermediate, wrong order, no serverAuth EKU, an SSL-inspection CA), one defect each, so every
certificate check can be shown to catch its own case and only that.

Keys are EC P-256 unless a variant needs RSA: generating them is fast enough to do per test run,
and nothing is persisted.
"""

from __future__ import annotations

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
