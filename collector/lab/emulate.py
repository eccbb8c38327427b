"""What each probe prints on a simulated host: the lab's stand-in for Windows.

A host's answer is a role baseline (what a healthy Windows Server 2022 / Windows 11 host
prints) deep-merged with the scenario's ``facts`` overrides, then adjusted to the parameters the
collector sent, as the script would: the services asked for, the targets to resolve and
connect to, the event logs and time window. Certificates are made by the lab PKI at start and
referred to in scenarios by kind (``{lab_certificate: server}``, ``"@thumbprint:server"``).
Every answer is validated against the probe's schema before it is served.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from collector import contract, scripts

ISO = "%Y-%m-%dT%H:%M:%SZ"


def thumbprint(der: bytes) -> str:
    """How Windows names a certificate: SHA-1 of its DER, upper-case hex (an identifier, not security)."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


# One parameter of a probe's param() block, declared on its own line with a literal default:
# [type]$Name = 'text', = 42 or = @(...) of those.
_PARAMETER = re.compile(r"\$(?P<name>\w+)\s*=\s*(?P<value>@\(.*\)|'(?:[^']|'')*'|-?\d+)\s*,?\s*$")
_ITEM = re.compile(r"'(?:[^']|'')*'|-?\d+")


def _literal(text: str) -> Any:
    if text.startswith("@("):
        return [_literal(item) for item in _ITEM.findall(text[2:-1])]
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return int(text)


@functools.cache
def probe_defaults(probe: str) -> dict[str, Any]:
    """The defaults the probe's own ``param()`` block declares: what the script uses for a
    parameter nobody sends, read from the script the collector sends (not from the collector)."""
    lines = scripts.load(probe).text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("param("))
    defaults: dict[str, Any] = {}
    if lines[start].strip() == "param()":
        return defaults
    for line in lines[start + 1 :]:
        if line.strip() == ")":
            break
        match = _PARAMETER.search(line)
        if match:
            defaults[match["name"]] = _literal(match["value"])
    return defaults


