"""Authentication of the lab WinRM server: Basic, and pyspnego's NTLM/Negotiate and Kerberos
acceptors, with the process-wide NTLM user file and keytab they read.

NTLM users: pyspnego's NTLM acceptor reads credentials only from the file named by the
process-wide ``NTLM_USER_FILE`` environment variable. While negotiate servers run, the lab keeps
one such file in a private temp dir holding the union of their users (replaced atomically, removed
and the variable restored when the last one stops); each server then also checks that the
authenticated principal is one of *its* users. Two running servers may not give the same user
different passwords (``start()`` raises). A user key ``"name"`` is a local account: it matches a
client name without a domain or with ``.``/this host's NetBIOS name/``WORKSTATION`` as domain; a
key ``"DOMAIN\\name"`` matches only that domain (case-insensitive, as Windows does).

Kerberos: a server given ``kerberos=KerberosService(keytab, hostname)`` accepts tickets for
``HTTP/<hostname>`` only (its acceptor is bound to that principal, as a Windows host can only
decrypt tickets for its own computer account), reading the key from the keytab named by the
process-wide ``KRB5_KTNAME`` (set while such servers run, like ``NTLM_USER_FILE``). A Kerberos
principal ``name@REALM`` is the user ``"DOMAIN\\name"`` when DOMAIN is the realm or its first label
(``collector@LAB.TEST`` is ``LAB\\collector``); local accounts never authenticate with Kerberos.
With ``auth="kerberos"`` the server offers only ``Kerberos`` (a WinRM service with Negotiate
turned off), so clients use the ``HTTP-Kerberos-session-encrypted`` message framing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import spnego
import spnego.channel_bindings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from collector.lab.wsman.envelope import _b64
from collector.lab.wsman.interface import Logon

if TYPE_CHECKING:
    from email.message import Message

    from collector.lab.wsman.interface import KerberosService
    from collector.lab.wsman.server import WSManServer

log = logging.getLogger(__name__)

_LOCAL_DOMAINS = ("", ".", "WORKSTATION")  # plus this host's NetBIOS name, see _local_domains()


def _local_domains() -> tuple[str, ...]:
    return (*_LOCAL_DOMAINS, socket.gethostname().split(".")[0].upper())


def _cbt_application_data(cert_chain_pem: bytes) -> bytes:
    """RFC 5929 tls-server-end-point data of the leaf certificate, computed as WinRM clients do."""
    cert = x509.load_pem_x509_certificate(cert_chain_pem)
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:
        algorithm = None
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return b"tls-server-end-point:" + digest.finalize()


# --------------------------------------------------------------------------------------------
# Users and NTLM credentials


def _split_user(name: str) -> tuple[str | None, str]:
    if "\\" in name:
        domain, _, user = name.partition("\\")
        return domain, user
    return None, name


def _match_user(users: Mapping[str, str], presented: str) -> str | None:
    """The key of ``users`` that a client's account name denotes, or None (see module doc)."""
    domain, user = _split_user(presented)
    domain_cf = (domain or "").casefold()
    local = {d.casefold() for d in _local_domains()}
    for key in users:
        key_domain, key_user = _split_user(key)
        if key_user.casefold() != user.casefold():
            continue
        if key_domain is None and domain_cf in local:
            return key
        if key_domain is not None and key_domain.casefold() == domain_cf:
            return key
    return None


def _match_kerberos_user(users: Mapping[str, str], principal: str) -> str | None:
    """The key of ``users`` that a Kerberos client principal ``name@REALM`` denotes, or None.

    Only domain accounts: ``DOMAIN\\name`` where DOMAIN is the realm or its first label (the
    NetBIOS name AD derives from it), or the principal itself as a key.
    """
    name, at, realm = principal.rpartition("@")
    if not at or not name or "/" in name:  # no realm, or a service principal: never a user
        return None
    domains = {realm.casefold(), realm.split(".")[0].casefold()}
    for key in users:
        if key.casefold() == principal.casefold():
            return key
        key_domain, key_user = _split_user(key)
        if key_domain is not None and key_domain.casefold() in domains and key_user.casefold() == name.casefold():
            return key
    return None


