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
