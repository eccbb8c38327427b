"""The runner: per-host isolation, deadlines that hold when a worker hangs, inventory order kept."""

from __future__ import annotations

import dataclasses
import threading
import time

from collector import runner
from collector.model import CollectionFailure, HostFacts, HostTarget, ProbeResult, Role, Status
from tests.builders import host_probe


def target(name: str, deadline: float = 5.0) -> HostTarget:
    return HostTarget(name=name, address="127.0.0.1", roles=(Role.SESSION_HOST,), host_deadline_s=deadline)


def healthy_probe() -> ProbeResult:
    services = [
        {
            "name": n,
            "present": True,
            "display_name": n,
            "state": "Running",
            "start_mode": "Manual",
            "account": "LocalSystem",
            "process_id": 1,
        }
        for n in ("TermService", "UmRdpService", "SessionEnv")
    ]
    return ProbeResult("services", 1, {"services": services})


def test_plan_follows_roles_and_passes_inputs_as_parameters() -> None:
    session_host = {c.probe: c.parameters for c in runner.plan(target("a"))}
    assert list(session_host) == ["host", "services", "listeners", "rdp_config", "events"]
    assert session_host["services"] == {"Names": ["TermService", "UmRdpService", "SessionEnv"]}
    assert session_host["events"]["SinceHours"] == 24 and session_host["events"]["MaxEvents"] == 200
    assert "Security=4625" in session_host["events"]["Queries"]

    client = HostTarget(
        name="c",
        address="c",
        roles=(Role.CLIENT,),
        gateway="gw.example",
        session_hosts=("sh1.example", "sh2.example"),
    )
    calls = {c.probe: c.parameters for c in runner.plan(client)}
    assert list(calls) == ["host", "client", "network", "events"]
    from collector.checks.client import TLS_AGENTS

    assert calls["client"] == {"GatewayName": "gw.example", "GatewayPort": 443, "AgentProcesses": list(TLS_AGENTS)}
    assert calls["network"]["Targets"] == ["gw.example:443", "sh1.example:3389", "sh2.example:3389"]
    assert calls["events"]["Queries"][0].startswith("Microsoft-Windows-TerminalServices-RDPClient/Operational=")

    gateway = HostTarget(name="g", address="g", roles=(Role.GATEWAY,), session_hosts=("sh1.example",))
    assert [c.probe for c in runner.plan(gateway)] == [
        "host",
        "services",
        "listeners",
        "gateway",
        "network",
        "events",
    ]


def test_hung_host_times_out_while_others_complete() -> None:
    release = threading.Event()

    def collect(t, password, progress, options):
        if t.name == "hang":
            release.wait(30)
        else:
            progress.add_probe(host_probe())
            progress.add_probe(healthy_probe())
        return HostFacts(target=t, probes=progress.snapshot()[0], planned=("host", "services"))

    done = []
    start = time.monotonic()
    reports = runner.run_hosts(
        [target("a"), target("hang", deadline=0.5), target("b")],
        {},
        concurrency=2,
        on_host_done=lambda r: done.append(r.name),
        collect=collect,
        abandoned_grace_s=0,
    )
    elapsed = time.monotonic() - start
    release.set()
    assert elapsed < 5
    assert [r.name for r in reports] == ["a", "hang", "b"]
    assert sorted(done) == ["a", "b", "hang"]
    hung = reports[1]
    assert [p.kind for p in hung.facts.problems] == [CollectionFailure.TIMEOUT]
    assert "host deadline of 0.5 s" in hung.facts.problems[0].reason
    assert (hung.checks[0].id, hung.checks[0].status) == ("collect.timeout", Status.FAIL)
    assert {c.status for c in hung.checks[1:]} == {Status.UNKNOWN}
    assert {"host.time-skew", "rdp.service-stopped", "rdp.not-listening"} <= {c.id for c in hung.checks}
    assert reports[0].worst is Status.PASS and reports[2].worst is Status.PASS


def test_partial_facts_survive_a_timeout() -> None:
    release = threading.Event()

    def collect(t, password, progress, options):
        progress.add_probe(healthy_probe())
        release.wait(30)
        return HostFacts(target=t)

    [report] = runner.run_hosts([target("slow", deadline=0.3)], {}, collect=collect)
    release.set()
    assert "services" in report.facts.probes
    assert "(1 of 5 probes had finished)" in report.facts.problems[0].reason


def test_concurrency_limit_is_respected() -> None:
    lock = threading.Lock()
    active = peak = 0

    def collect(t, password, progress, options):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return HostFacts(target=t, probes={"services": healthy_probe()})

    reports = runner.run_hosts([target(f"h{i}") for i in range(8)], {}, concurrency=3, collect=collect)
    assert len(reports) == 8 and peak == 3


def test_abandoned_workers_get_a_grace_period_to_close() -> None:
    closed = threading.Event()

    def collect(t, password, progress, options):
        time.sleep(0.6)  # overruns its 0.2 s deadline, then closes its session
        closed.set()
        return HostFacts(target=t)

    start = time.monotonic()
    [report] = runner.run_hosts([target("late", deadline=0.2)], {}, collect=collect, abandoned_grace_s=30)
    assert closed.is_set() and time.monotonic() - start < 20  # returned when the worker ended, not after 30 s
    assert report.facts.problems[0].kind is CollectionFailure.TIMEOUT


def test_what_on_host_done_returns_is_what_the_run_keeps() -> None:
    def collect(t, password, progress, options):
        return HostFacts(target=t, probes={"services": healthy_probe()})

    kept = {}

    def on_host_done(report):
        kept[report.name] = dataclasses.replace(report, checks=report.checks[:1])  # a smaller stand-in
        return kept[report.name] if report.name != "whole" else None

    reports = runner.run_hosts([target("small"), target("whole")], {}, collect=collect, on_host_done=on_host_done)
    assert reports[0] is kept["small"]
    assert reports[1] is not kept["whole"] and len(reports[1].checks) > 1  # None keeps the report itself


def test_a_worker_that_fails_outright_costs_its_host_only() -> None:
    """An exception no handler foresaw (a defect, or a host's answer nobody imagined) becomes that
    host's collect.bad-output, with what it had gathered kept; the run goes on."""

    def collect(t, password, progress, options):
        progress.add_probe(host_probe())
        if t.name == "broken":
            raise OverflowError("int too large to convert to float")
        return HostFacts(target=t, probes=progress.snapshot()[0], planned=("host",))

    reports = runner.run_hosts([target("a"), target("broken")], {}, collect=collect, abandoned_grace_s=0)
    broken = reports[1]
    assert [(p.kind, p.probe) for p in broken.facts.problems] == [(CollectionFailure.BAD_OUTPUT, "")]
    reason = broken.facts.problems[0].reason
    assert reason.startswith("collection stopped on an unexpected error (OverflowError: int too large")
    assert set(broken.facts.probes) == {"host"}  # what was read before it is kept
    assert (broken.checks[0].id, broken.checks[0].status) == ("collect.bad-output", Status.FAIL)
    assert reports[0].facts.problems == ()


def test_judging_that_fails_as_a_whole_is_the_host_s_result(monkeypatch) -> None:
    def broken(facts):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(runner.checks, "evaluate", broken)
    report = runner.judge(HostFacts(target=target("a"), probes={"host": host_probe()}))
    assert [c.id for c in report.checks] == ["collect.bad-output"]
    assert report.checks[0].evidence[0].value == (
        "the collector could not judge this host's facts (RecursionError: maximum recursion depth exceeded)"
    )
    assert set(report.facts.probes) == {"host"}
