"""The RD Gateway's own configuration: the certificate it is set to use against what HTTP.sys
serves, its private key, UDP transport and its authorization policies."""

from __future__ import annotations

import base64
import hashlib

from collector.checks import Check, Verdict
from collector.model import Evidence, HostFacts, Role, Severity, Status


def _v(facts: HostFacts, probe: str) -> str:
    return f"{facts.target.name} (WinRM probe {probe})"


def _served_thumbprints(facts: HostFacts) -> list[tuple[str, str]]:
    """The leaf the workstation received on each of the host's TLS endpoints, as a thumbprint."""
    return [
        (endpoint, hashlib.sha1(base64.b64decode(view["chain_der"][0])).hexdigest().upper())  # noqa: S324
        for endpoint, view in facts.endpoints.items()
        if view.get("probe") == "check-tls" and view.get("chain_der")
    ]


def cert_binding_mismatch(facts: HostFacts) -> Verdict:
    data = facts.probes["gateway"].data
    v = _v(facts, "gateway")
    configured = (data["settings"] or {}).get("cert_hash")
    bindings = data["http_bindings"]
    evidence = [Evidence("configured certificate (CertHash)", configured or "(none)", v)]
    evidence += [Evidence(f"HTTP.sys binding {b['endpoint']}", b["cert_hash"] or "(none)", v) for b in bindings]
    if not configured:
        return Verdict(Status.FAIL, "RD Gateway has no SSL certificate configured", tuple(evidence))
    ipv4 = [b for b in bindings if b["endpoint"] == "0.0.0.0:443"]
    if not ipv4:
        return Verdict(Status.FAIL, "HTTP.sys has no certificate bound to 0.0.0.0:443", tuple(evidence))
    wrong = [b for b in bindings if (b["cert_hash"] or "").upper() != configured.upper()]
    if wrong:
        where = ", ".join(b["endpoint"] for b in wrong)
        return Verdict(
            Status.FAIL,
            f"HTTP.sys serves a different certificate on {where} than RD Gateway is set to use",
            tuple(evidence),
        )
    served = _served_thumbprints(facts)
    evidence += [Evidence(f"served on {endpoint}", thumbprint, "workstation") for endpoint, thumbprint in served]
    different = [endpoint for endpoint, thumbprint in served if thumbprint != configured.upper()]
    if different:
        return Verdict(
            Status.FAIL,
            f"{', '.join(different)} serves another certificate than RD Gateway is configured with "
            "(another binding, a load balancer or a proxy in front of it)",
            tuple(evidence),
        )
    return Verdict(Status.PASS, "HTTP.sys serves the certificate RD Gateway is configured with", tuple(evidence))


def cert_no_private_key(facts: HostFacts) -> Verdict:
    cert = facts.probes["gateway"].data["certificate"]
    v = _v(facts, "gateway")
    if cert is None:
        return Verdict(
            Status.FAIL,
            "The configured gateway certificate is not in the machine store",
            (Evidence("certificate", "not found in LocalMachine\\My", v),),
        )
    evidence = (
        Evidence(
            "certificate",
            f"{cert['subject']} (thumbprint {cert['thumbprint']}, expires {cert['not_after']})",
            v,
        ),
        Evidence("private key", "present" if cert["has_private_key"] else "MISSING", v),
        Evidence("private key readable", str(cert["private_key_readable"]), v),
    )
    if not cert["has_private_key"]:
        return Verdict(Status.FAIL, "The gateway certificate has no private key", evidence)
    if cert["private_key_readable"] is False:
        return Verdict(Status.FAIL, "The gateway certificate's private key cannot be read", evidence)
    return Verdict(Status.PASS, "The gateway certificate has a usable private key", evidence)


def udp_3391(facts: HostFacts) -> Verdict:
    udp = facts.probes["listeners"].data["udp"]
    v = _v(facts, "listeners")
    on_3391 = [u for u in udp if u["port"] == 3391]
    evidence = tuple(
        Evidence(f"UDP {u['local_address']}:3391", f"{u['process_name']} ({', '.join(u['services']) or '?'})", v)
        for u in on_3391
    ) or (Evidence("UDP 3391", "nothing listens", v),)
    if not on_3391:
        return Verdict(Status.WARN, "RD Gateway UDP transport (3391) is not listening: clients use TCP only", evidence)
    return Verdict(Status.PASS, "RD Gateway listens on UDP 3391", evidence)


