"""Lab endpoints for the local probes: an RD Gateway's 443 and a session host's 3389, on loopback.

- ``GatewayServer``: real TLS serving a chosen chain; ``RDG_OUT_DATA /remoteDesktopGateway/``
  gets 401 with ``WWW-Authenticate: Negotiate`` and ``NTLM`` (as a healthy gateway answers before
  logon), ``GET /rpc`` gets 401; both statuses are configurable to play a broken gateway.
- ``RdpListenerServer``: answers the X.224 Connection Request the way Windows does for its
  ``SecurityLayer`` / ``UserAuthentication`` settings (or with a forced RDP_NEG_FAILURE code),
  then TLS with a chosen chain on the same socket when TLS or CredSSP was selected.

Both bind to loopback port 0, serve each connection on its own thread, and stop promptly (open
connections are shut down): ``LoopbackServer`` does that for any endpoint whose ``handle`` answers
one connection. Use like ``collector.lab.wsman.WSManServer``: ``start()``/``stop()``, ``port``, or
as a context manager. Chains come from ``collector.lab.pki.variant_chain``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Sequence
from typing import Self

log = logging.getLogger(__name__)

IO_TIMEOUT_S = 5.0  # a lab connection that stalls longer than this is dropped

# requestedProtocols / selectedProtocol flags of RDP_NEG_REQ and RDP_NEG_RSP (MS-RDPBCGR 2.2.1.1.1,
# 2.2.1.2.1), as the listener reads and answers them: the lab's own copy, so that the listener is a
# peer of the collector's RDP probe rather than an echo of it.
PROTOCOL_RDP = 0x00
PROTOCOL_SSL = 0x01
PROTOCOL_HYBRID = 0x02
PROTOCOL_HYBRID_EX = 0x08
TLS_PROTOCOLS = frozenset({PROTOCOL_SSL, PROTOCOL_HYBRID, PROTOCOL_HYBRID_EX})
"""Selected protocols after which the connection continues with a TLS handshake."""


def server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context for a chosen chain, weak ones included (RSA-1024, SHA-1).

    Security level 0 must be set before the chain is loaded: OpenSSL checks keys and signatures
    at load time. The chain file's order is the order sent, so broken orders reach the client.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ALL:@SECLEVEL=0")
    with tempfile.TemporaryDirectory(prefix="collect-lab-endpoint-") as tmp:  # ssl loads from files only
        cert_path, key_path = os.path.join(tmp, "chain.pem"), os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as handle:
            handle.write(chain_pem)
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


class LoopbackServer:
    """Accept loop on its own thread, one thread per connection, prompt stop."""

    kind = "endpoint"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._bound_port = port
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self.accepted = 0
        """Connections accepted so far (tests use it to see that a probe really connected)."""

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when constructed with port=0)."""
        return self._bound_port

    @property
    def host(self) -> str:
        return self._host

    def start(self) -> None:
        """Bind and listen; returns once connections are accepted."""
        if self._listener is not None:
            raise RuntimeError(f"the lab {self.kind} is already running")
        self._stopping.clear()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # Blocking accept, no polling: a fleet of hundreds of listeners waking every few milliseconds
        # would spend the lab's CPU (and its GIL) on nothing; stop() wakes it with a connection.
        listener = socket.create_server((self._host, self._requested_port), family=family, backlog=64)
        self._listener = listener
        self._bound_port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"lab-{self.kind}-{self._bound_port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop accepting, shut down open connections and wait (bounded) for their threads."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            socket.create_connection(listener.getsockname()[:2], timeout=1.0).close()
        if self._accept_thread is not None:
            self._accept_thread.join(2.0)
        listener.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):  # plain shutdown (not SSLSocket's) wakes a blocked recv
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        for thread in threads:
            thread.join(2.0)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if self._stopping.is_set():  # the wake-up from stop()
                conn.close()
                return
            conn.settimeout(IO_TIMEOUT_S)
            with self._lock:
                self.accepted += 1
                self._conns.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except (OSError, ValueError) as exc:  # a client that goes away mid-way is normal here
            log.debug("lab %s connection ended: %s", self.kind, exc)
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())

    def _track(self, old: socket.socket, new: socket.socket) -> None:
        """Swap the tracked socket after a TLS wrap, so stop() shuts the live one down."""
        with self._lock:
            self._conns.discard(old)
            self._conns.add(new)

    def handle(self, conn: socket.socket) -> None:
        """Answer one accepted connection: each endpoint kind (gateway, RDP listener) defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not answer connections")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _drain_until_closed(conn: socket.socket) -> None:
    """Wait for the client to hang up (it only wanted the handshake), bounded by the I/O timeout."""
    with contextlib.suppress(OSError, ssl.SSLError):
        while conn.recv(4096):
            pass


# --- RD Gateway 443 ------------------------------------------------------------------------------


class GatewayServer(LoopbackServer):
    """An RD Gateway's TLS listener: a chosen chain, and the HTTP transport's pre-logon answers."""

    kind = "gateway"

    def __init__(
        self,
        tls: tuple[bytes, bytes],
        *,
        out_data_status: int = 401,
        rpc_status: int = 401,
        auth_schemes: Sequence[str] = ("Negotiate", "NTLM"),
        raw_answer: bytes | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``raw_answer`` replaces every HTTP answer with these bytes (a device that is not a gateway)."""
        super().__init__(host, port)
        self._context = server_context(*tls)
        self.raw_answer = raw_answer
        self.out_data_status = out_data_status
        self.rpc_status = rpc_status
        self.auth_schemes = tuple(auth_schemes)
        self.requests: list[str] = []
        """Request lines received, in order."""

    def handle(self, conn: socket.socket) -> None:
        tls = self._context.wrap_socket(conn, server_side=True)
        self._track(conn, tls)
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            with self._lock:
                self.requests.append(request_line)
            method, _, rest = request_line.partition(" ")
            path = rest.split(" ", 1)[0].lower()
            if self.raw_answer is not None:
                tls.sendall(self.raw_answer)
            elif method == "RDG_OUT_DATA" and path.rstrip("/") == "/remotedesktopgateway":
                tls.sendall(self._response(self.out_data_status, "Microsoft-HTTPAPI/2.0"))
            elif method == "GET" and path.rstrip("/") == "/rpc":
                tls.sendall(self._response(self.rpc_status, "Microsoft-IIS/10.0"))
            else:
                tls.sendall(self._response(404, "Microsoft-HTTPAPI/2.0"))
        finally:
            with contextlib.suppress(OSError, ssl.SSLError):
                tls.unwrap()
            tls.close()

    def _response(self, status: int, server: str) -> bytes:
        phrases = {401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}
        body = f"{status} {phrases.get(status, 'Status')}".encode()
        lines = [f"HTTP/1.1 {status} {phrases.get(status, 'Status')}", f"Server: {server}"]
        if status == 401:
            lines += [f"WWW-Authenticate: {scheme}" for scheme in self.auth_schemes]
        lines += ["Content-Type: text/plain", f"Content-Length: {len(body)}", "Connection: close"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- session host 3389 ---------------------------------------------------------------------------

SECURITY_LAYERS = ("rdp", "negotiate", "tls")
"""Windows' RDP-Tcp SecurityLayer values 0, 1 and 2."""

_FAIL_SSL_REQUIRED, _FAIL_SSL_NOT_ALLOWED, _FAIL_HYBRID_REQUIRED = 1, 2, 5


def decide(requested: int | None, security_layer: str, user_authentication: bool) -> tuple[int | None, int | None]:
    """(selected protocol, failure code) the way a Windows listener decides (MS-RDPBCGR 3.3.5.3.1).

    ``requested`` None means the client sent no RDP_NEG_REQ (a pre-RDP 5.2 client). NLA
    (UserAuthentication=1) makes CredSSP mandatory, whatever the security layer says.
    """
    if security_layer not in SECURITY_LAYERS:
        raise ValueError(f"security_layer must be one of {', '.join(SECURITY_LAYERS)}, not {security_layer!r}")
    offered = requested or PROTOCOL_RDP
    nla = offered & PROTOCOL_HYBRID_EX or offered & PROTOCOL_HYBRID
    if security_layer == "rdp":
        if offered & (PROTOCOL_SSL | PROTOCOL_HYBRID | PROTOCOL_HYBRID_EX):
            return None, _FAIL_SSL_NOT_ALLOWED
        return PROTOCOL_RDP, None
    if user_authentication and not nla:
        return None, _FAIL_HYBRID_REQUIRED
    if nla:
        return (PROTOCOL_HYBRID_EX if offered & PROTOCOL_HYBRID_EX else PROTOCOL_HYBRID), None
    if offered & PROTOCOL_SSL:
        return PROTOCOL_SSL, None
    if security_layer == "tls":
        return None, _FAIL_SSL_REQUIRED
    return PROTOCOL_RDP, None


def connection_confirm(selected: int | None, failure: int | None, *, with_negotiation: bool = True) -> bytes:
    """TPKT + X.224 Connection Confirm with RDP_NEG_RSP (selected) or RDP_NEG_FAILURE (failure)."""
    neg = b""
    if with_negotiation:
        if failure is not None:
            neg = struct.pack("<BBHI", 0x03, 0, 8, failure)
        else:
            neg = struct.pack("<BBHI", 0x02, 0x01, 8, selected or PROTOCOL_RDP)  # EXTENDED_CLIENT_DATA
    x224 = bytes([6 + len(neg), 0xD0, 0, 0, 0x12, 0x34, 0]) + neg
    return struct.pack(">BBH", 3, 0, 4 + len(x224)) + x224


def requested_protocols(request: bytes) -> int | None:
    """requestedProtocols from a Connection Request's RDP_NEG_REQ; None when there is none.

    A routing token or cookie (``Cookie: mstshash=...\\r\\n``) may precede it; raises ValueError when
    the bytes are not a Connection Request.
    """
    if len(request) < 11 or request[0] != 3 or request[5] & 0xF0 != 0xE0:
        raise ValueError("not an X.224 Connection Request")
    variable = request[11:]
    if b"\r\n" in variable[:256] and variable[:1] != b"\x01":
        variable = variable.split(b"\r\n", 1)[1]
    if len(variable) >= 8 and variable[0] == 0x01:
        return int(struct.unpack("<I", variable[4:8])[0])
    return None


class RdpListenerServer(LoopbackServer):
    """A session host's RDP listener up to the end of the TLS handshake."""

    kind = "rdp-listener"

    def __init__(
        self,
        tls: tuple[bytes, bytes] | None,
        *,
        security_layer: str = "negotiate",
        user_authentication: bool = True,
        failure_code: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``tls`` None plays a listener without a usable certificate: it answers TLS requests with
        RDP_NEG_FAILURE SSL_CERT_NOT_ON_SERVER (3), as Windows does. ``failure_code`` forces a code."""
        super().__init__(host, port)
        decide(None, security_layer, user_authentication)  # validate early
        self._context = server_context(*tls) if tls is not None else None
        self.security_layer = security_layer
        self.user_authentication = user_authentication
        self.failure_code = failure_code
        self.requested: list[int | None] = []
        """requestedProtocols of each Connection Request received, in order."""

    def handle(self, conn: socket.socket) -> None:
        header = _recv_exact(conn, 4)
        if len(header) < 4 or header[0] != 3:
            return
        length = struct.unpack(">H", header[2:4])[0]
        request = header + _recv_exact(conn, max(0, min(length, 4096) - 4))
        requested = requested_protocols(request)
        with self._lock:
            self.requested.append(requested)
        selected, failure = decide(requested, self.security_layer, self.user_authentication)
        if self.failure_code is not None:
            selected, failure = None, self.failure_code
        elif selected in TLS_PROTOCOLS and self._context is None:
            selected, failure = None, 3  # SSL_CERT_NOT_ON_SERVER
        conn.sendall(connection_confirm(selected, failure, with_negotiation=requested is not None))
        if selected not in TLS_PROTOCOLS or self._context is None:
            return
        tls = self._context.wrap_socket(conn, server_side=True)
        self._track(conn, tls)
        # CredSSP (NLA) or the MCS connect would follow; the probe stops after the handshake.
        _drain_until_closed(tls)
        tls.close()
