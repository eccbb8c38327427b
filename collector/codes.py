"""mstsc disconnect reasons (ImsTscAxEvents::OnDisconnected), its SSL_ERR logon errors and the RD Gateway
codes (0x0300xxxx), for decoding what users and RDPClient event 1026 report. Codes not in the tables
are said to be unknown, never guessed."""

from __future__ import annotations

# The disconnect reasons of Microsoft's "IMsTscAxEvents::OnDisconnected method"
# (https://learn.microsoft.com/en-us/windows/win32/termserv/imstscaxevents-ondisconnected).
_MSTSC_REASONS: dict[int, str] = {
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
    2056: "license negotiation failed",
    2308: "socket closed (0x904): the connection was lost or refused after it started",
    2310: "internal security error",
    2312: "licensing time-out",
    2566: "internal security error",
    2822: "encryption error",
    3078: "decryption error",
    3080: "decompression error",
}

# The SSL_ERR family: the same Microsoft page ("IMsTscAxEvents::OnDisconnected method", above) lists
# these under their Wincred.h names. They are account, password, smart card, certificate and
# credential-delegation errors met while the client authenticates (Network Level Authentication).
SSL_ERR_REASONS: dict[int, str] = {
    2055: "login failed (SSL_ERR_LOGON_FAILURE)",
    2567: "the specified user has no account (SSL_ERR_NO_SUCH_USER)",
    2823: "the account is disabled (SSL_ERR_ACCOUNT_DISABLED)",
    3079: "the account is restricted (SSL_ERR_ACCOUNT_RESTRICTION), for example to certain logon hours",
    3335: "the account is locked out (SSL_ERR_ACCOUNT_LOCKED_OUT)",
    3591: "the account has expired (SSL_ERR_ACCOUNT_EXPIRED)",
    3847: "the password has expired (SSL_ERR_PASSWORD_EXPIRED)",
    4615: "the password must be changed before the first logon (SSL_ERR_PASSWORD_MUST_CHANGE)",
    5639: "the policy does not allow delegating credentials to this server (SSL_ERR_DELEGATION_POLICY)",
    5895: "credentials may be delegated to the server only after mutual authentication (SSL_ERR_POLICY_NTLM_ONLY)",
    6151: (
        "no authority could be contacted for authentication: a wrong domain name, an unreachable domain or "
        "a broken trust (SSL_ERR_NO_AUTHENTICATING_AUTHORITY)"
    ),
    6919: "the certificate received from the server has expired (SSL_ERR_CERT_EXPIRED)",
    7175: "an incorrect PIN was presented to the smart card (SSL_ERR_SMARTCARD_WRONG_PIN)",
    8455: (
        "the server's policy does not accept saved credentials: new credentials must be typed "
        "(SSL_ERR_FRESH_CRED_REQUIRED_BY_SERVER)"
    ),
    8711: "the smart card is blocked (SSL_ERR_SMARTCARD_CARD_BLOCKED)",
}

