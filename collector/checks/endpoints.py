"""Checks over the workstation's own probes of an endpoint (TCP, TLS, RDP negotiation, RD Gateway
HTTP transport). Pure: probe results in, CheckResults out; the probes did the I/O.

The ids are the catalogue's (``net.tcp-blocked``, ``rdp.nla-disabled``...), seen here from the
workstation rather than from a host over WinRM; the vantage point in every evidence line says
which. Two ids are added for what only a network probe can see: ``net.tls-handshake`` (the
endpoint accepts TCP but no TLS handshake completes) and ``rdp.negotiation`` (the listener's
answer to the X.224 negotiation).
"""

from __future__ import annotations

import ipaddress

from collector.checks import Verdict
from collector.checks.certs import WHERE_BOUND, CheckMeta
from collector.model import WHY_UNKNOWN, Evidence, Severity, Status
from collector.probes import Failure
from collector.probes.rdg_http import RdgHttpResult
from collector.probes.rdp import (
    NLA_PROTOCOLS,
    PROTOCOL_RDP,
    PROTOCOL_SSL,
    TLS_PROTOCOLS,
    RdpResult,
)
from collector.probes.tcp import TcpResult
from collector.probes.tls import TlsHandshake, TlsResult

DNS_UNRESOLVED = CheckMeta(
    id="net.dns-unresolved",
    title="The name resolves",
    severity=Severity.CRITICAL,
    remediation=(
        "nslookup NAME / Resolve-DnsName NAME from the same place: check the record in the zone, the DNS "
        "servers this machine uses, and split DNS (a gateway's public name must resolve outside the "
        "network too). A name that resolves elsewhere but not here points at this machine's resolver."
    ),
    references=("article: nslookup", "mstsc 260 / 520: DNS lookup failure"),
)
TCP_BLOCKED = CheckMeta(
    id="net.tcp-blocked",
    title="The port accepts TCP connections",
    severity=Severity.CRITICAL,
    remediation=(
        "Refused: nothing listens there (TermService / TSGateway stopped, a non-default port, the wrong "
        "address) or a host firewall rejects: on the target, Get-Service TermService, TSGateway; "
        "netstat -ano | findstr :3389 (or :443); Get-NetFirewallRule -DisplayGroup 'Remote Desktop'. "
        "Timeout: a firewall on the path drops the packets: check network ACLs and the target's Windows "
        "Firewall profile; Test-NetConnection -ComputerName NAME -Port 3389 from a machine on each side."
    ),
    references=("article: Test-NetConnection -Port 3389, netstat 3389", "mstsc 516: socket connect failed"),
)
TLS_HANDSHAKE = CheckMeta(
    id="net.tls-handshake",
    title="The endpoint completes a TLS handshake",
    severity=Severity.CRITICAL,
    remediation=(
        "Closed or reset during the handshake on a gateway: HTTP.sys has no certificate bound for this "
        "IP:port: netsh http show sslcert (look for 0.0.0.0:443 or IP:443, and that its certificate hash is "
        "the gateway's); re-select the certificate in RD Gateway Manager, which rewrites the binding. "
        "On a session host: the listener's certificate or its private key is unusable (System log "
        "Schannel 36870): re-assign it (below), or remove it (Cert:\\LocalMachine\\Remote Desktop) and "
        "restart TermService. 'Not TLS': another service answers on this port (a web server without TLS, "
        "a proxy, the wrong port). A TLS alert: no protocol or cipher in common: compare the SCHANNEL "
        "protocol settings (TLS 1.2 must be on) on both sides.\n" + WHERE_BOUND
    ),
    references=("System log Schannel 36870, 36871, 36874, 36888", "netsh http show sslcert", "host.tls-protocols"),
)
RDG_HTTP_TRANSPORT = CheckMeta(
    id="rdg.http-transport",
    title="The RD Gateway HTTP transport answers with an authentication challenge",
    severity=Severity.CRITICAL,
    remediation=(
        "A healthy gateway answers RDG_OUT_DATA /remoteDesktopGateway/ with 401 and WWW-Authenticate "
        "Negotiate / NTLM before any logon. A 404 or an IIS page: the RD Gateway role service is not "
        "installed or TSGateway is stopped (Get-Service TSGateway; Restart-Service TSGateway). A 503: "
        "an IIS application pool is stopped (Get-IISAppPool shows which; Start-WebAppPool -Name <pool>). "
        "Other statuses, another Server header or a login page: a reverse proxy, load balancer or TLS "
        "inspection in front of the gateway that does not pass RDG_OUT_DATA through: publish the gateway "
        "with TCP pass-through (or a proxy rule that allows the RDG_IN_DATA / RDG_OUT_DATA methods and "
        "websockets) and exempt it from inspection. GET /rpc (the RPC-over-HTTP fallback): 401 is good, "
        "404 means the /rpc application is missing (reinstall the RD Gateway role service)."
    ),
    references=(
        "MS-TSGU 2.2.3.3.1 (HTTP transport: RDG_OUT_DATA)",
        "article Fix 3: SSL inspection on the path",
        "rdg.ssl-inspection",
    ),
)
RDP_NEGOTIATION = CheckMeta(
    id="rdp.negotiation",
    title="The RDP listener negotiates a protocol and completes TLS",
    severity=Severity.CRITICAL,
    remediation=(
        "SSL_CERT_NOT_ON_SERVER: the certificate named in SSLCertificateSHA1Hash is missing from "
        "LocalMachine\\My or its private key is not readable by NETWORK SERVICE; assign a valid one (below), "
        "or clear the setting so the listener uses its self-signed certificate, then Restart-Service "
        "TermService -Force. No answer or garbage: another service holds the port (netstat -ano | findstr "
        ":3389, then Get-Process -Id PID) or a device on the path interferes. TLS failing after the "
        "negotiation: see net.tls-handshake.\n" + WHERE_BOUND
    ),
    references=("MS-RDPBCGR 2.2.1.2.1 RDP_NEG_RSP, 2.2.1.2.2 RDP_NEG_FAILURE", "System log Schannel 36870"),
)
RDP_NLA_DISABLED = CheckMeta(
    id="rdp.nla-disabled",
    title="Network Level Authentication is required",
    severity=Severity.WARNING,
    remediation=(
        "NLA (CredSSP) authenticates the user before a session is created, so an unauthenticated client "
        "never gets a logon screen (less exposure to password spraying, no session resources for "
        "strangers). Turn it on: System Properties > Remote > 'Allow connections only from computers "
        "running Remote Desktop with Network Level Authentication', or GPO Computer Configuration > "
        "Administrative Templates > Windows Components > Remote Desktop Services > Remote Desktop Session "
        "Host > Security > 'Require user authentication for remote connections by using Network Level "
        "Authentication', or: (Get-CimInstance -Namespace root/cimv2/TerminalServices -ClassName "
        "Win32_TSGeneralSetting -Filter \"TerminalName='RDP-Tcp'\") | Invoke-CimMethod -MethodName "
        "SetUserAuthenticationRequired -Arguments @{UserAuthenticationRequired=1}. Clients then need CredSSP "
        "and a reachable domain controller (Kerberos) or NTLM."
    ),
    references=("MS-RDPBCGR 5.4.2.2 (CredSSP)", "RDP-Tcp UserAuthentication", "HYBRID_REQUIRED_BY_SERVER"),
)
RDP_SECURITY_LAYER = CheckMeta(
    id="rdp.security-layer",
    title="The listener uses TLS, not classic RDP security",
    severity=Severity.WARNING,
    remediation=(
        "Classic RDP security (PROTOCOL_RDP) encrypts with RC4 under a key the client cannot verify: no "
        "certificate, no TLS, no NLA, so anyone on the path can impersonate the server, and clients set to "
        "require server authentication (or NLA) refuse it. Set the security layer to SSL (2): GPO 'Require "
        "use of specific security layer for remote (RDP) connections' = SSL, or Set-ItemProperty "
        "'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\WinStations\\RDP-Tcp' -Name "
        "SecurityLayer -Value 2, then Restart-Service TermService -Force. The listener then needs a valid "
        "certificate.\n" + WHERE_BOUND
    ),
    references=("MS-RDPBCGR 5.3 (Standard RDP Security)", "RDP-Tcp SecurityLayer 0/1/2"),
)

