"""Fan out over hosts: each host in its own worker, under its own deadline, isolated from the rest.

A worker that overruns its deadline is abandoned (its thread is a daemon and its own socket
timeouts end it soon after), the host is reported as ``collect.timeout`` with whatever probes
had finished, and the run goes on. Reports are written as each host finishes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from collector import checks, contract, scripts, workstation
from collector.checks.client import TLS_AGENTS
from collector.checks.collect import collection_results
from collector.checks.services import services_for
from collector.credentials import Secret
from collector.model import (
    CheckResult,
    CollectionFailure,
    CollectionProblem,
    HostFacts,
    HostReport,
    HostTarget,
    ProbeResult,
    Role,
)
from collector.winrm import CollectionError, HostSession, ScriptOutput

DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True)
class ProbeCall:
    """One probe to run on a host, with its PSRP parameters."""

    probe: str
    parameters: Mapping[str, Any]


EVENT_QUERIES = {
    Role.CLIENT: ("Microsoft-Windows-TerminalServices-RDPClient/Operational=1024,1025,1026,1027,1029,1102,1103,1105",),
    Role.GATEWAY: (
        "Microsoft-Windows-TerminalServices-Gateway/Operational="
        "100,102,103,200,201,300,301,302,303,304,305,306,307,312,313",
    ),
    Role.SESSION_HOST: (
        "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational=261,1149",
        "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational=21,22,23,24,25,39,40",
        "Microsoft-Windows-RemoteDesktopServices-RdpCoreTS/Operational=98,131,140",
        "System=1057,1058,36870,36871,36874,36888",
        "Security=4625",
    ),
}
EVENT_MAX_PER_LOG = 200


@dataclass(frozen=True)
class RunOptions:
    """What a run asks of every host, beyond what its roles need."""

    user_context: bool = False
    """Add the one probe that changes a host (a one-shot scheduled task that lists the desktop
    user's saved credentials); never on by default."""
    since_hours: int = 24
    """How far back event logs are read."""


def plan(target: HostTarget, options: RunOptions = RunOptions()) -> list[ProbeCall]:
    """The probes a host's roles need (pure; the parameters are data, never script text)."""
    roles = set(target.roles)
    calls = [ProbeCall("host", {})]  # every host: who it is, and proof the session works
    if roles & {Role.SESSION_HOST, Role.GATEWAY}:
        calls.append(ProbeCall("services", {"Names": services_for(target.roles)}))
        calls.append(ProbeCall("listeners", {"TcpPorts": [3389, 443], "UdpPorts": [3389, 3391]}))
    if Role.SESSION_HOST in roles:
        calls.append(ProbeCall("rdp_config", {}))
    if Role.GATEWAY in roles:
        calls.append(ProbeCall("gateway", {}))
    if Role.CLIENT in roles:
        calls.append(
            ProbeCall(
                "client",
                {"GatewayName": target.gateway, "GatewayPort": 443, "AgentProcesses": list(TLS_AGENTS)},
            )
        )
        if options.user_context:
            calls.append(ProbeCall("user_credentials", {"TimeoutSeconds": 30}))
    targets = ([f"{target.gateway}:443"] if target.gateway else []) + [f"{s}:3389" for s in target.session_hosts]
    if targets:
        calls.append(ProbeCall("network", {"Targets": targets, "TimeoutMs": 3000}))
    queries = [q for role in target.roles for q in EVENT_QUERIES[role]]
    calls.append(
        ProbeCall("events", {"Queries": queries, "SinceHours": options.since_hours, "MaxEvents": EVENT_MAX_PER_LOG})
    )
    return calls


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Progress:
    """What a worker has gathered so far, readable by the runner if the worker overruns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: dict[str, ProbeResult] = {}
        self._problems: list[CollectionProblem] = []
        self.session_warnings: list[str] = []  # the session's own list, filled as the pool warns
        self._endpoints: tuple[Mapping[str, Mapping[str, Any]], tuple[CheckResult, ...]] = ({}, ())

    def add_probe(self, result: ProbeResult) -> None:
        with self._lock:
            self._probes[result.probe] = result

    def add_problem(self, problem: CollectionProblem) -> None:
        with self._lock:
            self._problems.append(problem)

    def set_endpoints(self, endpoints: Mapping[str, Mapping[str, Any]], results: tuple[CheckResult, ...]) -> None:
        with self._lock:
            self._endpoints = (endpoints, results)

    def snapshot(self) -> tuple[dict[str, ProbeResult], list[CollectionProblem]]:
        with self._lock:
            return dict(self._probes), list(self._problems)

    def endpoints(self) -> tuple[Mapping[str, Mapping[str, Any]], tuple[CheckResult, ...]]:
        with self._lock:
            return self._endpoints


def _bad_output_reason(exc: contract.ContractError, out: ScriptOutput) -> str:
    """Say 'failed on the host' when the probe printed nothing and reported an error."""
    if out.errors and not [o for o in out.output if o is not None]:
        return f"probe {exc.probe} failed on the host: {out.errors[0][:300]}"
    reason = str(exc)
    return f"{reason}; the host reported: {out.errors[0][:300]}" if out.errors else reason


def collect_host(
    target: HostTarget,
    password: Secret | None,
    progress: _Progress | None = None,
    options: RunOptions = RunOptions(),
) -> HostFacts:
    """Open one session, run the host's probes in it, validate each output. Never raises."""
    progress = progress or _Progress()
    started, t0 = utc_now(), time.monotonic()
    calls = plan(target, options)
    # The workstation's own view of the host's endpoints, whether or not WinRM works, taken while
    # the host runs its probes rather than after them.
    resolved: dict[str, Any] = {}

    def look_from_here() -> None:
        try:
            progress.set_endpoints(*workstation.probe_endpoints(target))
            resolved.update(workstation.resolve(target))
        except Exception as exc:  # what an endpoint sent must not cost the host its WinRM facts
            progress.add_problem(
                CollectionProblem(
                    CollectionFailure.BAD_OUTPUT,
                    f"the workstation's own probes of this host's endpoints failed ({type(exc).__name__}: "
                    f"{str(exc)[:200]})",
                    "endpoints",
                )
            )

    local = threading.Thread(target=look_from_here, name=f"endpoints-{target.name}", daemon=True)
    local.start()
    if calls:
        try:
            # One runspace and one connection per probe: the host runs them side by side (WinRM's
            # default MaxConcurrentOperationsPerUser, 1500, is far above the handful a host gets).
            session = HostSession(target, password, max_runspaces=len(calls))
            progress.session_warnings = session.warnings
            with session:
                progress.session_warnings = session.warnings
                texts = [(scripts.load(call.probe).text, call.parameters) for call in calls]
                for call, out in zip(calls, session.run_all(texts), strict=False):
                    if isinstance(out, CollectionError):  # this probe alone: too much output, or not read
                        progress.add_problem(CollectionProblem(out.kind, out.reason, call.probe))
                        continue
                    received = utc_now()
                    try:
                        progress.add_probe(
                            contract.parse_output(call.probe, list(out.output), out.duration_s, received)
                        )
                    except contract.ContractError as exc:
                        progress.add_problem(
                            CollectionProblem(CollectionFailure.BAD_OUTPUT, _bad_output_reason(exc, out), call.probe)
                        )
                    except Exception as exc:  # whatever else a host's output can provoke is this probe's alone
                        progress.add_problem(
                            CollectionProblem(CollectionFailure.BAD_OUTPUT, _unreadable(call.probe, exc), call.probe)
                        )
        except CollectionError as exc:
            progress.add_problem(CollectionProblem(exc.kind, exc.reason))
    local.join()
    probes, problems = progress.snapshot()
    endpoints, endpoint_results = progress.endpoints()
    return HostFacts(
        target=target,
        probes=probes,
        problems=tuple(problems),
        planned=tuple(c.probe for c in calls),
        endpoints=endpoints,
        endpoint_results=endpoint_results,
        workstation_dns=resolved,
        started=started,
        finished=utc_now(),
        duration_s=round(time.monotonic() - t0, 3),
        session_warnings=tuple(progress.session_warnings),
    )


def _unreadable(probe: str, exc: BaseException) -> str:
    return f"the collector could not read probe {probe}'s output ({type(exc).__name__}: {str(exc)[:200]})"


def _timed_out(target: HostTarget, progress: _Progress, started: str, t0: float, options: RunOptions) -> HostFacts:
    probes, _ = progress.snapshot()
    return _cut_short(
        target,
        progress,
        started,
        t0,
        options,
        CollectionProblem(
            CollectionFailure.TIMEOUT,
            f"collection did not finish within the host deadline of {target.host_deadline_s:g} s "
            f"({len(probes)} of {len(plan(target, options))} probes had finished)",
        ),
    )


def _crashed(
    target: HostTarget, progress: _Progress, started: str, t0: float, options: RunOptions, exc: BaseException
) -> HostFacts:
    """A worker that failed outright (a defect, or a host's answer no handler foresaw): what it had
    gathered is kept, and the host, not the run, carries the failure."""
    return _cut_short(
        target,
        progress,
        started,
        t0,
        options,
        CollectionProblem(
            CollectionFailure.BAD_OUTPUT,
            f"collection stopped on an unexpected error ({type(exc).__name__}: {str(exc)[:200]}); "
            "the probes read before it are kept",
        ),
    )


def _cut_short(
    target: HostTarget,
    progress: _Progress,
    started: str,
    t0: float,
    options: RunOptions,
    problem: CollectionProblem,
) -> HostFacts:
    probes, problems = progress.snapshot()
    endpoints, endpoint_results = progress.endpoints()
    problems.append(problem)
    return HostFacts(
        target=target,
        probes=probes,
        problems=tuple(problems),
        planned=tuple(c.probe for c in plan(target, options)),
        endpoints=endpoints,
        endpoint_results=endpoint_results,
        started=started,
        finished=utc_now(),
        duration_s=round(time.monotonic() - t0, 3),
        session_warnings=tuple(progress.session_warnings),
    )


@dataclass
class _InFlight:
    target: HostTarget
    progress: _Progress
    started: str
    t0: float
    deadline: float
    thread: threading.Thread | None = None


def run_hosts(
    targets: Sequence[HostTarget],
    passwords: Mapping[str, Secret | None],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_host_done: Callable[[HostReport], HostReport | None] = lambda report: None,
    on_host_start: Callable[[HostTarget], None] = lambda target: None,
    collect: Callable[[HostTarget, Secret | None, _Progress, RunOptions], HostFacts] = collect_host,
    options: RunOptions = RunOptions(),
    abandoned_grace_s: float = 5.0,
) -> list[HostReport]:
    """Collect and judge every host, at most ``concurrency`` at a time; inventory order kept.

    ``on_host_done`` gets each host's report as it is judged and may return what the run should
    keep of it instead (its pages written, a large run need not hold every report whole)."""
    done: queue.Queue[tuple[str, HostFacts]] = queue.Queue()
    pending = list(targets)
    in_flight: dict[str, _InFlight] = {}
    reports: dict[str, HostReport] = {}
    abandoned: list[threading.Thread] = []

    def finish(facts: HostFacts) -> None:
        report = judge(facts)
        kept = on_host_done(report)
        reports[facts.target.name] = report if kept is None else kept

    def worker(target: HostTarget, progress: _Progress, started: str, t0: float) -> None:
        try:
            facts = collect(target, passwords.get(target.name), progress, options)
        except Exception as exc:  # a bulkhead: one host's failure is that host's, never the run's
            facts = _crashed(target, progress, started, t0, options, exc)
        done.put((target.name, facts))

    def start_more() -> None:
        while pending and len(in_flight) < max(1, concurrency):
            target = pending.pop(0)
            on_host_start(target)
            flight = _InFlight(target, _Progress(), utc_now(), time.monotonic(), 0.0)
            flight.deadline = flight.t0 + target.host_deadline_s
            in_flight[target.name] = flight
            flight.thread = threading.Thread(
                target=worker,
                args=(target, flight.progress, flight.started, flight.t0),
                name=f"collect-{target.name}",
                daemon=True,
            )
            flight.thread.start()

    while pending or in_flight:
        start_more()
        wait = max(0.0, min(f.deadline for f in in_flight.values()) - time.monotonic())
        try:
            name, facts = done.get(timeout=min(wait, 1.0) if wait > 0 else 0.01)
            if name in in_flight:  # a late answer from an abandoned worker is dropped
                del in_flight[name]
                start_more()  # keep the hosts busy before the report work for this one
                finish(facts)
        except queue.Empty:
            pass
        now = time.monotonic()
        for name, flight in list(in_flight.items()):
            if now >= flight.deadline:
                del in_flight[name]
                if flight.thread is not None:
                    abandoned.append(flight.thread)
                start_more()
                finish(_timed_out(flight.target, flight.progress, flight.started, flight.t0, options))
    _let_abandoned_workers_close(abandoned, abandoned_grace_s)
    return [reports[t.name] for t in targets]


def judge(facts: HostFacts) -> HostReport:
    """The host's checks (each check is guarded on its own); should judging fail as a whole, the
    host is reported with its facts and the failure, and the run goes on."""
    try:
        return HostReport(facts=facts, checks=tuple(checks.evaluate(facts)))
    except Exception as exc:
        problem = CollectionProblem(
            CollectionFailure.BAD_OUTPUT,
            f"the collector could not judge this host's facts ({type(exc).__name__}: {str(exc)[:200]})",
        )
        failed = replace(facts, problems=(*facts.problems, problem))
        try:
            return HostReport(facts=failed, checks=tuple(collection_results(failed)))
        except Exception:
            return HostReport(facts=failed, checks=())


def _let_abandoned_workers_close(threads: Sequence[threading.Thread], grace_s: float) -> None:
    """Give workers that overran their deadline a few seconds to close their pools (they start no
    new probe past the deadline), so a slow host does not keep a WinRM shell, counted against
    MaxShellsPerUser, until its idle timeout. The run's report is already complete."""
    until = time.monotonic() + grace_s
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))
