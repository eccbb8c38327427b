"""One pypsrp session per host: open a runspace pool, run probes in it, always close it.

Scripts travel as script text and their inputs as PSRP parameters (``add_parameter``): a value
is data on the wire and never becomes code. Every failure the client library can raise is turned
into a ``CollectionError`` whose reason an administrator can act on (and which never contains
the password); the hard per-host deadline lives in the runner, because pypsrp retries a silent
Receive several times before it gives up.

One probe may send at most ``MAX_PROBE_OUTPUT`` bytes: pypsrp keeps a pipeline's whole output
(and the fragments of an unfinished object) in memory, so the session counts what each Receive
brings and stops reading past the limit. A session also stops starting probes once the host's
deadline has passed, so a worker the runner abandoned closes its pool instead of going on.

Kerberos (``auth: kerberos``, and ``negotiate``, which tries it first) asks for the service
principal ``<spn_service>/<name>``: the inventory *name*, never the address dialled, so a host
reached by IP or through a DNS alias still authenticates as itself. The service defaults to
``HTTP``, what PowerShell's own client (Invoke-Command) asks for; pypsrp's default would be
``host``. Without a password the user's ticket cache (``KRB5CCNAME``, filled by ``kinit``) is
used. Kerberos failures are named from MIT's error codes (KDC unreachable, clock skew, unknown
principal, wrong password, expired ticket, no ticket) rather than from their English text.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import requests
import spnego
from pypsrp.complex_objects import RunspacePoolState
from pypsrp.exceptions import (
    AuthenticationError,
    InvalidPSRPOperation,
    WinRMError,
    WinRMTransportError,
    WSManFaultError,
)
from pypsrp.messages import CreatePipeline
from pypsrp.powershell import Fragmenter, PowerShell, RunspacePool
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan
from spnego.exceptions import BadMechanismError, NoCredentialError, SpnegoError

from collector import scripts, wire
from collector.credentials import Secret
from collector.model import CollectionFailure, HostTarget

wire.install()  # pypsrp parses every WS-Management and CLIXML reply through wire.fromstring

# WS-Management fault codes worth naming (winerror.h / wsmerror.h).
_FAULT_HINTS = {
    5: (CollectionFailure.AUTH_FAILED, "access denied: the account is not allowed to use WinRM on this host"),
    2150858843: (CollectionFailure.UNREACHABLE, "the WinRM service refused the request"),
    2150859174: (
        CollectionFailure.UNREACHABLE,
        "WinRM shell quota exceeded (MaxShellsPerUser); other sessions of this account are still open",
    ),
    2150858793: (CollectionFailure.TIMEOUT, "the WinRM operation timed out on the host"),
}


# MIT krb5 error codes (krb5_err.h, k5-int); GSSAPI minor codes carry the same values, unsigned.
_KRB5_BASE = -1765328384
KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN = _KRB5_BASE + 6
KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN = _KRB5_BASE + 7
KRB5KDC_ERR_ETYPE_NOSUPP = _KRB5_BASE + 14
KRB5KDC_ERR_CLIENT_REVOKED = _KRB5_BASE + 18
KRB5KDC_ERR_KEY_EXP = _KRB5_BASE + 23
KRB5KDC_ERR_PREAUTH_FAILED = _KRB5_BASE + 24
KRB5KRB_AP_ERR_BAD_INTEGRITY = _KRB5_BASE + 31
KRB5KRB_AP_ERR_TKT_EXPIRED = _KRB5_BASE + 32
KRB5KRB_AP_ERR_SKEW = _KRB5_BASE + 37
KRB5_FCC_NOFILE = -1765328189
KRB5_KDCREP_SKEW = -1765328236
KRB5_REALM_UNKNOWN = -1765328230
KRB5_KDC_UNREACH = -1765328228
KRB5_CC_NOTFOUND = -1765328243
# GSS-API major status routine errors (RFC 2744).
_GSS_S_NO_CRED = 7 << 16
_GSS_S_CREDENTIALS_EXPIRED = 11 << 16


# The most output one probe may send, in PSRP bytes as they arrive (before any parsing). The
# largest probe, events (at most 200 events per log), prints a few MiB at worst: 16 MiB leaves
# room without letting one host fill the workstation's memory.
MAX_PROBE_OUTPUT = 16 * 1024 * 1024
_MIB = 1024 * 1024


class CollectionError(Exception):
    """Collection from a host failed; ``kind`` becomes a ``collect.*`` check."""

    def __init__(self, kind: CollectionFailure, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind.value}: {reason}")


class OutputTooLarge(CollectionError):
    """One probe sent more than the session accepts; ``probe`` names it (the other probes may be fine)."""

    def __init__(self, probe: str, received: int, limit: int) -> None:
        self.probe = probe
        super().__init__(
            CollectionFailure.BAD_OUTPUT,
            f"probe {probe} sent more than the {limit / _MIB:g} MiB of output the collector accepts from one "
            f"probe ({received / _MIB:.1f} MiB had arrived when it stopped reading); no probe prints that "
            "much, so what the host is sending is not probe output",
        )


class ProbeNotRead(CollectionError):
    """A probe left unread because another probe of the session flooded it first."""

    def __init__(self, probe: str, flooded_by: str) -> None:
        self.probe = probe
        super().__init__(
            CollectionFailure.BAD_OUTPUT,
            f"probe {probe} was not read: probe {flooded_by} exceeded the output limit first, and the session "
            "was closed",
        )


@dataclass(frozen=True)
class ScriptOutput:
    output: Sequence[Any]
    errors: Sequence[str]
    had_errors: bool
    duration_s: float


def endpoint(target: HostTarget) -> str:
    scheme = "https" if target.transport == "https" else "http"
    return f"{scheme}://{target.address}:{target.port}/wsman"


def classify(exc: BaseException, target: HostTarget) -> CollectionError:
    """Name what went wrong, in words, for one exception from the client stack (pure)."""
    error = _classify(exc, target)
    if (
        error.kind is CollectionFailure.AUTH_FAILED
        and target.auth == "negotiate"
        and not target.ntlm_allowed
        and "NTLM is off" not in error.reason
    ):
        return CollectionError(error.kind, f"{error.reason}; {NTLM_OFF}")
    return error


NTLM_OFF = (
    "NTLM was not tried: it is off for this host (allow_ntlm), as nothing authenticates a server over "
    "http or without certificate validation"
)


def _classify(exc: BaseException, target: HostTarget) -> CollectionError:
    where = f"{target.address}:{target.port}"
    if isinstance(exc, CollectionError):
        return exc
    if isinstance(exc, wire.RefusedReply):
        return CollectionError(CollectionFailure.BAD_OUTPUT, exc.reason)
    if isinstance(exc, wire.RefusedXML):
        return CollectionError(CollectionFailure.BAD_OUTPUT, f"{where} {exc.reason}")
    if target.auth == "negotiate" and any(isinstance(e, BadMechanismError) for e in _chain(exc)):
        # Negotiate could start no mechanism: Kerberos had no ticket and NTLM no password.
        return CollectionError(
            CollectionFailure.AUTH_FAILED,
            f"negotiate could start neither Kerberos nor NTLM for {target.username or 'the current user'}: "
            "NTLM needs a password source (password_env, password_keyring or password_prompt)",
        )
    kerberos = kerberos_failure(exc, target)
    if kerberos is not None:
        return kerberos
    if isinstance(exc, AuthenticationError):
        user = target.username or "the current ticket"
        if target.auth == "kerberos" or (target.auth == "negotiate" and not target.ntlm_allowed):
            spn = spn_of(target)
            return CollectionError(
                CollectionFailure.AUTH_FAILED,
                f"{target.name} refused the Kerberos ticket of {user} for {spn} (HTTP 401): the SPN "
                f"belongs to another account than the host's (check: setspn -Q {spn}; duplicates: "
                "setspn -X), Kerberos is turned off in the WinRM service, or the account is not in the "
                "host's Administrators or Remote Management Users group",
            )
        return CollectionError(
            CollectionFailure.AUTH_FAILED,
            f"the host refused the credentials of {user} with {target.auth} auth (HTTP 401): wrong or "
            "expired password, locked account, an auth method the WinRM service does not allow, or "
            "an account that is not in the host's Administrators or Remote Management Users group",
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return CollectionError(
            CollectionFailure.UNREACHABLE,
            f"TLS to {where} failed ({_first_line(exc)}): the WinRM HTTPS certificate is not trusted or "
            f"not issued to {target.name}; set ca_file for an internal CA",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return CollectionError(
            CollectionFailure.UNREACHABLE,
            f"no answer from {where} within {target.connect_timeout_s:g} s "
            "(host down, or a firewall dropping the WinRM port)",
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return CollectionError(
            CollectionFailure.TIMEOUT,
            f"{where} accepted the connection but did not answer in time",
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "Name or service not known" in text or "NameResolutionError" in text or "getaddrinfo" in text:
            return CollectionError(CollectionFailure.UNREACHABLE, f"the name {target.address} does not resolve")
        if "refused" in text.lower():
            return CollectionError(
                CollectionFailure.UNREACHABLE,
                f"connection refused by {where}: WinRM is not listening there "
                "(Enable-PSRemoting or 'winrm quickconfig' on the host) or a firewall rejects it",
            )
        return CollectionError(CollectionFailure.UNREACHABLE, f"cannot connect to {where}: {_first_line(exc)}")
    cut = _incomplete_read(exc)
    if cut is not None:
        arrived, promised = cut
        return CollectionError(
            CollectionFailure.BAD_OUTPUT,
            f"{where} broke off a response midway ({arrived} of {promised} bytes arrived, then the connection "
            "closed): the WinRM service, or a proxy or load balancer on the way, cut it",
        )
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return CollectionError(
            CollectionFailure.BAD_OUTPUT, f"{where} broke off a response midway: {_first_line(exc)[:200]}"
        )
    if isinstance(exc, WSManFaultError):
        kind, hint = _FAULT_HINTS.get(exc.code, (CollectionFailure.UNREACHABLE, "WinRM answered with a fault"))
        detail = (exc.reason or "").strip()
        return CollectionError(kind, f"{hint} (WS-Management fault {exc.code}: {detail})")
    if isinstance(exc, WinRMTransportError):
        return CollectionError(
            CollectionFailure.BAD_OUTPUT,
            f"{where} answered HTTP {exc.code} with no WS-Management fault: "
            f"{_first_line(exc.response_text or '')[:200]}",
        )
    if isinstance(exc, ET.ParseError):
        return CollectionError(
            CollectionFailure.BAD_OUTPUT,
            f"{where} sent a response that is not XML ({exc}): something other than WinRM answered, "
            "such as a proxy or web filter page",
        )
    if isinstance(exc, InvalidPSRPOperation):
        broken = re.match(r"Received a broken RunspacePoolState message:\s*(.*)", str(exc), re.DOTALL)
        if broken:
            return CollectionError(
                CollectionFailure.BAD_OUTPUT,
                "the PowerShell session on the host broke as soon as it opened (its host process, "
                "wsmprovhost.exe, ended or hit a WinRM quota such as MaxMemoryPerShellMB); the host said: "
                f"{_first_line(broken.group(1))[:300] or 'nothing'}",
            )
        return CollectionError(
            CollectionFailure.BAD_OUTPUT, f"the PowerShell runspace on the host is broken: {_first_line(exc)}"
        )
    if isinstance(exc, ValueError) and "which is incompatible with the specified auth_provider" in str(exc):
        offered = re.search(r"auth protocol '([^']+)'", str(exc))
        if target.auth == "negotiate" and not target.ntlm_allowed and offered and offered.group(1).upper() == "NTLM":
            return CollectionError(
                CollectionFailure.AUTH_FAILED,
                f"the WinRM service at {where} offers only NTLM, and NTLM is off for {target.name} (allow_ntlm): "
                f"over {target.transport}{'' if target.cert_validation else ' without certificate validation'} "
                f"nothing proves that the server answering is {target.name}, and an NTLM response is crackable "
                "and relayable, so none was sent. Use https with certificate validation, register the host's "
                "Kerberos SPN, or set allow_ntlm: true for a host outside the domain",
            )
        return CollectionError(
            CollectionFailure.AUTH_FAILED,
            f"the WinRM service at {where} offers only {offered.group(1) if offered else 'another method'} "
            f"auth, not {target.auth}: allow {target.auth} there (winrm/config/service/auth) or set auth "
            "to negotiate, which uses Kerberos (account as user@REALM) or NTLM, whichever the host offers",
        )
    if isinstance(exc, ImportError):
        return CollectionError(
            CollectionFailure.AUTH_FAILED,
            f"auth {target.auth} needs an extra package ({_first_line(exc)}): for Kerberos, "
            "pip install 'rdp-collector[kerberos]' (it builds against MIT Kerberos: libkrb5-dev and gcc)",
        )
    if isinstance(exc, (WinRMError, ValueError, KeyError, TypeError, AttributeError, OSError)):
        return CollectionError(
            CollectionFailure.BAD_OUTPUT,
            f"unexpected answer from {where}: {type(exc).__name__}: {_first_line(exc)[:200]}",
        )
    return CollectionError(CollectionFailure.BAD_OUTPUT, f"{type(exc).__name__}: {_first_line(exc)[:200]}")


def _incomplete_read(exc: BaseException) -> tuple[int, int] | None:
    """(bytes that arrived, bytes promised) when a response ended before its Content-Length (pure)."""
    for current in _chain(exc):
        if type(current).__name__ != "IncompleteRead":  # urllib3's or http.client's
            continue
        partial, expected = getattr(current, "partial", None), getattr(current, "expected", None)
        arrived = len(partial) if isinstance(partial, bytes | bytearray) else partial
        if isinstance(arrived, int) and isinstance(expected, int):
            return arrived, arrived + expected
    return None


def spn_of(target: HostTarget) -> str:
    """The service principal Kerberos asks the KDC for: service class and the inventory name."""
    return f"{target.spn_service}/{target.name}"


def _signed32(code: int) -> int:
    return code - (1 << 32) if code >= (1 << 31) else code


def _chain(exc: BaseException) -> list[BaseException]:
    """Every exception behind ``exc``: causes, contexts and pyspnego's ``base_error`` (pure)."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or any(current is f for f in found):
            continue
        found.append(current)
        todo += [getattr(current, "base_error", None), current.__cause__, current.__context__]
    return found