@dataclass(frozen=True)
class LabCertificate:
    """A certificate the lab made, as DER chain (leaf first)."""

    chain_der: tuple[bytes, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.chain_der[0])

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the DER, upper-case hex: how Windows names a certificate."""
        return thumbprint(self.chain_der[0])

    @property
    def chain_thumbprints(self) -> tuple[str, ...]:
        return tuple(thumbprint(d) for d in self.chain_der)

    @classmethod
    def from_pem(cls, chain_pem: bytes) -> LabCertificate:
        certs = x509.load_pem_x509_certificates(chain_pem)
        return cls(tuple(c.public_bytes(Encoding.DER) for c in certs))

    def fact(self, *, has_private_key: bool = True, chain_status: Sequence[str] = ()) -> dict[str, Any]:
        """The certificate as ConvertTo-ProbeCertificate prints it."""
        leaf = self.leaf
        return {
            "thumbprint": self.thumbprint,
            "subject": _windows_name(leaf.subject),
            "issuer": _windows_name(leaf.issuer),
            "not_before": leaf.not_valid_before_utc.strftime(ISO),
            "not_after": leaf.not_valid_after_utc.strftime(ISO),
            "has_private_key": has_private_key,
            "private_key_readable": True if has_private_key else None,
            "chain_der": [base64.b64encode(d).decode() for d in self.chain_der],
            "chain_status": list(chain_status),
        }


def _windows_name(name: x509.Name) -> str:
    """Distinguished name the way X509Certificate.Subject shows it: most specific first."""
    return ", ".join(attribute.rfc4514_string() for attribute in reversed(list(name)))


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key; anything else in the override replaces the base."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def resolve_certificates(value: Any, certificates: Mapping[str, LabCertificate]) -> Any:
    """Replace ``{lab_certificate: KIND}`` and ``"@thumbprint:KIND"`` with what the lab made."""
    if isinstance(value, Mapping):
        if set(value) == {"lab_certificate"}:
            return certificates[value["lab_certificate"]].fact()
        return {k: resolve_certificates(v, certificates) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_certificates(v, certificates) for v in value]
    if isinstance(value, str) and value.startswith("@thumbprint:"):
        return certificates[value.removeprefix("@thumbprint:")].thumbprint
    return value


# --- role baselines: what a healthy host prints ------------------------------------------------

ANY_V4 = "0.0.0.0"  # noqa: S104 - data: the address a Windows listener reports, nothing binds here


def baseline(probe: str, name: str, roles: Sequence[str]) -> dict[str, Any]:
    """A healthy host's data for ``probe`` (before scenario overrides and parameters)."""
    short = name.split(".")[0].upper()
    if probe == "listeners":
        tcp = []
        udp = []
        if "session_host" in roles:
            tcp.append(_listener("TCP", ANY_V4, 3389, 1204, "svchost", ["TermService"]))
            udp.append(_listener("UDP", ANY_V4, 3389, 1204, "svchost", ["TermService"]))
        if "gateway" in roles:
            tcp.append(_listener("TCP", ANY_V4, 443, 4, "System", []))
            udp.append(_listener("UDP", ANY_V4, 3391, 2760, "svchost", ["TSGateway"]))
        netstat = (
            ["TCP    0.0.0.0:3389           0.0.0.0:0              LISTENING       1204"]
            if ("session_host" in roles)
            else []
        )
        return {
            "rdp_port": 3389,
            "source": "Get-NetTCPConnection",
            "tcp": tcp,
            "udp": udp,
            "netstat_rdp": netstat,
        }
    if probe == "rdp_config":
        return {
            "deny_ts_connections": 0,
            "deny_ts_connections_policy": None,
            "port_number": 3389,
            "security_layer": 2,
            "security_layer_policy": None,
            "user_authentication": 1,
            "user_authentication_policy": None,
            "min_encryption_level": 3,
            "min_encryption_level_policy": None,
            "certificate_hash_registry": "@thumbprint:listener",
            "general_setting": {
                "ssl_certificate_sha1_hash": "@thumbprint:listener",
                "ssl_certificate_sha1_hash_type": 2,
                "security_layer": 2,
                "user_authentication_required": 1,
                "min_encryption_level": 3,
                "policy_source_security_layer": 0,
                "policy_source_user_auth": 0,
            },
            "listener_certificate": {"lab_certificate": "listener"},
            "firewall_rules": [
                _rule("RemoteDesktop-UserMode-In-TCP", "Remote Desktop - User Mode (TCP-In)", "TCP", "3389"),
                _rule("RemoteDesktop-UserMode-In-UDP", "Remote Desktop - User Mode (UDP-In)", "UDP", "3389"),
            ],
            # Windows' defaults, on a domain network: every profile on, inbound blocked but for rules.
            "firewall_profiles": [
                {
                    "name": name,
                    "enabled": "True",
                    "default_inbound_action": "Block",
                    "allow_inbound_rules": "True",
                    "allow_local_firewall_rules": "True",
                }
                for name in ("Domain", "Private", "Public")
            ],
            "network_categories": ["DomainAuthenticated"],
            # Server 2022's defaults: Administrators and Remote Desktop Users, nobody denied.
            "user_rights": {
                "remote_interactive": [
                    {"sid": "S-1-5-32-544", "account": "BUILTIN\\Administrators"},
                    {"sid": "S-1-5-32-555", "account": "BUILTIN\\Remote Desktop Users"},
                ],
                "deny_remote_interactive": [],
            },
            # An RD Session Host licensed Per User by Group Policy, long past its grace period.
            "licensing": {
                "terminal_server_mode": 1,
                "licensing_type": 4,
                "licensing_name": "Per User",
                "policy_source_licensing_type": 1,
                "licensing_mode_policy": 4,
                "license_servers_policy": ["rdls01.lab.test"],
                "license_servers_specified": [],
                "grace_period_days": 0,
            },
        }
    if probe == "gateway":
        return {
            "settings": {
                "cert_hash": "@thumbprint:server",
                "ssl_bridging": 0,
                "enforce_channel_binding": True,
                "max_connections": 4294967295,
                "unlimited_connections": True,
                "central_cap_enabled": False,
                "is_configured": True,
            },
            "certificate": {"lab_certificate": "server"},
            "http_bindings": [
                {"endpoint": "0.0.0.0:443", "cert_hash": "@thumbprint:server", "cert_store": "MY"},
                {"endpoint": "[::]:443", "cert_hash": "@thumbprint:server", "cert_store": "MY"},
            ],
            "caps": [{"name": "RDG_CAP_AllUsers", "enabled": True, "user_groups": "LAB\\Domain Users"}],
            "raps": [
                {
                    "name": "RDG_RAP_SessionHosts",
                    "enabled": True,
                    "user_groups": "LAB\\Domain Users",
                    "computer_group": "LAB\\RDS Session Hosts",
                    "port_numbers": "3389",
                }
            ],
            "iis_applications": [
                {
                    "path": f"Default Web Site/{app}",
                    "present": True,
                    "physical_path": "C:\\Windows\\System32\\RpcProxy",
                    "trust_level": "Full",
                }
                for app in ("Rpc", "RpcWithCert")
            ],
        }
    if probe == "client":
        return {
            "disable_udp_policy": None,
            "disable_udp_transport": None,
            "rdg_client_transport": None,
            "users": [
                {
                    "sid": "S-1-5-21-1004336348-1177238915-682003330-1107",
                    "account": f"LAB\\{short.lower()}-user",
                    "rdg_trace": None,
                    "rdg_trace_file": None,
                    "trace_exists": False,
                    "trace_matches": [],
                }
            ],
            "gateway_tls": None,
            "trusted_roots": [],
            "agents_checked": list(probe_defaults("client")["AgentProcesses"]),
            "agents": [],
        }
    if probe == "user_credentials":
        return {"users": [{"account": f"LAB\\{short.lower()}-user", "targets": [], "error": None}]}
    raise KeyError(probe)


