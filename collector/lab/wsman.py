"""A simulated Windows WinRM endpoint on loopback that unmodified WinRM clients talk to.

The lab (product demo, protocol-path tests) needs the real wire protocol, not a mock of our own
client: pypsrp and pywinrm connect to this server exactly as they connect to Windows. It speaks
HTTP/1.1 with keep-alive, Basic, Negotiate (NTLM, and Kerberos when given a
:class:`KerberosService`) or Kerberos-only auth (pyspnego acceptors) with MS-WSMV message
encryption over HTTP or channel binding over HTTPS, WS-Management (Create, Command, Send,
Receive, Signal, Delete, Get, Enumerate, Identify) and, for PowerShell shells, PSRP (psrpcore's
server side). WinRS cmd shells run ``powershell -EncodedCommand`` the way ``winrm.Session.run_ps``
sends it.

Nothing is executed: every pipeline or command becomes an :class:`Invocation` that a *responder*
answers with an :class:`InvocationResult`; the server turns that into PSRP output/error records
or WinRS stdout/stderr and an exit code. Not simulated: CredSSP and certificate auth, and the
disconnected-session actions (Connect, Disconnect, Reconnect), which get the WS-Man fault for an
unsupported action.

Faults: ``fault=`` makes the server fail the way real hosts do, each at the protocol stage where
that failure happens (see ``FAULTS``), so the collector's handling is tested against the wire
protocol; :class:`Blackhole` is a port where connects time out instead.

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
import contextlib
import datetime
import decimal
import functools
import hmac
import http.server
import importlib.util
import logging
import os
import re
import selectors
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import psrpcore
import spnego
import spnego.channel_bindings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from psrpcore.types import (
    ClixmlStream,
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSChar,
    PSInvocationState,
    PSObject,
    PSQueue,
    PSSecureString,
    PSVersion,
    serialize_clixml,
)

from collector.lab import hostile as hostile_modes

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Public interface


@dataclass(frozen=True)
class Invocation:
    """One script run that a client asked for; what the responder sees and tests assert on."""

    script: str  # script text exactly as the client sent it (decoded for -EncodedCommand)
    parameters: Mapping[str, Any]  # named parameters as plain Python values (data, never code)
    transport: str  # "psrp" (runspace pool pipeline) or "winrs" (cmd shell command)


@dataclass(frozen=True)
class InvocationResult:
    """What the simulated host answers; becomes PSRP records or WinRS stdout/stderr + exit code."""

    output: Sequence[Any] = ()  # output stream objects; for winrs each becomes stdout line(s)
    errors: Sequence[str] = ()  # error messages; any error fails the pipeline / exits 1
    # Seconds the host works before the output is ready. The server waits on the pipeline's own
    # thread (never the request thread), so other pipelines of the pool and other hosts go on.
    delay: float = 0.0


Responder = Callable[[Invocation], InvocationResult]


@dataclass(frozen=True)
class Logon:
    """One successful authentication, as Windows logs it (Security event 4624's package name)."""

    user: str  # the key of ``users`` the client authenticated as
    package: str  # "Kerberos", "NTLM" or "Basic"
    delegated: bool = False  # the client forwarded its Kerberos TGT (credential delegation)


@dataclass(frozen=True)
class KerberosService:
    """The Kerberos identity of one lab host: it accepts tickets for ``<service>/<hostname>`` only.

    A Windows host decrypts only tickets issued to its own computer account; binding the acceptor
    to the host's principal makes a ticket for another name fail here as it would there.
    """

    keytab: str  # a keytab holding the key of <service>/<hostname>@REALM
    hostname: str  # the host's DNS name, e.g. gw01.lab.test (not the address it listens on)
    service: str = "HTTP"  # what WinRM registers and Invoke-Command asks for

    @property
    def principal(self) -> str:
        return f"{self.service}/{self.hostname}"


# Faults the server can be told to simulate, each one branch at the protocol stage where it bites:
#   HTTP request   "hang"            the request is read and never answered (until stop())
#   HTTP reply     "slow"            every answer, 401s included, comes ``slow_seconds`` late
#   auth           "unauthorized"    401 whatever the credentials
#   envelope       "http500"         every authenticated request answered with a WS-Man fault
#                  "malformed-xml"   HTTP 200 whose body is not XML (nothing is dispatched)
#   runspace pool  "broken-pool"     the pool goes Broken right after it opens (its host process died)
#   pipeline       "pipeline-error"  every pipeline fails with one ErrorRecord and no output
#                  "oversize"        every pipeline writes ``oversize_bytes`` more output than it should
#   Receive        "truncated"       a Receive that carries a command's output is cut off mid-body
# (Refused and timed-out connects need no server: nothing listening, or a :class:`Blackhole`.)
FAULTS = frozenset(
    {
        "hang",
        "slow",
        "unauthorized",
        "http500",
        "malformed-xml",
        "broken-pool",
        "pipeline-error",
        "oversize",
        "truncated",
    }
)
SLOW_SECONDS = 0.5  # the default delay of every answer under fault "slow"
OVERSIZE_BYTES = 20 * 1024 * 1024  # the default extra output under fault "oversize": more than a collector holds


# --------------------------------------------------------------------------------------------
# WS-Management constants

_NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "n": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "wsmid": "http://schemas.dmtf.org/wbem/wsman/identify/1/wsmanidentity.xsd",
    "pwsh": "http://schemas.microsoft.com/powershell",
}
_ROOT_NS = " ".join(f"xmlns:{k}={quoteattr(v)}" for k, v in _NS.items() if k not in ("f", "wsmid"))

_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_ENUM = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/"
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
_FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
_CMD_URI = _SHELL + "/cmd"
_PS_URI_PREFIX = "http://schemas.microsoft.com/powershell/"
_CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
_STATE_DONE = _SHELL + "/CommandState/Done"
_STATE_RUNNING = _SHELL + "/CommandState/Running"
_SIGNAL_TERMINATE = _SHELL + "/signal/terminate"
_SIGNAL_CTRL_C = _SHELL + "/signal/ctrl_c"
# Windows spells the PowerShell stop signal "crtl_c"; pypsrp sends "ctrl_c". Accept both.
_SIGNAL_PS_STOP = {"powershell/signal/crtl_c", "powershell/signal/ctrl_c"}