CHECKS: tuple[CheckMeta, ...] = (
    DNS_UNRESOLVED,
    TCP_BLOCKED,
    TLS_HANDSHAKE,
    RDG_HTTP_TRANSPORT,
    RDP_NEGOTIATION,
    RDP_SECURITY_LAYER,
    RDP_NLA_DISABLED,
)
"""The workstation probes' checks, in report order."""

NEGOTIATE_SCHEMES = frozenset({"negotiate", "ntlm"})


def unknown(meta: CheckMeta, reason: str, vantage: str) -> Verdict:
    """Not judged, and why (never a pass)."""
    return Verdict(Status.UNKNOWN, f"{meta.title}: not judged ({reason})", (Evidence(WHY_UNKNOWN, reason, vantage),))


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def tcp_verdicts(tcp: TcpResult, vantage: str) -> list[tuple[CheckMeta, Verdict]]:
    """net.dns-unresolved (only when a name was resolved) and net.tcp-blocked."""
    out: list[tuple[CheckMeta, Verdict]] = []
    target = Evidence("connect to", tcp.endpoint, vantage)
    if tcp.failure is Failure.DNS:
        out.append((DNS_UNRESOLVED, Verdict(Status.FAIL, f"{tcp.address} does not resolve: {tcp.reason}", (target,))))
        out.append((TCP_BLOCKED, unknown(TCP_BLOCKED, f"{tcp.address} does not resolve", vantage)))
        return out
    if not tcp.connected and not tcp.peer:
        # Resolving failed without a DNS answer (the probe's budget ran out, an OS error): no address was tried.
        why = f"{tcp.address} was not resolved: {tcp.reason}"
        if not _is_ip(tcp.address):
            out.append((DNS_UNRESOLVED, unknown(DNS_UNRESOLVED, why, vantage)))
        out.append((TCP_BLOCKED, unknown(TCP_BLOCKED, why, vantage)))
        return out
    if not _is_ip(tcp.address):
        out.append(
            (
                DNS_UNRESOLVED,
                Verdict(
                    Status.PASS, f"{tcp.address} resolves to {tcp.peer}", (Evidence("address", tcp.peer, vantage),)
                ),
            )
        )
    if tcp.connected:
        verdict = Verdict(
            Status.PASS,
            f"{tcp.endpoint} accepts TCP connections ({tcp.elapsed_s * 1000:.0f} ms)",
            (target, Evidence("connected to", f"{tcp.peer}:{tcp.port}", vantage)),
        )
    else:
        verdict = Verdict(
            Status.FAIL,
            f"No TCP connection to {tcp.endpoint}: {tcp.reason}",
            (target, Evidence("failure", f"{tcp.failure} after {tcp.elapsed_s:.1f} s", vantage)),
        )
    out.append((TCP_BLOCKED, verdict))
    return out


