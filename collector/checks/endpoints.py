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

from collector.checks import CheckSpec, Verdict, judges, specs_of
from collector.model import WHY_UNKNOWN, Evidence, Status
from collector.probes import Failure
from collector.probes.rdg_http import RdgHttpResult
from collector.probes.rdp import (
    NLA_PROTOCOLS,
    PROTOCOL_RDP,
    PROTOCOL_SSL,
    TLS_PROTOCOLS,
    Negotiation,
    RdpResult,
)
from collector.probes.tcp import TcpResult
from collector.probes.tls import TlsHandshake, TlsResult

_SPECS = specs_of("endpoints")
DNS_UNRESOLVED = _SPECS["net.dns-unresolved"]
TCP_BLOCKED = _SPECS["net.tcp-blocked"]
TLS_HANDSHAKE = _SPECS["net.tls-handshake"]
RDG_HTTP_TRANSPORT = _SPECS["rdg.http-transport"]
RDP_NEGOTIATION = _SPECS["rdp.negotiation"]
RDP_SECURITY_LAYER = _SPECS["rdp.security-layer"]
RDP_NLA_DISABLED = _SPECS["rdp.nla-disabled"]

CHECKS: tuple[CheckSpec, ...] = tuple(_SPECS.values())
"""The workstation probes' checks, in report order."""

NEGOTIATE_SCHEMES = frozenset({"negotiate", "ntlm"})


def unknown(meta: CheckSpec, reason: str, vantage: str) -> Verdict:
    """Not judged, and why (never a pass)."""
    return Verdict(Status.UNKNOWN, f"{meta.title}: not judged ({reason})", (Evidence(WHY_UNKNOWN, reason, vantage),))


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


@judges("net.dns-unresolved")
def dns_unresolved(tcp: TcpResult, vantage: str) -> Verdict | None:
    """Whether the name resolved; None when there was no name to resolve (an address)."""
    if tcp.failure is Failure.DNS:
        return Verdict(
            Status.FAIL,
            f"{tcp.address} does not resolve: {tcp.reason}",
            (Evidence("connect to", tcp.endpoint, vantage),),
        )
    if _is_ip(tcp.address):
        return None
    if not tcp.connected and not tcp.peer:
        return unknown(DNS_UNRESOLVED, _not_resolved(tcp), vantage)
    return Verdict(Status.PASS, f"{tcp.address} resolves to {tcp.peer}", (Evidence("address", tcp.peer, vantage),))


def _not_resolved(tcp: TcpResult) -> str:
    # Resolving failed without a DNS answer (the probe's budget ran out, an OS error): no address was tried.
    return f"{tcp.address} was not resolved: {tcp.reason}"


@judges("net.tcp-blocked")
def tcp_blocked(tcp: TcpResult, vantage: str) -> Verdict:
    if tcp.failure is Failure.DNS:
        return unknown(TCP_BLOCKED, f"{tcp.address} does not resolve", vantage)
    if not tcp.connected and not tcp.peer:
        return unknown(TCP_BLOCKED, _not_resolved(tcp), vantage)
    target = Evidence("connect to", tcp.endpoint, vantage)
    if tcp.connected:
        return Verdict(
            Status.PASS,
            f"{tcp.endpoint} accepts TCP connections ({tcp.elapsed_s * 1000:.0f} ms)",
            (target, Evidence("connected to", f"{tcp.peer}:{tcp.port}", vantage)),
        )
    return Verdict(
        Status.FAIL,
        f"No TCP connection to {tcp.endpoint}: {tcp.reason}",
        (target, Evidence("failure", f"{tcp.failure} after {tcp.elapsed_s:.1f} s", vantage)),
    )


def tcp_verdicts(tcp: TcpResult, vantage: str) -> list[tuple[CheckSpec, Verdict]]:
    """net.dns-unresolved (only when a name was resolved) and net.tcp-blocked."""
    resolved = dns_unresolved(tcp, vantage)
    dns = [(DNS_UNRESOLVED, resolved)] if resolved is not None else []
    return [*dns, (TCP_BLOCKED, tcp_blocked(tcp, vantage))]


@judges("net.tls-handshake")
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


def tls_verdicts(probe: TlsResult, vantage: str) -> list[tuple[CheckSpec, Verdict]]:
    """TCP checks, then net.tls-handshake."""
    out = tcp_verdicts(probe.tcp, vantage)
    out.append((TLS_HANDSHAKE, handshake_verdict(probe.handshake, probe.tcp.endpoint, vantage, "no TCP connection")))
    return out


@judges("rdg.http-transport")
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


def _offered(probe: RdpResult, vantage: str) -> Evidence:
    return Evidence("offered", probe.requested_names, vantage)


def _answer(neg: Negotiation, vantage: str) -> Evidence:
    return Evidence("answer", neg.describe(), vantage)


def _classic(neg: Negotiation) -> bool:
    """Whether the listener answered with classic RDP security (no TLS)."""
    return neg.kind == "none" or neg.selected_protocol == PROTOCOL_RDP or neg.failure_code == 2


