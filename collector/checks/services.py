"""Services the session host and the gateway need running (the article's Get-Service TermService)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from collector.checks import Verdict, judges
from collector.model import Evidence, HostFacts, Role, Status

SESSION_HOST_SERVICES = ("TermService", "UmRdpService", "SessionEnv")
GATEWAY_SERVICES = ("TSGateway", "W3SVC", "IAS")


def services_for(roles: Sequence[Role]) -> list[str]:
    """The service names the services probe is asked about, for a host's roles."""
    names: list[str] = []
    if Role.SESSION_HOST in roles:
        names += SESSION_HOST_SERVICES
    if Role.GATEWAY in roles:
        names += GATEWAY_SERVICES
    return names


def _by_name(facts: HostFacts) -> dict[str, Mapping[str, Any]]:
    return {s["name"].lower(): s for s in facts.probes["services"].data["services"]}


def _describe(svc: Mapping[str, Any] | None) -> str:
    if svc is None:
        return "not reported by the probe"
    if not svc["present"]:
        return "not installed"
    return f"{svc['state']}, start mode {svc['start_mode']}, runs as {svc['account'] or '?'}"


def _judge(facts: HostFacts, required: Sequence[str], optional: Sequence[str], role_name: str) -> Verdict:
    """Fail when a required service is not running; warn on optional ones and on Disabled."""
    services = _by_name(facts)
    vantage = f"{facts.target.name} (WinRM probe services)"
    evidence = tuple(Evidence(name, _describe(services.get(name.lower())), vantage) for name in (*required, *optional))
    errors = facts.probes["services"].errors
    if errors and not services:
        detail = "; ".join(f"{e.step}: {e.message}" for e in errors)
        return Verdict(
            Status.UNKNOWN,
            f"The {role_name} services could not be listed",
            (*evidence, Evidence("probe error", detail, vantage)),
        )

    def running(name: str) -> bool:
        svc = services.get(name.lower())
        return bool(svc and svc["present"] and svc["state"] == "Running")

    def present(name: str) -> bool:
        svc = services.get(name.lower())
        return bool(svc and svc["present"])

    down = [n for n in required if not running(n)]
    if down:
        return Verdict(Status.FAIL, f"{', '.join(down)} not running on the {role_name}", evidence)
    optional_down = [n for n in optional if present(n) and not running(n)]
    disabled = [n for n in (*required, *optional) if present(n) and services[n.lower()]["start_mode"] == "Disabled"]
    if optional_down or disabled:
        parts = []
        if optional_down:
            parts.append(f"{', '.join(optional_down)} not running")
        if disabled:
            parts.append(f"{', '.join(disabled)} disabled (will not start after a reboot)")
        return Verdict(Status.WARN, f"{'; '.join(parts)} on the {role_name}", evidence)
    return Verdict(Status.PASS, f"The {role_name} services are running", evidence)


@judges("rdp.service-stopped")
def rdp_service_stopped(facts: HostFacts) -> Verdict:
    return _judge(facts, required=("TermService",), optional=("UmRdpService", "SessionEnv"), role_name="session host")


@judges("rdg.service-stopped")
def rdg_service_stopped(facts: HostFacts) -> Verdict:
    return _judge(facts, required=("TSGateway",), optional=("W3SVC", "IAS"), role_name="gateway")
