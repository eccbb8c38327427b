"""RD Gateway HTTP transport: does the gateway answer the way mstsc expects, before any logon?

mstsc opens the gateway's HTTP transport with ``RDG_OUT_DATA /remoteDesktopGateway/``; a healthy
gateway answers with an authentication challenge (401 with ``WWW-Authenticate: Negotiate`` and/or
``NTLM``). Anything else (404, 500, 503, a web page, a proxy's login page) means the request never
reached a working gateway: IIS without the gateway role, a reverse proxy or load balancer that does
not pass the method through, TLS inspection answering for it. Microsoft's own collector also asks
``GET /rpc`` (the RPC-over-HTTP transport that older clients and fallbacks use): 401 is good, 404
means no RPC site, 503 a stopped application pool.

No credentials are ever sent: the probe reads the challenge and stops.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from dataclasses import dataclass

from collector.probes import Deadline, Failure, PeerClosed, classify
from collector.probes.tcp import DEFAULT_TIMEOUT_S, TcpResult, connect
from collector.probes.tls import handshake

MAX_HEADER_BYTES = 64 * 1024
"""Largest response head read; a gateway's 401 is a few hundred bytes."""

OUT_DATA_PATH = "/remoteDesktopGateway/"
RPC_PATH = "/rpc"


class HttpProtocolError(ValueError):
    """The answer is not an HTTP/1.x response head."""


@dataclass(frozen=True)
class HttpAnswer:
    """One request to the gateway and the response head it got."""

    method: str
    """``RDG_OUT_DATA`` or ``GET``."""
    path: str
    """The request path."""
    tcp: TcpResult
    """The connect for this request."""
    tls_protocol: str = ""
    """The TLS version negotiated for this request, empty when TLS failed."""
    status: int | None = None
    """HTTP status code; None when no valid response came (see ``failure``)."""
    reason_phrase: str = ""
    """The status line's reason phrase (``Unauthorized``)."""
    auth_schemes: tuple[str, ...] = ()
    """Schemes offered in WWW-Authenticate, in order (``Negotiate``, ``NTLM``, ``Basic``...)."""
    server: str = ""
    """The Server header (``Microsoft-IIS/10.0``, ``Microsoft-HTTPAPI/2.0``, a proxy's name...)."""
    failure: Failure | None = None
    """Why there is no response; None when one was read."""
    reason: str = ""
    """One line for ``failure``."""

    @property
    def request(self) -> str:
        return f"{self.method} {self.path}"

    def describe(self) -> str:
        """One line: what the gateway answered to this request."""
        if self.status is None:
            return f"{self.request}: no answer ({self.reason})"
        schemes = f", WWW-Authenticate {', '.join(self.auth_schemes)}" if self.auth_schemes else ""
        server = f", Server {self.server}" if self.server else ""
        return f"{self.request}: {self.status} {self.reason_phrase}{schemes}{server}".rstrip()


@dataclass(frozen=True)
class RdgHttpResult:
    """The RD Gateway transport probe: the HTTP transport's answer and the RPC-over-HTTP site's."""

    server_name: str
    """The gateway name (SNI and Host header)."""
    out_data: HttpAnswer
    """``RDG_OUT_DATA /remoteDesktopGateway/``: 401 with Negotiate/NTLM when healthy."""
    rpc: HttpAnswer
    """``GET /rpc``: 401 good, 404 no RPC site, 503 application pool stopped."""


def build_request(method: str, path: str, host: str) -> bytes:
    """The request head mstsc sends (less its Authorization header: we only want the challenge)."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        "Accept: */*",
        "Cache-Control: no-cache",
        "Pragma: no-cache",
        "Connection: close",
        "Content-Length: 0",
        "User-Agent: MS-RDGateway/1.0",
    ]
    if method == "RDG_OUT_DATA":
        lines.append(f"RDG-Connection-Id: {{{str(uuid.uuid4()).upper()}}}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def auth_schemes(values: list[str]) -> tuple[str, ...]:
    """Scheme names from WWW-Authenticate values, each of which may list several challenges."""
    schemes: list[str] = []
    for value in values:
        for part in value.split(","):
            token = part.strip().split(" ", 1)[0]
            if token and "=" not in token and token not in schemes:
                schemes.append(token)
    return tuple(schemes)


def parse_response_head(head: bytes) -> tuple[int, str, dict[str, list[str]]]:
    """(status, reason phrase, headers by lower-case name) of an HTTP/1.x response head."""
    text = head.decode("iso-8859-1")
    lines = text.split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if not status_line.startswith("HTTP/1.") or len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
        shown = status_line[:60].encode("unicode_escape").decode("ascii")
        raise HttpProtocolError(f"not an HTTP answer: {shown!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(parts[1]), parts[2].strip() if len(parts) > 2 else "", headers


def _read_head(sock: ssl.SSLSocket | socket.socket, deadline: Deadline) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEADER_BYTES:
            raise HttpProtocolError(f"no end of the response head within {MAX_HEADER_BYTES} bytes")
        sock.settimeout(deadline.remaining())
        chunk = sock.recv(4096)
        if not chunk:
            if not data:
                raise PeerClosed("closed without an HTTP answer")
            if not data.startswith(b"HTTP/"):
                break  # let the parser say what it was
            raise HttpProtocolError(f"the answer ended inside the response head after {len(data)} bytes")
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


def request(server_name: str, address: str, port: int, method: str, path: str, timeout: float) -> HttpAnswer:
    """One request over its own TLS connection; failures are part of the answer."""
    deadline = Deadline(timeout)
    sock, tcp = connect(address, port, deadline)
    if sock is None:
        return HttpAnswer(method, path, tcp, failure=tcp.failure, reason=tcp.reason)
    tls, hs = handshake(sock, server_name, deadline)
    if tls is None:
        return HttpAnswer(method, path, tcp, failure=hs.failure, reason=hs.reason)
    try:
        with tls:
            tls.settimeout(deadline.remaining())
            tls.sendall(build_request(method, path, server_name))
            status, phrase, headers = parse_response_head(_read_head(tls, deadline))
    except HttpProtocolError as exc:
        return HttpAnswer(method, path, tcp, hs.protocol, failure=Failure.GARBAGE, reason=str(exc))
    except (OSError, TimeoutError) as exc:
        failure, reason = classify(exc, what=f"waiting for the answer to {method} {path}", timeout=timeout)
        return HttpAnswer(method, path, tcp, hs.protocol, failure=failure, reason=reason)
    return HttpAnswer(
        method,
        path,
        tcp,
        hs.protocol,
        status=status,
        reason_phrase=phrase,
        auth_schemes=auth_schemes(headers.get("www-authenticate", [])),
        server=", ".join(headers.get("server", [])),
    )


def probe_rdg_http(
    server_name: str, address: str | None = None, port: int = 443, timeout: float = DEFAULT_TIMEOUT_S
) -> RdgHttpResult:
    """Ask the gateway's HTTP transport and its RPC-over-HTTP site for their challenges."""
    target = address or server_name
    return RdgHttpResult(
        server_name,
        out_data=request(server_name, target, port, "RDG_OUT_DATA", OUT_DATA_PATH, timeout),
        rpc=request(server_name, target, port, "GET", RPC_PATH, timeout),
    )
