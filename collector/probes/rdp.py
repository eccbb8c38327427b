"""RDP: the X.224 connection negotiation (MS-RDPBCGR 2.2.1.1 / 2.2.1.2), then TLS on the same socket.

The client sends a TPKT + X.224 Connection Request carrying RDP_NEG_REQ (the security protocols it
supports); the server's Connection Confirm carries RDP_NEG_RSP (the protocol it selected) or
RDP_NEG_FAILURE (why it refuses). When it selects TLS or CredSSP, the TLS handshake that follows
shows the listener's certificate: the one mstsc warns about. Nothing beyond the handshake is
sent, so no logon is attempted and no credential leaves the workstation.

The wire format is pure functions (``connection_request``, ``parse_connection_confirm``) so it is
tested from bytes; ``probe_rdp`` is the I/O around them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass

from collector.probes import Deadline, Failure, PeerClosed, classify
from collector.probes.tcp import DEFAULT_TIMEOUT_S, TcpResult, connect
from collector.probes.tls import TlsHandshake, handshake

PROTOCOL_RDP = 0x00
"""Classic RDP security: RC4 with the server's own proprietary key, no TLS, no NLA."""
PROTOCOL_SSL = 0x01
"""TLS (the server authenticates with an X.509 certificate; the user logs on at the remote screen)."""
PROTOCOL_HYBRID = 0x02
"""CredSSP over TLS: Network Level Authentication."""
PROTOCOL_RDSTLS = 0x04
PROTOCOL_HYBRID_EX = 0x08
"""CredSSP with the Early User Authorization Result PDU (NLA)."""
PROTOCOL_RDSAAD = 0x10

PROTOCOL_NAMES = {
    PROTOCOL_RDP: "PROTOCOL_RDP (classic RDP security)",
    PROTOCOL_SSL: "PROTOCOL_SSL (TLS)",
    PROTOCOL_HYBRID: "PROTOCOL_HYBRID (CredSSP / NLA)",
    PROTOCOL_RDSTLS: "PROTOCOL_RDSTLS",
    PROTOCOL_HYBRID_EX: "PROTOCOL_HYBRID_EX (CredSSP / NLA)",
    PROTOCOL_RDSAAD: "PROTOCOL_RDSAAD (Azure AD authentication)",
}
TLS_PROTOCOLS = frozenset({PROTOCOL_SSL, PROTOCOL_HYBRID, PROTOCOL_HYBRID_EX})
"""Selected protocols after which the connection continues with a TLS handshake."""
NLA_PROTOCOLS = frozenset({PROTOCOL_HYBRID, PROTOCOL_HYBRID_EX})

FAILURE_CODES = {
    1: ("SSL_REQUIRED_BY_SERVER", "the server requires TLS, which the client did not offer"),
    2: ("SSL_NOT_ALLOWED_BY_SERVER", "the server allows only classic RDP security (SecurityLayer 0)"),
    3: ("SSL_CERT_NOT_ON_SERVER", "the server has no usable certificate for its listener"),
    4: ("INCONSISTENT_FLAGS", "the server found the requested protocol flags inconsistent"),
    5: ("HYBRID_REQUIRED_BY_SERVER", "the server requires CredSSP (NLA), which the client did not offer"),
    6: ("SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER", "the server requires TLS with user authentication"),
}

_TYPE_NEG_REQ, _TYPE_NEG_RSP, _TYPE_NEG_FAILURE = 0x01, 0x02, 0x03
_X224_CR, _X224_CC, _X224_DR = 0xE0, 0xD0, 0x80
MAX_PDU = 1024
"""Longest Connection Confirm accepted; a real one is 19 bytes."""