def handshake_verdict(tls: TlsHandshake | None, endpoint: str, vantage: str, why_none: str) -> Verdict:
    """net.tls-handshake from a handshake (None when it was never attempted)."""
    if tls is None:
        return unknown(TLS_HANDSHAKE, why_none, vantage)
    if not tls.ok:
        return Verdict(
            Status.FAIL,
            f"No TLS handshake with {endpoint}: {tls.reason}",
            (Evidence("failure", str(tls.failure), vantage),),
        )
    return Verdict(
        Status.PASS,
        f"TLS handshake completed ({tls.protocol}, {tls.cipher})",
        (
            Evidence("protocol", tls.protocol, vantage),
            Evidence("cipher", tls.cipher, vantage),
            Evidence("certificates sent", str(len(tls.chain)), vantage),
        ),
    )


def tls_verdicts(probe: TlsResult, vantage: str) -> list[tuple[CheckMeta, Verdict]]:
    """TCP checks, then net.tls-handshake."""
    out = tcp_verdicts(probe.tcp, vantage)
    out.append((TLS_HANDSHAKE, handshake_verdict(probe.handshake, probe.tcp.endpoint, vantage, "no TCP connection")))
    return out


def rdg_http_verdict(probe: RdgHttpResult, vantage: str) -> Verdict:
    """rdg.http-transport: 401 with Negotiate/NTLM to RDG_OUT_DATA passes; /rpc's answer can only warn."""
    out, rpc = probe.out_data, probe.rpc
    evidence = (Evidence("RDG_OUT_DATA", out.describe(), vantage), Evidence("GET /rpc", rpc.describe(), vantage))
    if out.status is None:
        return Verdict(Status.FAIL, f"The gateway did not answer {out.request}: {out.reason}", evidence)
    offered = {s.lower() for s in out.auth_schemes}
    if out.status != 401:
        return Verdict(
            Status.FAIL,
            f"{out.request} got {out.status} {out.reason_phrase}, not the gateway's 401 challenge",
            evidence,
        )
    if not offered & NEGOTIATE_SCHEMES:
        schemes = ", ".join(out.auth_schemes) or "no scheme"
        return Verdict(
            Status.FAIL,
            f"{out.request} got 401 offering {schemes}, not Negotiate/NTLM (a proxy answering for the gateway?)",
            evidence,
        )
    if rpc.status != 401:
        seen = f"{rpc.status} {rpc.reason_phrase}" if rpc.status is not None else f"no answer ({rpc.reason})"
        return Verdict(
            Status.WARN,
            f"The HTTP transport answers with a challenge, but GET /rpc (the RPC-over-HTTP fallback) got {seen}",
            evidence,
        )
    return Verdict(
        Status.PASS,
        f"The gateway challenges with {', '.join(out.auth_schemes)} on its HTTP transport and /rpc",
        evidence,
    )


