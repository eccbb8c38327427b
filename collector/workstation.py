"""The workstation's own view of a host's Remote Desktop endpoints, taken during collection.

A gateway's HTTPS transport and a session host's RDP listener are probed from here (TCP, TLS,
the chain as sent, RD Gateway's HTTP answer, RDP negotiation) and judged at once with the same
functions as `collect check-tls` / `check-rdp`. What was seen is kept as plain data for the
report; the verdicts travel with the host's facts.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

from collector import certs
from collector.endpoint_cli import EndpointReport, check_rdp, check_tls
from collector.model import CheckResult, HostTarget, Role

TIMEOUT_S = 5.0


def trust_for(target: HostTarget) -> certs.TrustStore:
    """System roots plus the inventory's CA file (the internal PKI that issued the certificates)."""
    return certs.workstation_trust([target.ca_file] if target.ca_file else [])


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
        trust = certs.workstation_trust()
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