# The RD Gateway codes (0x0300xxxx) mstsc shows and RDPClient event 1026 records, as MsTscAx's
# GetErrorDescription words them (shortened here). Source: Microsoft TechNet Wiki, "Remote Desktop Client
# Troubleshooting: Disconnect Codes and Reasons" (article 37870, social.technet.microsoft.com/wiki/contents/
# articles/37870.remote-desktop-client-troubleshooting-disconnect-codes-and-reasons.aspx, now under
# learn.microsoft.com/en-us/archive/technet-wiki/); Rackspace's "RDS client disconnected codes and reasons"
# (docs.rackspace.com/support/how-to/rds-client-disconnected-codes-and-reasons/) describes the same
# GetErrorDescription lookup. Rows checked against verbatim copies of that table in open-source projects.
# Where a source disagrees, the GetErrorDescription text wins: Remote Desktop Connection Manager's
# own short labels call 50331655 "Gateway authentication failure" and 50331656 "Server not found".
# 50331717 to 50331728 of the same table are about RemoteApp resources and the retired Azure RemoteApp
# service, not the gateway: they are decoded (OTHER_0300_REASONS below) but not called RD Gateway codes.
GATEWAY_REASONS: dict[int, str] = {
    50331649: "the user name or password is not valid",
    50331650: "the client cannot check the certificate revocation list",
    50331651: (
        "the gateway's certificate is refused: its subject name does not match the gateway address asked for, "
        "it has expired or been revoked, or its root is not trusted"
    ),
    50331652: "the gateway's certificate was revoked by its certification authority",
    50331653: "the client cannot verify the identity of the RD Gateway",
    50331654: "the gateway address asked for and the certificate's subject name do not match",
    50331655: "the gateway's certificate has expired or has been revoked",
    50331656: "an error occurred on the remote computer the client connects to",
    50331657: "error sending data to the RD Gateway: the gateway is unavailable or a network connection is down",
    50331658: "error receiving data from the RD Gateway: the gateway is unavailable or a network connection is down",
    50331659: "an alternate logon method is required",
    50331660: "the RD Gateway address is unreachable or incorrect",
    50331661: "the RD Gateway is temporarily unavailable",
    50331662: "the Remote Desktop Services client component is missing or of the wrong version",
    50331663: "the RD Gateway is low on server resources and temporarily unavailable",
    50331664: "an incorrect version of rpcrt4.dll was detected on the client",
    50331665: "no smart card service is installed",
    50331666: "the smart card was removed (try again with a valid smart card)",
    50331667: "no smart card is available",
    50331668: "the smart card was removed (reinsert it)",
    50331669: "the user name or password is not valid",
    50331671: "a security package error occurred in the transport layer",
    50331672: "the RD Gateway ended the connection",
    50331673: "the RD Gateway's administrator ended the connection",
    50331674: "the credentials (user name, domain and password) were incorrect, or the smart card was not recognized",
    50331675: (
        "the user is not in the RD Gateway's permission list, or the remote computer was named in NetBIOS form "
        "where the gateway expects an FQDN or an IP address"
    ),
    50331676: (
        "the user account or the computer is not authorized to use the RD Gateway, or the authentication method "
        "is not the one it expects (for example a password where it wants a smart card)"
    ),
    50331679: "the network administrator has restricted access to this RD Gateway",
    50331680: "the web proxy requires authentication",
    50331681: "the password has expired or must be changed",
    50331682: "the RD Gateway has reached its maximum number of connections",
    50331683: "the RD Gateway does not support the request",
    50331684: "the client does not support one of the RD Gateway's capabilities",
    50331685: "the RD Gateway and this client are incompatible",
    50331686: "the credentials are not valid (smart card and PIN, or password)",
    50331687: "the client did not pass the Network Access Protection requirements",
    50331688: "no certificate is configured on the RD Gateway",
    50331689: "the client's administrator does not allow this RD Gateway (not in the trusted RD Gateway list)",
    50331690: (
        "Network Access Protection refused the gateway's certificate: the name does not match, it has expired "
        "or been revoked, its root is not trusted, its key usage does not allow encryption, or the revocation "
        "list cannot be checked"
    ),
    50331691: "the RD Gateway requires a user name and password, not smart card credentials",
    50331692: "the RD Gateway requires smart card credentials, not a user name and password",
    50331693: "no smart card reader is detected",
    50331695: "authentication to the firewall failed: the firewall credentials are missing",
    50331696: "authentication to the firewall failed: the firewall credentials are not valid",
    50331698: "the session ended because the remote computer received no input (idle)",
    50331699: "the session timeout limit was reached",
    50331700: "an invalid cookie was sent to the RD Gateway",
    50331701: "the RD Gateway rejected the cookie",
    50331703: "the RD Gateway expects another authentication method than the one attempted",
    50331704: "periodic user authentication failed",
    50331705: "periodic user authorization failed",
    50331707: (
        "the RD Gateway and the remote computer could not exchange policies: the remote computer cannot, its "
        "configuration does not permit a new connection, or the connection between them ended"
    ),
    50331708: (
        "the smart card is not valid, its certificate is not in the certificate store, or the Certificate "
        "Propagation service is not running"
    ),
    50331709: "the user must first log on to an authentication website",
    50331710: "the user must first log on to an authentication website",
    50331711: "the session ended: the user must log on to an authentication website again",
    50331712: "the session ended: the user must log on to an authentication website again",
    50331713: "periodic user authorization failed: the client did not pass Network Access Protection",
    50331714: "the cookie is larger than the supported size",
    50331716: "the client cannot connect through the configured forward proxy",
}

