"""The public interface of the lab WinRM server: what a responder is asked and answers, what a
logon records, a host's Kerberos identity, and the faults the server can play."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
