"""The workstation's own view of Remote Desktop endpoints: probed from here and judged at once.

A gateway's HTTPS transport and a session host's RDP listener are probed from here (TCP, TLS,
the chain as sent, RD Gateway's HTTP answer, RDP negotiation). ``check_tls`` and ``check_rdp``
judge one endpoint: `collect check-tls` / `check-rdp` print that (``endpoint_cli``), and a
collection takes it for every host it collects (``probe_endpoints``), keeping what was seen as
plain data for the report while the verdicts travel with the host's facts.
"""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collector import certs
from collector.checks import CheckSpec, Verdict
from collector.checks import certs as cert_checks
from collector.checks import endpoints as ep
from collector.checks.certs import DEFAULT_EXPIRES_SOON_DAYS
from collector.model import CheckResult, HostTarget, Role
from collector.probes.rdg_http import probe_rdg_http
from collector.probes.rdp import NLA_PROTOCOLS, PROTOCOL_SSL, probe_rdp
from collector.probes.tcp import DEFAULT_TIMEOUT_S
from collector.probes.tls import TlsHandshake, probe_tls

VANTAGE = "workstation"
TIMEOUT_S = 5.0


# --- one endpoint, probed and judged from here (also `collect check-tls` / `check-rdp`) ----------


@dataclass(frozen=True)
class EndpointReport:
    """What one check-tls / check-rdp run found, ready to print or to serialise."""

    command: str
    """``check-tls`` or ``check-rdp``."""
    endpoint: str
    """``name:port`` as the results name it."""
    address: str
    """What was connected to (``--address``, or the name)."""
    results: tuple[CheckResult, ...]
    """Every check, in catalogue order."""
    handshake: TlsHandshake | None
    """The TLS handshake whose chain was judged; None when there was none."""
    chain: tuple[certs.CertInfo, ...]
    """The chain as sent, parsed (empty when none was captured or it could not be parsed)."""
    trust_label: str
    """The trust store the chain was judged against."""
    connection_problem: str
    """One line when the endpoint could not be probed as intended (refused, timeout, not TLS...)."""
    chain_problem: str = ""
    """One line when a chain was received but a certificate in it cannot be read, naming which and
    why (``certificate #1 of the chain cannot be parsed: duplicated extension 2.5.29.17
    (subjectAltName)``); ``chain`` is then empty and the cert.* results are unknown with this reason."""


def _results(pairs: Sequence[tuple[CheckSpec, Verdict]], *, host: str, endpoint: str) -> list[CheckResult]:
    return [meta.result(verdict, host=host, endpoint=endpoint, vantage=VANTAGE) for meta, verdict in pairs]


def _chain_results(
    handshake: TlsHandshake | None,
    why_none: str,
    *,
    name: str,
    endpoint: str,
    trust: certs.TrustStore,
    now: datetime.datetime,
    expires_soon_days: int,
) -> tuple[tuple[CheckResult, ...], tuple[certs.CertInfo, ...], str]:
    """(cert.* results, the chain read, why it could not be read): the chain is read once, in full,
    and judged from that; a certificate that cannot be read is a reason, never an exception."""
    if handshake is None or not handshake.ok:
        reason = why_none if handshake is None else "no TLS handshake (see net.tls-handshake)"
        return cert_checks.unknown_results(reason, host=name, endpoint=endpoint, vantage=VANTAGE), (), ""
    try:
        read = certs.read_chain(handshake.chain)
    except certs.CertificateError as exc:
        read, problem = (), str(exc)
    else:
        problem = ""
    results = cert_checks.evaluate_chain(
        read or handshake.chain,
        server_name=name,
        trust=trust,
        now=now,
        host=name,
        endpoint=endpoint,
        vantage=VANTAGE,
        expires_soon_days=expires_soon_days,
    )
    return results, tuple(c.info for c in read), problem


