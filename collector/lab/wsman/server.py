"""The lab host's WinRM endpoint, :class:`WSManServer`: its settings, life cycle, records and
the responder's answers, with the layers it is made of mixed in from the modules beside this one;
and :class:`Blackhole`, the port of a host whose firewall drops every packet."""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib.util
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from collector.lab import hostile as hostile_modes
from collector.lab.wsman.auth import _KEYTAB, _NTLM_USERS, _cbt_application_data, _ntlm_lines, _ServerAuth
from collector.lab.wsman.envelope import _Shell
from collector.lab.wsman.http import _HTTPServer, _server_ssl_context
from collector.lab.wsman.interface import (
    FAULTS,
    OVERSIZE_BYTES,
    SLOW_SECONDS,
    Invocation,
    InvocationResult,
    KerberosService,
    Logon,
    Responder,
)
from collector.lab.wsman.operations import _Operations
from collector.lab.wsman.psrp import _Psrp
from collector.lab.wsman.winrs import _Winrs

log = logging.getLogger(__name__)

# What every probe gets on a host whose PowerShell runs in ConstrainedLanguage (AppLocker, WDAC).
_PIPELINE_ERROR_MESSAGE = (
    "Cannot invoke method. Method invocation is supported only on core types in this language mode."
)


# --------------------------------------------------------------------------------------------
# The server