class RdpProtocolError(ValueError):
    """The bytes are not a valid X.224 Connection Confirm; the message says how, in one line."""

    def __init__(self, message: str, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = data


def connection_request(requested: int = PROTOCOL_SSL | PROTOCOL_HYBRID) -> bytes:
    """TPKT + X.224 CR + RDP_NEG_REQ; for SSL|HYBRID: ``03 00 00 13 0e e0 00 00 00 00 00 01 00 08 00 03 00 00 00``."""
    neg_req = struct.pack("<BBHI", _TYPE_NEG_REQ, 0, 8, requested)
    x224 = bytes([6 + len(neg_req), _X224_CR, 0, 0, 0, 0, 0]) + neg_req
    return struct.pack(">BBH", 3, 0, 4 + len(x224)) + x224


@dataclass(frozen=True)
class Negotiation:
    """What the server's X.224 Connection Confirm said."""

    kind: str
    """``response`` (RDP_NEG_RSP), ``failure`` (RDP_NEG_FAILURE) or ``none`` (a Connection Confirm
    without negotiation data: a server that knows only classic RDP security)."""
    selected_protocol: int | None = None
    """The protocol the server selected (``response``; ``none`` means PROTOCOL_RDP)."""
    failure_code: int | None = None
    """The RDP_NEG_FAILURE code (``failure``)."""
    flags: int = 0
    """The RDP_NEG_RSP flags (EXTENDED_CLIENT_DATA_SUPPORTED, DYNVC_GFX_PROTOCOL_SUPPORTED...)."""

    @property
    def selected_name(self) -> str:
        if self.selected_protocol is None:
            return ""
        return PROTOCOL_NAMES.get(self.selected_protocol, f"unknown protocol 0x{self.selected_protocol:x}")

    @property
    def failure_name(self) -> str:
        if self.failure_code is None:
            return ""
        return FAILURE_CODES.get(self.failure_code, (f"unknown failure code {self.failure_code}", ""))[0]

    @property
    def failure_meaning(self) -> str:
        if self.failure_code is None:
            return ""
        return FAILURE_CODES.get(self.failure_code, ("", "a failure code MS-RDPBCGR does not define"))[1]

    def describe(self) -> str:
        """One line: what the server answered."""
        if self.kind == "failure":
            return f"RDP_NEG_FAILURE {self.failure_code} {self.failure_name}: {self.failure_meaning}"
        if self.kind == "none":
            return "Connection Confirm without negotiation data (classic RDP security only)"
        return f"RDP_NEG_RSP selected {self.selected_name}"


def _hex(data: bytes, limit: int = 16) -> str:
    shown = data[:limit].hex(" ")
    return shown + (" ..." if len(data) > limit else "")


def check_tpkt_header(header: bytes) -> int:
    """The PDU length from a 4-byte TPKT header; RdpProtocolError when it is not one."""
    if len(header) < 4:
        raise RdpProtocolError(f"short answer: {len(header)} bytes ({_hex(header)})")
    if header[0] != 3 or header[1] != 0:
        printable = header.decode("ascii", "replace") if all(32 <= b < 127 for b in header) else ""
        hint = f" ({printable!r}...)" if printable else ""
        raise RdpProtocolError(f"not an RDP answer: starts with {_hex(header)}{hint}")
    length = struct.unpack(">H", header[2:4])[0]
    if not 11 <= length <= MAX_PDU:
        raise RdpProtocolError(f"TPKT length {length} is not a Connection Confirm's")
    return length


def parse_connection_confirm(data: bytes) -> Negotiation:
    """Decode a whole TPKT + X.224 Connection Confirm; RdpProtocolError says what is wrong."""
    length = check_tpkt_header(data[:4])
    if len(data) != length:
        raise RdpProtocolError(f"TPKT says {length} bytes, got {len(data)}")
    li, code = data[4], data[5] & 0xF0
    if code == _X224_DR:
        raise RdpProtocolError("the server sent an X.224 Disconnect Request instead of a Connection Confirm")
    if code != _X224_CC:
        raise RdpProtocolError(f"X.224 code 0x{data[5]:02x} is not a Connection Confirm (0xd0)")
    if li + 5 != length:
        raise RdpProtocolError(f"X.224 length indicator {li} does not match the TPKT length {length}")
    if li == 6:
        return Negotiation(kind="none", selected_protocol=PROTOCOL_RDP)
    if li < 14:
        raise RdpProtocolError(f"X.224 length indicator {li} leaves no room for negotiation data")
    neg_type, flags, neg_len, value = struct.unpack("<BBHI", data[11:19])
    if neg_len != 8:
        raise RdpProtocolError(f"negotiation structure length {neg_len}, expected 8")
    if neg_type == _TYPE_NEG_RSP:
        return Negotiation(kind="response", selected_protocol=value, flags=flags)
    if neg_type == _TYPE_NEG_FAILURE:
        return Negotiation(kind="failure", failure_code=value, flags=flags)
    raise RdpProtocolError(f"negotiation type 0x{neg_type:02x} is neither RDP_NEG_RSP nor RDP_NEG_FAILURE")


@dataclass(frozen=True)
class RdpResult:
    """An RDP probe of one listener: connect, negotiate, and the TLS handshake when TLS follows."""

    server_name: str
    """The name sent as SNI in the TLS handshake (the inventory name)."""
    requested: int
    """The protocols offered in RDP_NEG_REQ (bit mask)."""
    tcp: TcpResult
    """The connect."""
    negotiation: Negotiation | None = None
    """The server's answer; None when there was no valid one (see ``failure``)."""
    tls: TlsHandshake | None = None
    """The TLS handshake after RDP_NEG_RSP selected TLS or CredSSP; None otherwise."""
    failure: Failure | None = None
    """Why the negotiation step produced no answer (timeout, closed, garbage...)."""
    reason: str = ""
    """One line for ``failure``."""
    answer: bytes = b""
    """The raw bytes received for the Connection Confirm (evidence for garbage)."""

    @property
    def requested_names(self) -> str:
        if self.requested == PROTOCOL_RDP:
            return PROTOCOL_NAMES[PROTOCOL_RDP]
        return " | ".join(PROTOCOL_NAMES.get(b, hex(b)) for b in sorted(PROTOCOL_NAMES) if b and self.requested & b)


def _recv_exact(sock: socket.socket, n: int, deadline: Deadline) -> bytes:
    data = b""
    while len(data) < n:
        sock.settimeout(deadline.remaining())
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_connection_confirm(sock: socket.socket, deadline: Deadline) -> tuple[bytes, Negotiation]:
    """Read one TPKT PDU (bounded in size and time) and decode it."""
    header = _recv_exact(sock, 4, deadline)
    if not header:
        raise PeerClosed("closed without answering the Connection Request")
    try:
        length = check_tpkt_header(header)
    except RdpProtocolError as exc:
        if len(header) == 4:  # a little more of what came, for the evidence
            sock.settimeout(min(0.2, deadline.remaining()))
            with contextlib.suppress(OSError):
                header += sock.recv(60)
        raise RdpProtocolError(str(exc), header) from None
    data = header + _recv_exact(sock, length - 4, deadline)
    if len(data) < length:
        raise RdpProtocolError(f"the answer was cut off after {len(data)} of {length} bytes ({_hex(data)})", data)
    try:
        return data, parse_connection_confirm(data)
    except RdpProtocolError as exc:
        raise RdpProtocolError(str(exc), data) from None


def probe_rdp(
    server_name: str,
    address: str | None = None,
    port: int = 3389,
    timeout: float = DEFAULT_TIMEOUT_S,
    requested: int = PROTOCOL_SSL | PROTOCOL_HYBRID,
) -> RdpResult:
    """Negotiate with the listener, and complete TLS with SNI ``server_name`` when it selects TLS."""
    deadline = Deadline(timeout)
    sock, tcp = connect(address or server_name, port, deadline)
    if sock is None:
        return RdpResult(server_name, requested, tcp)
    try:
        sock.settimeout(deadline.remaining())
        sock.sendall(connection_request(requested))
        answer, negotiation = read_connection_confirm(sock, deadline)
    except RdpProtocolError as exc:
        sock.close()
        return RdpResult(server_name, requested, tcp, failure=Failure.GARBAGE, reason=str(exc), answer=exc.data)
    except (OSError, TimeoutError) as exc:
        sock.close()
        failure, reason = classify(exc, what="waiting for the X.224 Connection Confirm", timeout=timeout)
        return RdpResult(server_name, requested, tcp, failure=failure, reason=reason)
    if negotiation.kind != "response" or negotiation.selected_protocol not in TLS_PROTOCOLS:
        sock.close()
        return RdpResult(server_name, requested, tcp, negotiation, answer=answer)
    tls_sock, tls = handshake(sock, server_name, deadline)
    if tls_sock is not None:
        tls_sock.close()
    return RdpResult(server_name, requested, tcp, negotiation, tls, answer=answer)
