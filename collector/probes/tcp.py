"""TCP reachability: a bounded connect to address:port, and how long it took.

The workstation's answer to the article's ``Test-NetConnection -Port 3389``: refused (RST),
timeout (dropped) and unresolvable names are different problems with different owners.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from collector.probes import Deadline, Failure, classify

DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class TcpResult:
    """One TCP connect attempt from the workstation."""

    address: str
    """What was connected to, as given (a name or an IP address)."""
    port: int
    """The TCP port."""
    connected: bool
    """Whether the three-way handshake completed."""
    peer: str = ""
    """The IP address finally tried (after name resolution), empty when nothing resolved."""
    elapsed_s: float = 0.0
    """Time from the start of resolution to connected (or to the failure)."""
    failure: Failure | None = None
    """Why it did not connect; None when it did."""
    reason: str = ""
    """One line an admin can act on; empty when connected."""

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


def _resolve(address: str, port: int, deadline: Deadline) -> list[tuple[int, tuple[str | int, ...]]]:
    """getaddrinfo under the deadline (it has no timeout of its own; a daemon thread waits for it)."""
    found: list[tuple[int, tuple[str | int, ...]]] = []
    errors: list[OSError] = []

    def run() -> None:
        try:
            infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            errors.append(exc)
            return
        found.extend((family, (str(sockaddr[0]), int(sockaddr[1]))) for family, _, _, _, sockaddr in infos)

    worker = threading.Thread(target=run, name=f"resolve-{address}", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():
        raise socket.gaierror(socket.EAI_AGAIN, "the resolver did not answer in time")
    if errors:
        raise errors[0]
    return found


def connect(address: str, port: int, deadline: Deadline) -> tuple[socket.socket | None, TcpResult]:
    """Resolve and connect within ``deadline``; the socket is the caller's to close."""
    start = time.monotonic()
    peer = ""
    try:
        targets = _resolve(address, port, deadline)
    except (OSError, TimeoutError) as exc:
        failure, reason = classify(exc, what="resolving the name", timeout=deadline.seconds)
        return None, TcpResult(address, port, False, "", time.monotonic() - start, failure, reason)
    last: BaseException | None = None
    for family, sockaddr in targets:
        peer = str(sockaddr[0])
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(sockaddr)
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc
            if isinstance(exc, TimeoutError):
                break  # the budget is spent; trying the next address would overrun it
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, TcpResult(address, port, True, peer, time.monotonic() - start)
    assert last is not None  # getaddrinfo never returns an empty list without raising
    failure, reason = classify(last, what=f"connecting to {peer}:{port}", timeout=deadline.seconds)
    return None, TcpResult(address, port, False, peer, time.monotonic() - start, failure, reason)


def probe_tcp(address: str, port: int, timeout: float = DEFAULT_TIMEOUT_S) -> TcpResult:
    """Connect and close; the result says whether, to which IP, how fast, or why not."""
    sock, result = connect(address, port, Deadline(timeout))
    if sock is not None:
        sock.close()
    return result
