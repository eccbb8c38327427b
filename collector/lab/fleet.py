"""The simulated fleet: one WS-Management server per scenario host on loopback.

Each lab host speaks real WinRM (PSRP over WS-Management, with Basic, NTLM + message
encryption, or HTTPS with channel binding) and answers the collector's probes from a scenario
file through ``collector.lab.emulate``. Scenario data passes the same schemas as a real host's
output, so the lab cannot drift from what the scripts produce.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from collector import contract, scripts
from collector.contract import ServiceInfo
from collector.lab import emulate
from collector.lab.emulate import LabCertificate, LabView
from collector.lab.pki import LabCA
from collector.lab.wsman import Invocation, InvocationResult, WSManServer

LAB_USER = "LAB\\collector"
PASSWORD_ENV = "COLLECT_LAB_PASSWORD"


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
    fault: Literal["down", "hang", "http500"] | None = None
    os: _OS | None = None
    clock_skew_seconds: float = 0.0
    services: list[ServiceInfo] = []
    facts: dict[str, dict[str, Any]] = {}  # probe -> overrides of the role baseline
    events: list[_Event] = []
    blocked: list[str] = []  # "name:port" this host cannot connect to
    unresolved: list[str] = []  # names this host's DNS does not know
    listener_certificate: Literal["lab", "self-signed"] = "lab"
    ssl_inspection: Literal["none", "trusted", "untrusted"] = "none"


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
    services: tuple[Mapping[str, Any], ...] = ()
    os: Mapping[str, str] = field(default_factory=lambda: SERVER_2022.model_dump())
    clock_skew_seconds: float = 0.0
    facts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    events: tuple[Mapping[str, Any], ...] = ()
    blocked: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()
    listener_certificate: str = "lab"
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
            services=tuple(s.model_dump() for s in h.services),
            os=(h.os or (WINDOWS_11 if h.roles == ["client"] else SERVER_2022)).model_dump(),
            clock_skew_seconds=h.clock_skew_seconds,
            facts=h.facts,
            events=tuple(e.model_dump() for e in h.events),
            blocked=tuple(h.blocked),
            unresolved=tuple(h.unresolved),
            listener_certificate=h.listener_certificate,
            ssl_inspection=h.ssl_inspection,
        )
        for h in scenario.hosts
    ]


# --- certificates and what each host sees --------------------------------------------------------


@dataclass(frozen=True)
class LabPKI:
    """The lab's CAs and the certificates each host holds, made once at start."""

    ca: LabCA
    inspection_ca: LabCA
    certificates: Mapping[str, Mapping[str, LabCertificate]]  # host -> kind -> certificate
    inspected: Mapping[str, LabCertificate]  # gateway -> chain a TLS-inspecting middlebox presents

    @classmethod
    def create(cls, hosts: Sequence[ScenarioHost]) -> LabPKI:
        ca = LabCA.create("Collector Lab Root CA")
        inspection = LabCA.create("Contoso Web Inspection CA")
        certificates: dict[str, dict[str, LabCertificate]] = {}
        inspected: dict[str, LabCertificate] = {}
        for host in hosts:
            kinds: dict[str, LabCertificate] = {}
            if "gateway" in host.roles or host.transport == "https":
                kinds["server"] = LabCertificate.from_pem(ca.issue_server([host.name])[0])
            if "gateway" in host.roles:
                kinds["other"] = LabCertificate.from_pem(ca.issue_server([host.name])[0])
                inspected[host.name] = LabCertificate.from_pem(inspection.issue_server([host.name])[0])
            if "session_host" in host.roles:
                kinds["listener"] = (
                    LabCertificate.from_pem(LabCA.create(host.name).cert_pem)
                    if host.listener_certificate == "self-signed"
                    else LabCertificate.from_pem(ca.issue_server([host.name])[0])
                )
            certificates[host.name] = kinds
        return cls(ca, inspection, certificates, inspected)


def _thumbprint_of(ca: LabCA) -> str:
    return LabCertificate.from_pem(ca.cert_pem).thumbprint


