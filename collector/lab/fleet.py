"""The simulated fleet: one WS-Management server per scenario host on loopback.

Each lab host speaks real WinRM (PSRP over WS-Management, with Basic, NTLM + message
encryption, or HTTPS with channel binding) and answers the collector's probes from a scenario
file through ``collector.lab.emulate``. Scenario data passes the same schemas as a real host's
output, so the lab cannot drift from what the scripts produce.
"""

from __future__ import annotations

import functools
import json
import math
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from collector import contract, scripts
from collector.contract import ServiceInfo
from collector.lab import emulate, hostile
from collector.lab.emulate import LabCertificate, LabView
from collector.lab.endpoints import GatewayServer, RdpListenerServer
from collector.lab.pki import VARIANTS, LabChain, MalformedChain, malformed_chain
from collector.lab.pki import LabPKI as TwoTierPKI
from collector.lab.wsman import FAULTS, OVERSIZE_BYTES, Blackhole, Invocation, InvocationResult, WSManServer

LAB_USER = "LAB\\collector"
PASSWORD_ENV = "COLLECT_LAB_PASSWORD"
# "down": nothing listens (connection refused); "blackhole": connects time out; "bad-json": every
# probe prints valid JSON that breaks its schema; the rest are the WinRM server's (wsman.FAULTS).
Fault = Literal[
    "down", "blackhole", "hang", "slow", "unauthorized", "http500", "malformed-xml", "broken-pool",
    "pipeline-error", "truncated", "oversize", "bad-json",
]  # fmt: skip
Hostile = Literal[
    "dtd-bomb", "attribute-flood", "chunked-flood", "gzip-bomb", "redirect", "ntlm-only", "unsealed",
    "control-chars", "lone-surrogate", "huge-integer", "deep-json", "bad-certificate",
]  # fmt: skip