def rdp_verdicts(probe: RdpResult, nla_probe: RdpResult | None, vantage: str) -> list[tuple[CheckMeta, Verdict]]:
    """TCP checks, rdp.negotiation, net.tls-handshake (when TLS was selected), rdp.security-layer and
    rdp.nla-disabled.

    ``nla_probe`` is a second negotiation offering TLS only: a listener that *requires* NLA refuses
    it with HYBRID_REQUIRED_BY_SERVER; one that merely supports NLA accepts it and would show an
    unauthenticated client its logon screen.
    """
    out = tcp_verdicts(probe.tcp, vantage)
    if not probe.tcp.connected:
        for meta in (RDP_NEGOTIATION, TLS_HANDSHAKE, RDP_SECURITY_LAYER, RDP_NLA_DISABLED):
            out.append((meta, unknown(meta, "no TCP connection", vantage)))
        return out
    offered = Evidence("offered", probe.requested_names, vantage)
    neg = probe.negotiation
    if neg is None:
        raw = (Evidence("answer (hex)", probe.answer[:32].hex(" "), vantage),) if probe.answer else ()
        out.append(
            (
                RDP_NEGOTIATION,
                Verdict(Status.FAIL, f"The listener did not negotiate: {probe.reason}", (offered, *raw)),
            )
        )
        for meta in (TLS_HANDSHAKE, RDP_SECURITY_LAYER, RDP_NLA_DISABLED):
            out.append((meta, unknown(meta, f"no negotiation answer ({probe.failure})", vantage)))
        return out

    answer = Evidence("answer", neg.describe(), vantage)
    classic = neg.kind == "none" or neg.selected_protocol == PROTOCOL_RDP or neg.failure_code == 2
    if neg.kind == "failure" and neg.failure_code == 2:
        # A coherent answer: clients retry with classic RDP security (MS-RDPBCGR 3.2.5.3.2) and connect;
        # what is wrong is the security layer, and rdp.security-layer says so.
        out.append(
            (
                RDP_NEGOTIATION,
                Verdict(
                    Status.PASS,
                    "The listener allows only classic RDP security (SSL_NOT_ALLOWED_BY_SERVER): see rdp.security-layer",
                    (offered, answer),
                ),
            )
        )
        out.append((TLS_HANDSHAKE, unknown(TLS_HANDSHAKE, "the listener allows no TLS", vantage)))
    elif neg.kind == "failure":
        out.append(
            (RDP_NEGOTIATION, Verdict(Status.FAIL, f"The listener refused: {neg.describe()}", (offered, answer)))
        )
        out.append((TLS_HANDSHAKE, unknown(TLS_HANDSHAKE, f"the listener refused with {neg.failure_name}", vantage)))
    elif probe.tls is not None and not probe.tls.ok:
        out.append(
            (
                RDP_NEGOTIATION,
                Verdict(
                    Status.FAIL,
                    f"The listener selected {neg.selected_name}, then the TLS handshake failed: {probe.tls.reason}",
                    (offered, answer),
                ),
            )
        )
        out.append((TLS_HANDSHAKE, handshake_verdict(probe.tls, probe.tcp.endpoint, vantage, "")))
    else:
        tls_note = f", TLS {probe.tls.protocol}" if probe.tls is not None else ""
        out.append(
            (
                RDP_NEGOTIATION,
                Verdict(Status.PASS, f"The listener selected {neg.selected_name}{tls_note}", (offered, answer)),
            )
        )
        out.append(
            (
                TLS_HANDSHAKE,
                handshake_verdict(probe.tls, probe.tcp.endpoint, vantage, "the listener selected no TLS protocol"),
            )
        )

    if classic:
        security = Verdict(
            Status.FAIL,
            "The listener uses classic RDP security: no TLS, so clients cannot verify the server",
            (offered, answer),
        )
    elif neg.selected_protocol in TLS_PROTOCOLS:
        security = Verdict(Status.PASS, f"The listener uses TLS ({neg.selected_name})", (answer,))
    else:
        security = unknown(RDP_SECURITY_LAYER, f"the listener answered {neg.describe()}", vantage)
    out.append((RDP_SECURITY_LAYER, security))
    out.append((RDP_NLA_DISABLED, _nla_verdict(probe, nla_probe, offered, answer, classic, vantage)))
    return out