def policies(facts: HostFacts) -> Verdict:
    data = facts.probes["gateway"].data
    v = _v(facts, "gateway")
    central = bool((data["settings"] or {}).get("central_cap_enabled"))
    caps = [c for c in data["caps"] if c["enabled"]]
    raps = [r for r in data["raps"] if r["enabled"]]
    evidence = (
        Evidence("connection authorization policies (CAP)", ", ".join(c["name"] for c in data["caps"]) or "none", v),
        Evidence("resource authorization policies (RAP)", ", ".join(r["name"] for r in data["raps"]) or "none", v),
        Evidence("central CAP (NPS)", str(central), v),
    )
    if not caps and not central:
        return Verdict(
            Status.FAIL,
            "No enabled connection authorization policy: every user is refused (event 201)",
            evidence,
        )
    if not raps:
        return Verdict(
            Status.FAIL,
            "No enabled resource authorization policy: every resource is refused (event 301)",
            evidence,
        )
    return Verdict(Status.PASS, f"{len(caps)} CAP(s) and {len(raps)} RAP(s) enabled", evidence)


GW = frozenset({Role.GATEWAY})
CHECKS = (
    Check(
        id="rdg.cert-binding-mismatch",
        title="HTTP.sys serves the gateway's configured certificate",
        severity=Severity.CRITICAL,
        roles=GW,
        needs=("gateway",),
        remediation=(
            "Re-select the certificate in RD Gateway Manager > server Properties > SSL Certificate (this rewrites "
            "the HTTP.sys binding), or: Set-Item RDS:\\GatewayServer\\SSLCertificate\\Thumbprint -Value THUMBPRINT "
            "then Restart-Service TSGateway. Check the binding with: netsh http show sslcert ipport=0.0.0.0:443. "
            "Another product (an IIS site, a VPN portal) rebinding 443 is the usual cause."
        ),
        references=("netsh http show sslcert", "Win32_TSGatewayServerSettings.CertHash"),
        evaluate=cert_binding_mismatch,
    ),
    Check(
        id="rdg.cert-no-private-key",
        title="The gateway certificate has a usable private key",
        severity=Severity.CRITICAL,
        roles=GW,
        needs=("gateway",),
        remediation=(
            "Import the certificate with its private key (PFX) into Local Computer > Personal, then select it in "
            "RD Gateway Manager. If the key exists but cannot be read, give NETWORK SERVICE read access: "
            "certlm.msc > the certificate > All Tasks > Manage Private Keys."
        ),
        references=("TerminalServices-Gateway events 100, 102, 103",),
        evaluate=cert_no_private_key,
    ),
    Check(
        id="net.udp-3391",
        title="RD Gateway UDP transport is listening",
        severity=Severity.INFO,
        roles=GW,
        needs=("listeners",),
        remediation=(
            "Informational where TCP works: clients fall back to HTTP (TCP 443). When UDP is on but a firewall or "
            "SSL-inspecting device drops UDP 3391, clients can fail with 0x904 / 0x7; the article's Fix 1 forces "
            "TCP on the client (fClientDisableUDP = 1). To enable UDP: RD Gateway Manager > Properties > Transport "
            "Settings > Enable UDP transport, and allow UDP 3391 in."
        ),
        references=("article Fix 1: force TCP", "RDPClient 1102/1103/1105 (UDP multi-transport)"),
        evaluate=udp_3391,
    ),
    Check(
        id="rdg.policy-config",
        title="The gateway has enabled CAP and RAP policies",
        severity=Severity.CRITICAL,
        roles=GW,
        needs=("gateway",),
        remediation=(
            "RD Gateway Manager > Policies: create or enable a Connection Authorization Policy (who may use the "
            "gateway) and a Resource Authorization Policy (which computers they may reach, and on which ports). "
            "Refusals are logged as TerminalServices-Gateway events 201 (CAP) and 301 (RAP)."
        ),
        references=("TerminalServices-Gateway 200/201, 300/301",),
        evaluate=policies,
    ),
)