# wsmerror.h codes this server answers with.
_E_RESOURCE_NOT_FOUND = 2150858752
_E_INVALID_ACTIONURI = 2150858753
_E_OPERATION_TIMEDOUT = 2150858793
_E_UNSUPPORTED_FEATURE = 2150858818
_E_INVALID_XML = 2150858819
_E_MAX_ENVELOPE_SIZE_EXCEEDED = 2150858824
_E_UNEXPECTED_SELECTORS = 2150858843
_E_PROVIDER_FAILURE = 2150858755

_SERVER_MAX_ENVELOPE = 512_000  # MaxEnvelopeSizekb=500, the default since Server 2012
# What fault "malformed-xml" answers with: a middlebox's HTML page, which no XML parser accepts.
# The wire modes that spoil one reply (the pool's first answer); "unsealed" spoils every reply.
_SPOILED_REPLIES = frozenset({"dtd-bomb", "attribute-flood", "gzip-bomb", "chunked-flood"})
_NOT_XML = b"<html><body><h1>Request blocked</h1>Policy&nbsp;violation<br></body></html>"
# Windows' words when the host process of a session (wsmprovhost.exe) dies or exceeds its quota.
_BROKEN_POOL_MESSAGE = (
    "The WSMan provider host process did not return a proper response.  A provider in the host process "
    "may have behaved improperly."
)
# What every probe gets on a host whose PowerShell runs in ConstrainedLanguage (AppLocker, WDAC).
_PIPELINE_ERROR_MESSAGE = (
    "Cannot invoke method. Method invocation is supported only on core types in this language mode."
)
_STATUS_CONTROL_C_EXIT = -1073741510  # 0xC000013A as a signed exit code
_LOCAL_DOMAINS = ("", ".", "WORKSTATION")  # plus this host's NetBIOS name, see _local_domains()
_MAX_BODY = 64 * 1024 * 1024


def _local_domains() -> tuple[str, ...]:
    return (*_LOCAL_DOMAINS, socket.gethostname().split(".")[0].upper())


class _Fault(Exception):
    """A WS-Management fault to answer with (HTTP 500 and s:Fault, as WinRM does)."""

    def __init__(self, code: int, reason: str, subcode: str = "w:InternalError", sender: bool = False):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.subcode = subcode
        self.sender = sender


