"""The check catalogue: small pure functions over collected facts, each registered by its id
against a spec read from the data file beside it.

A check never does I/O. When the facts it needs are missing it is not run: the result is
``unknown`` with the reason (host not collected, probe failed, role not collected), never pass.

Adding a check:

1. One YAML entry, in the data file of the module that will judge it (``rdp.yaml`` for
   ``rdp.py``), where it should come in report order (causes before symptoms)::

       - id: rdp.example             # <concern>.<name>; the concern is one the file lists
         title: What a pass means, in one line
         severity: warning           # critical | warning | info
         roles: [session_host]       # host checks: the roles it is judged for
         needs: [rdp_config]         # host checks: the probes it reads (missing: unknown, never pass)
         remediation: |-
           What to do when it fails, verbatim as `collect rules` prints it.
         references:
           - where it comes from

2. One function in that module, registered by the id, deciding from the facts::

       @judges("rdp.example")
       def example(facts: HostFacts) -> Verdict: ...

   What it takes depends on the file's scope (``Scope``): a host check takes the
   host's facts and is run by ``evaluate``; endpoint and fleet checks are called by their
   module's own orchestration (``endpoints.rdp_verdicts``, ``certs.chain_results``,
   ``fleet.evaluate_fleet``).

3. Its rows in the table-driven tests: a problem and a pass case (``test_checks_catalogue`` or
   ``test_checks_diagnosis``), an unknown case (``test_checks_unknown``, whose meta-tests fail
   until it has one), then ``collect rules --markdown > docs/checks.md``.

The registry is checked when it is first built (and by ``tests/unit/test_checks_registry.py``):
every spec has a function and every function a spec, ids are unique, each id's concern is one
its file lists, and what a spec says fits its scope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from collector.checks.core import (
    VANTAGE,
    CatalogueError,
    Check,
    CheckSpec,
    Concern,
    Registry,
    Scope,
    Verdict,
    catalogue_data,
    judges,
    registry,
    specs_of,
)
from collector.model import WHY_UNKNOWN, CheckResult, Evidence, HostFacts, Severity, Status

__all__ = [
    "CatalogueEntry",
    "CatalogueError",
    "Check",
    "CheckSpec",
    "Concern",
    "Registry",
    "Scope",
    "Verdict",
    "catalogue",
    "catalogue_data",
    "evaluate",
    "failed_steps",
    "judges",
    "not_read",
    "registry",
    "rules",
    "specs_of",
]


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
    """Every check judged over a host's WinRM facts, in report order."""
    return registry().of_scope(Scope.HOST)


def _judged(check: Check, facts: HostFacts) -> Verdict:
    """The check's verdict; unknown, saying why, if it cannot judge these facts. The contract
    admits only facts the checks can read, so this is a bulkhead: one check meeting facts it was
    not written for must not cost the host its other results, nor a nightly run its other hosts."""
    try:
        verdict: Verdict = check.judge(facts)
    except Exception as exc:  # the bulkhead: named in the result, never hidden
        reason = f"the check could not judge these facts ({type(exc).__name__}: {str(exc)[:200]})"
        return Verdict(Status.UNKNOWN, check.spec.title, (Evidence(WHY_UNKNOWN, reason, "collector"),))
    return verdict


def evaluate(facts: HostFacts, checks: Sequence[Check] | None = None) -> list[CheckResult]:
    """All results for one host: collection problems first, then each applicable check."""
    from collector.checks.collect import collection_results

    results = collection_results(facts) + list(facts.endpoint_results)
    for check in checks if checks is not None else catalogue():
        spec = check.spec
        if (
            not spec.applies_to(facts.target.roles)
            or not spec.applies_to_target(facts.target)
            or _not_applicable(facts, spec.needs)
        ):
            continue
        reason = _missing_reason(facts, spec.needs)
        if reason is not None:
            if spec.unknown_hint and not any(not p.probe for p in facts.problems):
                reason = f"{reason}; {spec.unknown_hint}"
            verdict = Verdict(Status.UNKNOWN, spec.title, (Evidence(WHY_UNKNOWN, reason, "collector"),))
        else:
            verdict = _judged(check, facts)
        results.append(spec.result(verdict, host=facts.target.name))
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


def vantage(spec: CheckSpec) -> str:
    """Where a spec's results are seen from, as `collect rules` says it."""
    if spec.scope is Scope.HOST:
        return f"WinRM ({', '.join(sorted(r.value for r in spec.roles))})"
    return VANTAGE[spec.scope]


def rules() -> list[CatalogueEntry]:
    """Every check id once, in catalogue order: the collection failures, the host checks over WinRM
    facts, then those judged from the workstation's own probes (endpoints, certificate chains) and
    across hosts. An id judged in two places is listed where it comes first, seen from both."""
    entries: dict[str, CatalogueEntry] = {}
    for check in registry().checks:
        spec = check.spec
        if spec.id in entries:
            old = entries[spec.id]
            entries[spec.id] = dataclasses.replace(old, vantage=(*old.vantage, vantage(spec)))
        else:
            entries[spec.id] = CatalogueEntry(
                spec.id, spec.title, spec.severity, (vantage(spec),), spec.remediation, spec.references
            )
    return list(entries.values())