def _kerberos_codes(exc: BaseException) -> tuple[set[int], set[int], list[str]]:
    """(krb5 codes, GSS major codes, messages) found along the chain of a Kerberos failure (pure)."""
    codes: set[int] = set()
    majors: set[int] = set()
    texts: list[str] = []
    for current in _chain(exc):
        module = type(current).__module__.split(".")[0]
        if module == "krb5":  # Krb5Error: "<message> <code>"
            found = re.search(r"(-?\d+)\s*$", str(current))
            if found:
                codes.add(int(found.group(1)))
            texts.append(re.sub(r"\s*-?\d+\s*$", "", str(current)))
        elif module == "gssapi":  # GSSError: major and minor status
            majors.add(int(getattr(current, "maj_code", 0) or 0) & 0xFFFF0000)
            minor = int(getattr(current, "min_code", 0) or 0)
            if minor:
                codes.add(_signed32(minor))
            texts.append(str(current))
        elif isinstance(current, SpnegoError):
            texts.append(str(current))
    return codes, majors, texts


def _is_kerberos(exc: BaseException) -> bool:
    """Whether the client stack failed inside Kerberos/SPNEGO (rather than on the wire)."""
    return any(
        isinstance(e, SpnegoError) or type(e).__module__.split(".")[0] in ("krb5", "gssapi") for e in _chain(exc)
    )


