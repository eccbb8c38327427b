"""Builders for facts, shared by the unit tests."""

from __future__ import annotations

from typing import Any

from collector.model import HostFacts, HostTarget, ProbeResult, Role


def service(
    name: str, state: str | None = "Running", start_mode: str | None = "Manual", present: bool = True
) -> dict[str, Any]:
    if not present:
        return {
            "name": name,
            "present": False,
            "display_name": None,
            "state": None,
            "start_mode": None,
            "account": None,
            "process_id": None,
        }
    return {
        "name": name,
        "present": True,
        "display_name": name,
        "state": state,
        "start_mode": start_mode,
        "account": "LocalSystem",
        "process_id": 100 if state == "Running" else 0,
    }


def facts(roles: tuple[Role, ...], services: list[dict[str, Any]] | None, **kwargs: Any) -> HostFacts:
    target = HostTarget(name="h1.corp.example", address="10.0.0.1", roles=roles)
    probes = {} if services is None else {"services": ProbeResult("services", 1, {"services": services})}
    return HostFacts(target=target, probes=probes, **kwargs)


def host_probe(
    host_utc: str = "2026-01-01T00:00:00Z",
    received_utc: str = "2026-01-01T00:00:01Z",
    duration_s: float = 0.5,
) -> ProbeResult:
    data = {
        "computer_name": "H1",
        "domain": "corp.example",
        "part_of_domain": True,
        "os_caption": "Microsoft Windows Server 2022 Standard",
        "os_version": "10.0.20348",
        "os_build": "20348",
        "ps_version": "5.1.20348.2849",
        "last_boot_utc": "2025-12-29T00:00:00Z",
        "utc_now": host_utc,
        "secure_channel": True,
        "schannel": [],
        "strong_crypto": 1,
        "credssp_oracle": None,
        "pending_reboot": [],
    }
    return ProbeResult("host", 1, data, duration_s=duration_s, received_utc=received_utc)
