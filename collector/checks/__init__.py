"""The check catalogue: small pure functions over collected facts, metadata beside them.

A check never does I/O. When the facts it needs are missing it is not run: the result is
``unknown`` with the reason (host not collected, probe failed, role not collected), never pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.model import (
    WHY_UNKNOWN,
    CheckResult,
    CollectionFailure,
    Evidence,
    HostFacts,
    HostTarget,
    Role,
    Severity,
    Status,
)


@dataclass(frozen=True)
class Verdict:
    """What a check function decides; the catalogue entry adds id, severity and remediation."""

    status: Status
    title: str
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    severity: Severity
    roles: frozenset[Role]
    needs: tuple[str, ...]
    remediation: str
    references: tuple[str, ...]
    evaluate: Callable[[HostFacts], Verdict]
    unknown_hint: str = ""  # what to do when the facts were not collected (e.g. an opt-in flag)
    # What the inventory must say of the host for the check to mean anything (a comparison with
    # the session hosts it lists needs some); otherwise the check is left out, like a role's.
    applies_if: Callable[[HostTarget], bool] = lambda target: True

    def applies_to(self, roles: Sequence[Role]) -> bool:
        return bool(self.roles.intersection(roles))


COLLECTION_TITLES = {
    CollectionFailure.UNREACHABLE: "The host could not be reached over WinRM",
    CollectionFailure.AUTH_FAILED: "WinRM refused the collector's credentials",
    CollectionFailure.TIMEOUT: "Collection did not finish within the host's deadline",
    CollectionFailure.BAD_OUTPUT: "The host returned output that breaks the probe contract",
}

COLLECTION_REMEDIATION = {
    CollectionFailure.UNREACHABLE: (
        "From the workstation: Test-NetConnection -ComputerName HOST -Port 5986 (or 5985).\n"
        "On the host: Get-Service WinRM; winrm enumerate winrm/config/listener; "
        "Enable-PSRemoting -Force to create a listener; check the 'Windows Remote Management' "
        "firewall rules and any network firewall between the workstation and the host."
    ),
    CollectionFailure.AUTH_FAILED: (
        "Check the password source named in the inventory, that the account is not locked "
        "(Get-ADUser NAME -Properties LockedOut), and that it is in the host's Administrators or "
        "Remote Management Users group. On the host: winrm get winrm/config/service/auth shows "
        "which auth methods are allowed."
    ),
    CollectionFailure.TIMEOUT: (
        "The host accepted the connection but did not answer in time: check its load and the "
        "WinRM service (Restart-Service WinRM if it is hung), or raise host_deadline for this "
        "host in the inventory."
    ),
    CollectionFailure.BAD_OUTPUT: (
        "A probe's output did not match its schema: run the probe by hand on the host "
        "(the script is in collector/scripts/) and compare; a profile script or a transcript "
        "that prints to the output stream also breaks the JSON."
    ),
}


def collection_results(facts: HostFacts) -> list[CheckResult]:
    vantage = f"workstation -> {facts.target.address}:{facts.target.port} (WinRM {facts.target.transport})"
    results = []
    for problem in facts.problems:
        label = f"probe {problem.probe}" if problem.probe else "session"
        results.append(
            CheckResult(
                id=f"collect.{problem.kind.value}",
                status=Status.FAIL,
                severity=Severity.CRITICAL,
                title=COLLECTION_TITLES[problem.kind],
                host=facts.target.name,
                evidence=(Evidence(label=label, value=problem.reason, vantage=vantage),),
                remediation=COLLECTION_REMEDIATION[problem.kind],
                references=(),
            )
        )
    return results


def _missing_reason(facts: HostFacts, needs: Sequence[str]) -> str | None:
    """Why a check cannot be judged, or None when all its facts are there."""
    host_wide = next((p for p in facts.problems if not p.probe), None)
    if host_wide is not None:
        return f"host not collected ({host_wide.kind.value}): {host_wide.reason}"
    for probe in needs:
        if probe in facts.probes:
            continue
        failed = next((p for p in facts.problems if p.probe == probe), None)
        if failed is not None:
            return f"probe {probe} failed ({failed.kind.value}): {failed.reason}"
        return f"probe {probe} was not collected"
    return None


def failed_steps(facts: HostFacts, probe: str, *steps: str) -> str:
    """Why a probe's data lacks what these steps read: the steps that failed on the host, in one
    line ("" when none did). A failed step leaves its fields empty, which is no fact to judge."""
    failed = [e for e in facts.probes[probe].errors if e.step in steps]
    return "; ".join(f"probe {probe} step {e.step} failed: {e.message}" for e in failed)


def not_read(title: str, reason: str, vantage: str) -> Verdict:
    """The unknown verdict of a check whose facts a probe step could not read."""
    return Verdict(Status.UNKNOWN, title, (Evidence(WHY_UNKNOWN, reason, vantage),))


def _not_applicable(facts: HostFacts, needs: Sequence[str]) -> bool:
    """A probe the plan left out for this host (no targets to test, say) makes its checks moot;
    an opt-in probe left out still reports unknown, so the report says how to get the answer."""
    from collector.contract import OPT_IN_PROBES

    if not facts.planned:
        return False
    return any(p not in facts.planned and p not in OPT_IN_PROBES for p in needs)


def catalogue() -> tuple[Check, ...]:
    """Every check, in report order."""
    from collector.checks import client, gateway, host, network, rdp, services

    return host.CHECKS + network.CHECKS + services.CHECKS + rdp.CHECKS + gateway.CHECKS + client.CHECKS


def _judged(check: Check, facts: HostFacts) -> Verdict:
    """The check's verdict; unknown, saying why, if it cannot judge these facts. The contract
    admits only facts the checks can read, so this is a bulkhead: one check meeting facts it was
    not written for must not cost the host its other results, nor a nightly run its other hosts."""
    try:
        return check.evaluate(facts)
    except Exception as exc:  # the bulkhead: named in the result, never hidden
        reason = f"the check could not judge these facts ({type(exc).__name__}: {str(exc)[:200]})"
        return Verdict(Status.UNKNOWN, check.title, (Evidence(WHY_UNKNOWN, reason, "collector"),))


def evaluate(facts: HostFacts, checks: Sequence[Check] | None = None) -> list[CheckResult]:
    """All results for one host: collection problems first, then each applicable check."""
    results = collection_results(facts) + list(facts.endpoint_results)
    for check in checks if checks is not None else catalogue():
        if (
            not check.applies_to(facts.target.roles)
            or not check.applies_if(facts.target)
            or _not_applicable(facts, check.needs)
        ):
            continue
        reason = _missing_reason(facts, check.needs)
        if reason is not None:
            if check.unknown_hint and not any(not p.probe for p in facts.problems):
                reason = f"{reason}; {check.unknown_hint}"
            verdict = Verdict(
                Status.UNKNOWN,
                check.title,
                (Evidence(WHY_UNKNOWN, reason, "collector"),),
            )
        else:
            verdict = _judged(check, facts)
        results.append(
            CheckResult(
                id=check.id,
                status=verdict.status,
                severity=check.severity,
                title=verdict.title,
                host=facts.target.name,
                evidence=verdict.evidence,
                remediation=check.remediation,
                references=check.references,
            )
        )
    return results


@dataclass(frozen=True)
class CatalogueEntry:
    """One check id as `collect rules` documents it, whichever vantage points produce it."""

    id: str
    title: str
    severity: Severity
    vantage: tuple[str, ...]  # "WinRM (roles ...)" and/or "workstation"
    remediation: str
    references: tuple[str, ...]


def rules() -> list[CatalogueEntry]:
    """Every check id: the host checks over WinRM facts, then those judged from the workstation's
    own probes (endpoints, certificate chains). An id produced from both places is listed once."""
    from collector.checks import certs, endpoints, fleet

    entries: dict[str, CatalogueEntry] = {}
    for failure in CollectionFailure:
        cid = f"collect.{failure.value}"
        entries[cid] = CatalogueEntry(
            cid, COLLECTION_TITLES[failure], Severity.CRITICAL, ("collector",), COLLECTION_REMEDIATION[failure], ()
        )
    for check in catalogue():
        roles = ", ".join(sorted(r.value for r in check.roles))
        entries[check.id] = CatalogueEntry(
            check.id, check.title, check.severity, (f"WinRM ({roles})",), check.remediation, check.references
        )
    workstation = [*endpoints.CHECKS, *certs.CHECKS]
    for meta in workstation:
        if meta.id in entries:
            old = entries[meta.id]
            entries[meta.id] = CatalogueEntry(
                old.id, old.title, old.severity, (*old.vantage, "workstation"), old.remediation, old.references
            )
        else:
            entries[meta.id] = CatalogueEntry(
                meta.id, meta.title, meta.severity, ("workstation",), meta.remediation, meta.references
            )
    for meta in (fleet.SSL_INSPECTION, fleet.DNS_MISMATCH):
        entries[meta.id] = CatalogueEntry(
            meta.id, meta.title, meta.severity, (fleet.VANTAGE,), meta.remediation, meta.references
        )
    return list(entries.values())