class ScenarioError(ValueError):
    """A scenario file that cannot be served; names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _WinRM(_Model):
    transport: Literal["http", "https"] = "http"
    auth: Literal["negotiate", "ntlm", "basic"] = "negotiate"


class _OS(_Model):
    caption: str
    version: str
    build: str


SERVER_2022 = _OS(caption="Microsoft Windows Server 2022 Standard", version="10.0.20348", build="20348")
WINDOWS_11 = _OS(caption="Microsoft Windows 11 Enterprise", version="10.0.22631", build="22631")


class _Event(_Model):
    log: str
    id: int
    provider: str
    minutes_ago: float
    level: str = "Information"
    data: dict[str, Any] = {}
    message: str | None = None


class _ScenarioHost(_Model):
    name: str
    roles: list[Literal["client", "gateway", "session_host"]]
    gateway: str | None = None
    session_hosts: list[str] = []
    notes: str = ""
    winrm: _WinRM = _WinRM()
    fault: Fault | None = None
    hostile: Hostile | None = None  # a compromised host's answers (collector.lab.hostile)
    latency: float = Field(0.0, ge=0)  # seconds added to every WinRM answer
    probe_seconds: float = Field(0.0, ge=0)  # how long each probe takes on the host
    os: _OS | None = None
    clock_skew_seconds: float = 0.0
    services: list[ServiceInfo] = []
    facts: dict[str, dict[str, Any]] = {}  # probe -> overrides of the role baseline
    events: list[_Event] = []
    blocked: list[str] = []  # "name:port" this host cannot connect to
    unresolved: list[str] = []  # names this host's DNS does not know
    gateway_certificate: str = "good"  # a lab PKI variant (collector.lab.pki.VARIANTS)
    listener_certificate: str = "good"
    ssl_inspection: Literal["none", "trusted", "untrusted"] = "none"

    @field_validator("gateway_certificate", "listener_certificate")
    @classmethod
    def _known_variant(cls, value: str) -> str:
        if value not in VARIANTS:
            raise ValueError(f"must be one of {', '.join(VARIANTS)}")
        return value


class _Scenario(_Model):
    hosts: list[_ScenarioHost]


@dataclass(frozen=True)
class ScenarioHost:
    name: str
    roles: tuple[str, ...]
    gateway: str = ""
    session_hosts: tuple[str, ...] = ()
    notes: str = ""
    transport: str = "http"
    auth: str = "negotiate"
    fault: str | None = None
    hostile: str | None = None  # a compromised host's answers (collector.lab.hostile)
    latency: float = 0.0  # seconds added to every WinRM answer (benchmarks)
    probe_seconds: float = 0.0  # how long each probe takes on the host before its output is ready
    services: tuple[Mapping[str, Any], ...] = ()
    os: Mapping[str, str] = field(default_factory=lambda: SERVER_2022.model_dump())
    clock_skew_seconds: float = 0.0
    facts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    events: tuple[Mapping[str, Any], ...] = ()
    blocked: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()
    gateway_certificate: str = "good"
    listener_certificate: str = "good"
    ssl_inspection: str = "none"


def load_scenario(path: str | Path | None = None) -> list[ScenarioHost]:
    """Read a scenario file (the built-in demo fleet by default) and validate it."""
    if path is None:
        source = "demo.yaml"
        text = resources.files("collector.lab").joinpath("scenarios/demo.yaml").read_text("utf-8")
    else:
        source = str(path)
        text = Path(path).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from None
    if isinstance(raw, dict):  # x-* keys hold YAML anchors shared between hosts
        raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
        for host in raw.get("hosts") or []:
            # A scenario lists the services a host has installed; the probe reports them present.
            for service in (host.get("services") or []) if isinstance(host, dict) else []:
                if isinstance(service, dict):
                    service.setdefault("present", True)
    try:
        scenario = _Scenario.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ScenarioError(f"{source}: {loc}: {err['msg']}") from None
    unknown = [f"{h.name}: facts.{p}" for h in scenario.hosts for p in h.facts if p not in contract.SCHEMAS]
    if unknown:
        raise ScenarioError(f"{source}: no such probe: {', '.join(unknown)}")
    return [
        ScenarioHost(
            name=h.name,
            roles=tuple(h.roles),
            gateway=h.gateway or "",
            session_hosts=tuple(h.session_hosts),
            notes=h.notes,
            transport=h.winrm.transport,
            auth=h.winrm.auth,
            fault=h.fault,
            hostile=h.hostile,
            latency=h.latency,
            probe_seconds=h.probe_seconds,
            services=tuple(s.model_dump() for s in h.services),
            os=(h.os or (WINDOWS_11 if h.roles == ["client"] else SERVER_2022)).model_dump(),
            clock_skew_seconds=h.clock_skew_seconds,
            facts=h.facts,
            events=tuple(e.model_dump() for e in h.events),
            blocked=tuple(h.blocked),
            unresolved=tuple(h.unresolved),
            gateway_certificate=h.gateway_certificate,
            listener_certificate=h.listener_certificate,
            ssl_inspection=h.ssl_inspection,
        )
        for h in scenario.hosts
    ]


# --- certificates and what each host sees --------------------------------------------------------


@dataclass(frozen=True)
class FleetCertificates:
    """The lab's two-tier PKI and the chains each host holds or serves, made once at start."""

    pki: TwoTierPKI
    chains: Mapping[str, Mapping[str, LabChain]]  # host -> kind (server, other, listener, winrm) -> chain
    inspected: Mapping[str, LabChain]  # gateway -> the chain a TLS-inspecting middlebox presents
    malformed: dict[str, MalformedChain] = field(default_factory=dict)  # hostile "bad-certificate" hosts

    @classmethod
    def create(cls, hosts: Sequence[ScenarioHost]) -> FleetCertificates:
        pki = TwoTierPKI.create()
        chains: dict[str, dict[str, LabChain]] = {}
        inspected: dict[str, LabChain] = {}
        for host in hosts:
            kinds = {"winrm": pki.chain("good", host.name)}
            if "gateway" in host.roles:
                kinds["server"] = pki.chain(host.gateway_certificate, host.name)
                kinds["other"] = pki.chain("good", host.name)
                inspected[host.name] = pki.chain("inspection", host.name)
            if "session_host" in host.roles:
                kinds["listener"] = pki.chain(host.listener_certificate, host.name)
            chains[host.name] = kinds
        return cls(pki, chains, inspected)

    @property
    def root_pem(self) -> bytes:
        return next(iter(next(iter(self.chains.values())).values())).trust_pem

    def certificates(self, host: str) -> dict[str, LabCertificate]:
        return {kind: LabCertificate.from_pem(chain.chain_pem) for kind, chain in self.chains.get(host, {}).items()}

    def root_thumbprint(self) -> str:
        return LabCertificate.from_pem(self.root_pem).thumbprint

    def inspection_root_thumbprint(self, gateway: str) -> str:
        return LabCertificate.from_pem(self.inspected[gateway].chain_pem).chain_thumbprints[-1]


