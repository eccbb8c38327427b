"""The local probes' wire formats from bytes, and their failure results against peers that refuse,
stay silent, hang up or answer garbage on loopback. No probe may raise: every failure is a result."""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator

import pytest

from collector.lab.endpoints import (
    GatewayServer,
    connection_confirm,
    decide,
    requested_protocols,
)
from collector.lab.pki import variant_chain
from collector.probes import Failure
from collector.probes.rdg_http import (
    HttpProtocolError,
    auth_schemes,
    build_request,
    parse_response_head,
    probe_rdg_http,
)
from collector.probes.rdp import (
    PROTOCOL_HYBRID,
    PROTOCOL_HYBRID_EX,
    PROTOCOL_RDP,
    PROTOCOL_SSL,
    RdpProtocolError,
    connection_request,
    parse_connection_confirm,
    probe_rdp,
)
from collector.probes.tcp import probe_tcp
from collector.probes.tls import probe_tls
from tests.support.raw_peer import RawServer

pytestmark = pytest.mark.timeout(30)

# --- RDP negotiation from bytes -----------------------------------------------------------------


def test_connection_request_is_the_documented_ssl_hybrid_request() -> None:
    assert connection_request() == bytes.fromhex("03 00 00 13 0e e0 00 00 00 00 00 01 00 08 00 03 00 00 00")
    assert connection_request(PROTOCOL_SSL)[-4:] == b"\x01\x00\x00\x00"
    assert connection_request(PROTOCOL_RDP)[-4:] == b"\x00\x00\x00\x00"


def test_parses_xrdps_connection_confirm() -> None:
    # What xrdp 0.9 answers to SSL|HYBRID (captured from the real server; see tests/peer/test_xrdp.py).
    neg = parse_connection_confirm(bytes.fromhex("03 00 00 13 0e d0 00 00 12 34 00 02 01 08 00 01 00 00 00"))
    assert (neg.kind, neg.selected_protocol, neg.flags) == ("response", PROTOCOL_SSL, 0x01)
    assert neg.describe() == "RDP_NEG_RSP selected PROTOCOL_SSL (TLS)"


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "SSL_REQUIRED_BY_SERVER"),
        (2, "SSL_NOT_ALLOWED_BY_SERVER"),
        (3, "SSL_CERT_NOT_ON_SERVER"),
        (4, "INCONSISTENT_FLAGS"),
        (5, "HYBRID_REQUIRED_BY_SERVER"),
        (6, "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER"),
        (9, "unknown failure code 9"),
    ],
)
def test_parses_every_negotiation_failure_code(code: int, name: str) -> None:
    neg = parse_connection_confirm(
        bytes.fromhex("03 00 00 13 0e d0 00 00 12 34 00 03 00 08 00") + bytes([code, 0, 0, 0])
    )
    assert (neg.kind, neg.failure_code, neg.failure_name) == ("failure", code, name)
    assert neg.describe().startswith(f"RDP_NEG_FAILURE {code} {name}: ")


def test_a_confirm_without_negotiation_data_means_classic_rdp() -> None:
    neg = parse_connection_confirm(bytes.fromhex("03 00 00 0b 06 d0 00 00 12 34 00"))
    assert (neg.kind, neg.selected_protocol) == ("none", PROTOCOL_RDP)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n", "not an RDP answer: starts with 48 54 54 50 ('HTTP'...)"),
        (b"\x03\x00", "short answer: 2 bytes (03 00)"),
        (b"\x03\x00\x00\x05\x00", "TPKT length 5 is not a Connection Confirm's"),
        (bytes.fromhex("03 00 00 13 0e d0 00 00 12 34 00 02 01 08 00 01"), "TPKT says 19 bytes, got 16"),
        (bytes.fromhex("03 00 00 0b 06 80 00 00 12 34 00"), "X.224 Disconnect Request"),
        (bytes.fromhex("03 00 00 0b 06 f0 00 00 12 34 00"), "X.224 code 0xf0 is not a Connection Confirm"),
        (bytes.fromhex("03 00 00 13 0d d0 00 00 12 34 00 02 01 08 00 01 00 00 00"), "length indicator 13 does not"),
        (bytes.fromhex("03 00 00 13 0e d0 00 00 12 34 00 07 00 08 00 01 00 00 00"), "negotiation type 0x07"),
        (bytes.fromhex("03 00 00 13 0e d0 00 00 12 34 00 02 00 09 00 01 00 00 00"), "structure length 9"),
    ],
)
def test_garbage_and_broken_confirms_are_protocol_errors(data: bytes, message: str) -> None:
    with pytest.raises(RdpProtocolError, match=re.escape(message)):
        parse_connection_confirm(data)