def kerberos_failure(exc: BaseException, target: HostTarget) -> CollectionError | None:
    """A Kerberos failure (from MIT krb5, GSSAPI or pyspnego) in words, or None if it is none (pure).

    Codes decide, not text: MIT's messages are translated under some locales.
    """
    if not _is_kerberos(exc):
        return None
    codes, majors, texts = _kerberos_codes(exc)
    text = " ".join(texts)
    spn = spn_of(target)
    who = target.username or "the ticket cache's principal"
    of_who = f" of {target.username}" if target.username else ""
    principal = target.username or "USER@REALM"
    realm = re.search(r"realm ['\"]([^'\"]+)['\"]", text)
    realm_name = f"realm {realm.group(1)}" if realm else "the account's realm"
    cache = re.search(r"\((?:default cache|filename): ([^)]+)\)", text)
    cache_name = f" ({cache.group(1)})" if cache else ""

    def failed(reason: str) -> CollectionError:
        return CollectionError(CollectionFailure.AUTH_FAILED, f"Kerberos: {reason}")

    if KRB5_KDC_UNREACH in codes:
        return failed(
            f"no KDC of {realm_name} answered (KDC unreachable): the domain controllers are down or "
            "TCP/UDP port 88 is blocked from this workstation, or krb5.conf names the wrong KDCs; "
            f"'kinit {principal}' here fails the same way"
        )
    if KRB5_REALM_UNKNOWN in codes:
        return failed(
            f"no KDC is known for {realm_name}: add the realm under [realms] in krb5.conf, or set "
            "dns_lookup_kdc = true where DNS has the domain's _kerberos._tcp SRV records"
        )
    if KRB5KRB_AP_ERR_SKEW in codes or KRB5_KDCREP_SKEW in codes:
        return failed(
            f"clock skew too great: this workstation's clock (as recorded in its ticket cache) and the "
            f"KDC's, or {target.name}'s, differ by more than the 5 minutes Kerberos allows; synchronise "
            "time (timedatectl or chronyc here, w32tm /resync on Windows), then kinit again"
        )
    if KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN in codes:
        return failed(
            f"the KDC knows no service principal {spn} (principal unknown). The SPN is built from the "
            f"inventory name {target.name}, not from the address {target.address}; check it with "
            f"'setspn -Q {spn}'. A computer's HOST/ SPN also covers {target.spn_service}/ for its own "
            "full name, so the name is usually a DNS alias or not the host's FQDN: use the FQDN as name, "
            f"register the alias (setspn -S {spn} <computer>), or set spn_service"
        )
    if KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN in codes:
        return failed(
            f"the KDC does not know the account {who} (client principal unknown): give it as "
            "user@REALM, the user principal name with the realm in capitals (e.g. svc-rdpdiag@CORP.EXAMPLE)"
        )
    if KRB5KDC_ERR_PREAUTH_FAILED in codes or KRB5KRB_AP_ERR_BAD_INTEGRITY in codes:
        return failed(
            f"the KDC refused the password of {who} (pre-authentication failed): wrong password, or "
            "one changed in the domain since it was stored"
        )
    if KRB5KDC_ERR_KEY_EXP in codes:
        return failed(f"the password of {who} has expired: change it in the domain, then the stored one")
    if KRB5KDC_ERR_CLIENT_REVOKED in codes:
        return failed(f"the account {who} is disabled, locked out or expired in the domain")
    if KRB5KRB_AP_ERR_TKT_EXPIRED in codes or _GSS_S_CREDENTIALS_EXPIRED in majors:
        return failed(
            f"the ticket{of_who} in the ticket cache{cache_name} has expired: run 'kinit {principal}' again "
            f"(unattended: 'kinit -k -t KEYTAB {principal}' before each run) or give a password source"
        )
    if (
        KRB5_FCC_NOFILE in codes
        or KRB5_CC_NOTFOUND in codes
        or _GSS_S_NO_CRED in majors
        or any(isinstance(e, NoCredentialError) for e in _chain(exc))
    ):
        return failed(
            f"no ticket{of_who} in the ticket cache{cache_name} and no password source: run "
            f"'kinit {principal}' first (klist shows what the cache holds) or set password_env / "
            "password_keyring"
        )
    if KRB5KDC_ERR_ETYPE_NOSUPP in codes:
        return failed(
            f"the KDC and this workstation share no encryption type for {who} or {spn}: allow AES for "
            "the account (msDS-SupportedEncryptionTypes) or in krb5.conf"
        )
    detail = next((t for t in texts if t), type(exc).__name__)
    return failed(f"authentication for {spn} failed: {_first_line(detail)[:300]}")


