"""Local probes: what the admin workstation itself sees of an endpoint.

``tcp`` (bounded connect), ``tls`` (handshake with SNI, the chain as sent), ``rdp`` (X.224
negotiation, then TLS on the same socket), ``rdg_http`` (the RD Gateway HTTP transport's answer).

The contract every probe keeps: it returns a frozen result, and every failure (name not found,
refused, timeout, reset, not TLS, garbage) is *part of the result* as a ``Failure`` kind and a
one-line reason an admin can act on; no exception escapes. All I/O is bounded by the probe's
``timeout``, which covers the whole probe (name resolution, connect, handshake, reply).
Probes capture; they never judge. Judgement lives in ``collector.certs`` and ``collector.checks``.
"""

from __future__ import annotations

import enum
import errno
import socket
import ssl
import time


class Failure(enum.StrEnum):
    """Why a probe step did not get the answer it wanted."""

    DNS = "dns"
    """The name did not resolve (or the resolver did not answer in time)."""
    REFUSED = "refused"
    """TCP RST on connect: nothing listens there, or a host firewall rejects."""
    TIMEOUT = "timeout"
    """No answer in time: a firewall dropping packets, or a server that accepts and stays silent."""
    UNREACHABLE = "unreachable"
    """No route to the network or host."""
    RESET = "reset"
    """The peer reset the connection after accepting it."""
    CLOSED = "closed"
    """The peer closed the connection before answering."""
    NOT_TLS = "not-tls"
    """The peer answered, but not with TLS."""
    TLS_ERROR = "tls-error"
    """The peer speaks TLS but refused the handshake (an alert: no shared protocol or cipher...)."""
    GARBAGE = "garbage"
    """The peer answered with bytes that are not the protocol asked for."""
    ERROR = "error"
    """Any other socket error, described in the reason."""


class PeerClosed(ConnectionError):
    """The peer closed the connection cleanly (EOF) before sending what the probe waits for."""


class Deadline:
    """One time budget for a whole probe; every blocking call gets what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; raises TimeoutError when the budget is spent (caught as a result)."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("probe deadline reached")
        return left


def _ssl_reason(exc: ssl.SSLError) -> str:
    return (exc.reason or exc.strerror or str(exc)).replace("_", " ").lower()


NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LAYER_FAILURE",
        "HTTP_REQUEST",
        "UNEXPECTED_MESSAGE",
        "UNEXPECTED_RECORD",
        "RECORD_LENGTH_MISMATCH",
        "WRONG_SSL_VERSION",
    }
)
"""OpenSSL reasons that mean the bytes received were not a TLS handshake at all."""


def classify(exc: BaseException, *, what: str, timeout: float) -> tuple[Failure, str]:
    """A failure kind and a one-line reason for an exception raised during ``what``."""
    if isinstance(exc, socket.gaierror):
        return Failure.DNS, f"name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return Failure.TIMEOUT, f"no answer within {timeout:g} s while {what}"
    if isinstance(exc, ConnectionRefusedError):
        return Failure.REFUSED, "connection refused (nothing listens on that port, or a firewall rejects it)"
    if isinstance(exc, ssl.SSLEOFError) or (
        isinstance(exc, ssl.SSLError) and exc.reason == "UNEXPECTED_EOF_WHILE_READING"
    ):
        return Failure.CLOSED, f"the peer closed the connection while {what}"
    if isinstance(exc, ssl.SSLError):
        if exc.reason in NOT_TLS_REASONS:
            return Failure.NOT_TLS, f"the peer answered, but not with TLS ({_ssl_reason(exc)})"
        return Failure.TLS_ERROR, f"TLS failed while {what}: {_ssl_reason(exc)}"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return Failure.RESET, f"the peer reset the connection while {what}"
    if isinstance(exc, PeerClosed):
        return Failure.CLOSED, f"the peer closed the connection while {what}"
    if isinstance(exc, ConnectionAbortedError):
        return Failure.CLOSED, f"the connection was aborted while {what}"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN):
            return Failure.UNREACHABLE, f"{exc.strerror or 'unreachable'} while {what}"
        return Failure.ERROR, f"{exc.strerror or exc} while {what}"
    return Failure.ERROR, f"{type(exc).__name__}: {exc} while {what}"