# The rest of the 0x0300xxxx table (same source as GATEWAY_REASONS).
OTHER_0300_REASONS: dict[int, str] = {
    50331717: "the user has no permission to this remote resource",
    50331718: "no resources are available to connect to",
    50331719: "an error occurred while Remote Desktop Connection was accessing this resource",
    50331721: "the Remote Desktop client must be updated to the newest version",
    50331722: "the network configuration does not allow the necessary HTTPS ports (or a web proxy is in the way)",
    50331723: "Azure RemoteApp is setting up more resources: try again in a few minutes",
    50331724: "the user name does not match the one used to subscribe to the applications (Azure RemoteApp)",
    50331725: "too many users are trying the Azure RemoteApp service at the moment",
    50331726: "the maximum number of users has been reached (Azure RemoteApp)",
    50331727: "the Azure RemoteApp trial period has expired",
    50331728: "the user no longer has access to Azure RemoteApp",
}

DISCONNECT_REASONS: dict[int, str] = {
    **_MSTSC_REASONS,
    **SSL_ERR_REASONS,
    **OTHER_0300_REASONS,
    **{code: f"RD Gateway: {meaning}" for code, meaning in GATEWAY_REASONS.items()},
}


def code_kind(code: int) -> str | None:
    """The documented family a disconnect reason belongs to, in words; None for the others."""
    if code in GATEWAY_REASONS:
        return "an RD Gateway code (0x0300xxxx): look at the gateway and the path to it first"
    if code in SSL_ERR_REASONS:
        return "an SSL_ERR code (Wincred.h): an error met while the client authenticated (NLA)"
    return None


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

Causes = tuple[tuple[str, tuple[str, ...]], ...]

# Likely causes of the SSL_ERR reasons that have checks to run (2055 and 3847 are below). None is mapped for
# a disabled, restricted or expired account, the delegation policy or smart cards: no check reads them.
SSL_ERR_CAUSES: dict[int, Causes] = {
    2567: (
        (
            "the user name is mistyped or saved for an account that no longer exists (check the domain part)",
            ("client.cached-credentials",),
        ),
    ),
    3335: (
        (
            "stale saved credentials were retried until the account locked: remove them wherever the user connects "
            "from, then unlock it",
            ("client.cached-credentials",),
        ),
    ),
    4615: (
        (
            "the user must set a password first: with NLA required that cannot happen at the logon screen; change "
            "it from another machine (or with NLA off temporarily)",
            ("rdp.nla-disabled",),
        ),
    ),
    5895: (
        (
            "Kerberos failed, so only NTLM was left: clocks too far apart, a broken secure channel, or a name that "
            "leads to another host (a stale DNS record)",
            ("host.time-skew", "host.secure-channel", "net.dns-mismatch"),
        ),
    ),
    6151: (("the host cannot reach its domain: its secure channel is broken", ("host.secure-channel",)),),
    6919: (
        (
            "the session host's listener certificate has expired (collect check-rdp HOST shows it)",
            ("cert.expired", "rdp.negotiation"),
        ),
        ("the client's and the server's clocks are far apart", ("host.time-skew", "cert.not-yet-valid")),
    ),
    8455: (
        (
            "the session host always prompts for the password, so saved credentials are refused: type it instead",
            ("client.cached-credentials",),
        ),
    ),
}