def _unanswered(probe: RdpResult) -> str:
    """Why the listener's answer cannot be judged ("" when it can)."""
    if not probe.tcp.connected:
        return "no TCP connection"
    if probe.negotiation is None:
        return f"no negotiation answer ({probe.failure})"
    return ""


@judges("rdp.negotiation")
def negotiation(probe: RdpResult, vantage: str) -> Verdict:
    """The listener's answer to the X.224 negotiation, and the TLS handshake it leads to."""
    if not probe.tcp.connected:
        return unknown(RDP_NEGOTIATION, "no TCP connection", vantage)
    offered = _offered(probe, vantage)
    neg = probe.negotiation
    if neg is None:
        raw = (Evidence("answer (hex)", probe.answer[:32].hex(" "), vantage),) if probe.answer else ()
        return Verdict(Status.FAIL, f"The listener did not negotiate: {probe.reason}", (offered, *raw))
    answer = _answer(neg, vantage)
    if neg.kind == "failure" and neg.failure_code == 2:
        # A coherent answer: clients retry with classic RDP security (MS-RDPBCGR 3.2.5.3.2) and connect;
        # what is wrong is the security layer, and rdp.security-layer says so.
        return Verdict(
            Status.PASS,
            "The listener allows only classic RDP security (SSL_NOT_ALLOWED_BY_SERVER): see rdp.security-layer",
            (offered, answer),
        )
    if neg.kind == "failure":
        return Verdict(Status.FAIL, f"The listener refused: {neg.describe()}", (offered, answer))
    if probe.tls is not None and not probe.tls.ok:
        return Verdict(
            Status.FAIL,
            f"The listener selected {neg.selected_name}, then the TLS handshake failed: {probe.tls.reason}",
            (offered, answer),
        )
    tls_note = f", TLS {probe.tls.protocol}" if probe.tls is not None else ""
    return Verdict(Status.PASS, f"The listener selected {neg.selected_name}{tls_note}", (offered, answer))


def _rdp_handshake(probe: RdpResult, vantage: str) -> Verdict:
    """net.tls-handshake on an RDP listener: the handshake after the negotiation, or why there was none."""
    neg = probe.negotiation
    why = _unanswered(probe)
    if not why and neg is not None and neg.kind == "failure":
        why = "the listener allows no TLS" if neg.failure_code == 2 else f"the listener refused with {neg.failure_name}"
    if why:
        return handshake_verdict(None, probe.tcp.endpoint, vantage, why)
    return handshake_verdict(probe.tls, probe.tcp.endpoint, vantage, "the listener selected no TLS protocol")


@judges("rdp.security-layer")
def security_layer(probe: RdpResult, vantage: str) -> Verdict:
    """Whether the listener uses TLS or classic RDP security."""
    if why := _unanswered(probe):
        return unknown(RDP_SECURITY_LAYER, why, vantage)
    neg = probe.negotiation
    assert neg is not None
    if _classic(neg):
        return Verdict(
            Status.FAIL,
            "The listener uses classic RDP security: no TLS, so clients cannot verify the server",
            (_offered(probe, vantage), _answer(neg, vantage)),
        )
    if neg.selected_protocol in TLS_PROTOCOLS:
        return Verdict(Status.PASS, f"The listener uses TLS ({neg.selected_name})", (_answer(neg, vantage),))
    return unknown(RDP_SECURITY_LAYER, f"the listener answered {neg.describe()}", vantage)


@judges("rdp.nla-disabled")
def nla_disabled(probe: RdpResult, nla_probe: RdpResult | None, vantage: str) -> Verdict:
    """Whether the listener requires NLA: ``nla_probe`` is a second negotiation offering TLS only."""
    if why := _unanswered(probe):
        return unknown(RDP_NLA_DISABLED, why, vantage)
    neg = probe.negotiation
    assert neg is not None
    return _nla_verdict(probe, nla_probe, _offered(probe, vantage), _answer(neg, vantage), _classic(neg), vantage)


def rdp_verdicts(probe: RdpResult, nla_probe: RdpResult | None, vantage: str) -> list[tuple[CheckSpec, Verdict]]:
    """TCP checks, rdp.negotiation, net.tls-handshake (when TLS was selected), rdp.security-layer and
    rdp.nla-disabled.

    ``nla_probe`` is a second negotiation offering TLS only: a listener that *requires* NLA refuses
    it with HYBRID_REQUIRED_BY_SERVER; one that merely supports NLA accepts it and would show an
    unauthenticated client its logon screen.
    """
    return [
        *tcp_verdicts(probe.tcp, vantage),
        (RDP_NEGOTIATION, negotiation(probe, vantage)),
        (TLS_HANDSHAKE, _rdp_handshake(probe, vantage)),
        (RDP_SECURITY_LAYER, security_layer(probe, vantage)),
        (RDP_NLA_DISABLED, nla_disabled(probe, nla_probe, vantage)),
    ]


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
