"""mstsc disconnect reasons (ImsTscAxEvents::OnDisconnected) for decoding what users and
RDPClient event 1026 report. Codes not in the table are said to be unknown, never guessed."""

from __future__ import annotations

DISCONNECT_REASONS: dict[int, str] = {
    0: "no information is available",
    1: "local disconnection (the user closed the client)",
    2: "remote disconnection by the user",
    3: "remote disconnection by the server",
    260: "DNS name lookup failure",
    262: "out of memory",
    264: "connection timed out",
    516: "WinSock socket connect failure",
    518: "out of memory",
    520: "host not found",
    772: "WinSock send call failure",
    774: "out of memory",
    776: "invalid IP address specified",
    1028: "WinSock recv call failure",
    1030: "invalid security data",
    1032: "internal error",
    1286: "invalid encryption method specified",
    1288: "DNS lookup failed",
    1540: "GetHostByName call failed",
    1542: "invalid server security data",
    1544: "internal timer error",
    1796: "time-out occurred",
    1798: "failed to unpack the server certificate",
    2052: "bad IP address specified",
    2055: "login failed",
    2056: "license negotiation failed",
    2308: "socket closed (0x904): the connection was lost or refused after it started",
    2310: "internal security error",
    2312: "licensing time-out",
    2566: "internal security error",
    2822: "encryption error",
    3078: "decryption error",
    3080: "decompression error",
    3847: "the password has expired",
}

# Reasons that mean someone chose to end the session, not a failure.
USER_INITIATED = frozenset({1, 2, 3})


def describe_disconnect(code: int) -> str:
    """The meaning of an mstsc disconnect reason, in hex and decimal."""
    meaning = DISCONNECT_REASONS.get(code)
    label = f"0x{code:X} ({code})"
    return f"{label}: {meaning}" if meaning else f"{label}: not a documented disconnect reason"
