"""HTTP/1.1 for the lab WinRM server: the listener (plain or TLS), one keep-alive connection
per thread holding its own auth state, request bodies read and answers written, sealed when the
connection is, and what a hostile host writes instead of an answer."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import selectors
import socket
import socketserver
import ssl
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from collector.lab import hostile as hostile_modes
from collector.lab.wsman.auth import _ConnectionAuth
from collector.lab.wsman.encryption import _SPNEGO_ENCRYPTED, _SealedConnection, _wrap_body
from collector.lab.wsman.envelope import _Abort

if TYPE_CHECKING:
    from collector.lab.wsman.server import WSManServer

log = logging.getLogger(__name__)

# The wire modes that spoil one reply (the pool's first answer); "unsealed" spoils every reply.
_SPOILED_REPLIES = frozenset({"dtd-bomb", "attribute-flood", "gzip-bomb", "chunked-flood"})
_MAX_BODY = 64 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# HTTP


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # WSManServer.stop() closes connections and joins its own threads

    def __init__(self, lab: WSManServer, address: tuple[str, int]) -> None:
        self.lab = lab
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self._wake_r, self._wake_w = os.pipe()

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall a sandbox.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]  # type: ignore[assignment]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        context = self.lab._ssl_context
        if context is not None:
            try:  # the handshake runs on the connection's own thread (see _Handler.handle)
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except OSError:
                sock.close()
                raise
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        self.lab._spawn(self.process_request_thread, request, client_address, name="conn")

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("lab connection from %s ended with an error", client_address, exc_info=True)

    def serve(self) -> None:
        """Accept until ``wake``: socketserver's serve_forever polls (a fleet of hundreds of servers
        polling every few milliseconds would spend the lab's CPU, and its GIL, on waking up); this
        sleeps in select() on the listening socket and a wake-up pipe."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = [key.fileobj for key, _ in selector.select()]
                if self._wake_r in ready:
                    return
                self._handle_request_noblock()  # type: ignore[attr-defined]

    def wake(self) -> None:
        """End ``serve`` (from any thread, before or while it runs)."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def server_close(self) -> None:
        super().server_close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Handler(_ConnectionAuth, _SealedConnection, http.server.BaseHTTPRequestHandler):
    """One keep-alive connection: its auth state (NTLM context) lives as long as the connection."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACK costs ~40 ms per request
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.lab = self.server.lab
        self._context: Any = None
        self._user: str | None = None
        self._encrypted = False
        self._protocol = _SPNEGO_ENCRYPTED  # the framing the client used, answered in kind
        self._auth_headers: list[tuple[str, str]] = []
        self.lab._track_connection(self.request, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.lab._track_connection(self.request, False)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.settimeout(10)
                self.connection.do_handshake()
                self.connection.settimeout(None)
            except (OSError, ValueError) as exc:
                log.debug("TLS handshake with %s failed: %s", self.client_address, exc)
                self.close_connection = True
                return
        super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _not_allowed(self) -> None:
        self._reply(405, b"", [("Allow", "POST")])

    do_GET = do_PUT = do_DELETE = do_HEAD = _not_allowed

    def do_POST(self) -> None:
        self._encrypted = False
        body = self._read_body()
        if body is None:
            return
        self.lab._seen_request(self.headers.get("Authorization", ""))
        if self.lab._hostile == "redirect":  # elsewhere, where NTLM would be completed for the taker
            self._reply(307, b"", [("Location", self.lab._redirect_to)])
            return
        if self.lab._fault == "hang":  # request stage: read it, never answer (until stop())
            self.lab._stopping.wait()
            self.close_connection = True
            return
        if self.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            self._reply(404, b"")
            return
        user = self._authenticate()
        if user is None:
            return
        try:
            envelope = self._decrypt(body)
        except Exception as exc:
            log.debug("cannot decrypt a request from %s: %s", self.client_address, exc)
            self._reply(400, b"")
            self.close_connection = True
            return
        if not envelope.strip():  # the empty POST a client sends to set up the security context
            self._reply(200, b"")
            return
        try:
            answer = self.lab._handle_envelope(envelope, user, self.client_address[0])
        except _Abort:
            self.close_connection = True
            return
        if self.lab._hostile in _SPOILED_REPLIES and self.lab._play_hostile_once():
            self._hostile_reply()
            return
        self._reply(answer.status, answer.body, cut=answer.cut, sealed=self.lab._hostile != "unsealed")

    def _hostile_reply(self) -> None:
        """One reply as a compromised host would write it (see collector.lab.hostile)."""
        mode = self.lab._hostile
        if mode == "dtd-bomb":
            self._reply(200, hostile_modes.dtd_bomb())
        elif mode == "attribute-flood":
            self._reply(200, hostile_modes.attribute_flood())
        elif mode == "gzip-bomb":
            self._reply(200, hostile_modes.gzip_bomb(), [("Content-Encoding", "gzip")], sealed=False)
        elif mode == "chunked-flood":
            self.send_response(200)
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            with contextlib.suppress(OSError):  # the collector hangs up once it has read enough
                for chunk in hostile_modes.flood_chunks():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")

    # -- HTTP plumbing

    def _read_body(self) -> bytes | None:
        """The request body, or None once the connection is to be dropped (answered if possible)."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = b""
                while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                    if len(body) > _MAX_BODY:
                        raise OverflowError
                while self.rfile.readline().strip():  # trailers
                    pass
                return body
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= _MAX_BODY:
                raise OverflowError
        except ValueError:
            self._reply(400, b"")
        except OverflowError:
            self._reply(413, b"")
        else:
            body = self.rfile.read(length)
            if len(body) == length:
                return body
        self.close_connection = True
        return None

    def _reply(
        self,
        status: int,
        body: bytes,
        headers: Sequence[tuple[str, str]] = (),
        cut: bool = False,
        sealed: bool = True,
    ) -> None:
        delay = self.lab._latency + (self.lab._slow_seconds if self.lab._fault == "slow" else 0.0)
        if delay > 0:  # simulated network/host latency (and fault "slow"), cut short by stop()
            self.lab._stopping.wait(delay)
        all_headers = [*headers, *self._auth_headers]
        self._auth_headers = []
        content_type = "application/soap+xml;charset=UTF-8"
        if body and self._encrypted and status != 401 and sealed:
            body = _wrap_body(self._context, body, self._protocol)
            content_type = f'multipart/encrypted;protocol="{self._protocol}";boundary="Encrypted Boundary"'
        self.send_response(status)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in all_headers:
            self.send_header(name, value)
        self.end_headers()
        if cut:  # fault "truncated": Content-Length promises the whole body; half comes, then EOF
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif body:
            self.wfile.write(body)


def _server_ssl_context(cert_chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="wsman-lab-tls-") as tmp:  # ssl loads keys from files only
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as handle:
            handle.write(cert_chain_pem)
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context