def _running(host: ScenarioHost, service: str) -> bool:
    return any(s["name"].lower() == service.lower() and s["state"] == "Running" for s in host.services)


def lab_view(host: ScenarioHost, hosts: Sequence[ScenarioHost], certs: FleetCertificates) -> LabView:
    """What ``host`` can resolve, reach and trust in this fleet."""
    up = [h for h in hosts if h.fault not in ("down", "blackhole")]
    open_ports = set()
    for other in up:
        if "gateway" in other.roles and _running(other, "TSGateway"):
            open_ports.add((other.name, 443))
        if "session_host" in other.roles and _running(other, "TermService"):
            open_ports.add((other.name, 3389))
    blocked = {(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in host.blocked}
    trusted = [certs.root_thumbprint()]
    gateway_chain, gateway_trusted = None, True
    if host.gateway and host.gateway in certs.inspected:
        if host.ssl_inspection == "trusted":
            trusted.append(certs.inspection_root_thumbprint(host.gateway))
        inspected = host.ssl_inspection != "none"
        chain = certs.inspected[host.gateway] if inspected else certs.chains[host.gateway]["server"]
        gateway_trusted = host.ssl_inspection in ("none", "trusted")
        # .NET's X509Chain adds the root it found in the client's store to the elements it reports.
        root = (chain.trust_pem if not inspected else b"") if gateway_trusted else b""
        gateway_chain = LabCertificate.from_pem(chain.chain_pem + root)
    return LabView(
        addresses={h.name: ["127.0.0.1"] for h in hosts if h.name not in host.unresolved},
        open_ports=frozenset(open_ports - blocked),
        certificates=certs.certificates(host.name),
        gateway_chain=gateway_chain,
        trusted_roots=tuple(trusted),
        gateway_trusted=gateway_trusted,
    )


def _answer(host: ScenarioHost, view: LabView, probe: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return emulate.answer(
        probe,
        name=host.name,
        roles=host.roles,
        services=host.services,
        os=host.os,
        clock_skew_seconds=host.clock_skew_seconds,
        facts=host.facts,
        events=host.events,
        parameters=parameters,
        view=view,
    )


# The probes a lab host answers for each of its roles; every host also answers "host" and
# "events", and "network" when it has a gateway or session hosts to reach. The lab's own statement
# of what it serves (what the collector asks for is the collector's business).
ROLE_PROBES: Mapping[str, tuple[str, ...]] = {
    "client": ("client", "user_credentials"),
    "gateway": ("services", "listeners", "gateway"),
    "session_host": ("services", "listeners", "rdp_config"),
}


def probe_calls(host: ScenarioHost) -> list[tuple[str, dict[str, Any]]]:
    """Each probe this host answers, with parameters that bring out all of its scenario data: the
    defaults of the probe's own param() block, then the services the host has, the gateway and
    session hosts it reaches and the event logs and IDs it has events for."""
    targets = ([f"{host.gateway}:443"] if host.gateway else []) + [f"{s}:3389" for s in host.session_hosts]
    probes = ["host", *dict.fromkeys(p for role in host.roles for p in ROLE_PROBES[role])]
    probes += ["network"] if targets else []
    probes += ["events"]
    ids: dict[str, list[int]] = {}
    for event in host.events:
        ids.setdefault(event["log"], []).append(event["id"])
    oldest_hours = max((math.ceil(e["minutes_ago"] / 60) for e in host.events), default=0)
    services = [*emulate.probe_defaults("services")["Names"], *(s["name"] for s in host.services)]
    given: dict[str, dict[str, Any]] = {
        "services": {"Names": list(dict.fromkeys(services))},
        "client": {"GatewayName": host.gateway},
        "network": {"Targets": targets},
        "events": {
            "Queries": [f"{log}={','.join(str(i) for i in dict.fromkeys(found))}" for log, found in ids.items()],
            "SinceHours": max(emulate.probe_defaults("events")["SinceHours"], oldest_hours),
        },
    }
    return [(probe, {**emulate.probe_defaults(probe), **given.get(probe, {})}) for probe in probes]


def check_answers(host: ScenarioHost, view: LabView) -> None:
    """Answer every probe this host answers, once, before serving it: a scenario whose data breaks
    a probe schema fails at start, naming host, probe and field."""
    for probe, parameters in probe_calls(host):
        try:
            _answer(host, view, probe, parameters)
        except (contract.ContractError, KeyError) as exc:
            raise ScenarioError(f"host {host.name}: {exc}") from None


def responder(
    host: ScenarioHost, view: LabView, bad_certificate: bytes = b""
) -> Callable[[Invocation], InvocationResult]:
    """Answer each probe as the script would on this host; anything else as PowerShell would
    (``bad_certificate``: the listener certificate a hostile "bad-certificate" host reports)."""

    def respond(invocation: Invocation) -> InvocationResult:
        identity = scripts.identify(invocation.script)
        if identity is None:
            return InvocationResult(errors=["The lab only runs collector probes (no identity marker found)."])
        name, version = identity
        if name not in contract.SCHEMAS:
            return InvocationResult(errors=[f"lab host {host.name} does not know probe {name}"])
        data = _answer(host, view, name, invocation.parameters)
        if host.fault == "bad-json":  # as ConvertTo-Json -Depth 1 prints it: nested values become type names
            data = {k: _type_name(v) if isinstance(v, dict | list) else v for k, v in data.items()}
        envelope = {"probe": name, "version": version, "data": data, "errors": []}
        if host.hostile in hostile.DATA:
            text = hostile.probe_output(host.hostile, name, envelope, bad_certificate)
        else:
            text = json.dumps(envelope, separators=(",", ":"))
        return InvocationResult(output=[text], delay=host.probe_seconds)

    return respond


def _type_name(value: dict[str, Any] | list[Any]) -> str:
    return "System.Collections.Hashtable" if isinstance(value, dict) else "System.Object[]"


# --- the fleet ----------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that nothing listens on (for a host that is 'down')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SECURITY_LAYER_NAMES = {0: "rdp", 1: "negotiate", 2: "tls"}


def _firewall_admits_rdp(rdp: dict[str, Any]) -> bool:
    """Whether the emulated firewall lets TCP in to the listener: every profile in force (that of a
    connected network, firewall on) admits rules and lets everything in or has an enabled inbound
    TCP rule for it."""
    rules = [r for r in rdp["firewall_rules"] if r["enabled"] and (r["protocol"], r["direction"]) == ("TCP", "Inbound")]
    if not rdp["firewall_profiles"]:
        return bool(rules)
    in_force = [
        p
        for p in rdp["firewall_profiles"]
        if p["name"] in {contract.PROFILE_OF_NETWORK.get(c, c) for c in rdp["network_categories"]}
        and p["enabled"] != "False"  # NotConfigured: on, the default
    ]
    return all(
        p["allow_inbound_rules"] != "False"
        and (
            p["default_inbound_action"] == "Allow"
            or any(r["profiles"] == "Any" or p["name"] in r["profiles"] for r in rules)
        )
        for p in in_force
    )


def _bad_listener_chain(host: ScenarioHost, certs: FleetCertificates) -> MalformedChain:
    """The chain a hostile "bad-certificate" host serves and reports: the lab's good chain with
    a malformed leaf, signed by the lab's issuing CA (made once per host and fleet)."""
    cached = certs.malformed.get(host.name)
    if cached is None:
        cached = certs.malformed[host.name] = malformed_chain(hostile.BAD_CERTIFICATE, host.name, pki=certs.pki)
    return cached


def _endpoint_servers(host: ScenarioHost, view: LabView, certs: FleetCertificates) -> dict[str, Any]:
    """The gateway's HTTPS and the session host's RDP listener, as the scenario makes them behave:
    nothing listens where the service is stopped, RDP is turned off or the firewall closes the port."""
    servers: dict[str, Any] = {}
    if "gateway" in host.roles and _running(host, "TSGateway"):
        gateway = _answer(host, view, "gateway", {})
        bound = next((b["cert_hash"] for b in gateway["http_bindings"] if b["endpoint"] == "0.0.0.0:443"), None)
        served = next(
            (
                chain
                for kind, chain in certs.chains[host.name].items()
                if kind in ("server", "other") and LabCertificate.from_pem(chain.chain_pem).thumbprint == bound
            ),
            None,
        )
        if served is not None:
            servers["gateway"] = GatewayServer(served.tls)
    if "session_host" in host.roles and _running(host, "TermService"):
        rdp = _answer(host, view, "rdp_config", {})
        denied = (
            rdp["deny_ts_connections_policy"]
            if rdp["deny_ts_connections_policy"] is not None
            else rdp["deny_ts_connections"]
        ) == 1
        if not denied and _firewall_admits_rdp(rdp):
            general = rdp["general_setting"] or {}
            servers["rdp"] = RdpListenerServer(
                _bad_listener_chain(host, certs).tls
                if host.hostile == "bad-certificate"
                else certs.chains[host.name]["listener"].tls,
                security_layer=SECURITY_LAYER_NAMES.get(general.get("security_layer", 2), "tls"),
                user_authentication=bool(general.get("user_authentication_required", 1)),
            )
    return servers


@dataclass
class LabFleet:
    """Start, describe and stop the simulated hosts. Use as a context manager."""

    hosts: Sequence[ScenarioHost]
    password: str
    workdir: Path
    servers: dict[str, WSManServer] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> gateway|rdp -> server
    ports: dict[str, int] = field(default_factory=dict)
    ca_file: Path | None = None
    certs: FleetCertificates | None = None
    latency: float = 0.0  # fleet-wide, added to each host's own
    probe_seconds: float = 0.0  # fleet-wide, added to each host's own
    blackholes: dict[str, Blackhole] = field(default_factory=dict)
    oversize_bytes: int = OVERSIZE_BYTES  # what fault "oversize" adds to every probe's output
    # Where hostile "redirect" hosts send the collector: a server that counts what reaches it.
    trap: WSManServer | None = None

    def start(self) -> LabFleet:
        """Make the PKI and start every host's servers; a second call does nothing."""
        if self.certs is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.certs = FleetCertificates.create(self.hosts)
        self.ca_file = self.workdir / "lab-ca.pem"
        self.ca_file.write_bytes(self.certs.root_pem)
        try:
            for host in self.hosts:
                if host.fault == "down":
                    self.ports[host.name] = free_port()
                    continue
                if host.fault == "blackhole":
                    self.blackholes[host.name] = Blackhole().start()
                    self.ports[host.name] = self.blackholes[host.name].port
                    continue
                tls = self.certs.chains[host.name]["winrm"].tls if host.transport == "https" else None
                view = lab_view(host, self.hosts, self.certs)
                check_answers(host, view)
                timed = replace(host, probe_seconds=host.probe_seconds + self.probe_seconds)
                bad = _bad_listener_chain(host, self.certs).der[0] if host.hostile == "bad-certificate" else b""
                server = WSManServer(
                    responder(timed, view, bad),
                    users={LAB_USER: self.password},
                    auth="basic" if host.auth == "basic" else "negotiate",
                    tls=tls,
                    fault=host.fault if host.fault in FAULTS else None,
                    latency=host.latency + self.latency,
                    oversize_bytes=self.oversize_bytes,
                    hostile=host.hostile if host.hostile in hostile.WIRE else None,
                    redirect_to=self._trap_url() if host.hostile == "redirect" else "",
                )
                server.start()
                self.servers[host.name] = server
                self.ports[host.name] = server.port
                self.endpoints[host.name] = _endpoint_servers(host, view, self.certs)
                for endpoint in self.endpoints[host.name].values():
                    endpoint.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _trap_url(self) -> str:
        """A rogue NTLM acceptor standing where redirects point (started once, on demand)."""
        if self.trap is None:
            self.trap = WSManServer(
                lambda invocation: InvocationResult(), users={LAB_USER: self.password}, hostile="ntlm-only"
            )
            self.trap.start()
        return f"{self.trap.url}/elsewhere"

    def stop(self) -> None:
        if self.trap is not None:
            self.trap.stop()
        for blackhole in self.blackholes.values():
            blackhole.stop()
        self.blackholes.clear()
        for server in self.servers.values():
            server.stop()
        for endpoints in self.endpoints.values():
            for endpoint in endpoints.values():
                endpoint.stop()
        self.servers.clear()
        self.endpoints.clear()

    def endpoint_port(self, host: str, kind: str) -> int:
        """Where the host's gateway or RDP endpoint listens; a closed port when nothing does."""
        server = self.endpoints.get(host, {}).get(kind)
        return server.port if server is not None else self._closed_port

    @functools.cached_property
    def _closed_port(self) -> int:
        return free_port()

    def __enter__(self) -> LabFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inventory_document(self) -> dict[str, Any]:
        """An inventory that points at the running lab (addresses on loopback, names for TLS)."""
        hosts = []
        for host in self.hosts:
            entry: dict[str, Any] = {
                "name": host.name,
                "address": "127.0.0.1",
                "roles": list(host.roles),
                "transport": host.transport,
                "port": self.ports[host.name],
                "auth": host.auth,
            }
            if host.auth == "basic" and host.transport == "http":
                entry["allow_unencrypted"] = True
            if host.auth == "negotiate" and host.transport == "http":
                entry["allow_ntlm"] = True  # lab hosts are in no domain: Negotiate means NTLM here
            if "gateway" in host.roles:
                entry["gateway_port"] = self.endpoint_port(host.name, "gateway")
            if "session_host" in host.roles:
                entry["rdp_port"] = self.endpoint_port(host.name, "rdp")
            if host.gateway:
                entry["gateway"] = host.gateway
            if host.session_hosts:
                entry["session_hosts"] = list(host.session_hosts)
            hosts.append(entry)
        return {
            "defaults": {
                "username": LAB_USER,
                "password_env": PASSWORD_ENV,
                "ca_file": str(self.ca_file),
                "connect_timeout": 5,
                "operation_timeout": 20,
                "host_deadline": 30,
            },
            "hosts": hosts,
        }

    def write_inventory(self, path: Path) -> Path:
        header = (
            "# Written by 'collect lab' for the simulated fleet on loopback; valid while it runs.\n"
            f"# The password is read from ${PASSWORD_ENV}.\n"
        )
        path.write_text(header + yaml.safe_dump(self.inventory_document(), sort_keys=False), encoding="utf-8")
        return path