@pytest.mark.parametrize(
    ("requested", "layer", "nla", "expected"),
    [
        (PROTOCOL_SSL | PROTOCOL_HYBRID, "negotiate", True, (PROTOCOL_HYBRID, None)),
        (PROTOCOL_SSL | PROTOCOL_HYBRID | PROTOCOL_HYBRID_EX, "tls", True, (PROTOCOL_HYBRID_EX, None)),
        (PROTOCOL_SSL, "negotiate", True, (None, 5)),
        (PROTOCOL_SSL, "negotiate", False, (PROTOCOL_SSL, None)),
        (PROTOCOL_RDP, "negotiate", False, (PROTOCOL_RDP, None)),
        (PROTOCOL_RDP, "tls", False, (None, 1)),
        (PROTOCOL_SSL | PROTOCOL_HYBRID, "rdp", False, (None, 2)),
        (PROTOCOL_RDP, "rdp", False, (PROTOCOL_RDP, None)),
        (None, "negotiate", False, (PROTOCOL_RDP, None)),
    ],
)
def test_lab_listener_decides_like_windows(requested, layer: str, nla: bool, expected) -> None:
    assert decide(requested, layer, nla) == expected


def test_lab_confirm_round_trips_through_the_parser() -> None:
    assert parse_connection_confirm(connection_confirm(PROTOCOL_HYBRID, None)).selected_protocol == PROTOCOL_HYBRID
    assert parse_connection_confirm(connection_confirm(None, 5)).failure_name == "HYBRID_REQUIRED_BY_SERVER"
    assert parse_connection_confirm(connection_confirm(PROTOCOL_RDP, None, with_negotiation=False)).kind == "none"


def test_lab_reads_requested_protocols_after_a_cookie() -> None:
    assert requested_protocols(connection_request()) == PROTOCOL_SSL | PROTOCOL_HYBRID
    cookie = b"Cookie: mstshash=admin\r\n"
    neg_req = struct.pack("<BBHI", 1, 0, 8, PROTOCOL_HYBRID_EX)
    x224 = bytes([6 + len(cookie) + len(neg_req), 0xE0, 0, 0, 0, 0, 0]) + cookie + neg_req
    assert requested_protocols(struct.pack(">BBH", 3, 0, 4 + len(x224)) + x224) == PROTOCOL_HYBRID_EX
    assert requested_protocols(bytes.fromhex("03 00 00 0b 06 e0 00 00 00 00 00")) is None
    with pytest.raises(ValueError, match=r"not an X\.224 Connection Request"):
        requested_protocols(b"GET / HTTP/1.1\r\n")


# --- RD Gateway HTTP from bytes -----------------------------------------------------------------


def test_request_head_is_what_mstsc_sends_less_credentials() -> None:
    head = build_request("RDG_OUT_DATA", "/remoteDesktopGateway/", "gw01.corp.example").decode()
    lines = head.split("\r\n")
    assert lines[0] == "RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1"
    assert "Host: gw01.corp.example" in lines
    assert re.fullmatch(r"RDG-Connection-Id: \{[0-9A-F-]{36}\}", next(x for x in lines if x.startswith("RDG-Conn")))
    assert not any(x.lower().startswith("authorization") for x in lines)
    assert head.endswith("\r\n\r\n")


def test_response_heads_and_auth_schemes_are_parsed() -> None:
    status, phrase, headers = parse_response_head(
        b"HTTP/1.1 401 Unauthorized\r\nServer: Microsoft-HTTPAPI/2.0\r\nWWW-Authenticate: Negotiate\r\n"
        b"WWW-Authenticate: NTLM\r\nContent-Length: 0"
    )
    assert (status, phrase, headers["server"]) == (401, "Unauthorized", ["Microsoft-HTTPAPI/2.0"])
    assert auth_schemes(headers["www-authenticate"]) == ("Negotiate", "NTLM")
    assert auth_schemes(['Basic realm="gw", NTLM', 'Digest realm="x", qop="auth"', "Negotiate abc=="]) == (
        "Basic",
        "NTLM",
        "Digest",
        "Negotiate",
    )
    with pytest.raises(HttpProtocolError, match=re.escape("not an HTTP answer: 'SSH-2.0-OpenSSH_9.2'")):
        parse_response_head(b"SSH-2.0-OpenSSH_9.2")