def _listener(protocol: str, address: str, port: int, pid: int, process: str, services: list[str]) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "local_address": address,
        "port": port,
        "process_id": pid,
        "process_name": process,
        "services": services,
    }


def _rule(name: str, display: str, protocol: str, port: str, enabled: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "display_name": display,
        "enabled": enabled,
        "direction": "Inbound",
        "action": "Allow",
        "profiles": "Any",
        "protocol": protocol,
        "local_ports": [port],
        "source": "Local",
    }


# --- answering one probe ----------------------------------------------------------------------


@dataclass(frozen=True)
class LabView:
    """What a simulated host can see of the lab: names, reachability, certificates, time."""

    addresses: Mapping[str, Sequence[str]]  # DNS as this host resolves it
    open_ports: frozenset[tuple[str, int]]  # (name, port) a TCP connect succeeds to
    certificates: Mapping[str, LabCertificate]
    gateway_chain: LabCertificate | None  # the chain this client builds for its gateway (root included if found)
    trusted_roots: Sequence[str]  # thumbprints in this host's root store
    gateway_trusted: bool = True  # whether this client's own chain validation accepts the gateway
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


def answer(
    probe: str,
    *,
    name: str,
    roles: Sequence[str],
    services: Sequence[Mapping[str, Any]],
    os: Mapping[str, str],
    clock_skew_seconds: float,
    facts: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    view: LabView,
) -> dict[str, Any]:
    """The probe's ``data`` on this host for these parameters, validated against its schema."""
    now = view.now() + timedelta(seconds=clock_skew_seconds)
    if probe == "host":
        data = _host(name, os, now)
    elif probe == "services":
        data = _services(services, parameters)
    elif probe == "network":
        data = _network(parameters, view)
    elif probe == "events":
        data = _events(events, parameters, now)
    else:
        data = baseline(probe, name, roles)
        if probe == "client":
            data = _client_tls(data, parameters, view)
    # Resolve before and after merging, so an override can change one field of a lab certificate
    # or name a certificate kind of its own.
    data = resolve_certificates(data, view.certificates)
    data = resolve_certificates(deep_merge(data, facts.get(probe, {})), view.certificates)
    return contract.validate_data(probe, data)


def _host(name: str, os: Mapping[str, str], now: datetime) -> dict[str, Any]:
    short, _, domain = name.partition(".")
    return {
        "computer_name": short.upper(),
        "domain": domain or "WORKGROUP",
        "part_of_domain": bool(domain),
        "os_caption": os["caption"],
        "os_version": os["version"],
        "os_build": os["build"],
        "ps_version": "5.1.20348.2849",
        "last_boot_utc": (now - timedelta(days=3, hours=4)).strftime(ISO),
        "utc_now": now.strftime(ISO),
        "secure_channel": True if domain else None,
        "schannel": [],
        "strong_crypto": 1,
        "credssp_oracle": None,
        "pending_reboot": [],
    }