def check_tls(
    name: str,
    *,
    address: str | None,
    port: int,
    trust: certs.TrustStore,
    now: datetime.datetime,
    expires_soon_days: int = DEFAULT_EXPIRES_SOON_DAYS,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> EndpointReport:
    """Probe a TLS endpoint (an RD Gateway's 443): TCP, TLS, the chain, the gateway's HTTP transport."""
    endpoint = f"{name}:{port}"
    tls = probe_tls(name, address, port, timeout)
    results = _results(ep.tls_verdicts(tls, VANTAGE), host=name, endpoint=endpoint)
    chain_results, chain, chain_problem = _chain_results(
        tls.handshake,
        "no TCP connection",
        name=name,
        endpoint=endpoint,
        trust=trust,
        now=now,
        expires_soon_days=expires_soon_days,
    )
    results += chain_results
    if tls.ok:
        transport = ep.rdg_http_verdict(probe_rdg_http(name, address, port, timeout), VANTAGE)
    else:
        transport = ep.unknown(ep.RDG_HTTP_TRANSPORT, "no TLS connection", VANTAGE)
    results += _results([(ep.RDG_HTTP_TRANSPORT, transport)], host=name, endpoint=endpoint)
    problem = "" if tls.ok else tls.reason
    return EndpointReport(
        "check-tls",
        endpoint,
        address or name,
        tuple(results),
        tls.handshake,
        chain,
        trust.label,
        problem,
        chain_problem,
    )


def check_rdp(
    name: str,
    *,
    address: str | None,
    port: int,
    trust: certs.TrustStore,
    now: datetime.datetime,
    expires_soon_days: int = DEFAULT_EXPIRES_SOON_DAYS,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> EndpointReport:
    """Probe an RDP listener (a session host's 3389): TCP, negotiation, TLS, the chain, NLA enforcement."""
    endpoint = f"{name}:{port}"
    probe = probe_rdp(name, address, port, timeout)
    nla_probe = None
    if probe.negotiation is not None and probe.negotiation.selected_protocol in NLA_PROTOCOLS:
        nla_probe = probe_rdp(name, address, port, timeout, requested=PROTOCOL_SSL)
    results = _results(ep.rdp_verdicts(probe, nla_probe, VANTAGE), host=name, endpoint=endpoint)
    if not probe.tcp.connected:
        why = "no TCP connection"
    elif probe.negotiation is None:
        why = "no negotiation answer"
    else:
        why = f"no TLS: the listener answered {probe.negotiation.describe()}"
    chain_results, chain, chain_problem = _chain_results(
        probe.tls, why, name=name, endpoint=endpoint, trust=trust, now=now, expires_soon_days=expires_soon_days
    )
    results += chain_results
    if not probe.tcp.connected:
        problem = probe.tcp.reason
    elif probe.negotiation is None:
        problem = probe.reason
    elif probe.tls is not None and not probe.tls.ok:
        problem = f"TLS after the negotiation failed: {probe.tls.reason}"
    else:
        problem = ""
    return EndpointReport(
        "check-rdp", endpoint, address or name, tuple(results), probe.tls, chain, trust.label, problem, chain_problem
    )


# --- a host's endpoints during a collection ------------------------------------------------------


def trust_for(target: HostTarget) -> certs.TrustStore:
    """System roots plus the inventory's CA file (the internal PKI that issued the certificates).

    Every host of a run names the same few CA files: the store, and the subject index path
    building reads (a few hundred system roots), is built once per version of the file, not per
    host. A file rewritten on disk (another size or modification time) is read again."""
    if not target.ca_file:
        return _trust(None, None)
    try:
        info = os.stat(target.ca_file)
    except OSError:
        return certs.workstation_trust([target.ca_file])  # raises CertificateError naming the file
    return _trust(target.ca_file, (info.st_ino, info.st_size, info.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _trust(ca_file: str | None, version: tuple[int, int, int] | None) -> certs.TrustStore:
    """``version`` (inode, size, modification time) is only part of the cache's key."""
    return certs.workstation_trust([ca_file] if ca_file else [])


def _summary(report: EndpointReport) -> dict[str, Any]:
    handshake = report.handshake
    return {
        "probe": report.command,
        "endpoint": report.endpoint,
        "address": report.address,
        "protocol": handshake.protocol if handshake else "",
        "cipher": handshake.cipher if handshake else "",
        "chain_der": [base64.b64encode(der).decode() for der in (handshake.chain if handshake else ())],
        "trust": report.trust_label,
        "problem": report.connection_problem,
        "chain_problem": report.chain_problem,
    }


def resolve(target: HostTarget) -> dict[str, Any]:
    """The addresses the workstation would connect to: the inventory address when it is an IP,
    else what this machine's resolver answers for it (for comparison with what clients resolve)."""
    try:
        ipaddress.ip_address(target.address)
    except ValueError:
        pass
    else:
        return {"name": target.name, "addresses": [target.address], "source": "inventory address", "error": None}
    try:
        infos = socket.getaddrinfo(target.address, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return {"name": target.name, "addresses": [], "source": "workstation DNS", "error": str(exc)}
    addresses = sorted({str(info[4][0]) for info in infos})
    return {"name": target.name, "addresses": addresses, "source": "workstation DNS", "error": None}


def probe_endpoints(
    target: HostTarget, *, now: datetime.datetime | None = None
) -> tuple[Mapping[str, Mapping[str, Any]], tuple[CheckResult, ...]]:
    """Probe the endpoints the host's roles serve; never raises (failures are results)."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        trust = trust_for(target)
    except certs.CertificateError as exc:
        trust = _trust(None, None)
        problem = f"the CA file {target.ca_file} could not be read ({exc}); judged against system roots only"
    else:
        problem = ""
    reports = []
    if Role.GATEWAY in target.roles:
        reports.append(
            check_tls(
                target.name, address=target.address, port=target.gateway_port, trust=trust, now=now, timeout=TIMEOUT_S
            )
        )
    if Role.SESSION_HOST in target.roles:
        reports.append(
            check_rdp(
                target.name, address=target.address, port=target.rdp_port, trust=trust, now=now, timeout=TIMEOUT_S
            )
        )
    endpoints = {r.endpoint: {**_summary(r), "trust_problem": problem} for r in reports}
    return endpoints, tuple(result for r in reports for result in r.results)