def after_ntlm_fallback(ntlm: CollectionError, kerberos: CollectionError) -> CollectionError:
    """Negotiate's verdict when NTLM failed and Kerberos had failed before it (pure).

    Both halves matter: a wrong password shows in both, while an estate that restricts NTLM needs
    the reason Kerberos was not used.
    """
    why = kerberos.reason.removeprefix("Kerberos: ")
    return CollectionError(ntlm.kind, f"{ntlm.reason}. Kerberos, tried first, failed: {why}")


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""


class _Flooded(Exception):
    """Another pipeline of the session passed the output limit: this one stops reading."""


class _Oversize(Exception):
    """A pipeline's output passed the limit (internal: becomes ``OutputTooLarge`` with the probe's name)."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


class _ScriptSerializer(Serializer):
    """pypsrp's serializer, remembering the CreatePipeline messages it wrote.

    Every host gets the same probe scripts with, mostly, the same parameters, and the message that
    starts a pipeline depends on nothing else: no pipeline or pool id is inside it (they travel in
    the PSRP header). Writing it (the CLIXML objects, a Python callback per escaped line break of
    the script, the XML text) is a few milliseconds of CPU per probe, a good share of the
    collector's work over a large fleet; ``pipeline_key`` (set by the thread that starts a
    pipeline) names the message so it is written once."""

    pipeline_key = threading.local()
    _written: ClassVar[dict[str, bytes]] = {}  # shared by every session; a dict's get and set are atomic
    _MAX_WRITTEN = 128

    def serialize(self, value: Any, metadata: Any = None, parent: Any = None, clear: bool = True) -> Any:
        key = getattr(self.pipeline_key, "value", None)
        if key is None or parent is not None or not isinstance(value, CreatePipeline):
            return super().serialize(value, metadata, parent, clear)
        written = self._written.get(key)
        if written is None:
            element = super().serialize(value, metadata, parent, clear)
            assert element is not None  # a CreatePipeline always serializes to an element
            written = ET.tostring(element, encoding="utf-8", method="xml")
            if len(self._written) >= self._MAX_WRITTEN:
                self._written.clear()
            self._written[key] = written
        return written  # Message.pack takes bytes as the message as written


def _message_key(pool: RunspacePool, script: str, parameters: Mapping[str, Any]) -> str:
    return f"{pool.protocol_version}\0{pool.apartment_state}\0{script}\0{parameters!r}"


class _LockedFragmenter(Fragmenter):
    """pypsrp's fragmenter and serializer keep per-message state (the outgoing object counter, the
    RefIds of the object being written, partial incoming objects): pipelines read on their own
    threads take turns through them."""

    def __init__(self, max_size: int, serializer: Serializer, lock: threading.RLock) -> None:
        super().__init__(max_size, serializer)
        self._lock = lock

    def fragment(self, *args: Any, **kwargs: Any) -> list[bytes]:
        with self._lock:
            return super().fragment(*args, **kwargs)

    def defragment(self, *args: Any, **kwargs: Any) -> list[Any]:
        with self._lock:
            return super().defragment(*args, **kwargs)


_MAX_POOL_WARNINGS = 10
_MAX_POOL_WARNING_CHARS = 500


class _MeteredPool(RunspacePool):
    """A runspace pool that refuses a pipeline's output past ``limit`` bytes, as it arrives.

    pypsrp keeps everything a pipeline sends until it ends, and the fragments of an unfinished
    object until its last fragment: counting each Receive's PSRP bytes before they are
    defragmented bounds what one probe can make the collector hold to the limit plus one envelope.
    """

    def __init__(self, connection: WSMan, limit: int, max_runspaces: int = 1) -> None:
        super().__init__(connection, max_runspaces=max_runspaces)
        self.lock = threading.RLock()
        self._serializer = _ScriptSerializer()
        self._fragmenter = _LockedFragmenter(self.connection.max_payload_size, self._serializer, self.lock)
        self.limit = limit
        self.received: dict[str, int] = {}  # pipeline id -> PSRP bytes so far
        self.flooded_by: list[str] = []  # the probe that passed the limit first; the others stop reading
        self.warnings: list[str] = []  # the host's runspace-pool warnings, kept for its report

    def _process_runspacepool_warning(self, message: Any) -> None:
        """pypsrp hands a pool's warning to Python's warnings machinery, which prints it raw on the
        administrator's terminal: the host's text is kept (bounded) for its report instead."""
        if len(self.warnings) < _MAX_POOL_WARNINGS:
            self.warnings.append(str(message.data)[:_MAX_POOL_WARNING_CHARS])

    def _parse_responses(self, responses: bytes, pipeline: PowerShell | None = None) -> list[tuple[int, Any]]:
        if pipeline is not None:
            if self.flooded_by:
                raise _Flooded
            total = self.received.get(pipeline.id, 0) + len(responses)
            self.received[pipeline.id] = total
            if total > self.limit:
                raise _Oversize(total)
        with self.lock:
            return super()._parse_responses(responses, pipeline)

    def over(self, wsman: WSMan) -> _MeteredPool:
        """The same pool, addressed over another HTTP connection (a WinRM shell belongs to its
        user, not to the connection that created it): pipelines, limits and lock are shared."""
        view = copy.copy(self)
        view.shell = copy.copy(self.shell)
        view.shell.wsman = wsman
        view.connection = wsman
        return view


# The authentications whose sessions give each probe a connection of its own (see run_all).
OWN_CONNECTIONS = frozenset({"basic", "ntlm"})


class _Lane(threading.Thread):
    """One pipeline's thread; a daemon, so a host the runner gave up on never holds up the exit."""

    def __init__(self, work: Callable[..., Any], *args: Any) -> None:
        super().__init__(name=f"{threading.current_thread().name}-lane", daemon=True)
        self._work, self._args = work, args
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._work(*self._args)
        except BaseException as exc:  # handed to the session's thread, which classifies it
            self.error = exc