def _services(installed: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any]) -> dict[str, Any]:
    names = parameters.get("Names") or ["TermService", "UmRdpService", "SessionEnv"]
    if isinstance(names, str):
        names = [names]
    by_name = {s["name"].lower(): dict(s) for s in installed}
    absent = dict.fromkeys(("display_name", "state", "start_mode", "account", "process_id"))
    return {"services": [by_name.get(str(n).lower(), {"name": str(n), "present": False, **absent}) for n in names]}


def _network(parameters: Mapping[str, Any], view: LabView) -> dict[str, Any]:
    targets = [str(t) for t in parameters.get("Targets") or []]
    timeout = int(parameters.get("TimeoutMs") or 3000)
    pairs = [(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in targets]
    dns = []
    for host in dict.fromkeys(h for h, _ in pairs):
        addresses = list(view.addresses.get(host, ()))
        dns.append({"name": host, "addresses": addresses, "error": None if addresses else "No such host is known"})
    tcp = []
    for host, port in pairs:
        resolved = bool(view.addresses.get(host))
        ok = resolved and (host, port) in view.open_ports
        error = None if ok else ("No such host is known" if not resolved else f"timed out after {timeout} ms")
        tcp.append({"name": host, "port": port, "connected": ok, "elapsed_ms": 2 if ok else timeout, "error": error})
    return {"dns": dns, "tcp": tcp, "winhttp": {"proxy": None, "bypass": None}}


def _client_tls(data: dict[str, Any], parameters: Mapping[str, Any], view: LabView) -> dict[str, Any]:
    gateway = str(parameters.get("GatewayName") or "")
    port = int(parameters.get("GatewayPort") or 443)
    data = dict(data, trusted_roots=list(view.trusted_roots))
    if parameters.get("AgentProcesses"):
        data["agents_checked"] = [str(p) for p in parameters["AgentProcesses"]]
    if not gateway:
        return data
    seen: dict[str, Any] = {
        "name": gateway,
        "port": port,
        "connected": False,
        "policy_errors": None,
        "chain_der": [],
        "chain_status": [],
        "protocol": None,
        "error": None,
    }
    if (gateway, port) not in view.open_ports or view.gateway_chain is None:
        seen["error"] = "A connection attempt failed because the connected party did not properly respond"
    else:
        chain = view.gateway_chain
        trusted = view.gateway_trusted
        seen.update(
            connected=True,
            protocol="Tls12",
            chain_der=[base64.b64encode(d).decode() for d in chain.chain_der],
            policy_errors="None" if trusted else "RemoteCertificateChainErrors",
            chain_status=[] if trusted else ["UntrustedRoot"],
        )
    data["gateway_tls"] = seen
    return data


def _events(events: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    since_hours = int(parameters.get("SinceHours") or 24)
    max_events = int(parameters.get("MaxEvents") or 200)
    logs = []
    for query in [str(q) for q in parameters.get("Queries") or []]:
        log, _, ids_text = query.rpartition("=")
        ids = [int(i) for i in ids_text.split(",") if i]
        matching = [e for e in events if e["log"] == log and e["id"] in ids and e["minutes_ago"] <= since_hours * 60]
        matching.sort(key=lambda e: e["minutes_ago"])  # newest first, as Get-WinEvent returns
        logs.append(
            {
                "log": log,
                "ids": ids,
                "available": True,
                "truncated": len(matching) > max_events,
                "events": [
                    {
                        "id": e["id"],
                        "provider": e["provider"],
                        "time_utc": (now - timedelta(minutes=e["minutes_ago"])).strftime(ISO),
                        "level": e.get("level", "Information"),
                        "record_id": 10_000 + len(matching) - i,  # Windows numbers records oldest first
                        "data": {k: str(v) for k, v in e.get("data", {}).items()},
                        "message": e.get("message"),
                    }
                    for i, e in enumerate(matching[:max_events])
                ],
            }
        )
    return {"since_hours": since_hours, "max_events": max_events, "logs": logs}