def _running(host: ScenarioHost, service: str) -> bool:
    return any(s["name"].lower() == service.lower() and s["state"] == "Running" for s in host.services)


def lab_view(host: ScenarioHost, hosts: Sequence[ScenarioHost], pki: LabPKI) -> LabView:
    """What ``host`` can resolve, reach and trust in this fleet."""
    up = [h for h in hosts if h.fault != "down"]
    open_ports = set()
    for other in up:
        if "gateway" in other.roles and _running(other, "TSGateway"):
            open_ports.add((other.name, 443))
        if "session_host" in other.roles and _running(other, "TermService"):
            open_ports.add((other.name, 3389))
    blocked = {(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in host.blocked}
    trusted = [_thumbprint_of(pki.ca)]
    if host.ssl_inspection == "trusted":
        trusted.append(_thumbprint_of(pki.inspection_ca))
    gateway_chain = None
    if host.gateway:
        own = pki.certificates.get(host.gateway, {}).get("server")
        gateway_chain = pki.inspected.get(host.gateway) if host.ssl_inspection != "none" else own
    return LabView(
        addresses={h.name: ["127.0.0.1"] for h in hosts if h.name not in host.unresolved},
        open_ports=frozenset(open_ports - blocked),
        certificates=pki.certificates.get(host.name, {}),
        gateway_chain=gateway_chain,
        trusted_roots=tuple(trusted),
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


def check_answers(host: ScenarioHost, view: LabView) -> None:
    """Answer every probe the collector will ask this host for, once, before serving it: a
    scenario whose data breaks a probe schema fails at start, naming host, probe and field."""
    from collector.model import HostTarget, Role
    from collector.runner import plan

    target = HostTarget(
        name=host.name,
        address=host.name,
        roles=tuple(Role(r) for r in host.roles),
        gateway=host.gateway,
        session_hosts=host.session_hosts,
    )
    for call in plan(target, user_context=True):
        try:
            _answer(host, view, call.probe, call.parameters)
        except (contract.ContractError, KeyError) as exc:
            raise ScenarioError(f"host {host.name}: {exc}") from None


def responder(host: ScenarioHost, view: LabView) -> Callable[[Invocation], InvocationResult]:
    """Answer each probe as the script would on this host; anything else as PowerShell would."""

    def respond(invocation: Invocation) -> InvocationResult:
        identity = scripts.identify(invocation.script)
        if identity is None:
            return InvocationResult(errors=["The lab only runs collector probes (no identity marker found)."])
        name, version = identity
        if name not in contract.SCHEMAS:
            return InvocationResult(errors=[f"lab host {host.name} does not know probe {name}"])
        data = _answer(host, view, name, invocation.parameters)
        envelope = {"probe": name, "version": version, "data": data, "errors": []}
        return InvocationResult(output=[json.dumps(envelope, separators=(",", ":"))])

    return respond


# --- the fleet ----------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that nothing listens on (for a host that is 'down')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LabFleet:
    """Start, describe and stop the simulated hosts. Use as a context manager."""

    hosts: Sequence[ScenarioHost]
    password: str
    workdir: Path
    servers: dict[str, WSManServer] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    ca_file: Path | None = None
    pki: LabPKI | None = None

    def start(self) -> LabFleet:
        """Make the PKI and start every host's server; a second call does nothing."""
        if self.pki is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = LabPKI.create(self.hosts)
        self.ca_file = self.workdir / "lab-ca.pem"
        self.ca_file.write_bytes(self.pki.ca.cert_pem)
        try:
            for host in self.hosts:
                if host.fault == "down":
                    self.ports[host.name] = free_port()
                    continue
                tls = None
                if host.transport == "https":
                    tls = self.pki.ca.issue_server([host.name])
                view = lab_view(host, self.hosts, self.pki)
                check_answers(host, view)
                server = WSManServer(
                    responder(host, view),
                    users={LAB_USER: self.password},
                    auth="basic" if host.auth == "basic" else "negotiate",
                    tls=tls,
                    fault=host.fault,
                )
                server.start()
                self.servers[host.name] = server
                self.ports[host.name] = server.port
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

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