def _ntlm_lines(users: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """(DOMAIN, USER) -> password lines of pyspnego's ``DOMAIN:USER:PASSWORD`` credential file."""
    lines: dict[tuple[str, str], str] = {}
    for key, password in users.items():
        if any(c in f"{key}{password}" for c in ":\r\n"):
            raise ValueError(f"NTLM lab users cannot contain ':' or line breaks (user {key!r})")
        domain, user = _split_user(key)
        for d in _local_domains() if domain is None else (domain,):
            lines[(d.upper(), user.upper())] = f"{d}:{user}:{password}"
    return lines


class _NtlmUserFile:
    """The process-wide NTLM_USER_FILE: the union of all running negotiate servers' users."""

    _UNSET = object()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[int, dict[tuple[str, str], str]] = {}
        self._dir: str | None = None
        self._saved_env: object = self._UNSET

    def add(self, owner: object, users: Mapping[str, str]) -> None:
        lines = _ntlm_lines(users)
        with self._lock:
            for other in self._owners.values():
                for key, line in lines.items():
                    if key in other and other[key] != line:
                        raise ValueError(
                            f"another running lab server has user {key[0]}\\{key[1]} with a different "
                            "password; NTLM users are process-wide (NTLM_USER_FILE)"
                        )
            self._owners[id(owner)] = lines
            self._write()

    def remove(self, owner: object) -> None:
        with self._lock:
            if self._owners.pop(id(owner), None) is None:
                return
            if self._owners:
                self._write()
                return
            if self._dir is not None:
                for name in os.listdir(self._dir):
                    os.unlink(os.path.join(self._dir, name))
                os.rmdir(self._dir)
                self._dir = None
            if self._saved_env is self._UNSET or self._saved_env is None:
                os.environ.pop("NTLM_USER_FILE", None)
            else:
                os.environ["NTLM_USER_FILE"] = str(self._saved_env)
            self._saved_env = self._UNSET

    def _write(self) -> None:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="wsman-lab-ntlm-")
            self._saved_env = os.environ.get("NTLM_USER_FILE")
        merged: dict[tuple[str, str], str] = {}
        for lines in self._owners.values():
            merged.update(lines)
        path = os.path.join(self._dir, "users")
        fd, tmp = tempfile.mkstemp(dir=self._dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in merged.values()))
        os.replace(tmp, path)  # acceptors on other threads read it: never show a half-written file
        os.environ["NTLM_USER_FILE"] = path


_NTLM_USERS = _NtlmUserFile()


class _ProcessKeytab:
    """The process-wide KRB5_KTNAME (MIT's acceptors read their keys from it) for Kerberos servers.

    Every running Kerberos server must use the same keytab (one realm per lab); the previous value
    comes back when the last one stops.
    """

    _UNSET = object()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[int, str] = {}
        self._saved_env: object = self._UNSET

    def add(self, owner: object, keytab: str) -> None:
        with self._lock:
            others = set(self._owners.values()) - {keytab}
            if others:
                raise ValueError(
                    f"another running lab server reads Kerberos keys from {others.pop()}; "
                    "KRB5_KTNAME is process-wide, so all lab servers must share one keytab"
                )
            if not self._owners:
                self._saved_env = os.environ.get("KRB5_KTNAME")
            self._owners[id(owner)] = keytab
            os.environ["KRB5_KTNAME"] = f"FILE:{keytab}"

    def remove(self, owner: object) -> None:
        with self._lock:
            if self._owners.pop(id(owner), None) is None or self._owners:
                return
            if self._saved_env is self._UNSET or self._saved_env is None:
                os.environ.pop("KRB5_KTNAME", None)
            else:
                os.environ["KRB5_KTNAME"] = str(self._saved_env)
            self._saved_env = self._UNSET


_KEYTAB = _ProcessKeytab()


