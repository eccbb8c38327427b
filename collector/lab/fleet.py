"""The simulated fleet: one WS-Management server per scenario host on loopback.

Each lab host speaks real WinRM (PSRP over WS-Management, with Basic, NTLM + message
encryption, or HTTPS with channel binding) and answers the collector's probes from a scenario
file. Scenario data passes the same schemas as a real host's output, so the lab cannot drift
from what the scripts produce.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from collector import scripts
from collector.contract import ServiceInfo
from collector.lab.pki import LabCA
from collector.lab.wsman import Invocation, InvocationResult, WSManServer

LAB_USER = "LAB\\collector"
PASSWORD_ENV = "COLLECT_LAB_PASSWORD"


class ScenarioError(ValueError):
    """A scenario file that cannot be served; names the file and the field."""


class _WinRM(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transport: Literal["http", "https"] = "http"
    auth: Literal["negotiate", "ntlm", "basic"] = "negotiate"


class _OS(BaseModel):
    model_config = ConfigDict(extra="forbid")
    caption: str
    version: str
    build: str


SERVER_2022 = _OS(caption="Microsoft Windows Server 2022 Standard", version="10.0.20348", build="20348")
WINDOWS_11 = _OS(caption="Microsoft Windows 11 Enterprise", version="10.0.22631", build="22631")


class _ScenarioHost(BaseModel):
    model_config = ConfigDict(extra="forbid")
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


class _Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[_ScenarioHost]


@dataclass(frozen=True)
class ScenarioHost:
    name: str
    roles: tuple[str, ...]
    gateway: str
    session_hosts: tuple[str, ...]
    notes: str
    transport: str
    auth: str
    fault: str | None
    services: tuple[Mapping[str, Any], ...]
    os: Mapping[str, str] = field(default_factory=lambda: SERVER_2022.model_dump())
    clock_skew_seconds: float = 0.0


def load_scenario(path: str | Path | None = None) -> list[ScenarioHost]:
    """Read a scenario file (the built-in demo fleet by default) and validate it."""
    if path is None:
        source = "demo.yaml"
        text = resources.files("collector.lab").joinpath("scenarios/demo.yaml").read_text("utf-8")
    else:
        source = str(path)
        text = Path(path).read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
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
        )
        for h in scenario.hosts
    ]


# --- answering probes ---------------------------------------------------------------------------


def _services_data(host: ScenarioHost, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """What services.ps1 prints on this host for the names it was asked about."""
    names = parameters.get("Names") or ["TermService", "UmRdpService", "SessionEnv"]
    if isinstance(names, str):
        names = [names]
    installed = {s["name"].lower(): s for s in host.services}
    absent = dict.fromkeys(("display_name", "state", "start_mode", "account", "process_id"))
    return {
        "services": [
            installed.get(str(n).lower(), {"name": str(n), "present": False, **absent}) for n in names
        ]
    }


def _host_data(host: ScenarioHost, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """What host.ps1 prints: identity, OS, and the host's own clock (skewed if the scenario says so)."""
    now = datetime.now(UTC) + timedelta(seconds=host.clock_skew_seconds)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    short, _, domain = host.name.partition(".")
    return {
        "computer_name": short.upper(),
        "domain": domain or "WORKGROUP",
        "part_of_domain": bool(domain),
        "os_caption": host.os["caption"],
        "os_version": host.os["version"],
        "os_build": host.os["build"],
        "ps_version": "5.1.20348.2849",
        "last_boot_utc": (now - timedelta(days=3, hours=4)).strftime(iso),
        "utc_now": now.strftime(iso),
    }


PROBE_DATA = {"host": _host_data, "services": _services_data}


def responder(host: ScenarioHost):
    """Answer each probe as the script would on this host; anything else as PowerShell would."""

    def respond(invocation: Invocation) -> InvocationResult:
        identity = scripts.identify(invocation.script)
        if identity is None:
            return InvocationResult(errors=["The lab only runs collector probes (no identity marker found)."])
        name, version = identity
        build = PROBE_DATA.get(name)
        if build is None:
            return InvocationResult(errors=[f"lab host {host.name} has no data for probe {name}"])
        envelope = {
            "probe": name,
            "version": version,
            "data": build(host, invocation.parameters),
            "errors": [],
        }
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

    def start(self) -> LabFleet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = LabCA.create("Collector Lab Root CA")
        self.ca_file = self.workdir / "lab-ca.pem"
        self.ca_file.write_bytes(ca.cert_pem)
        try:
            for host in self.hosts:
                if host.fault == "down":
                    self.ports[host.name] = free_port()
                    continue
                tls = ca.issue_server([host.name]) if host.transport == "https" else None
                server = WSManServer(
                    responder(host),
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