def _probe_name(script: str) -> str:
    identity = scripts.identify(script)
    return identity[0] if identity else "(unnamed script)"


class HostSession:
    """A runspace pool on one host; use as a context manager so the pool is always closed."""

    def __init__(
        self,
        target: HostTarget,
        password: Secret | None,
        *,
        max_output: int | None = None,
        max_runspaces: int = 1,
    ) -> None:
        self.target = target
        self._password = password
        self._max_output = MAX_PROBE_OUTPUT if max_output is None else max_output
        self._max_runspaces = max(1, max_runspaces)
        self._expires = time.monotonic() + target.host_deadline_s
        self._wsman: WSMan | None = None
        self._pool: _MeteredPool | None = None
        self._wsman_args: dict[str, Any] = {}
        self._clients: list[WSMan] = []  # the further clients pipelines ran over (NTLM, Kerberos, CredSSP)
        self.warnings: list[str] = []  # what the host's runspace pool warned about (its words, bounded)
        self._connection_broke = False  # the host no longer knows this HTTP session's security context

    def _scrub(self, error: CollectionError) -> CollectionError:
        """Defence in depth: no reason may carry the password, whatever a library put in it."""
        if self._password and self._password.reveal() and self._password.reveal() in error.reason:
            return CollectionError(error.kind, error.reason.replace(self._password.reveal(), "********"))
        return error

    def __enter__(self) -> HostSession:
        try:
            self._open()
        except BaseException as exc:
            self._connection_broke = isinstance(exc, requests.exceptions.RequestException)
            self.close()
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            error = classify(exc, self.target)
            if (
                self.target.auth == "negotiate"
                and self.target.ntlm_allowed
                and (isinstance(exc, AuthenticationError) or any(isinstance(e, BadMechanismError) for e in _chain(exc)))
            ):
                # Negotiate hides why Kerberos was skipped; ask the KDC the same question to say so.
                kerberos = self._kerberos_failure()
                if kerberos is not None:
                    error = after_ntlm_fallback(error, kerberos)
            raise self._scrub(error) from None
        return self

    def _kerberos_failure(self) -> CollectionError | None:
        """What Kerberos alone says for this target (a KDC round trip, no traffic to the host)."""
        if importlib.util.find_spec("gssapi") is None:  # no Kerberos support: Negotiate is NTLM
            return None
        t = self.target
        try:
            context = spnego.client(
                t.username or None,
                self._password.reveal() if self._password else None,
                hostname=t.name,
                service=t.spn_service,
                protocol="kerberos",
            )
            context.step()
        except Exception as exc:
            return kerberos_failure(exc, t) or classify(exc, t)
        return None

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        t = self.target
        https = t.transport == "https"
        encryption = "never" if (t.auth == "basic" and not https and t.allow_unencrypted) else "auto"
        cert_validation: bool | str = (t.ca_file or True) if t.cert_validation else False
        operation_timeout = max(1, int(t.operation_timeout_s))
        if t.auth == "credssp" and not (https and t.cert_validation):
            # CredSSP hands the password itself to the server: only to one that proved who it is.
            raise CollectionError(
                CollectionFailure.AUTH_FAILED,
                "credssp sends the password itself to the host, so the collector uses it only over https "
                "with certificate validation on",
            )
        auth = t.auth
        if auth == "negotiate" and not t.ntlm_allowed:
            auth = "kerberos"  # Negotiate without its NTLM fallback (see HostTarget.ntlm_allowed)
        kwargs: dict[str, Any] = {}
        if t.auth == "credssp":
            kwargs["credssp_auth_mechanism"] = "auto" if t.ntlm_allowed else "kerberos"
        if t.auth in ("negotiate", "kerberos"):
            # Kerberos must ask for the principal of the name, not of the address we dial, and for
            # the service WinRM registers (pypsrp would ask for host/).
            kwargs["negotiate_hostname_override"] = t.name
            kwargs["negotiate_service"] = t.spn_service
            kwargs["negotiate_delegate"] = t.delegate
        self._wsman_args = dict(
            server=t.address,
            port=t.port,
            username=t.username or None,
            password=self._password.reveal() if self._password else None,
            ssl=https,
            auth=auth,
            cert_validation=cert_validation,
            encryption=encryption,
            connection_timeout=max(1.0, t.connect_timeout_s),  # fractions kept: "no answer within N s" quotes it
            operation_timeout=operation_timeout,
            read_timeout=operation_timeout + 10,
            reconnection_retries=0,
            no_proxy=False,
            **kwargs,
        )
        self._wsman = WSMan(**self._wsman_args)
        self._prepare_http(self._wsman)
        self._pool = _MeteredPool(self._wsman, self._max_output, self._max_runspaces)
        self.warnings = self._pool.warnings
        self._pool.open()

    def _prepare_http(self, wsman: WSMan) -> None:
        t = self.target
        tls_name = t.name if t.transport == "https" and t.address != t.name and t.cert_validation else None
        _prepare_session(wsman, tls_name)

    def _check_deadline(self, probe: str) -> None:
        """Once the host's deadline has passed the runner has given up on it: start nothing more."""
        if time.monotonic() >= self._expires:
            raise CollectionError(
                CollectionFailure.TIMEOUT,
                f"the host deadline of {self.target.host_deadline_s:g} s passed before probe {probe} could start",
            )

    def run(self, script: str, parameters: Mapping[str, Any] | None = None) -> ScriptOutput:
        """Run one script with named parameters; raises CollectionError on transport failure,
        ``OutputTooLarge`` past the output limit, and a timeout once the host's deadline has passed."""
        [result] = self.run_all([(script, parameters or {})])
        if isinstance(result, CollectionError):
            raise result
        return result

    def run_all(
        self, calls: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> Iterator[ScriptOutput | OutputTooLarge | ProbeNotRead]:
        """Run several scripts side by side in the pool (one runspace each, up to ``max_runspaces``),
        so a host costs about its slowest probe instead of the sum. Yields each result in call order
        (so a runner that gives up keeps what arrived). A probe past the output limit fails
        (``OutputTooLarge``) and the probes not read by then stop reading (``ProbeNotRead``):
        reading them could take as long again. A transport failure ends the whole session
        (CollectionError), as it would for one script.

        With Basic and NTLM each probe also talks over its own connection, on its own thread: the
        Commands go out together and the answers are read together (one session's round trips a
        host). Negotiate and Kerberos would cost a Kerberos logon per connection (a password kinit,
        a ticket request each) and CredSSP a delegation each: there the Commands go out one after
        the other on the session's connection, then the answers are read in call order."""
        pool = self._pool
        if pool is None:
            raise CollectionError(CollectionFailure.UNREACHABLE, "the session is not open")
        if self.target.auth not in OWN_CONNECTIONS:
            try:
                started = [self._begin(pool, script, parameters) for script, parameters in calls]
                for begun in started:
                    yield self._end(pool, *begun)
            except CollectionError:
                raise
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                raise self._failed(exc) from None
            return
        lanes = []
        for index, (script, parameters) in enumerate(calls):
            lane = _Lane(self._invoke, self._pool_for(index, pool), script, parameters)
            lane.start()
            lanes.append(lane)
        for lane in lanes:
            lane.join()
            if lane.error is None:
                yield lane.result
            elif isinstance(lane.error, CollectionError | KeyboardInterrupt | SystemExit):
                raise lane.error
            else:
                raise self._failed(lane.error) from None

    def _failed(self, exc: BaseException) -> CollectionError:
        self._connection_broke |= isinstance(exc, requests.exceptions.RequestException)
        return self._scrub(classify(exc, self.target))

    def _begin(self, pool: _MeteredPool, script: str, parameters: Mapping[str, Any]) -> tuple[str, PowerShell, float]:
        """Start one script in its own pipeline (a Command); the host runs it from here on."""
        probe = _probe_name(script)
        self._check_deadline(probe)
        ps = PowerShell(pool)
        ps.add_script(script)
        for name, value in parameters.items():
            ps.add_parameter(name, value)
        # Everything the message depends on: the pool's protocol version and apartment state (the
        # same for every pool pypsrp opens on a PowerShell 5.1 host), script, parameters.
        _ScriptSerializer.pipeline_key.value = _message_key(pool, script, parameters)
        try:
            ps.begin_invoke()
        finally:
            _ScriptSerializer.pipeline_key.value = None
        return probe, ps, time.monotonic()

    def _end(
        self, pool: _MeteredPool, probe: str, ps: PowerShell, t0: float
    ) -> ScriptOutput | OutputTooLarge | ProbeNotRead:
        """Read a started pipeline's answer to the end (its Receives)."""
        try:
            output = ps.end_invoke()
        except _Oversize as over:
            pool.flooded_by.append(probe)
            with contextlib.suppress(Exception):
                ps.stop()
            return OutputTooLarge(probe, over.received, pool.limit)
        except _Flooded:
            with contextlib.suppress(Exception):
                ps.stop()
            return ProbeNotRead(probe, pool.flooded_by[0])
        finally:
            pool.received.pop(ps.id, None)
        return ScriptOutput(
            output=list(output),
            errors=[str(e) for e in ps.streams.error],
            had_errors=bool(ps.had_errors),
            duration_s=time.monotonic() - t0,
        )

    def _invoke(
        self, pool: _MeteredPool, script: str, parameters: Mapping[str, Any]
    ) -> ScriptOutput | OutputTooLarge | ProbeNotRead:
        """One script start to end, on its lane's thread."""
        return self._end(pool, *self._begin(pool, script, parameters))

    def _pool_for(self, index: int, pool: _MeteredPool) -> _MeteredPool:
        """The pool as pipeline ``index`` addresses it. Basic authentication rides on every
        request, so the session's own client serves them all (its connection pool opens a
        connection per pipeline); NTLM authenticates (and seals) one TCP connection, so every
        pipeline after the first gets a client of its own, closed with the session."""
        if index == 0 or self.target.auth == "basic":
            return pool
        assert self._wsman is not None
        wsman = WSMan(**self._wsman_args)
        wsman.update_max_payload_size(self._wsman.max_envelope_size)
        self._prepare_http(wsman)
        self._clients.append(wsman)
        return pool.over(wsman)

    def close(self) -> None:
        """Close the pool (frees the host's shell quota) and the HTTP session; never raises."""
        pool, self._pool = self._pool, None
        if pool is not None:
            if self._connection_broke:
                self._renew_http_session()
            # A dead host cannot be told; its shell quota frees on its side when the shell times out.
            with contextlib.suppress(Exception):
                if pool.state == RunspacePoolState.BROKEN:
                    # pypsrp does not delete the shell of a broken pool, yet the host may still hold
                    # it (and count it against MaxShellsPerUser): delete it.
                    pool.shell.close()
                else:
                    pool.close()
        wsman, self._wsman = self._wsman, None
        for connection in [*self._clients, *([wsman] if wsman is not None else [])]:
            with contextlib.suppress(Exception):
                connection.transport.close()
        self._clients.clear()

    def _renew_http_session(self) -> None:
        """Start over with a new HTTP session (and authentication) for the pool's Delete.

        A connection that broke mid-request took its NTLM or Kerberos context with it (they belong
        to the TCP connection on the host), so requests still sealed with it would be refused.
        """
        if self._wsman is None:
            return
        transport = self._wsman.transport
        with contextlib.suppress(Exception):
            transport.close()
        transport.session = None
        transport.encryption = None
        with contextlib.suppress(Exception):
            self._prepare_http(self._wsman)


def _prepare_session(wsman: WSMan, tls_name: str | None) -> None:
    """Build pypsrp's HTTP session now (it builds it lazily) to adjust it: with ``tls_name``, dial
    the address but send SNI for, and verify the certificate against, the inventory name.

    pypsrp reads the environment's proxy settings for this one endpoint as it builds the session;
    requests would read the whole environment again on every request (os.environ decoded, a
    no_proxy match) unless told not to, which at a few thousand requests a run is real CPU."""
    transport = wsman.transport
    session = transport._build_session()
    session.trust_env = False  # the endpoint's proxies are already resolved into session.proxies
    wire.guard_session(session)  # replies bounded and checked before pypsrp reads them
    if tls_name is not None:
        adapter = session.get_adapter("https://")
        assert isinstance(adapter, requests.adapters.HTTPAdapter)  # pypsrp mounts one for https
        adapter.poolmanager.connection_pool_kw.update(server_hostname=tls_name, assert_hostname=tls_name)
    transport.session = session