# --- failures as results, on loopback -----------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def raw() -> Iterator[type[RawServer]]:
    servers: list[RawServer] = []

    class Started(RawServer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.start()
            servers.append(self)

    yield Started
    for server in servers:
        server.stop()


def test_refused_connections_are_results(closed_port: int) -> None:
    tcp = probe_tcp("127.0.0.1", closed_port, timeout=2)
    assert (tcp.connected, tcp.failure, tcp.peer) == (False, Failure.REFUSED, "127.0.0.1")
    assert tcp.reason == "connection refused (nothing listens on that port, or a firewall rejects it)"
    tls = probe_tls("gw01.corp.example", "127.0.0.1", closed_port, timeout=2)
    assert (tls.ok, tls.handshake, tls.failure) == (False, None, Failure.REFUSED)
    rdp = probe_rdp("rdsh01.corp.example", "127.0.0.1", closed_port, timeout=2)
    assert (rdp.negotiation, rdp.tcp.failure) == (None, Failure.REFUSED)
    rdg = probe_rdg_http("gw01.corp.example", "127.0.0.1", closed_port, timeout=2)
    assert (rdg.out_data.failure, rdg.rpc.failure) == (Failure.REFUSED, Failure.REFUSED)
    assert rdg.out_data.describe().startswith("RDG_OUT_DATA /remoteDesktopGateway/: no answer (connection refused")


def test_a_name_that_does_not_resolve_is_a_dns_result() -> None:
    tcp = probe_tcp("no-such-host.invalid", 443, timeout=3)
    assert (tcp.connected, tcp.failure, tcp.peer) == (False, Failure.DNS, "")
    assert tcp.reason.startswith("name does not resolve")


def test_garbage_answers(raw) -> None:
    http = raw(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    tls = probe_tls("gw01.corp.example", "127.0.0.1", http.port, timeout=2)
    assert tls.tcp.connected and tls.failure is Failure.NOT_TLS
    assert tls.reason.startswith("the peer answered, but not with TLS")
    rdp = probe_rdp("rdsh01.corp.example", "127.0.0.1", http.port, timeout=2)
    assert rdp.failure is Failure.GARBAGE
    assert rdp.reason == "not an RDP answer: starts with 48 54 54 50 ('HTTP'...)"
    assert rdp.answer.startswith(b"HTTP/1.1 400")


def test_a_short_confirm_then_hangup_is_garbage(raw) -> None:
    short = raw(bytes.fromhex("03 00 00 13 0e d0"))
    rdp = probe_rdp("rdsh01.corp.example", "127.0.0.1", short.port, timeout=2)
    assert rdp.failure is Failure.GARBAGE
    assert rdp.reason == "the answer was cut off after 6 of 19 bytes (03 00 00 13 0e d0)"


def test_a_peer_that_hangs_up_is_closed(raw) -> None:
    hangup = raw(b"")
    rdp = probe_rdp("rdsh01.corp.example", "127.0.0.1", hangup.port, timeout=2)
    assert (rdp.failure, rdp.reason) == (
        Failure.CLOSED,
        "the peer closed the connection while waiting for the X.224 Connection Confirm",
    )
    tls = probe_tls("gw01.corp.example", "127.0.0.1", hangup.port, timeout=2)
    assert tls.failure in (Failure.CLOSED, Failure.RESET)


def test_a_silent_peer_is_a_timeout_within_the_budget(raw) -> None:
    silent = raw(None)
    rdp = probe_rdp("rdsh01.corp.example", "127.0.0.1", silent.port, timeout=0.5)
    assert (rdp.tcp.connected, rdp.failure) == (True, Failure.TIMEOUT)
    assert rdp.reason == "no answer within 0.5 s while waiting for the X.224 Connection Confirm"
    tls = probe_tls("gw01.corp.example", "127.0.0.1", silent.port, timeout=0.5)
    assert (tls.failure, tls.reason) == (Failure.TIMEOUT, "no answer within 0.5 s while starting TLS")


def test_a_tls_peer_that_answers_http_garbage() -> None:
    chain = variant_chain("good", "gw01.corp.example")
    with GatewayServer(chain.tls, raw_answer=b"\x00\x01binary junk\r\n\r\n") as gw:
        rdg = probe_rdg_http("gw01.corp.example", "127.0.0.1", gw.port, timeout=2)
    assert rdg.out_data.tls_protocol == "TLSv1.3"
    assert (rdg.out_data.status, rdg.out_data.failure) == (None, Failure.GARBAGE)
    assert rdg.out_data.reason == "not an HTTP answer: '\\\\x00\\\\x01binary junk'"
