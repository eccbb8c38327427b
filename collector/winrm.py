"""One pypsrp session per host: open a runspace pool, run probes in it, always close it.

Scripts travel as script text and their inputs as PSRP parameters (``add_parameter``): a value
is data on the wire and never becomes code. Every failure the client library can raise is turned
into a ``CollectionError`` whose reason an administrator can act on (and which never contains
the password); the hard per-host deadline lives in the runner, because pypsrp retries a silent
Receive several times before it gives up.
"""

from __future__ import annotations

import contextlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from pypsrp.exceptions import (
    AuthenticationError,
    InvalidPSRPOperation,
    WinRMError,
    WinRMTransportError,
    WSManFaultError,
)
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from collector.credentials import Secret
from collector.model import CollectionFailure, HostTarget

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


class CollectionError(Exception):
    """Collection from a host failed; ``kind`` becomes a ``collect.*`` check."""

    def __init__(self, kind: CollectionFailure, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind.value}: {reason}")


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
    where = f"{target.address}:{target.port}"
    if isinstance(exc, CollectionError):
        return exc
    if isinstance(exc, AuthenticationError):
        user = target.username or "the current ticket"
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
        return CollectionError(CollectionFailure.BAD_OUTPUT, f"{where} sent a response that is not XML ({exc})")
    if isinstance(exc, InvalidPSRPOperation):
        return CollectionError(
            CollectionFailure.BAD_OUTPUT, f"the PowerShell runspace on the host is broken: {_first_line(exc)}"
        )
    if isinstance(exc, ImportError):
        return CollectionError(
            CollectionFailure.AUTH_FAILED, f"auth {target.auth} needs an extra package: {_first_line(exc)}"
        )
    if isinstance(exc, (WinRMError, ValueError, KeyError, TypeError, AttributeError, OSError)):
        return CollectionError(
            CollectionFailure.BAD_OUTPUT,
            f"unexpected answer from {where}: {type(exc).__name__}: {_first_line(exc)[:200]}",
        )
    return CollectionError(CollectionFailure.BAD_OUTPUT, f"{type(exc).__name__}: {_first_line(exc)[:200]}")


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""


class HostSession:
    """A runspace pool on one host; use as a context manager so the pool is always closed."""

    def __init__(self, target: HostTarget, password: Secret | None) -> None:
        self.target = target
        self._password = password
        self._wsman: WSMan | None = None
        self._pool: RunspacePool | None = None

    def _scrub(self, error: CollectionError) -> CollectionError:
        """Defence in depth: no reason may carry the password, whatever a library put in it."""
        if self._password and self._password.reveal() and self._password.reveal() in error.reason:
            return CollectionError(error.kind, error.reason.replace(self._password.reveal(), "********"))
        return error

    def __enter__(self) -> HostSession:
        try:
            self._open()
        except BaseException as exc:
            self.close()
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise self._scrub(classify(exc, self.target)) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        t = self.target
        https = t.transport == "https"
        encryption = "never" if (t.auth == "basic" and not https and t.allow_unencrypted) else "auto"
        cert_validation: bool | str = (t.ca_file or True) if t.cert_validation else False
        operation_timeout = max(1, int(t.operation_timeout_s))
        kwargs: dict[str, Any] = {}
        if t.auth in ("negotiate", "kerberos") and t.address != t.name:
            # Kerberos must ask for the principal of the name, not of the address we dial.
            kwargs["negotiate_hostname_override"] = t.name
        self._wsman = WSMan(
            server=t.address,
            port=t.port,
            username=t.username or None,
            password=self._password.reveal() if self._password else None,
            ssl=https,
            auth=t.auth,
            cert_validation=cert_validation,
            encryption=encryption,
            connection_timeout=int(max(1, t.connect_timeout_s)),
            operation_timeout=operation_timeout,
            read_timeout=operation_timeout + 10,
            reconnection_retries=0,
            no_proxy=False,
            **kwargs,
        )
        if https and t.address != t.name and t.cert_validation:
            _verify_tls_name(self._wsman, t.name)
        self._pool = RunspacePool(self._wsman)
        self._pool.open()

    def run(self, script: str, parameters: Mapping[str, Any] | None = None) -> ScriptOutput:
        """Run one script with named parameters; raises CollectionError on transport failure."""
        if self._pool is None:
            raise CollectionError(CollectionFailure.UNREACHABLE, "the session is not open")
        start = time.monotonic()
        try:
            ps = PowerShell(self._pool)
            ps.add_script(script)
            for name, value in (parameters or {}).items():
                ps.add_parameter(name, value)
            output = ps.invoke()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise self._scrub(classify(exc, self.target)) from None
        errors = [str(e) for e in ps.streams.error]
        return ScriptOutput(
            output=list(output),
            errors=errors,
            had_errors=bool(ps.had_errors),
            duration_s=time.monotonic() - start,
        )

    def close(self) -> None:
        """Close the pool (frees the host's shell quota) and the HTTP session; never raises."""
        pool, self._pool = self._pool, None
        if pool is not None:
            # A dead host cannot be told; its shell quota frees on its side when the shell times out.
            with contextlib.suppress(Exception):
                pool.close()
        wsman, self._wsman = self._wsman, None
        if wsman is not None:
            with contextlib.suppress(Exception):
                wsman.transport.close()


def _verify_tls_name(wsman: WSMan, name: str) -> None:
    """Dial the address but send SNI for, and verify the certificate against, the inventory name."""
    transport = wsman.transport
    session = transport._build_session()  # pypsrp builds it lazily; build it now to adjust it
    adapter = session.get_adapter("https://")
    adapter.poolmanager.connection_pool_kw.update(server_hostname=name, assert_hostname=name)
    transport.session = session