def _nla_verdict(
    probe: RdpResult,
    nla_probe: RdpResult | None,
    offered: Evidence,
    answer: Evidence,
    classic: bool,
    vantage: str,
) -> Verdict:
    neg = probe.negotiation
    assert neg is not None
    if classic:
        return Verdict(Status.WARN, "No NLA: the listener uses classic RDP security", (offered, answer))
    if neg.selected_protocol == PROTOCOL_SSL:
        return Verdict(
            Status.WARN,
            "NLA is disabled: offered CredSSP, the listener selected plain TLS (the logon screen comes first)",
            (offered, answer),
        )
    if neg.selected_protocol not in NLA_PROTOCOLS:
        return unknown(RDP_NLA_DISABLED, f"the listener answered {neg.describe()}", vantage)
    if nla_probe is None or nla_probe.negotiation is None:
        why = "not asked" if nla_probe is None else nla_probe.reason
        second_try = "was not made" if nla_probe is None else f"got no answer: {why}"
        return Verdict(
            Status.UNKNOWN,
            f"The listener selects NLA ({neg.selected_name}); whether it requires it is unknown: {why}",
            (offered, answer, Evidence(WHY_UNKNOWN, f"the negotiation offering TLS only {second_try}", vantage)),
        )
    second = nla_probe.negotiation
    tls_only = Evidence("offered TLS only", second.describe(), vantage)
    if second.kind == "failure" and second.failure_code in (5, 6):
        return Verdict(
            Status.PASS,
            f"NLA is required: a client without CredSSP is refused ({second.failure_name})",
            (offered, answer, tls_only),
        )
    if second.kind == "response" and second.selected_protocol in (PROTOCOL_SSL, PROTOCOL_RDP):
        return Verdict(
            Status.WARN,
            "NLA is offered but not required: a client without CredSSP gets the logon screen unauthenticated",
            (offered, answer, tls_only),
        )
    return Verdict(
        Status.PASS,
        f"The listener selects NLA ({neg.selected_name}); offered TLS only it answered {second.describe()}",
        (offered, answer, tls_only),
    )