_GW_NAME = (
    "the gateway's certificate does not name the address the client uses (the gateway name in the .rdp file, or "
    "mstsc > Advanced > Settings)",
    ("cert.name-mismatch",),
)
_GW_UNTRUSTED = (
    "the client does not trust the gateway certificate's root, or the gateway does not send its intermediate CA "
    "(an internal CA on an unmanaged client, a self-signed certificate)",
    ("cert.untrusted", "cert.chain-incomplete", "cert.self-signed"),
)
_GW_EXPIRED = (
    "the gateway's certificate has expired: renew it with the same names and select it in RD Gateway Manager",
    ("cert.expired", "cert.expires-soon"),
)
_GW_BINDING = (
    "the certificate was renewed, but HTTP.sys still serves the old one on 443 (the binding was not rewritten)",
    ("rdg.cert-binding-mismatch",),
)
_GW_CLOCK = (
    "the client's clock is wrong, so a valid certificate looks expired or not yet valid",
    ("host.time-skew", "cert.not-yet-valid"),
)
_GW_INSPECTION = (
    "a TLS-inspecting proxy or agent re-signs the gateway's traffic: the client sees its certificate, not the "
    "gateway's",
    ("rdg.ssl-inspection", "client.tls-intercepting-agent", "net.proxy"),
)
_GW_CAP = (
    "the user (or the client computer) meets no enabled CAP, or the CAP wants another authentication method "
    "(smart card or password): the gateway logs event 201",
    ("rdg.policy-denied", "rdg.policy-config"),
)
_GW_RAP = (
    "no enabled RAP lets this user reach this computer under the name used (a short NetBIOS name where the RAP's "
    "computer group holds FQDNs): the gateway logs event 301",
    ("rdg.policy-denied", "rdg.policy-config"),
)
_GW_DOWN = (
    "the Remote Desktop Gateway service (TSGateway) or its IIS transport is stopped or restarting",
    ("rdg.service-stopped", "rdg.http-transport"),
)
_GW_PATH = ("TCP 443 from the client to the gateway is blocked or dropped on the way", ("net.tcp-blocked",))
_GW_MIDDLEBOX = (
    "a proxy, load balancer or TLS-inspecting device between the client and the gateway cuts or rewrites the "
    "RDG_IN_DATA / RDG_OUT_DATA channels",
    ("net.proxy", "rdg.ssl-inspection", "rdg.http-transport"),
)
_GW_CREDS = (
    "stale saved credentials (a password change is the usual trigger): remove the TERMSRV/ and RDG entries and "
    "type them again",
    ("client.cached-credentials",),
)
_GW_DOMAIN = (
    "the gateway cannot validate the logon with the domain: clocks too far apart for Kerberos, or a broken "
    "secure channel",
    ("host.time-skew", "host.secure-channel"),
)
_GW_TO_HOST = (
    "the gateway cannot reach the session host: its name, a firewall or the host's listener (the gateway logs "
    "event 304)",
    ("rdg.resource-unreachable", "rdp.firewall-closed", "rdp.not-listening"),
)
_GW_FRONT = (
    "something else answers on the gateway's address: a reverse proxy, load balancer or TLS inspection that does "
    "not pass RDG_IN_DATA / RDG_OUT_DATA and websockets through",
    ("rdg.http-transport", "rdg.ssl-inspection", "net.proxy"),
)
_GW_PROXY_AUTH = (
    "a proxy or authenticating firewall between the client and the gateway wants its own sign-in: let the "
    "gateway's FQDN through it unauthenticated, or bypass it",
    ("net.proxy",),
)