class _Abort(Exception):
    """Drop the connection without an answer (server stopping)."""


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer to a WS-Man request; ``cut`` sends only half of it, then hangs up."""

    status: int
    body: bytes
    cut: bool = False


def _shell_not_found(shell_id: str) -> _Fault:
    return _Fault(
        _E_UNEXPECTED_SELECTORS,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was "
        "not found on the server. Possible causes are: the specified ShellId is incorrect or the shell no "
        "longer exists on the server. Provide the correct ShellId or create a new shell and retry the "
        "operation.",
        "w:InvalidSelectors",
        sender=True,
    )


# --------------------------------------------------------------------------------------------
# Envelopes


def _envelope(action: str | None, relates_to: str | None, body: str) -> bytes:
    header = ""
    if action is not None:
        header = (
            f"<a:Action>{escape(action)}</a:Action>"
            f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
            f"<a:To>{_ANONYMOUS}</a:To>"
        )
        if relates_to:
            header += f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
    return (
        f'<s:Envelope xml:lang="en-US" {_ROOT_NS}><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


def _fault_envelope(fault: _Fault, relates_to: str | None) -> bytes:
    machine = socket.gethostname()
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>{'s:Sender' if fault.sender else 's:Receiver'}</s:Value>"
        f"<s:Subcode><s:Value>{escape(fault.subcode)}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault xmlns:f="{_NS["f"]}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault></s:Detail>"
        "</s:Fault>"
    )
    return _envelope(_FAULT_ACTION, relates_to, body)


def _duration_seconds(text: str | None, default: float) -> float:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?", (text or "").strip())
    if not match or not any(match.groups()):
        return default
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _q(prefix: str, name: str) -> str:
    return f"{{{_NS[prefix]}}}{name}"


@dataclass
class _Request:
    """The parts of a WS-Man request envelope the server acts on."""

    action: str
    message_id: str
    resource_uri: str
    selectors: dict[str, str]
    options: dict[str, str]
    operation_timeout: float
    max_envelope: int
    body: ET.Element
    user: str
    client_ip: str

    @classmethod
    def parse(cls, envelope: bytes, user: str, client_ip: str) -> _Request:
        try:
            root = ET.fromstring(envelope)  # noqa: S314 - loopback lab; expat resolves no entities
        except ET.ParseError as exc:
            raise _Fault(_E_INVALID_XML, f"The request is not well-formed XML: {exc}", "w:InvalidXml", True) from None
        header = root.find("s:Header", _NS)
        body = root.find("s:Body", _NS)
        if root.tag != _q("s", "Envelope") or header is None or body is None:
            raise _Fault(_E_INVALID_XML, "The request is not a SOAP 1.2 envelope.", "w:InvalidXml", True)

        def text(path: str) -> str:
            node = header.find(path, _NS)
            return (node.text or "").strip() if node is not None else ""

        selectors = {s.get("Name", ""): (s.text or "").strip() for s in header.findall("w:SelectorSet/w:Selector", _NS)}
        options = {o.get("Name", ""): (o.text or "").strip() for o in header.findall("w:OptionSet/w:Option", _NS)}
        try:
            max_envelope = int(text("w:MaxEnvelopeSize") or 153600)
        except ValueError:
            max_envelope = 153600
        return cls(
            action=text("a:Action"),
            message_id=text("a:MessageID"),
            resource_uri=text("w:ResourceURI"),
            selectors=selectors,
            options=options,
            operation_timeout=_duration_seconds(text("w:OperationTimeout"), 60.0),
            max_envelope=max_envelope,
            body=body,
            user=user,
            client_ip=client_ip,
        )


# --------------------------------------------------------------------------------------------
# Value conversion


def _plain(value: Any, _depth: int = 0) -> Any:
    """A psrpcore-deserialized value as a plain Python value (what a responder may rely on)."""
    if _depth > 32:
        return str(value)
    nxt = _depth + 1
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, PSChar):
        return chr(int(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        return datetime.datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, value.tzinfo,
        )  # fmt: skip
    if isinstance(value, datetime.timedelta):
        return datetime.timedelta(days=value.days, seconds=value.seconds, microseconds=value.microseconds)
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int)
    if isinstance(value, dict):
        return {_plain(k, nxt): _plain(v, nxt) for k, v in value.items()}
    if isinstance(value, PSQueue):
        return [_plain(v, nxt) for v in list(value.queue)]
    if isinstance(value, list | tuple):
        return [_plain(v, nxt) for v in value]
    if isinstance(value, PSSecureString):
        try:
            return value.decrypt()
        except Exception:  # no session key exchanged: keep it opaque, as PowerShell would
            return None
    if isinstance(value, PSVersion):
        return str(value)
    if isinstance(value, PSObject):
        meta = value.PSObject
        names = [p.name for p in meta.adapted_properties] + [p.name for p in meta.extended_properties]
        return {name: _plain(value[name], nxt) for name in dict.fromkeys(names)}
    return value


def _text_lines(item: Any) -> list[str]:
    """What ``Out-String -Stream`` (and powershell.exe's console output) makes of one object."""
    if item is None:
        return []
    if isinstance(item, list | tuple):
        return [line for sub in item for line in _text_lines(sub)]
    text = item if isinstance(item, str) else str(item)
    return text.splitlines() or [""]


def _error_record(message: str, terminating: bool) -> ErrorRecord:
    """An ErrorRecord as Windows PowerShell makes it for ``throw`` (terminating) or ``Write-Error``."""
    exception_type = (
        "System.Management.Automation.RuntimeException"
        if terminating
        else "Microsoft.PowerShell.Commands.WriteErrorException"
    )
    exc = NETException(Message=message, HResult=-2146233087)
    exc.PSObject.type_names = [exception_type, "System.SystemException", "System.Exception", "System.Object"]
    if terminating:
        category = ErrorCategoryInfo(Category=ErrorCategory.OperationStopped, Reason="RuntimeException")
        fqid = "RuntimeException"
    else:
        category = ErrorCategoryInfo(
            Category=ErrorCategory.NotSpecified, Activity="Write-Error", Reason="WriteErrorException"
        )
        fqid = "Microsoft.PowerShell.Commands.WriteErrorException"
    record = ErrorRecord(Exception=exc, CategoryInfo=category, FullyQualifiedErrorId=fqid)
    record.PSObject.to_string = message  # what str(record) shows on the client
    return record


def _describe_pipeline(ps: psrpcore.PowerShell) -> tuple[str, dict[str, Any], bool]:
    """(script, parameters, ends with Out-String) of a PSRP pipeline.

    ``execute_ps`` wraps the script as ``Invoke-Expression -Command <script> | Out-String
    -Stream``: the script is that value. Otherwise it is the first command's text (the script of
    ``add_script``, the name of ``add_cmdlet``) with its named parameters; positional arguments,
    if any, arrive under ``"$args"`` (PowerShell's name for unbound positional arguments).
    """
    commands = list(ps.commands)
    out_string = bool(commands) and commands[-1].command_text.strip().lower() == "out-string"
    for cmd in commands:
        if not cmd.is_script and cmd.command_text.strip().lower() in ("invoke-expression", "iex"):
            named = {str(n).lower(): v for n, v in cmd.parameters if n is not None}
            positional = [v for n, v in cmd.parameters if n is None]
            script = named.get("command", positional[0] if positional else None)
            if script is not None:
                return str(script), {}, out_string
    if not commands:
        return "", {}, out_string
    first = commands[0]
    params: dict[str, Any] = {}
    positional_args = []
    for name, value in first.parameters:
        if name is None:
            positional_args.append(_plain(value))
        else:
            params[str(name)] = _plain(value)
    if positional_args:
        params["$args"] = positional_args
    return first.command_text, params, out_string


def _decode_powershell(command_line: str) -> str | None:
    """The script of ``powershell[.exe] ... -EncodedCommand <base64 UTF-16LE>``, else None."""
    tokens = command_line.split()
    exe = os.path.basename(tokens[0].strip('"').replace("\\", "/")).lower() if tokens else ""
    if exe not in ("powershell", "powershell.exe", "pwsh", "pwsh.exe"):
        return None
    for i, token in enumerate(tokens[1:-1], start=1):
        name = token.lstrip("-/").lower()
        if token[:1] in "-/" and (name == "ec" or (name and "encodedcommand".startswith(name))):
            try:
                return base64.b64decode(tokens[i + 1], validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def _codec(codepage: int) -> str:
    if codepage == 65001:
        return "utf-8"
    try:
        "".encode(f"cp{codepage}")
    except LookupError:
        return "utf-8"
    return f"cp{codepage}"


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


# --------------------------------------------------------------------------------------------
# MS-WSMV 2.2.9.1 message encryption framing

_BOUNDARY = b"--Encrypted Boundary"
_SPNEGO_ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
# What a client that authenticated with the "Kerberos" scheme (not "Negotiate") frames its messages as.
_KERBEROS_ENCRYPTED = "application/HTTP-Kerberos-session-encrypted"


def _unwrap_body(context: Any, body: bytes) -> bytes:
    parts = [p for p in re.split(re.escape(_BOUNDARY) + rb"\r\n", body) if p]
    message = b""
    for header, payload in zip(parts[0::2], parts[1::2], strict=False):
        length = re.search(rb"Length=(\d+)", header)
        if length is None:
            raise ValueError("encrypted part without OriginalContent length")
        payload = re.sub(re.escape(_BOUNDARY) + rb"--\r\n$", b"", payload)
        payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        (header_len,) = struct.unpack("<I", payload[:4])
        plain = context.unwrap_winrm(payload[4 : 4 + header_len], payload[4 + header_len :])
        if len(plain) != int(length.group(1)):
            raise ValueError("decrypted length does not match OriginalContent length")
        message += plain
    return message


def _wrap_body(context: Any, message: bytes, protocol: str = _SPNEGO_ENCRYPTED) -> bytes:
    header, data, padding = context.wrap_winrm(message)
    return (
        _BOUNDARY + b"\r\n"
        b"\tContent-Type: " + protocol.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(message) + padding).encode()
        + b"\r\n" + _BOUNDARY + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<I", len(header)) + header + data
        + _BOUNDARY + b"--\r\n"
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Shells


@dataclass(eq=False)
class _Shell:
    id: str
    resource_uri: str
    owner: str
    client_ip: str
    input_streams: str
    output_streams: str
    created: float = field(default_factory=time.monotonic)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def xml(self) -> str:
        run = int(time.monotonic() - self.created)
        return (
            f'<rsp:Shell xmlns:rsp="{_SHELL}">'
            f"<rsp:ShellId>{self.id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{escape(self.resource_uri)}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(self.owner)}</rsp:Owner>"
            f"<rsp:ClientIP>{escape(self.client_ip)}</rsp:ClientIP>"
            "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{escape(self.input_streams)}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(self.output_streams)}</rsp:OutputStreams>"
            "<rsp:MaxIdleTimeOut>PT2147483.647S</rsp:MaxIdleTimeOut>"
            "<rsp:Locale>en-US</rsp:Locale><rsp:DataLocale>en-US</rsp:DataLocale>"
            "<rsp:ProfileLoaded>Yes</rsp:ProfileLoaded><rsp:Encoding>UTF8</rsp:Encoding>"
            "<rsp:BufferMode>Block</rsp:BufferMode><rsp:State>Connected</rsp:State>"
            f"<rsp:ShellRunTime>P0DT0H0M{run}S</rsp:ShellRunTime>"
            "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
            "</rsp:Shell>"
        )


@dataclass(eq=False)
class _PsrpCommand:
    id: str
    pipeline: psrpcore.ServerPipeline
    removed: bool = False

    @property
    def finished(self) -> bool:
        return self.pipeline.state in (
            PSInvocationState.Completed,
            PSInvocationState.Failed,
            PSInvocationState.Stopped,
        )


# Messages the lab deserializes once per distinct content: every host of a fleet receives the same
# pool settings and the same probe scripts, and psrpcore's CLIXML reader costs about a millisecond a
# CreatePipeline, which on a 200-host benchmark is CPU taken from the collector it measures.
# Only messages psrpcore reads and never changes, and never one with a SecureString (those need
# the pool's own session key).
_READ_ONLY_MESSAGES = frozenset(
    {psrpcore.types.PSRPMessageType.CreatePipeline, psrpcore.types.PSRPMessageType.InitRunspacePool}
)


@functools.lru_cache(maxsize=256)
def _deserialized(data: bytes) -> Any:
    return psrpcore.types.deserialize(ET.fromstring(data), cipher=None)  # type: ignore[arg-type]  # noqa: S314 - as above


@functools.lru_cache(maxsize=256)
def _pipeline(data: bytes) -> psrpcore.PowerShell:
    """A CreatePipeline message's pipeline description (psrpcore rebuilds it on every access)."""
    return psrpcore.PowerShell.FromPSObjectForRemoting(_deserialized(data))


class _LabRunspacePool(psrpcore.ServerRunspacePool):
    """psrpcore's server runspace pool, reading repeated read-only messages from a shared cache."""

    def _process_message(self, message: Any) -> psrpcore.PSRPEvent:  # psrpcore._payload.PSRPMessage
        if message.message_type not in _READ_ONLY_MESSAGES or b"<SS" in message.data:
            return super()._process_message(message)
        event = psrpcore.PSRPEvent.create(
            message.message_type, _deserialized(message.data), message.runspace_pool_id, message.pipeline_id
        )
        if isinstance(event, psrpcore.CreatePipelineEvent) and event.pipeline_id in self.pipeline_table:
            self.pipeline_table[event.pipeline_id].metadata = _pipeline(message.data)  # what psrpcore does
        else:
            getattr(self, f"_process_{message.message_type.name}")(event)
        return event


@dataclass(eq=False)
class _PsrpShell(_Shell):
    """A runspace pool: psrpcore's server pool plus one outgoing queue per target.

    psrpcore's ``data_to_send`` serves whichever target (pool or a pipeline) is first in its
    buffer, while WS-Man Receives ask for one target; payloads are routed to per-target queues.
    """

    pool: psrpcore.ServerRunspacePool = field(default_factory=_LabRunspacePool)
    commands: dict[str, _PsrpCommand] = field(default_factory=dict)
    queues: dict[uuid.UUID | None, deque[bytes]] = field(default_factory=dict)

    def feed(self, data: bytes, stream: str, pipeline_id: uuid.UUID | None) -> list[psrpcore.PSRPEvent]:
        stream_type = psrpcore.StreamType.prompt_response if stream == "pr" else psrpcore.StreamType.default
        self.pool.receive_data(psrpcore.PSRPPayload(data, stream_type, pipeline_id))
        events = []
        while (event := self.pool.next_event()) is not None:
            events.append(event)
        return events

    def pull(self, amount: int) -> None:
        while (payload := self.pool.data_to_send(amount)) is not None:
            self.queues.setdefault(payload.pipeline_id, deque()).append(payload.data)


@dataclass(eq=False)
class _WinrsCommand:
    id: str
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    removed: bool = False


@dataclass(eq=False)
class _WinrsShell(_Shell):
    codepage: int = 437
    commands: dict[str, _WinrsCommand] = field(default_factory=dict)


def _take(queue: deque[bytes] | None, budget: int) -> bytes:
    """Queued payloads up to ``budget`` bytes (at least one, so a Receive always progresses)."""
    out = b""
    while queue and (not out or len(out) + len(queue[0]) <= budget):
        out += queue.popleft()
    return out


def _peek_pipeline_id(data: bytes) -> uuid.UUID:
    """The pipeline id of the PSRP message in a first fragment (21-byte fragment header, then
    destination, message type and runspace pool id before it)."""
    if len(data) < 21 + 40:
        raise _Fault(_E_INVALID_XML, "The command carries no PSRP CreatePipeline fragment.", "w:InvalidXml", True)
    return uuid.UUID(bytes_le=bytes(data[21 + 24 : 21 + 40]))


def _b64decode(text: str | None) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except binascii.Error:
        raise _Fault(_E_INVALID_XML, "A stream is not valid base64.", "w:InvalidXml", True) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
        http.server.socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

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
                self._handle_request_noblock()

    def wake(self) -> None:
        """End ``serve`` (from any thread, before or while it runs)."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def server_close(self) -> None:
        super().server_close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Handler(http.server.BaseHTTPRequestHandler):
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

    def _decrypt(self, body: bytes) -> bytes:
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith(("multipart/encrypted", "multipart/x-multi-encrypted")):
            self._encrypted = False
            return body
        match = re.search(r'protocol="([^"]*)"', content_type)
        protocol = next(
            (p for p in (_SPNEGO_ENCRYPTED, _KERBEROS_ENCRYPTED) if match and match.group(1).lower() == p.lower()),
            None,
        )
        if protocol is None:
            raise ValueError(f"unsupported encryption protocol in {content_type!r}")
        if self._context is None or not self._context.complete:
            raise ValueError("encrypted request on a connection without a security context")
        if protocol == _KERBEROS_ENCRYPTED and self._context.negotiated_protocol != "kerberos":
            raise ValueError("Kerberos message framing on a connection that did not use Kerberos")
        self._encrypted = True
        self._protocol = protocol
        return _unwrap_body(self._context, body)


# --------------------------------------------------------------------------------------------
# The server


class WSManServer:
    """A loopback WinRM endpoint (WS-Management + PSRP + WinRS) answered by a responder.

    Shells are kept per authenticated user, as on Windows; a client that never deletes its shell
    leaves it in ``open_shells``. Use as a context manager, or call ``start()``/``stop()``.
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
            options=spnego.NegotiateOptions.use_negotiate if self._auth == "negotiate" else 0,
        )

    def _handle_envelope(self, envelope: bytes, user: str, client_ip: str) -> _Answer:
        relates_to = None
        try:
            request = _Request.parse(envelope, user, client_ip)
            relates_to = request.message_id or None
            if self._fault == "http500":  # envelope stage: a service that faults every request
                raise _Fault(
                    _E_UNEXPECTED_SELECTORS,
                    "The WS-Management service cannot process the request because the request contained "
                    "invalid selectors for the resource.",
                    "w:InvalidSelectors",
                    sender=True,
                )
            if self._fault == "malformed-xml":  # envelope stage: a 200 whose body no parser accepts
                return _Answer(200, _NOT_XML)
            if len(envelope) > _SERVER_MAX_ENVELOPE:
                raise _Fault(
                    _E_MAX_ENVELOPE_SIZE_EXCEEDED,
                    f"The WS-Management service cannot process the request because the envelope size "
                    f"({len(envelope)} bytes) exceeds MaxEnvelopeSizekb (500).",
                    "w:EncodingLimit",
                    sender=True,
                )
            reply = self._dispatch(request)
            # Receive stage: a response that carries a command's output is cut off mid-body.
            return _Answer(200, reply, cut=self._fault == "truncated" and _receives_command_output(request))
        except _Fault as fault:
            return _Answer(500, _fault_envelope(fault, relates_to))
        except _Abort:
            raise
        except Exception as exc:
            log.exception("lab WS-Man server failed on a request")
            fault = _Fault(_E_PROVIDER_FAILURE, f"The lab WinRM provider failed: {type(exc).__name__}: {exc}")
            return _Answer(500, _fault_envelope(fault, relates_to))

    # -- WS-Management operations

    def _dispatch(self, req: _Request) -> bytes:
        if not req.action and req.body.find("wsmid:Identify", _NS) is not None:
            return _envelope(None, None, _IDENTIFY_RESPONSE)
        operations: dict[str, Callable[[_Request], str]] = {
            _TRANSFER + "Create": self._op_create,
            _TRANSFER + "Delete": self._op_delete,
            _TRANSFER + "Get": self._op_get,
            _ENUM + "Enumerate": self._op_enumerate,
            _SHELL + "/Command": self._op_command,
            _SHELL + "/Send": self._op_send,
            _SHELL + "/Receive": self._op_receive,
            _SHELL + "/Signal": self._op_signal,
        }
        operation = operations.get(req.action)
        if operation is None:
            raise _Fault(
                _E_INVALID_ACTIONURI,
                f"The WS-Management service cannot process the request. The WS-Addressing action URI "
                f"{req.action or '(none)'} is invalid or not supported by this service.",
                "a:ActionNotSupported",
                sender=True,
            )
        return _envelope(req.action + "Response", req.message_id, operation(req))

    def _find_shell(self, req: _Request, check_uri: bool = True) -> _Shell:
        shell_id = req.selectors.get("ShellId", "")
        with self._lock:
            shell = self._shells.get(shell_id.upper())
        if (
            shell is None
            or shell.owner != req.user
            or (check_uri and shell.resource_uri.lower() != req.resource_uri.lower())
        ):
            raise _shell_not_found(shell_id)
        return shell

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

    def _op_create(self, req: _Request) -> str:
        spec = req.body.find("rsp:Shell", _NS)
        if spec is None:
            raise _Fault(_E_INVALID_XML, "The Create request has no rsp:Shell.", "w:InvalidXml", True)
        common = {
            "resource_uri": req.resource_uri,
            "owner": req.user,
            "client_ip": req.client_ip,
            "input_streams": (spec.findtext("rsp:InputStreams", "", _NS) or "stdin").strip(),
            "output_streams": (spec.findtext("rsp:OutputStreams", "", _NS) or "stdout stderr").strip(),
        }
        uri = req.resource_uri.lower()
        shell: _Shell
        if uri == _CMD_URI.lower():
            try:
                codepage = int(req.options.get("WINRS_CODEPAGE") or 437)
            except ValueError:
                codepage = 437
            shell = _WinrsShell(id=str(uuid.uuid4()).upper(), codepage=codepage, **common)
        elif uri.startswith(_PS_URI_PREFIX.lower()) and len(uri) > len(_PS_URI_PREFIX):
            creation = spec.find("pwsh:creationXml", _NS)
            if creation is None or not (creation.text or "").strip():
                raise _Fault(_E_INVALID_XML, "The PowerShell shell has no creationXml.", "w:InvalidXml", True)
            psrp = _PsrpShell(id=(spec.get("ShellId") or str(uuid.uuid4())).upper(), **common)
            with psrp.cond:
                self._psrp_events(psrp, psrp.feed(_b64decode(creation.text), "stdin", None))
            if psrp.pool.state != psrpcore.types.RunspacePoolState.Opened:
                raise _Fault(_E_PROVIDER_FAILURE, "The runspace pool did not open (incomplete negotiation).")
            if self._fault == "broken-pool":  # pool stage: its host process dies right after the open
                with psrp.cond:
                    psrp.pool.set_broken(_error_record(_BROKEN_POOL_MESSAGE, terminating=True))
            shell = psrp
        else:
            raise _Fault(
                _E_RESOURCE_NOT_FOUND,
                f"The WS-Management service cannot process the request. The resource URI "
                f"({req.resource_uri}) was not found in the WS-Management catalog.",
                "w:DestinationUnreachable",
                sender=True,
            )
        with self._lock:
            if shell.id in self._shells:
                raise _Fault(2150858851, f"A shell with ShellId {shell.id} already exists.", "w:AlreadyExists", True)
            self._shells[shell.id] = shell
        return (
            "<x:ResourceCreated>"
            f"<a:Address>{escape(self.url)}</a:Address>"
            "<a:ReferenceParameters>"
            f"<w:ResourceURI>{escape(req.resource_uri)}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell.id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters>"
            "</x:ResourceCreated>" + shell.xml()
        )

    def _op_delete(self, req: _Request) -> str:
        shell = self._find_shell(req)
        with self._lock:
            self._shells.pop(shell.id, None)
        with shell.cond:
            shell.closed = True
            for command in getattr(shell, "commands", {}).values():
                command.removed = True
            shell.cond.notify_all()
        return ""

    def _op_get(self, req: _Request) -> str:
        uri = req.resource_uri.rstrip("/").lower()
        if uri == _SHELL.lower():
            return self._find_shell(req, check_uri=False).xml()
        if uri == _CONFIG_URI.lower():
            basic = str(self._auth == "basic").lower()
            negotiate = str(self._auth == "negotiate").lower()
            return (
                f'<cfg:Config xmlns:cfg="{_NS["cfg"]}">'
                f"<cfg:MaxEnvelopeSizekb>{_SERVER_MAX_ENVELOPE // 1024}</cfg:MaxEnvelopeSizekb>"
                "<cfg:MaxTimeoutms>60000</cfg:MaxTimeoutms><cfg:MaxBatchItems>32000</cfg:MaxBatchItems>"
                "<cfg:Service><cfg:AllowUnencrypted>true</cfg:AllowUnencrypted><cfg:Auth>"
                f"<cfg:Basic>{basic}</cfg:Basic><cfg:Kerberos>false</cfg:Kerberos>"
                f"<cfg:Negotiate>{negotiate}</cfg:Negotiate><cfg:Certificate>false</cfg:Certificate>"
                "<cfg:CredSSP>false</cfg:CredSSP></cfg:Auth></cfg:Service></cfg:Config>"
            )
        raise _Fault(
            _E_RESOURCE_NOT_FOUND,
            f"The WS-Management service cannot process the request. The resource URI ({req.resource_uri}) "
            "was not found in the WS-Management catalog.",
            "w:DestinationUnreachable",
            sender=True,
        )

    def _op_enumerate(self, req: _Request) -> str:
        uri = req.resource_uri.rstrip("/").lower()
        with self._lock:
            shells = [s for s in self._shells.values() if s.owner == req.user]
        if uri == _SHELL.lower():
            items = "".join(s.xml() for s in shells)
        elif uri == (_SHELL + "/Command").lower():
            wanted = req.body.findtext("n:Enumerate/w:Filter/w:SelectorSet/w:Selector[@Name='ShellId']", "", _NS)
            items = ""
            for shell in (s for s in shells if s.id == wanted.strip().upper()):
                with shell.cond:
                    command_ids = list(getattr(shell, "commands", {}))
                items += "".join(
                    f'<rsp:Command xmlns:rsp="{_SHELL}"><rsp:ShellId>{shell.id}</rsp:ShellId>'
                    f"<rsp:CommandId>{cid}</rsp:CommandId></rsp:Command>"
                    for cid in command_ids
                )
        else:
            raise _Fault(
                _E_RESOURCE_NOT_FOUND,
                f"The resource URI ({req.resource_uri}) cannot be enumerated.",
                "w:DestinationUnreachable",
                sender=True,
            )
        return (
            "<n:EnumerateResponse><n:EnumerationContext/>"
            f"<w:Items>{items}</w:Items><w:EndOfSequence/></n:EnumerateResponse>"
        )

    def _op_command(self, req: _Request) -> str:
        shell = self._find_shell(req)
        line = req.body.find("rsp:CommandLine", _NS)
        if line is None:
            raise _Fault(_E_INVALID_XML, "The Command request has no rsp:CommandLine.", "w:InvalidXml", True)
        if isinstance(shell, _PsrpShell):
            command_id = self._psrp_command(shell, line)
        else:
            command_id = self._winrs_command(shell, line)  # type: ignore[arg-type]
        return f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"

    def _op_send(self, req: _Request) -> str:
        shell = self._find_shell(req)
        send = req.body.find("rsp:Send", _NS)
        if send is None:
            raise _Fault(_E_INVALID_XML, "The Send request has no rsp:Send.", "w:InvalidXml", True)
        with shell.cond:
            if shell.closed:
                raise _shell_not_found(shell.id)
            for stream in send.findall("rsp:Stream", _NS):
                data = _b64decode(stream.text)
                if not isinstance(shell, _PsrpShell):
                    continue  # lab commands read no stdin; accept and drop it
                pipeline_id = None
                command_id = (stream.get("CommandId") or "").upper()
                if command_id:
                    command = shell.commands.get(command_id)
                    if command is None:
                        raise _command_not_found(command_id)
                    pipeline_id = command.pipeline.pipeline_id
                self._psrp_events(shell, shell.feed(data, stream.get("Name", "stdin"), pipeline_id))
            shell.cond.notify_all()
        return "<rsp:SendResponse/>"

    def _op_receive(self, req: _Request) -> str:
        shell = self._find_shell(req)
        desired = req.body.find("rsp:Receive/rsp:DesiredStream", _NS)
        command_id = ((desired.get("CommandId") if desired is not None else None) or "").upper()
        streams = ((desired.text if desired is not None else None) or "stdout").split()
        deadline = time.monotonic() + req.operation_timeout
        with shell.cond:
            while True:
                if self._stopping.is_set():
                    raise _Abort()
                if shell.closed:
                    raise _shell_not_found(shell.id)
                if isinstance(shell, _PsrpShell):
                    body = self._receive_psrp(shell, req, command_id, streams[0])
                else:
                    body = self._receive_winrs(shell, req, command_id)  # type: ignore[arg-type]
                if body is not None:
                    return body
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Fault(
                        _E_OPERATION_TIMEDOUT,
                        "The WS-Management service cannot complete the operation within the time specified "
                        "in OperationTimeout.",
                        "w:TimedOut",
                    )
                shell.cond.wait(min(remaining, 0.5))

    def _op_signal(self, req: _Request) -> str:
        shell = self._find_shell(req)
        signal = req.body.find("rsp:Signal", _NS)
        if signal is None:
            raise _Fault(_E_INVALID_XML, "The Signal request has no rsp:Signal.", "w:InvalidXml", True)
        command_id = (signal.get("CommandId") or "").upper()
        code = (signal.findtext("rsp:Code", "", _NS) or "").strip().lower()
        with shell.cond:
            command = shell.commands.get(command_id) if isinstance(shell, _PsrpShell | _WinrsShell) else None
            if command is None:
                raise _command_not_found(command_id)
            if code == _SIGNAL_TERMINATE.lower():
                command.removed = True
                shell.commands.pop(command_id, None)  # type: ignore[union-attr]
                if isinstance(shell, _PsrpShell) and isinstance(command, _PsrpCommand):
                    shell.pull(_SERVER_MAX_ENVELOPE)  # drop what the client will never receive
                    shell.queues.pop(command.pipeline.pipeline_id, None)
                    shell.pool.pipeline_table.pop(command.pipeline.pipeline_id, None)
            elif code in _SIGNAL_PS_STOP or code in (_SIGNAL_CTRL_C, _SHELL + "/signal/ctrl_break"):
                if isinstance(command, _PsrpCommand):
                    if command.pipeline.state == PSInvocationState.Running:
                        command.pipeline.stop()
                elif isinstance(command, _WinrsCommand) and command.exit_code is None:
                    command.exit_code = _STATUS_CONTROL_C_EXIT
            else:
                raise _Fault(
                    _E_UNSUPPORTED_FEATURE,
                    f"The signal code {code} is not supported.",
                    "w:UnsupportedFeature",
                    True,
                )
            shell.cond.notify_all()
        return "<rsp:SignalResponse/>"

    # -- PSRP

    def _psrp_command(self, shell: _PsrpShell, line: ET.Element) -> str:
        data = _b64decode("".join((a.text or "").strip() for a in line.findall("rsp:Arguments", _NS)))
        given = line.get("CommandId")
        try:
            pipeline_id = uuid.UUID(given) if given else _peek_pipeline_id(data)
        except ValueError:
            raise _Fault(_E_INVALID_XML, f"CommandId {given!r} is not a GUID.", "w:InvalidXml", True) from None
        with shell.cond:
            if shell.closed:
                raise _shell_not_found(shell.id)
            command = _PsrpCommand(
                id=(given or str(pipeline_id)).upper(),
                pipeline=psrpcore.ServerPipeline(shell.pool, pipeline_id),
            )
            shell.commands[command.id] = command
            self._psrp_events(shell, shell.feed(data, "stdin", pipeline_id))
            shell.cond.notify_all()
        return command.id

    def _psrp_events(self, shell: _PsrpShell, events: list[psrpcore.PSRPEvent]) -> None:
        """Act on client PSRP events; psrpcore answered capability, init and key exchange itself."""
        for event in events:
            if isinstance(event, psrpcore.CreatePipelineEvent):
                self._start_pipeline(shell, event)
            elif isinstance(event, psrpcore.GetCommandMetadataEvent):
                command = _command_for(shell, event.pipeline_id)
                if command is not None:  # the lab host exposes no command metadata
                    _mark_running(command.pipeline)
                    command.pipeline.complete()
            elif isinstance(
                event,
                psrpcore.SetMaxRunspacesEvent | psrpcore.SetMinRunspacesEvent | psrpcore.ResetRunspaceStateEvent,
            ):
                shell.pool.runspace_availability_response(event.ci, True)
            elif isinstance(event, psrpcore.GetAvailableRunspacesEvent):
                busy = sum(c.pipeline.state == PSInvocationState.Running for c in shell.commands.values())
                shell.pool.runspace_availability_response(event.ci, max(shell.pool.max_runspaces - busy, 0))

    def _start_pipeline(self, shell: _PsrpShell, event: psrpcore.CreatePipelineEvent) -> None:
        command = _command_for(shell, event.pipeline_id)
        if command is None:
            return
        # psrpcore built the pipeline's description when it processed the message; asking the
        # event again would rebuild it from the CLIXML object.
        script, parameters, out_string = _describe_pipeline(command.pipeline.metadata)
        invocation = Invocation(script=script, parameters=parameters, transport="psrp")
        _mark_running(command.pipeline)
        self._record(invocation)
        self._spawn(self._run_psrp, shell, command, invocation, out_string, name="pipeline")

    def _run_psrp(self, shell: _PsrpShell, command: _PsrpCommand, invocation: Invocation, out_string: bool) -> None:
        result = self._call(invocation)
        with shell.cond:
            pipeline = command.pipeline
            if shell.closed or command.removed or pipeline.state != PSInvocationState.Running:
                return  # stopped, terminated or the pool went away meanwhile
            try:
                for item in result.output:
                    for value in _text_lines(item) if out_string else [item]:
                        pipeline.write_output(value)
                errors = [str(e) for e in result.errors]
                for message in errors[:-1]:
                    pipeline.prepare_message(
                        _error_record(message, terminating=False), psrpcore.types.PSRPMessageType.ErrorRecord
                    )
                if errors:
                    # psrpcore has no public "fail"; the PipelineState carries the last error as the
                    # terminating one, so pypsrp reports had_errors and lists every error once.
                    pipeline._change_state(PSInvocationState.Failed, _error_record(errors[-1], terminating=True))
                else:
                    pipeline.complete()
            except Exception as exc:
                log.exception("lab responder output could not be sent")
                pipeline._change_state(
                    PSInvocationState.Failed, _error_record(f"lab: cannot send the output: {exc}", True)
                )
            finally:
                shell.cond.notify_all()

    def _receive_budget(self, req: _Request, skeleton: str) -> int:
        """Raw bytes that fit the client's MaxEnvelopeSize once base64-encoded into ``skeleton``."""
        overhead = len(_envelope(req.action + "Response", req.message_id, skeleton)) + 64
        return max((req.max_envelope - overhead) // 4 * 3, 22)

    def _receive_psrp(self, shell: _PsrpShell, req: _Request, command_id: str, stream: str) -> str | None:
        command = None
        if command_id:
            command = shell.commands.get(command_id)
            if command is None:
                raise _command_not_found(command_id)
        attr = f' CommandId="{command_id}"' if command_id else ""
        done_xml = f'<rsp:CommandState{attr} State="{_STATE_DONE}"/>' if command else ""
        budget = self._receive_budget(
            req,
            f'<rsp:ReceiveResponse><rsp:Stream Name="{escape(stream)}"{attr}></rsp:Stream>{done_xml}'
            "</rsp:ReceiveResponse>",
        )
        target = command.pipeline.pipeline_id if command else None
        shell.pull(budget)
        data = _take(shell.queues.get(target), budget)
        done = command is not None and command.finished and not shell.queues.get(target)
        if not data and not done:
            return None
        parts = [f'<rsp:Stream Name="{escape(stream)}"{attr}>{_b64(data)}</rsp:Stream>'] if data else []
        if done:
            parts.append(done_xml)
        return "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"

    # -- WinRS

    def _winrs_command(self, shell: _WinrsShell, line: ET.Element) -> str:
        executable = (line.findtext("rsp:Command", "", _NS) or "").strip()
        arguments = [(a.text or "").strip() for a in line.findall("rsp:Arguments", _NS)]
        command_line = " ".join(p for p in (executable, *arguments) if p)
        script = _decode_powershell(command_line)
        invocation = Invocation(script=command_line if script is None else script, parameters={}, transport="winrs")
        command = _WinrsCommand(id=(line.get("CommandId") or str(uuid.uuid4())).upper())
        with shell.cond:
            if shell.closed:
                raise _shell_not_found(shell.id)
            shell.commands[command.id] = command
        self._record(invocation)
        self._spawn(self._run_winrs, shell, command, invocation, script is not None, name="command")
        return command.id

    def _run_winrs(self, shell: _WinrsShell, command: _WinrsCommand, invocation: Invocation, ps: bool) -> None:
        result = self._call(invocation)
        codec = _codec(shell.codepage)
        stdout = "".join(f"{line}\r\n" for item in result.output for line in _text_lines(item))
        errors = [str(e) for e in result.errors]
        stderr = ""
        if errors and ps:  # powershell.exe with redirected streams writes its errors as CLIXML
            clixml = serialize_clixml([(f"{m}\r\n", ClixmlStream.ERROR) for m in errors], psrpcore.PSRemotingCrypto())
            stderr = "#< CLIXML\r\n" + clixml.replace(' S="error"', ' S="Error"')
        elif errors:
            stderr = "".join(f"{m}\r\n" for m in errors)
        with shell.cond:
            if shell.closed or command.removed or command.exit_code is not None:
                return
            command.stdout += stdout.encode(codec, "replace")
            command.stderr += stderr.encode(codec, "replace")
            command.exit_code = 1 if errors else 0
            shell.cond.notify_all()

    def _receive_winrs(self, shell: _WinrsShell, req: _Request, command_id: str) -> str | None:
        command = shell.commands.get(command_id)
        if command is None:
            raise _command_not_found(command_id)
        attr = f'CommandId="{command.id}"'
        skeleton = (
            f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" {attr}></rsp:Stream>'
            f'<rsp:Stream Name="stderr" {attr}></rsp:Stream>'
            f'<rsp:Stream Name="stdout" {attr} End="true"></rsp:Stream>'
            f'<rsp:Stream Name="stderr" {attr} End="true"></rsp:Stream>'
            f'<rsp:CommandState {attr} State="{_STATE_DONE}"><rsp:ExitCode>-2147483648</rsp:ExitCode>'
            "</rsp:CommandState></rsp:ReceiveResponse>"
        )
        budget = self._receive_budget(req, skeleton)
        out = bytes(command.stdout[:budget])
        del command.stdout[: len(out)]
        err = bytes(command.stderr[: budget - len(out)])
        del command.stderr[: len(err)]
        finished = command.exit_code is not None and not command.stdout and not command.stderr
        if not out and not err and not finished:
            return None
        parts = []
        if out:
            parts.append(f'<rsp:Stream Name="stdout" {attr}>{_b64(out)}</rsp:Stream>')
        if err:
            parts.append(f'<rsp:Stream Name="stderr" {attr}>{_b64(err)}</rsp:Stream>')
        if finished:
            parts.append(f'<rsp:Stream Name="stdout" {attr} End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" {attr} End="true"></rsp:Stream>')
            parts.append(
                f'<rsp:CommandState {attr} State="{_STATE_DONE}">'
                f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(f'<rsp:CommandState {attr} State="{_STATE_RUNNING}"/>')
        return "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"


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


_IDENTIFY_RESPONSE = (
    f'<wsmid:IdentifyResponse xmlns:wsmid="{_NS["wsmid"]}">'
    "<wsmid:ProtocolVersion>http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd</wsmid:ProtocolVersion>"
    "<wsmid:ProductVendor>Microsoft Corporation</wsmid:ProductVendor>"
    "<wsmid:ProductVersion>OS: 10.0.17763 SP: 0.0 Stack: 3.0</wsmid:ProductVersion>"
    "</wsmid:IdentifyResponse>"
)


def _receives_command_output(req: _Request) -> bool:
    """Whether a request is a Receive for a command (not for the pool itself)."""
    desired = req.body.find("rsp:Receive/rsp:DesiredStream", _NS)
    return req.action == _SHELL + "/Receive" and desired is not None and bool(desired.get("CommandId"))


def _mark_running(pipeline: psrpcore.ServerPipeline) -> None:
    """Start a pipeline without telling the client: Windows' ServerPowerShellDriver sends
    PIPELINE_STATE only for Completed, Failed and Stopped (psrpcore's start() also sends Running,
    which would answer a Receive of a still-running pipeline before its OperationTimeout)."""
    pipeline._change_state(PSInvocationState.Running, emit=False)


def _command_for(shell: _PsrpShell, pipeline_id: uuid.UUID | None) -> _PsrpCommand | None:
    return next((c for c in shell.commands.values() if c.pipeline.pipeline_id == pipeline_id), None)


def _command_not_found(command_id: str) -> _Fault:
    return _Fault(
        _E_UNEXPECTED_SELECTORS,
        f"The Windows Remote Shell received a request to perform an operation on command identifier "
        f"{command_id or '(none)'}, which does not exist. Either the command has completed execution or "
        "the client specified an invalid command identifier.",
        "w:InvalidSelectors",
        sender=True,
    )


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
