"""Faults survived: every way a WinRM host can fail, injected by the lab, collected for real.

Each faulty host must end as the right ``collect.*`` result with a reason an administrator can
act on (no traceback, no secret), the run must keep its deadline, healthy hosts must be fully
reported beside the faulty ones, and no shell may be left open on any host.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from collector import inventory, runner, scripts, winrm
from collector.credentials import Secret
from collector.exits import exit_code
from collector.lab.fleet import LAB_USER, PASSWORD_ENV, Fault, LabFleet, ScenarioError, ScenarioHost, load_scenario
from collector.lab.wsman import FAULTS
from collector.model import CollectionFailure, HostReport, HostTarget, Severity
from collector.winrm import HostSession

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

PASSWORD = "faults-Pa55word"
DEADLINE = 4.0  # host_deadline of every target here
PROBE_TIME = 1.0  # per probe in the side-by-side test (host and fleet-wide halves add up)
CONNECT_TIMEOUT = 1.5  # below the deadline, so a blackholed port is "unreachable", not "timeout"
HEALTHY = ("rdsh01.lab.test", "gw01.lab.test", "client01.lab.test")
PROBES = 5  # a session host's plan: host, services, listeners, rdp_config, events
# The per-probe output limit is 16 MiB; here it is 1 MiB and "oversize" sends 2 MiB more than a
# probe prints, so the flood is the same shape (the limit crossed, the readers stopped) at a
# size that takes no machine long to produce, seal and read (the real limit is a unit test's).
PROBE_OUTPUT_LIMIT = 1024 * 1024
OVERSIZE_BYTES = 2 * PROBE_OUTPUT_LIMIT

# fault -> (the collect.* result, what its reason must say, whether one problem per probe)
EXPECTED: dict[str, tuple[CollectionFailure, str, bool]] = {
    "down": (CollectionFailure.UNREACHABLE, r"^connection refused by 127\.0\.0\.1:\d+: WinRM is not listening", False),
    "blackhole": (
        CollectionFailure.UNREACHABLE,
        r"^no answer from 127\.0\.0\.1:\d+ within 1\.5 s \(host down, or a firewall dropping the WinRM port\)$",
        False,
    ),
    "hang": (
        CollectionFailure.TIMEOUT,
        rf"within the host deadline of 4 s \(0 of {PROBES} probes had finished\)$",
        False,
    ),
    "slow": (
        CollectionFailure.TIMEOUT,
        rf"within the host deadline of 4 s \([0-4] of {PROBES} probes had finished\)$",
        False,
    ),
    "unauthorized": (
        CollectionFailure.AUTH_FAILED,
        r"^the host refused the credentials of LAB\\collector with negotiate auth \(HTTP 401\)",
        False,
    ),
    "http500": (CollectionFailure.UNREACHABLE, r"refused the request \(WS-Management fault 2150858843: ", False),
    "malformed-xml": (
        CollectionFailure.BAD_OUTPUT,
        r"^127\.0\.0\.1:\d+ sent a response that is not XML \(undefined entity: line 1, column \d+\): something "
        r"other than WinRM answered",
        False,
    ),
    "broken-pool": (
        CollectionFailure.BAD_OUTPUT,
        r"^the PowerShell session on the host broke as soon as it opened .*; the host said: The WSMan provider "
        r"host process did not return a proper response",
        False,
    ),
    "pipeline-error": (
        CollectionFailure.BAD_OUTPUT,
        r"^probe \w+ failed on the host: Cannot invoke "
        r"method\. Method invocation is supported only on core types in this language mode\.$",
        True,
    ),
    "truncated": (
        CollectionFailure.BAD_OUTPUT,
        r"^127\.0\.0\.1:\d+ broke off a response midway \((\d+) of (\d+) bytes arrived, then the connection closed\)",
        False,
    ),
    "oversize": (
        CollectionFailure.BAD_OUTPUT,
        r"^probe \w+ (sent more than the 1 MiB of output the collector accepts from one probe \((\d+\.\d) MiB "
        r"had arrived when it stopped reading\)|was not read: probe \w+ exceeded the output limit first)",
        True,
    ),
    "bad-json": (
        CollectionFailure.BAD_OUTPUT,
        r"^probe \w+: data\.\w+: Input should be a valid (list|dictionary)",
        True,
    ),
}


def test_every_lab_fault_is_tested() -> None:
    """The scenario's faults are the server's plus the three the fleet makes itself, and each is tested."""
    assert set(get_args(Fault)) == FAULTS | {"down", "blackhole", "bad-json"} == set(EXPECTED)


def faulty_host(fault: str) -> ScenarioHost:
    return ScenarioHost(name=f"{fault.replace('-', '')}.lab.test", roles=("session_host",), fault=fault)


def lab_hosts() -> list[ScenarioHost]:
    healthy = [h for h in load_scenario() if h.name in HEALTHY]
    return [*healthy, *(faulty_host(fault) for fault in EXPECTED)]


def short_deadlines(document: dict) -> dict:
    document["defaults"].update(host_deadline=DEADLINE, connect_timeout=CONNECT_TIMEOUT)
    return document


@pytest.fixture(scope="module", autouse=True)
def small_output_limit() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winrm, "MAX_PROBE_OUTPUT", PROBE_OUTPUT_LIMIT)
        yield


def lab_fleet(hosts: Sequence[ScenarioHost], workdir: Path) -> LabFleet:
    return LabFleet(hosts, PASSWORD, workdir, oversize_bytes=OVERSIZE_BYTES)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    with lab_fleet(lab_hosts(), tmp_path_factory.mktemp("faults")) as lab:
        yield lab


@pytest.fixture(scope="module")
def targets(fleet: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, HostTarget]:
    path = tmp_path_factory.mktemp("inv") / "inventory.yaml"
    path.write_text(yaml.safe_dump(short_deadlines(fleet.inventory_document()), sort_keys=False))
    return {t.name: t for t in inventory.load(path).targets}


def collect(targets: Sequence[HostTarget]) -> dict[str, HostReport]:
    reports = runner.run_hosts(targets, {t.name: Secret(PASSWORD) for t in targets})
    return {r.name: r for r in reports}


def wait_for_closed_shells(fleet: LabFleet, within: float = 10.0) -> dict[str, int]:
    """Open shells per lab server once they are all closed, or as they are when time runs out
    (an abandoned worker closes its pool after its current request)."""
    deadline = time.monotonic() + within
    while True:
        open_shells = {name: server.open_shells for name, server in fleet.servers.items()}
        if not any(open_shells.values()) or time.monotonic() > deadline:
            return open_shells
        time.sleep(0.1)


def assert_faulty(report: HostReport, fault: str) -> None:
    kind, pattern, per_probe = EXPECTED[fault]
    problems = report.facts.problems
    assert problems, fault
    assert {p.kind for p in problems} == {kind}, (fault, problems)
    if per_probe:  # the session worked; every probe's output was refused on its own
        assert sorted(p.probe for p in problems) == sorted(report.facts.planned), problems
    else:
        assert [p.probe for p in problems] == [""], problems
    for problem in problems:
        assert re.search(pattern, problem.reason), (fault, problem.reason)
        if per_probe and problem.reason.startswith("probe "):
            assert problem.reason.split()[1].rstrip(":") == problem.probe, problem
        assert "Traceback" not in problem.reason and PASSWORD not in problem.reason
    collect_checks = [c for c in report.checks if c.id.startswith("collect.")]
    assert {c.id for c in collect_checks} == {f"collect.{kind.value}"}
    assert [c.evidence[0].value for c in collect_checks] == [p.reason for p in problems]
    if fault == "slow":  # what had finished by the deadline is kept
        finished = int(re.search(r"\((\d) of", problems[0].reason).group(1))
        assert len(report.facts.probes) == finished and set(report.facts.probes) <= set(report.facts.planned)
    else:
        assert report.facts.probes == {}  # nothing half-parsed is reported as collected


@pytest.mark.parametrize("fault", list(EXPECTED))
def test_each_fault_is_the_right_collection_result(fleet: LabFleet, targets: dict[str, HostTarget], fault: str) -> None:
    name = faulty_host(fault).name
    report = collect([targets[name]])[name]
    assert_faulty(report, fault)
    assert wait_for_closed_shells(fleet).get(name, 0) == 0
    server = fleet.servers.get(name)
    invoked = [i for i in server.invocations if i.script.startswith("# collector-probe: ")] if server else []
    if fault in ("down", "blackhole", "hang", "unauthorized", "malformed-xml", "broken-pool", "http500"):
        assert invoked == []  # failed before any probe could start
    if fault in ("pipeline-error", "bad-json", "oversize"):
        assert len(invoked) == PROBES  # the session held: every probe ran, and each was refused on its own
    if fault == "truncated":
        # Probes start side by side; the first broken answer ends the session, so a probe whose
        # Command had not gone out by then never runs.
        assert 1 <= len(invoked) <= PROBES
        arrived, promised = map(int, re.search(EXPECTED[fault][1], report.facts.problems[0].reason).groups())
        assert 0 < arrived < promised
    if fault == "oversize":
        flood = next(p.reason for p in report.facts.problems if "sent more than" in p.reason)
        arrived = float(re.search(EXPECTED[fault][1], flood).group(2))
        limit = PROBE_OUTPUT_LIMIT / 2**20
        assert limit <= arrived < limit + 1  # stopped one envelope past the limit, not at the 2 MiB sent
    if fault == "slow":
        assert invoked  # unlike "hang", the host was answering, only too slowly


def test_mixed_fleet_keeps_its_deadline_and_reports_every_host(fleet: LabFleet, targets: dict[str, HostTarget]) -> None:
    started = time.monotonic()
    reports = collect(list(targets.values()))
    elapsed = time.monotonic() - started
    # The deadline, plus the grace abandoned workers get to close their pools, plus slack for 2 cores.
    assert elapsed < DEADLINE + runner.run_hosts.__kwdefaults__["abandoned_grace_s"] + 15, elapsed
    for name in HEALTHY:
        facts = reports[name].facts
        assert facts.problems == (), (name, facts.problems)
        assert facts.planned and set(facts.probes) == set(facts.planned)
        assert [c.id for c in reports[name].checks if c.id.startswith("collect.")] == [], name
    for fault in EXPECTED:
        assert_faulty(reports[faulty_host(fault).name], fault)
    assert exit_code((c for r in reports.values() for c in r.checks), Severity.CRITICAL) == 1
    # hang never got a shell (its Create is never answered); down and blackhole have no server.
    assert wait_for_closed_shells(fleet) == dict.fromkeys(fleet.servers, 0)


def test_mixed_fleet_through_the_command_line(tmp_path: Path) -> None:
    with lab_fleet(lab_hosts(), tmp_path / "lab") as lab:
        path = tmp_path / "inventory.yaml"
        path.write_text(yaml.safe_dump(short_deadlines(lab.inventory_document()), sort_keys=False))
        collect_with_small_limit = (
            f"import sys; from collector import cli, winrm; winrm.MAX_PROBE_OUTPUT = {PROBE_OUTPUT_LIMIT}; "
            "sys.exit(cli.main(sys.argv[1:]))"
        )
        args = ["--inventory", str(path), "--output", str(tmp_path / "out"), "-q"]
        result = subprocess.run(
            [sys.executable, "-c", collect_with_small_limit, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, PASSWORD_ENV: PASSWORD},
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and PASSWORD not in result.stdout + result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    not_collected = sum(not per_probe for _, _, per_probe in EXPECTED.values())
    assert summary.startswith(
        f"collect: summary hosts={len(HEALTHY) + len(EXPECTED)} failing_hosts={len(EXPECTED)} "
        f"not_collected={not_collected} "
    ), summary
    assert f" exit=1 run={(tmp_path / 'out' / 'latest').resolve()}" in summary


# --- the lab's timing knobs (benchmarks), which "slow" builds on ---------------------------------


def test_latency_and_probe_seconds_delay_probes_but_not_each_other(tmp_path: Path) -> None:
    """Fleet-wide values add to the host's own; a probe at work holds up no other pipeline of its pool."""
    [healthy] = [h for h in load_scenario() if h.name == "rdsh01.lab.test"]  # Basic over HTTP
    host = dataclasses.replace(healthy, probe_seconds=PROBE_TIME / 2)
    with LabFleet([host], PASSWORD, tmp_path, latency=0.05, probe_seconds=PROBE_TIME / 2) as lab:
        [target] = inventory.load(lab.write_inventory(tmp_path / "inventory.yaml")).targets
        probe = scripts.load("host").text
        with HostSession(target, Secret(PASSWORD)) as session:
            out = session.run(probe)
        assert out.duration_s >= 0.5 + 0.05  # 0.2 + 0.3 s at work, then the answer 0.05 s late
        assert json.loads(out.output[0])["data"]["computer_name"] == "RDSH01"

        wsman = WSMan(
            "127.0.0.1",
            port=target.port,
            ssl=False,
            auth="basic",
            username=LAB_USER,
            password=PASSWORD,
            encryption="never",
        )
        with wsman, RunspacePool(wsman, max_runspaces=6) as pool:
            pipelines = [PowerShell(pool).add_script(probe) for _ in range(6)]
            started = time.monotonic()
            for ps in pipelines:
                ps.begin_invoke()
            outputs = [ps.end_invoke() for ps in pipelines]
            elapsed = time.monotonic() - started
        assert [json.loads(o[0])["probe"] for o in outputs] == ["host"] * 6
        # Side by side: one after another would take at least 6 x the probe time; the margin is
        # wide because this is a statement about overlap, not a timing target.
        assert elapsed < 6 * PROBE_TIME * 0.75, elapsed
        assert lab.servers[host.name].open_shells == 0


def test_scenario_file_sets_faults_and_timing(tmp_path: Path) -> None:
    scenario = tmp_path / "faults.yaml"
    scenario.write_text(
        "hosts:\n"
        "  - {name: a.lab.test, roles: [session_host], fault: blackhole}\n"
        "  - {name: b.lab.test, roles: [gateway], fault: bad-json, latency: 0.1, probe_seconds: 2}\n"
    )
    a, b = load_scenario(scenario)
    assert (a.fault, a.latency, a.probe_seconds) == ("blackhole", 0.0, 0.0)
    assert (b.fault, b.latency, b.probe_seconds) == ("bad-json", 0.1, 2.0)
    scenario.write_text("hosts:\n  - {name: a.lab.test, roles: [client], fault: exploded}\n")
    with pytest.raises(ScenarioError, match=r"hosts\.0\.fault: Input should be 'down', 'blackhole', "):
        load_scenario(scenario)
    scenario.write_text("hosts:\n  - {name: a.lab.test, roles: [client], latency: -1}\n")
    with pytest.raises(ScenarioError, match=r"hosts\.0\.latency: Input should be greater than or equal to 0"):
        load_scenario(scenario)