# Likely causes of the RD Gateway codes, most likely first. None is mapped where no check can confirm
# the cause: smart cards, Network Access Protection, the client's own components and policies, the
# gateway's connection limit and timeouts, an administrator's disconnection, authentication websites.
GATEWAY_CAUSES: dict[int, Causes] = {
    50331649: (_GW_CREDS, _GW_DOMAIN),
    50331650: (
        (
            "the client cannot download the revocation list of the CA that issued the gateway's certificate: its "
            "URL answers only inside the network, or a proxy blocks it (a public CA avoids this for internet "
            "clients)",
            ("net.proxy",),
        ),
        (
            "the certificate the client checks comes from a TLS-inspecting device, not from the gateway",
            ("rdg.ssl-inspection", "client.tls-intercepting-agent"),
        ),
    ),
    50331651: (_GW_NAME, _GW_UNTRUSTED, _GW_EXPIRED, _GW_BINDING, _GW_INSPECTION, _GW_CLOCK),
    50331652: (_GW_BINDING, _GW_INSPECTION),
    50331653: (_GW_UNTRUSTED, _GW_INSPECTION, _GW_NAME, _GW_CLOCK),
    50331654: (
        _GW_NAME,
        _GW_BINDING,
        (
            "the gateway's name resolves elsewhere from the client (a stale record, a hosts file entry, a split-DNS "
            "view), so another server answers",
            ("net.dns-mismatch",),
        ),
        _GW_INSPECTION,
    ),
    50331655: (_GW_EXPIRED, _GW_BINDING, _GW_CLOCK, _GW_INSPECTION),
    50331656: (
        _GW_TO_HOST,
        ("Remote Desktop is off, or its service stopped, on the session host", ("rdp.disabled", "rdp.service-stopped")),
    ),
    50331657: (_GW_DOWN, _GW_MIDDLEBOX, _GW_PATH),
    50331658: (_GW_DOWN, _GW_MIDDLEBOX, _GW_PATH),
    50331659: (_GW_CAP,),
    50331660: (
        (
            "the gateway's name does not resolve from the client, or resolves to an old address",
            ("net.dns-unresolved", "net.dns-mismatch"),
        ),
        _GW_PATH,
        _GW_DOWN,
        ("a proxy in front of the client does not pass the gateway's traffic", ("net.proxy",)),
    ),
    50331661: (_GW_DOWN, _GW_PATH),
    50331669: (_GW_CREDS, _GW_DOMAIN),
    50331671: (
        _GW_DOMAIN,
        ("no TLS version in common: TLS 1.2 is off on the client or the gateway", ("host.tls-protocols",)),
        _GW_INSPECTION,
    ),
    50331672: (_GW_DOWN, _GW_TO_HOST, _GW_MIDDLEBOX),
    50331674: (_GW_CREDS, _GW_DOMAIN),
    50331675: (
        _GW_RAP,
        ("the gateway resolves the computer's name differently, or not at all", ("net.dns-mismatch",)),
    ),
    50331676: (
        _GW_CAP,
        (
            "the gateway cannot read the user's groups: its secure channel is broken (or NPS, for a central CAP, "
            "refuses)",
            ("host.secure-channel",),
        ),
    ),
    50331679: (_GW_CAP,),
    50331680: (_GW_PROXY_AUTH,),
    50331683: (_GW_FRONT,),
    50331684: (_GW_FRONT,),
    50331685: (
        _GW_FRONT,
        (
            "the RPC-over-HTTP fallback is broken on the gateway: its /Rpc applications are not at Full trust",
            ("rdg.iis-trust",),
        ),
    ),
    50331688: (
        (
            "HTTP.sys has no usable certificate bound for the gateway: re-select it in RD Gateway Manager",
            ("rdg.cert-binding-mismatch", "rdg.cert-no-private-key", "net.tls-handshake"),
        ),
    ),
    50331690: (
        _GW_NAME,
        _GW_EXPIRED,
        _GW_UNTRUSTED,
        ("the certificate is not for TLS server authentication (EKU, key usage)", ("cert.no-server-auth-eku",)),
    ),
    50331691: (_GW_CAP,),
    50331692: (_GW_CAP,),
    50331695: (_GW_PROXY_AUTH,),
    50331696: (_GW_PROXY_AUTH,),
    50331703: (_GW_CAP,),
    50331704: (
        (
            "the password changed or the account locked during the session, and saved credentials are now stale",
            ("client.cached-credentials",),
        ),
        _GW_DOMAIN,
    ),
    50331705: (
        (
            "the user no longer meets the CAP or RAP when the gateway authorizes again (group membership or policy "
            "changed)",
            ("rdg.policy-denied", "rdg.policy-config"),
        ),
    ),
    50331707: (
        _GW_TO_HOST,
        (
            "the session host does not accept a new connection: Remote Desktop off, its service stopped, or no licence",
            ("rdp.disabled", "rdp.service-stopped", "rdp.licensing"),
        ),
    ),
    50331716: (("the forward proxy set for the client does not pass the gateway's traffic", ("net.proxy",)),),
}

# What to check first, per (reason, extended) pair or per reason alone, in order of likelihood.
LIKELY_CAUSES: dict[tuple[int, int | None], Causes] = {
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
    (260, None): (
        (
            "the name does not resolve, or is not the server's name (a typo in the connection)",
            ("net.dns-unresolved", "net.dns-mismatch", "client.unlisted-server"),
        ),
    ),
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
    **{(code, None): causes for code, causes in SSL_ERR_CAUSES.items()},
    **{(code, None): causes for code, causes in GATEWAY_CAUSES.items()},
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
CAUSES_BY_EXTENDED: dict[int, Causes] = {
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


def likely_causes(code: int, extended: int | None) -> Causes:
    """Causes for the pair, else for the extended reason alone, else for the disconnect reason."""
    return (
        LIKELY_CAUSES.get((code, extended))
        or (CAUSES_BY_EXTENDED.get(extended, ()) if extended is not None else ())
        or LIKELY_CAUSES.get((code, None))
        or ()
    )


def check_ids() -> frozenset[str]:
    """Every check id the tables name as confirming or ruling out a cause. The check registry
    refuses to build while one of them is no check (``collector.checks.core``)."""
    tables = (*LIKELY_CAUSES.values(), *CAUSES_BY_EXTENDED.values())
    return frozenset(check_id for causes in tables for _, ids in causes for check_id in ids)


# Reasons that mean someone chose to end the session, not a failure.
USER_INITIATED = frozenset({1, 2, 3})


def describe_disconnect(code: int) -> str:
    """The meaning of an mstsc disconnect reason, in hex and decimal."""
    meaning = DISCONNECT_REASONS.get(code)
    label = f"0x{code:X} ({code})"
    return f"{label}: {meaning}" if meaning else f"{label}: not a documented disconnect reason"
