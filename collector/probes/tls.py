"""TLS: a handshake with SNI = the inventory name, capturing the peer's whole chain as sent.

Capture first, judge afterwards: the handshake runs with verification off (CERT_NONE) and
OpenSSL's security level 0, so an expired, self-signed, SHA-1 or RSA-1024 chain is still seen
and ``collector.certs`` can say exactly what is wrong with it. A probe that verified during the
handshake would only learn "it failed".
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass

from collector.probes import Deadline, Failure, classify
from collector.probes.tcp import DEFAULT_TIMEOUT_S, TcpResult, connect


@dataclass(frozen=True)
class TlsHandshake:
    """One TLS handshake on an open connection."""

    ok: bool
    """Whether the handshake completed."""
    protocol: str = ""
    """Negotiated version (``TLSv1.2``, ``TLSv1.3``)."""
    cipher: str = ""
    """Negotiated cipher suite (OpenSSL name)."""
    chain: tuple[bytes, ...] = ()
    """The certificates the peer sent, DER, in the order sent (leaf first)."""
    elapsed_s: float = 0.0
    """Handshake time."""
    failure: Failure | None = None
    """Why it failed; None when it completed."""
    reason: str = ""
    """One line an admin can act on; empty when it completed."""


@dataclass(frozen=True)
class TlsResult:
    """A TLS probe of one endpoint: the TCP connect, then the handshake (absent if TCP failed)."""

    server_name: str
    """The name sent as SNI and judged against the certificate (the inventory name)."""
    tcp: TcpResult
    """The connect."""
    handshake: TlsHandshake | None
    """The handshake; None when TCP did not connect."""

    @property
    def ok(self) -> bool:
        return self.handshake is not None and self.handshake.ok

    @property
    def failure(self) -> Failure | None:
        return self.tcp.failure if self.handshake is None else self.handshake.failure

    @property
    def reason(self) -> str:
        return self.tcp.reason if self.handshake is None else self.handshake.reason


def capture_context() -> ssl.SSLContext:
    """A client context that completes the handshake with any certificate, old protocols included.

    Verification happens afterwards, on the captured chain. TLS 1.0 stays allowed so a server that
    only speaks it is still identified (and host.tls-protocols can say so).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return ctx


_DER = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]  # what get_unverified_chain's certificates encode to


def peer_chain(sock: ssl.SSLSocket) -> tuple[bytes, ...]:
    """The chain as the peer sent it, DER, leaf first.

    Python 3.13 has the public ``get_unverified_chain()``; 3.10 to 3.12 expose the same call on the
    private ``_sslobj``. The leaf alone (``getpeercert``) is the last resort.
    """
    public = getattr(sock, "get_unverified_chain", None)
    if public is not None:
        return tuple(c if isinstance(c, bytes) else c.public_bytes(_DER) for c in public() or ())
    sslobj = getattr(sock, "_sslobj", None)
    private = getattr(sslobj, "get_unverified_chain", None)
    if private is not None:
        chain = private() or ()
        return tuple(c.public_bytes(_DER) for c in chain)
    leaf = sock.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()


def handshake(sock: socket.socket, server_name: str, deadline: Deadline) -> tuple[ssl.SSLSocket | None, TlsHandshake]:
    """TLS client handshake on ``sock`` with SNI ``server_name``; on failure ``sock`` is closed."""
    start = time.monotonic()
    try:
        sock.settimeout(deadline.remaining())
        tls = capture_context().wrap_socket(sock, server_hostname=server_name)
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a name SNI cannot carry
        sock.close()
        failure, reason = classify(exc, what="starting TLS", timeout=deadline.seconds)
        return None, TlsHandshake(False, elapsed_s=time.monotonic() - start, failure=failure, reason=reason)
    cipher = tls.cipher()
    return tls, TlsHandshake(
        ok=True,
        protocol=tls.version() or "",
        cipher=cipher[0] if cipher else "",
        chain=peer_chain(tls),
        elapsed_s=time.monotonic() - start,
    )


def probe_tls(
    server_name: str, address: str | None = None, port: int = 443, timeout: float = DEFAULT_TIMEOUT_S
) -> TlsResult:
    """Connect to ``address`` (default: the name) and complete a handshake with SNI ``server_name``."""
    deadline = Deadline(timeout)
    sock, tcp = connect(address or server_name, port, deadline)
    if sock is None:
        return TlsResult(server_name, tcp, None)
    tls, result = handshake(sock, server_name, deadline)
    if tls is not None:
        tls.close()
    return TlsResult(server_name, tcp, result)