class WSManServer(_ServerAuth, _Operations, _Psrp, _Winrs):
    """A loopback WinRM endpoint (WS-Management + PSRP + WinRS) answered by a responder.

    Shells are kept per authenticated user, as on Windows; a client that never deletes its shell
    leaves it in ``open_shells``. Use as a context manager, or call ``start()``/``stop()``.

    The server's state lives here; its layers are mixed in: authentication (``auth._ServerAuth``),
    the WS-Management operations (``operations._Operations``), PSRP (``psrp._Psrp``) and WinRS
    (``winrs._Winrs``). The HTTP layer (``http._HTTPServer``) serves it.
    """

    def __init__(
        self,
        responder: Responder,
        *,
        users: Mapping[str, str],
        auth: str = "negotiate",
        tls: tuple[bytes, bytes] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        fault: str | None = None,
        latency: float = 0.0,
        kerberos: KerberosService | None = None,
        slow_seconds: float = SLOW_SECONDS,
        oversize_bytes: int = OVERSIZE_BYTES,
        hostile: str | None = None,
        redirect_to: str = "",
    ) -> None:
        if auth not in ("basic", "negotiate", "kerberos"):
            raise ValueError(f"auth must be 'basic', 'negotiate' or 'kerberos', not {auth!r}")
        if auth == "kerberos" and kerberos is None:
            raise ValueError("auth 'kerberos' needs kerberos=KerberosService(keytab, hostname)")
        if kerberos is not None and auth == "basic":
            raise ValueError("a Basic-only server cannot accept Kerberos; use auth 'negotiate' or 'kerberos'")
        if kerberos is not None and importlib.util.find_spec("gssapi") is None:
            raise RuntimeError("accepting Kerberos needs the gssapi bindings: pip install 'rdp-collector[kerberos]'")
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
        if hostile is not None and hostile not in hostile_modes.WIRE:
            raise ValueError(f"unknown hostile mode {hostile!r}; known: {', '.join(sorted(hostile_modes.WIRE))}")
        if hostile == "redirect" and not redirect_to:
            raise ValueError("hostile mode 'redirect' needs redirect_to, the URL it sends clients to")
        if not users:
            raise ValueError("the lab server needs at least one user")
        if latency < 0 or slow_seconds < 0 or oversize_bytes < 0:
            raise ValueError("latency, slow_seconds and oversize_bytes must not be negative")
        if auth == "negotiate":
            _ntlm_lines(users)  # validate early
        self._responder = responder
        self._users = dict(users)
        self._auth = auth
        self._tls = tls
        self._host = host
        self._requested_port = port
        self._fault = fault
        self._latency = float(latency)
        self._slow_seconds = float(slow_seconds)
        self._oversize_bytes = int(oversize_bytes)
        self._kerberos = kerberos
        self._challenge = "Kerberos" if auth == "kerberos" else "Negotiate"  # the WWW-Authenticate offer
        self._hostile = hostile
        self._redirect_to = redirect_to
        if hostile == "ntlm-only":  # a rogue acceptor: NTLM or nothing
            self._challenge = "NTLM"
        self._hostile_played = False  # the wire modes that spoil one reply do it once per server
        self._requests = 0
        self._ntlm_messages: list[int] = []

        self._lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}
        self._invocations: list[Invocation] = []
        self._logons: list[Logon] = []
        self._threads: set[threading.Thread] = set()
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._bound_port = port
        self._ssl_context: ssl.SSLContext | None = None
        self._cbt: bytes | None = None

    # -- public API

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when constructed with port=0)."""
        return self._bound_port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}/wsman"

    @property
    def open_shells(self) -> int:
        """Shells and runspace pools created and not yet deleted (leak detector)."""
        with self._lock:
            return len(self._shells)

    @property
    def invocations(self) -> list[Invocation]:
        """A copy of every invocation so far, in arrival order."""
        with self._lock:
            return list(self._invocations)

    @property
    def requests(self) -> int:
        """How many HTTP requests reached this server (a credential trap expects none)."""
        with self._lock:
            return self._requests

    @property
    def ntlm_messages(self) -> list[int]:
        """The type of each NTLM message clients sent (1 NEGOTIATE, 3 AUTHENTICATE: the response
        an attacker would crack or relay), in order."""
        with self._lock:
            return list(self._ntlm_messages)

    @property
    def logons(self) -> list[Logon]:
        """A copy of every successful authentication so far (user and package), in order."""
        with self._lock:
            return list(self._logons)

    def start(self) -> None:
        """Bind and serve on a daemon thread; returns once the socket is listening."""
        if self._httpd is not None:
            raise RuntimeError("the lab server is already running")
        self._stopping.clear()
        if self._tls is not None:
            self._ssl_context = _server_ssl_context(*self._tls)
            self._cbt = _cbt_application_data(self._tls[0])
        if self._auth == "negotiate":
            _NTLM_USERS.add(self, self._users)
        try:
            if self._kerberos is not None:
                if not os.path.isfile(self._kerberos.keytab):
                    raise FileNotFoundError(f"no keytab at {self._kerberos.keytab} for {self._kerberos.principal}")
                _KEYTAB.add(self, self._kerberos.keytab)
            httpd = _HTTPServer(self, (self._host, self._requested_port))
        except BaseException:
            _KEYTAB.remove(self)
            if self._auth == "negotiate":
                _NTLM_USERS.remove(self)
            raise
        self._httpd = httpd
        self._bound_port = httpd.server_address[1]
        self._serve_thread = threading.Thread(
            target=httpd.serve,
            name=f"wsman-lab-{self._bound_port}-serve",
            daemon=True,
        )
        self._serve_thread.start()

    def stop(self) -> None:
        """Close the listener and every connection; waiting Receives and a "hang" end at once."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        with self._lock:
            shells = list(self._shells.values())
        for shell in shells:
            with shell.cond:
                shell.cond.notify_all()
        httpd.wake()
        if self._serve_thread is not None:
            self._serve_thread.join(5.0)
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):  # plain shutdown (not SSLSocket's) wakes a blocked recv
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        deadline = time.monotonic() + 5.0
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        _KEYTAB.remove(self)
        if self._auth == "negotiate":
            _NTLM_USERS.remove(self)

    def __enter__(self) -> WSManServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- plumbing used by the HTTP layer

    def _spawn(self, target: Callable[..., Any], *args: Any, name: str) -> None:
        def run() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=f"wsman-lab-{self._bound_port}-{name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _seen_request(self, authorization: str) -> None:
        """Count the request and, for the rogue acceptor and the trap, note any NTLM message in it."""
        _, _, token = authorization.strip().partition(" ")
        kind = None
        if token.strip():
            with contextlib.suppress(binascii.Error, ValueError):
                kind = hostile_modes.ntlm_message_type(base64.b64decode(token.strip(), validate=True))
        with self._lock:
            self._requests += 1
            if kind is not None:
                self._ntlm_messages.append(kind)

    def _play_hostile_once(self) -> bool:
        with self._lock:
            played, self._hostile_played = self._hostile_played, True
        return not played

    def _track_connection(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    # -- records, and the responder's answers

    def _record_logon(self, logon: Logon) -> None:
        with self._lock:
            self._logons.append(logon)

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self._invocations.append(invocation)

    def _call(self, invocation: Invocation) -> InvocationResult:
        """The host's answer to one invocation, once it is ready (runs on the pipeline's thread)."""
        try:
            result = self._responder(invocation)
            if not isinstance(result, InvocationResult):
                raise TypeError(f"the responder returned {type(result).__name__}, not InvocationResult")
        except Exception as exc:  # a broken responder fails the pipeline, it does not kill the server
            log.exception("lab responder failed")
            result = InvocationResult(errors=(f"{type(exc).__name__}: {exc}",))
        if result.delay > 0:  # the host at work; stop() cuts it short
            self._stopping.wait(result.delay)
        return self._pipeline_fault(result)

    def _pipeline_fault(self, result: InvocationResult) -> InvocationResult:
        """Pipeline stage: what the host's PowerShell makes of the answer under a fault."""
        if self._fault == "pipeline-error":  # every pipeline fails, nothing on the output stream
            return InvocationResult(errors=(_PIPELINE_ERROR_MESSAGE,))
        if self._fault == "oversize":  # far more output than any probe prints
            return replace(result, output=(*result.output, "x" * self._oversize_bytes))
        return result


class Blackhole:
    """A loopback port where TCP connects time out, as behind a firewall that drops packets.

    A closed port answers a SYN with a reset (connection refused); here nothing answers at all.
    Linux drops a SYN while the listener's accept queue is full, so a listener with backlog 0
    whose one queued connection is never accepted ignores every further connect. ``start()``
    checks that the OS really behaves so, and refuses to pretend otherwise.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._sockets: list[socket.socket] = []
        self.port = 0

    def start(self) -> Blackhole:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        self._sockets.append(listener)
        try:
            listener.bind((self._host, 0))
            listener.listen(0)
            self.port = listener.getsockname()[1]
            # The one connection the queue holds: completed by the kernel, never accepted.
            self._sockets.append(socket.create_connection((self._host, self.port), timeout=2))
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.2)
                try:
                    probe.connect((self._host, self.port))
                except TimeoutError:
                    return self
                except OSError as exc:
                    raise RuntimeError(f"a connect to a full listen queue failed at once ({exc})") from None
            raise RuntimeError("this OS accepts connects beyond a full listen queue; it cannot blackhole a port")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def __enter__(self) -> Blackhole:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
