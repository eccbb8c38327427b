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

# ExtendedDisconnectReasonCode (IMsRdpClient::ExtendedDisconnectReason). Logoff-by-user is 12;
# one English page of the documentation says 2 by mistake.
EXTENDED_REASONS: dict[int, str] = {
    0: "no additional information",
    1: "an application initiated the disconnection",
    2: "an application logged off the client",
    3: "the server disconnected the client for being idle longer than its limit",
    4: "the server disconnected the client for exceeding the session's time limit",
    5: "the connection was replaced by another connection to the same session",
    6: "no memory is available",
    7: "the server denied the connection (exDiscReasonServerDeniedConnection)",
    8: "the server denied the connection for security reasons (FIPS)",
    9: "the user lacks the privilege to connect (not a member of Remote Desktop Users, or denied the right)",
    10: "the server requires fresh credentials (saved credentials are not accepted)",
    11: "an administrator disconnected the session (RPC-initiated)",
    12: "the user logged off",
    256: "internal licensing error",
    257: "no Remote Desktop license server was available",
    258: "no valid Remote Desktop license was available",
    259: "the remote computer received an invalid licensing message",
    260: "the hardware ID does not match the license",
    261: "client license error",
    262: "network problem during licensing",
    263: "the client ended the licensing protocol",
    264: "licensing message encryption error",
    265: "the client license could not be upgraded or renewed",
    266: "the remote computer is not licensed to accept remote connections",
}

# What to check first, per (reason, extended) pair or per reason alone, in order of likelihood.
LIKELY_CAUSES: dict[tuple[int, int | None], tuple[tuple[str, tuple[str, ...]], ...]] = {
    (2308, 7): (
        (
            "Remote Desktop is off or limited by policy on the session host",
            ("rdp.disabled", "rdp.service-stopped", "rdp.user-rights"),
        ),
        (
            "the RD Gateway refuses the user or the resource (CAP/RAP)",
            ("rdg.policy-denied", "rdg.policy-config", "rdg.resource-unreachable", "rdg.service-stopped"),
        ),
        ("TLS inspection between the client and the gateway", ("rdg.ssl-inspection", "net.proxy")),
        (
            "the gateway's certificate is not valid for this client",
            ("cert.untrusted", "cert.name-mismatch", "rdg.cert-binding-mismatch"),
        ),
        ("UDP transport dropped on the path (the article's Fix 1: force TCP)", ("net.udp-3391", "client.udp-disabled")),
        ("stale saved credentials (the article's Fix 4)", ("client.cached-credentials",)),
    ),
    (2308, None): (
        (
            "the connection was cut after it started: a firewall, the gateway or the host ended it",
            ("net.tcp-blocked", "rdg.service-stopped", "rdp.service-stopped"),
        ),
        ("TLS inspection or a proxy on the path", ("rdg.ssl-inspection", "net.proxy")),
    ),
    (516, None): (
        (
            "nothing answers on the port: service stopped, firewall, wrong port",
            ("net.tcp-blocked", "rdp.not-listening", "rdp.firewall-closed", "rdp.port-nondefault"),
        ),
    ),
    (264, None): (("a firewall drops the traffic, or the host is down", ("net.tcp-blocked", "rdp.firewall-closed")),),
    (260, None): (("the name does not resolve", ("net.dns-unresolved", "net.dns-mismatch")),),
    (520, None): (("the name does not resolve", ("net.dns-unresolved", "net.dns-mismatch")),),
    (2055, None): (
        (
            "wrong or expired credentials, a locked account, or clocks too far apart for Kerberos",
            ("client.cached-credentials", "host.time-skew", "host.secure-channel"),
        ),
    ),
    (3847, None): (
        (
            "the password has expired: change it (from another machine or with NLA off temporarily)",
            ("rdp.nla-disabled",),
        ),
    ),
    (1798, None): (("the server's certificate could not be read", ("cert.untrusted", "rdp.negotiation")),),
}


def parse_code(text: str) -> int:
    """A code as users see it: hex (0x904) or decimal (2308); ValueError otherwise."""
    value = text.strip().lower()
    try:
        return int(value, 16) if value.startswith("0x") else int(value, 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a code (use hex like 0x904 or decimal like 2308)") from None


def describe_extended(code: int) -> str:
    meaning = EXTENDED_REASONS.get(code)
    label = f"0x{code:X} ({code})"
    return f"{label}: {meaning}" if meaning else f"{label}: not a documented extended reason"


# Extended reasons that point at a cause whatever the disconnect reason was.
CAUSES_BY_EXTENDED: dict[int, tuple[tuple[str, tuple[str, ...]], ...]] = {
    9: (("the user lacks the right to log on through Remote Desktop Services", ("rdp.user-rights",)),),
    **{
        code: (
            (
                "Remote Desktop licensing: no license server, no license, or the grace period is over",
                ("rdp.licensing",),
            ),
        )
        for code in range(256, 267)
    },
}


def likely_causes(code: int, extended: int | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Causes for the pair, else for the extended reason alone, else for the disconnect reason."""
    return (
        LIKELY_CAUSES.get((code, extended))
        or (CAUSES_BY_EXTENDED.get(extended, ()) if extended is not None else ())
        or LIKELY_CAUSES.get((code, None))
        or ()
    )


# Reasons that mean someone chose to end the session, not a failure.
USER_INITIATED = frozenset({1, 2, 3})


def describe_disconnect(code: int) -> str:
    """The meaning of an mstsc disconnect reason, in hex and decimal."""
    meaning = DISCONNECT_REASONS.get(code)
    label = f"0x{code:X} ({code})"
    return f"{label}: {meaning}" if meaning else f"{label}: not a documented disconnect reason"
