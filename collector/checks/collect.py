"""The collection failures (``collect.*``): a host whose facts could not be collected gets one
result per problem, with the reason in words; its other checks are unknown with that reason."""

from __future__ import annotations

from collector.checks import Scope, Verdict, judges, registry, specs_of
from collector.model import CheckResult, CollectionProblem, Evidence, HostFacts, Status


@judges("collect.unreachable", "collect.auth-failed", "collect.timeout", "collect.bad-output")
def collection_failure(facts: HostFacts, problem: CollectionProblem) -> Verdict:
    """One problem met while collecting the host: where it was met (the session, or a probe), and why."""
    vantage = f"workstation -> {facts.target.address}:{facts.target.port} (WinRM {facts.target.transport})"
    label = f"probe {problem.probe}" if problem.probe else "session"
    title = specs_of("collect")[f"collect.{problem.kind.value}"].title
    return Verdict(Status.FAIL, title, (Evidence(label=label, value=problem.reason, vantage=vantage),))


def collection_results(facts: HostFacts) -> list[CheckResult]:
    """The host's collection problems as results, in the order they were met."""
    results = []
    for problem in facts.problems:
        check = registry().get(f"collect.{problem.kind.value}", Scope.COLLECTION)
        results.append(check.spec.result(check.judge(facts, problem), host=facts.target.name))
    return results