class _ServerAuth:
    """The server side of authentication: checks Basic credentials, makes the acceptor of each
    connection and maps its client to a user (mixed into :class:`WSManServer`)."""

    if TYPE_CHECKING:  # what the server provides
        _users: dict[str, str]
        _auth: str
        _challenge: str
        _kerberos: KerberosService | None
        _cbt: bytes | None

    def _check_basic(self, token: str) -> str | None:
        try:
            raw = base64.b64decode(token, validate=True)
        except binascii.Error:
            return None
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            decoded = raw.decode("latin-1")
        name, sep, password = decoded.partition(":")
        key = _match_user(self._users, name) if sep else None
        if key is None or not hmac.compare_digest(self._users[key].encode(), password.encode()):
            return None
        return key

    def _offer(self) -> str:
        """The WWW-Authenticate challenge of this server's auth."""
        return 'Basic realm="WSMAN"' if self._auth == "basic" else self._challenge

    def _match(self, principal: str, protocol: str = "ntlm") -> str | None:
        if protocol == "kerberos":
            return _match_kerberos_user(self._users, principal)
        return _match_user(self._users, principal)

    def _new_acceptor(self) -> Any:
        bindings = None
        if self._cbt is not None:
            bindings = spnego.channel_bindings.GssChannelBindings(application_data=self._cbt)
        kerberos = self._kerberos
        # For an acceptor the "username" is the service it accepts for (GSS host-based name
        # service@host): the keytab may hold other hosts' keys, and this host must refuse their tickets.
        acceptor = f"{kerberos.service}@{kerberos.hostname}" if kerberos is not None else None
        return spnego.server(
            credentials=acceptor,
            hostname=kerberos.hostname if kerberos is not None else socket.gethostname(),
            service=kerberos.service if kerberos is not None else "HTTP",
            channel_bindings=bindings,
            protocol=self._auth,
            options=spnego.NegotiateOptions.use_negotiate
            if self._auth == "negotiate"
            else spnego.NegotiateOptions.none,
        )


class _ConnectionAuth:
    """The auth state of one keep-alive connection: the challenge, the acceptor's steps and the
    user it authenticated (mixed into the HTTP handler, whose ``_reply`` sends the 401s)."""

    if TYPE_CHECKING:  # what the HTTP handler provides
        lab: WSManServer
        headers: Message
        client_address: Any
        _context: Any
        _user: str | None
        _auth_headers: list[tuple[str, str]]

        def _reply(
            self,
            status: int,
            body: bytes,
            headers: Sequence[tuple[str, str]] = (),
            cut: bool = False,
            sealed: bool = True,
        ) -> None: ...

    # -- auth

    def _authenticate(self) -> str | None:
        """The authenticated user key, or None once a 401 has been sent."""
        scheme, _, token = self.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if self.lab._fault == "unauthorized":  # auth stage: no credentials are good enough
            self._reply(401, b"", [("WWW-Authenticate", self.lab._offer())])
            return None
        if self.lab._auth == "basic":
            user = self.lab._check_basic(token) if scheme.lower() == "basic" else None
            if user is None:
                self._reply(401, b"", [("WWW-Authenticate", 'Basic realm="WSMAN"')])
            else:
                self.lab._record_logon(Logon(user, "Basic"))
            return user
        offered = self.lab._challenge
        schemes = {"negotiate": ("negotiate", "ntlm"), "kerberos": ("kerberos",)}[self.lab._auth]
        if scheme.lower() in schemes and token:
            return self._step_negotiate({"ntlm": "NTLM", "kerberos": "Kerberos"}.get(scheme.lower(), offered), token)
        if self._user is not None:  # Negotiate authenticates the connection, not each request
            return self._user
        self._reply(401, b"", [("WWW-Authenticate", offered)])
        return None

    def _step_negotiate(self, scheme: str, token: str) -> str | None:
        offered = self.lab._challenge
        if self._context is None or self._context.complete:
            self._context = self.lab._new_acceptor()
            self._user = None
        try:
            out_token = self._context.step(base64.b64decode(token, validate=True))
        except Exception as exc:  # wrong password, channel binding mismatch, a ticket for another host
            log.debug("%s auth from %s failed: %s", scheme, self.client_address, exc)
            self._context = None
            self._reply(401, b"", [("WWW-Authenticate", offered)])
            return None
        if not self._context.complete:
            self._reply(401, b"", [("WWW-Authenticate", f"{scheme} {_b64(out_token or b'')}")])
            return None
        user = self.lab._match(self._context.client_principal or "", self._context.negotiated_protocol)
        if user is None:  # a user of another lab server sharing the process-wide NTLM file
            self._context = None
            self._reply(401, b"", [("WWW-Authenticate", offered)])
            return None
        self._user = user
        kerberos = self._context.negotiated_protocol == "kerberos"
        delegated = kerberos and bool(self._context.context_attr & spnego.ContextReq.delegate)
        self.lab._record_logon(Logon(user, "Kerberos" if kerberos else "NTLM", delegated))
        if out_token:
            self._auth_headers = [("WWW-Authenticate", f"{scheme} {_b64(out_token)}")]
        return user
