"""The collector's real protocol path against the lab fleet: pypsrp over WS-Management + PSRP."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import checks, history, incident, inventory, metrics, report, runner, scripts
from collector.checks import fleet as fleet_checks
from collector.credentials import Secret
from collector.lab.fleet import LAB_USER, PASSWORD_ENV, LabFleet, ScenarioHost, load_scenario
from collector.model import CollectionFailure, HostTarget, RunReport, Status
from collector.path import joined_names
from collector.winrm import HostSession

pytestmark = pytest.mark.lab
PASSWORD = "lab-Pa55word-Test"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    with LabFleet(load_scenario(), PASSWORD, tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.fixture(scope="module")
def lab_inventory(fleet: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> inventory.Inventory:
    return inventory.load(fleet.write_inventory(tmp_path_factory.mktemp("inv") / "inventory.yaml"))


def targets_by_name(inv: inventory.Inventory) -> dict[str, HostTarget]:
    return {t.name: t for t in inv.targets}


@pytest.mark.parametrize(
    ("host", "transport", "auth"),
    [
        ("rdsh01.lab.test", "http", "basic"),
        ("client01.lab.test", "http", "negotiate"),
        ("gw01.lab.test", "https", "ntlm"),  # dials 127.0.0.1, verifies the certificate for the name
        ("rdsh02.lab.test", "https", "negotiate"),
    ],
)
def test_each_transport_collects_the_services_probe(
    lab_inventory: inventory.Inventory, host: str, transport: str, auth: str
) -> None:
    target = targets_by_name(lab_inventory)[host]
    assert (target.transport, target.auth, target.address) == (transport, auth, "127.0.0.1")
    facts = runner.collect_host(target, Secret(PASSWORD))
    assert facts.problems == ()
    assert facts.probes["host"].data["computer_name"] == host.split(".")[0].upper()
    assert facts.probes["host"].data["ps_version"].startswith("5.1")
    if "services" in facts.probes:
        services = facts.probes["services"].data["services"]
        assert [s["name"] for s in services] == runner.plan(target)[1].parameters["Names"]


EXPECTED_PROBLEMS = {
    "client01.lab.test": set(),
    # Healthy, and doing its job: its CAP refuses client02's user (the demo's incident story).
    "gw01.lab.test": {"rdg.policy-denied"},
    "rdsh01.lab.test": set(),
    # Seen over WinRM, and from the workstation: nothing answers on the RDP port.
    "rdsh02.lab.test": {"rdp.service-stopped", "rdp.not-listening", "net.tcp-blocked"},
    "rdsh03.lab.test": {"collect.unreachable", "net.tcp-blocked"},
    "rdsh04.lab.test": {"rdp.disabled", "rdp.not-listening", "net.tcp-blocked"},
    "rdsh05.lab.test": {
        "rdp.nla-disabled",
        "rdp.security-layer",
        "cert.self-signed",
        "cert.untrusted",
        "rdp.licensing",
    },
    "rdsh06.lab.test": {"rdp.firewall-closed", "net.tcp-blocked"},
    "client02.lab.test": {
        "client.udp-disabled",
        "client.rdg-trace",
        "client.recent-disconnects",
        "client.cached-credentials",
        "host.time-skew",  # 200 s slow: a warning, inside Kerberos' 5 minutes
    },
    "client03.lab.test": {"net.proxy", "rdg.ssl-inspection", "client.tls-intercepting-agent"},
    "gw02.lab.test": {"rdg.cert-binding-mismatch", "rdg.resource-unreachable"},
}
# Problems of the demo that are warnings, not failures.
WARN_ONLY = {
    "rdp.nla-disabled",
    "rdp.security-layer",
    "net.proxy",
    "cert.self-signed",
    "rdp.licensing",
    "host.time-skew",
    "rdg.policy-denied",
    "rdg.resource-unreachable",
}


def test_demo_fleet_verdicts(lab_inventory: inventory.Inventory) -> None:
    """Each broken scenario yields its own problems, and the healthy trio none (no false alarm)."""
    passwords = dict.fromkeys(targets_by_name(lab_inventory), Secret(PASSWORD))
    collected = runner.run_hosts(lab_inventory.targets, passwords, options=runner.RunOptions(user_context=True))
    reports = {r.name: r for r in fleet_checks.evaluate_fleet(collected)}
    problems = {name: {c.id for c in r.checks if c.is_problem} for name, r in reports.items()}
    assert problems == EXPECTED_PROBLEMS
    for name in ("client01.lab.test", "gw01.lab.test", "rdsh01.lab.test"):  # no false alarm on the healthy trio
        statuses = {c.id: c.status for c in reports[name].checks}
        assert {i: s for i, s in statuses.items() if s is not Status.PASS} == dict.fromkeys(
            EXPECTED_PROBLEMS[name], Status.WARN
        ), name
    unknown = {c.id for c in reports["rdsh03.lab.test"].checks if c.status is Status.UNKNOWN}
    assert "rdp.service-stopped" in unknown and "host.time-skew" in unknown

    stopped = next(c for c in reports["rdsh02.lab.test"].checks if c.id == "rdp.service-stopped")
    assert stopped.title == "TermService not running on the session host"
    assert stopped.evidence[0].value.startswith("Stopped, start mode Disabled")
    refused = reports["rdsh03.lab.test"].checks[0].evidence[0].value
    assert "connection refused by 127.0.0.1:" in refused
    disconnects = next(c for c in reports["client02.lab.test"].checks if c.id == "client.recent-disconnects")
    assert disconnects.title == "3 failed connection(s) recorded, most often 0x904 (2308)"
    creds = next(c for c in reports["client02.lab.test"].checks if c.id == "client.cached-credentials")
    assert creds.evidence[0].value == "TERMSRV/rdsh01.lab.test, RDG:gw01.lab.test"
    inspected = next(c for c in reports["client03.lab.test"].checks if c.id == "rdg.ssl-inspection")
    assert inspected.title.startswith("The client receives a certificate re-signed by CN=Contoso SSL Inspection CA")
    assert [e.vantage for e in inspected.evidence][-1] == "workstation"
    binding = next(c for c in reports["gw02.lab.test"].checks if c.id == "rdg.cert-binding-mismatch")
    assert binding.title.startswith("HTTP.sys serves a different certificate on 0.0.0.0:443")


def test_the_end_of_a_run_reads_the_same_from_host_summaries(lab_inventory: inventory.Inventory) -> None:
    """Hosts no cross-host judgement reads are kept as summaries once written: the index, the
    metrics, the history and the connection paths come out exactly as from the whole reports."""
    passwords = dict.fromkeys(targets_by_name(lab_inventory), Secret(PASSWORD))
    whole_reports = runner.run_hosts(lab_inventory.targets, passwords)
    joined = joined_names(lab_inventory.targets)
    assert joined and any(r.name.lower() not in joined for r in whole_reports)  # both kinds in the demo
    kept = [r if r.name.lower() in joined else report.summary(r) for r in whole_reports]

    def run_of(hosts: list) -> RunReport:
        judged = fleet_checks.evaluate_fleet(hosts)
        finished = "2026-11-26T08:00:00Z"
        return RunReport(
            run_id="r",
            started="2026-11-26T07:59:00Z",
            finished=finished,
            tool_version="t",
            workstation="w",
            inventory="i",
            hosts=tuple(judged),
            paths=incident.incident_paths(judged, since_hours=24, now=finished),
        )

    whole, summarized = run_of(whole_reports), run_of(kept)
    assert report.render_index(summarized) == report.render_index(whole)
    assert metrics.render(summarized) == metrics.render(whole)
    assert summarized.paths == whole.paths
    assert [history.problems(h) for h in summarized.hosts] == [history.problems(h) for h in whole.hosts]
    assert list(metrics.certificates(summarized)) == list(metrics.certificates(whole)) != []


def test_without_user_context_saved_credentials_are_unknown_and_say_why(lab_inventory: inventory.Inventory) -> None:
    target = targets_by_name(lab_inventory)["client02.lab.test"]
    facts = runner.collect_host(target, Secret(PASSWORD))
    assert "user_credentials" not in facts.probes
    [creds] = [c for c in checks.evaluate(facts) if c.id == "client.cached-credentials"]
    assert creds.status is Status.UNKNOWN
    assert "--user-context" in creds.evidence[0].value


def test_wrong_password_is_auth_failed_and_never_echoed(lab_inventory: inventory.Inventory) -> None:
    for name in ("rdsh01.lab.test", "client01.lab.test", "gw01.lab.test"):
        facts = runner.collect_host(targets_by_name(lab_inventory)[name], Secret("not-the-password"))
        [problem] = facts.problems
        assert problem.kind is CollectionFailure.AUTH_FAILED, name
        assert LAB_USER in problem.reason and "not-the-password" not in problem.reason


def test_certificate_for_another_name_is_refused(lab_inventory: inventory.Inventory) -> None:
    gw = targets_by_name(lab_inventory)["gw01.lab.test"]
    wrong_name = dataclasses.replace(gw, name="gw99.lab.test")
    [problem] = runner.collect_host(wrong_name, Secret(PASSWORD)).problems
    assert problem.kind is CollectionFailure.UNREACHABLE
    assert "TLS to 127.0.0.1" in problem.reason and "gw99.lab.test" in problem.reason


def test_parameters_reach_the_script_as_data(fleet: LabFleet, lab_inventory: inventory.Inventory) -> None:
    """PowerShell metacharacters in a value arrive as that value; the script text is unchanged."""
    target = targets_by_name(lab_inventory)["rdsh01.lab.test"]
    hostile = "x'; Write-Output pwned; '"
    script = scripts.load("services").text
    with HostSession(target, Secret(PASSWORD)) as session:
        out = session.run(script, {"Names": [hostile, "TermService"]})
    invocation = fleet.servers["rdsh01.lab.test"].invocations[-1]
    assert invocation.script == script
    assert invocation.parameters == {"Names": [hostile, "TermService"]}
    data = json.loads(out.output[0])["data"]["services"]
    assert data[0] == {
        "name": hostile,
        "present": False,
        "display_name": None,
        "state": None,
        "start_mode": None,
        "account": None,
        "process_id": None,
    }
    assert "pwned" not in script


def test_repeated_pipelines_keep_their_own_parameters(fleet: LabFleet, lab_inventory: inventory.Inventory) -> None:
    """Every host of a fleet gets the same probe scripts and the lab reads a message it has seen
    before from a cache: each pipeline must still run with its own parameters, on every host."""
    script = scripts.load("services").text
    runs = [["TermService"], ["UmRdpService"], ["TermService"]]
    for name in ("rdsh01.lab.test", "gw01.lab.test"):
        with HostSession(targets_by_name(lab_inventory)[name], Secret(PASSWORD)) as session:
            outs = [session.run(script, {"Names": names}) for names in runs]
        assert [i.parameters for i in fleet.servers[name].invocations[-3:]] == [{"Names": n} for n in runs]
        assert [json.loads(o.output[0])["data"]["services"][0]["name"] for o in outs] == [n[0] for n in runs]


@pytest.mark.parametrize(
    ("host", "own_connections"),
    [
        # NTLM authenticates one connection: each probe gets its own (one logon each).
        ("gw01.lab.test", True),
        # Negotiate may mean a Kerberos logon (a password kinit, a KDC request) per connection:
        # the probes take turns on the session's one connection instead (one logon in all).
        ("client01.lab.test", False),
    ],
)
def test_probes_run_side_by_side_each_over_its_own_connection_where_authentication_allows(
    fleet: LabFleet, lab_inventory: inventory.Inventory, host: str, own_connections: bool
) -> None:
    target = targets_by_name(lab_inventory)[host]
    server = fleet.servers[host]
    server._logons.clear()
    facts = runner.collect_host(target, Secret(PASSWORD))
    assert facts.problems == () and set(facts.probes) == set(facts.planned)
    assert len(server.logons) == (len(runner.plan(target)) if own_connections else 1)
    assert server.open_shells == 0


def test_sessions_are_always_closed(fleet: LabFleet, lab_inventory: inventory.Inventory) -> None:
    for name in ("rdsh01.lab.test", "gw01.lab.test"):
        runner.collect_host(targets_by_name(lab_inventory)[name], Secret(PASSWORD))
        assert fleet.servers[name].open_shells == 0


def test_silent_host_times_out_within_deadline_while_others_complete(tmp_path: Path) -> None:
    hosts = [h for h in load_scenario() if h.name in ("rdsh01.lab.test", "gw01.lab.test")]
    silent = ScenarioHost(
        name="hung01.lab.test",
        roles=("session_host",),
        gateway="",
        session_hosts=(),
        notes="",
        transport="http",
        auth="negotiate",
        fault="hang",
        services=(),
    )
    with LabFleet([*hosts, silent], PASSWORD, tmp_path) as lab:
        inv = inventory.load(lab.write_inventory(tmp_path / "inventory.yaml"))
        targets = [dataclasses.replace(t, host_deadline_s=3.0) for t in inv.targets]
        start = time.monotonic()
        reports = runner.run_hosts(
            targets, dict.fromkeys((t.name for t in targets), Secret(PASSWORD)), abandoned_grace_s=0
        )
        elapsed = time.monotonic() - start
    by_name = {r.name: r for r in reports}
    assert elapsed < 3.0 + 10, elapsed  # the 3 s deadline held (slack for a loaded 2-core machine)
    assert [p.kind for p in by_name["hung01.lab.test"].facts.problems] == [CollectionFailure.TIMEOUT]
    assert by_name["rdsh01.lab.test"].worst is Status.PASS
    assert {c.id for c in by_name["gw01.lab.test"].checks if c.is_problem} == EXPECTED_PROBLEMS["gw01.lab.test"]


def test_host_that_stops_mid_fleet_is_unreachable(tmp_path: Path) -> None:
    [host] = [h for h in load_scenario() if h.name == "rdsh01.lab.test"]
    with LabFleet([host], PASSWORD, tmp_path) as lab:
        inv = inventory.load(lab.write_inventory(tmp_path / "inventory.yaml"))
        lab.servers[host.name].stop()
        [problem] = runner.collect_host(inv.targets[0], Secret(PASSWORD)).problems
    assert problem.kind is CollectionFailure.UNREACHABLE and "connection refused" in problem.reason


# --- the command line, as a user runs it ------------------------------------------------------


def run_collect(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_collect_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_collect("demo", "--output", str(out), env={PASSWORD_ENV: PASSWORD})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Warning" not in result.stderr  # no library's notice in a scheduled run's output
    latest = out / "latest"
    assert latest.is_symlink() and (latest / "index.html").is_file()
    assert f"Report: {out / latest.resolve().name / 'index.html'}" in result.stdout
    pages = sorted(p.name for p in (latest / "hosts").iterdir())
    assert pages == sorted(f"{name}.html" for name in EXPECTED_PROBLEMS)
    results = json.loads((latest / "results.json").read_text())
    failing = {
        (h["facts"]["target"]["name"], c["id"]) for h in results["hosts"] for c in h["checks"] if c["status"] == "fail"
    }
    assert failing == {
        (host, check)
        for host, problems in EXPECTED_PROBLEMS.items()
        for check in problems
        if check not in WARN_ONLY and not check.startswith("client.")
    }
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("collect: summary hosts=11 failing_hosts=7 not_collected=1 ")
    assert "exit=1" in summary
    index = (latest / "index.html").read_text()
    assert "rdsh02.lab.test" in index and "rdp.service-stopped" in index
    page = (latest / "hosts" / "rdsh02.lab.test.html").read_text()
    assert "TermService not running on the session host" in page and "Start-Service -Name TermService" in page
    # Pages written while the run went on (from whole reports, summaries kept, some written again
    # at the end) are exactly what results.json renders to afresh.
    rendered = run_collect("render", str(latest / "results.json"), "--output", str(tmp_path / "again"))
    assert rendered.returncode == 0, rendered.stderr
    for written in [latest / "index.html", *sorted((latest / "hosts").iterdir())]:
        assert written.read_bytes() == (tmp_path / "again" / written.relative_to(latest)).read_bytes(), written.name
    # No secret anywhere in what was written or printed.
    for path in out.rglob("*"):
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace"), path
    assert PASSWORD not in result.stdout + result.stderr


def test_collect_single_host_and_render(fleet: LabFleet, lab_inventory: inventory.Inventory, tmp_path: Path) -> None:
    gw = targets_by_name(lab_inventory)["gw01.lab.test"]
    result = run_collect(
        "--host",
        gw.name,
        "--role",
        "gateway",
        "--address",
        "127.0.0.1",
        "--port",
        str(gw.port),
        "--transport",
        "https",
        "--auth",
        "ntlm",
        "--username",
        LAB_USER,
        "--password-env",
        "LABPW",
        "--ca-file",
        gw.ca_file,
        "--gateway-port",
        str(gw.gateway_port),
        "--output",
        str(tmp_path / "one"),
        "-q",
        env={"LABPW": PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --quiet: nothing on stdout
    results = tmp_path / "one" / "latest" / "results.json"
    data = json.loads(results.read_text())
    statuses = {c["id"]: c["status"] for c in data["hosts"][0]["checks"]}
    assert statuses["rdg.service-stopped"] == "pass" and statuses["rdg.cert-binding-mismatch"] == "pass"
    assert {i: s for i, s in statuses.items() if s != "pass"} == {"rdg.policy-denied": "warn"}

    rendered = run_collect("render", str(results), "--output", str(tmp_path / "again"))
    assert rendered.returncode == 0, rendered.stderr
    again = (tmp_path / "again" / "hosts" / "gw01.lab.test.html").read_text()
    assert "The gateway services are running" in again


def test_one_connection_from_the_command_line_is_collected_and_joined(
    lab_inventory: inventory.Inventory, tmp_path: Path
) -> None:
    """An incident responder aims at a client and names its gateway and session host: all three
    are collected (here the other two do not resolve, so they are unreachable, and the run goes on),
    and the client's connection is joined across them."""
    client = targets_by_name(lab_inventory)["client02.lab.test"]
    result = run_collect(
        *("--host", client.name, "--role", "client", "--address", "127.0.0.1", "--port", str(client.port)),
        *("--transport", client.transport, "--auth", client.auth, "--allow-ntlm"),
        *("--username", LAB_USER, "--password-env", "LABPW"),
        *("--gateway", "rdgw.invalid", "--session-host", "rdsh.invalid"),
        *("--output", str(tmp_path / "out"), "-q"),
        env={"LABPW": PASSWORD},
    )
    assert result.returncode == 1, result.stderr
    data = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    by_name = {h["facts"]["target"]["name"]: h for h in data["hosts"]}
    assert list(by_name) == ["client02.lab.test", "rdgw.invalid", "rdsh.invalid"]
    assert by_name["client02.lab.test"]["facts"]["problems"] == []
    for other in ("rdgw.invalid", "rdsh.invalid"):
        assert [p["kind"] for p in by_name[other]["facts"]["problems"]] == ["unreachable"]
    [joined] = data["paths"]
    assert (joined["client"], joined["gateway"], joined["session_host"]) == (
        "client02.lab.test",
        "rdgw.invalid",
        "rdsh.invalid",
    )
    assert sorted(p.name for p in (tmp_path / "out" / "latest" / "hosts").iterdir()) == [
        "client02.lab.test.html",
        "rdgw.invalid.html",
        "rdsh.invalid.html",
    ]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("hosts:\n  - name: a.example\n    roles: [client\n", 4, "not valid YAML"),
        (
            "hosts:\n  - name: a.example\n    roles: [client]\n    colour: blue\n",
            4,
            "hosts[0].colour: unknown key",
        ),
        (
            "hosts:\n  - {name: a.example, roles: [client]}\n  - {name: a.example, roles: [gateway]}\n",
            3,
            "duplicate host",
        ),
        (
            "defaults:\n  username: u\n  password: s3cr3t-value\nhosts:\n  - {name: a.example, roles: [client]}\n",
            3,
            "plain password is not accepted",
        ),
    ],
)
def test_inventory_errors_exit_2_with_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    result = run_collect("--inventory", str(path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{path}:{line}: " in result.stderr and words in result.stderr
    assert "Traceback" not in result.stderr and "s3cr3t-value" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "nothing to collect"),
        (("--host", "a.example"), "needs at least one --role"),
        (
            (
                "--host",
                "a.example",
                "--role",
                "gateway",
                "--auth",
                "basic",
                "--transport",
                "http",
                "--username",
                "u",
                "--password-env",
                "NOPE_UNSET",
            ),
            "readable on the wire",
        ),
        (
            ("--host", "a.example", "--role", "gateway", "--username", "u", "--password-env", "NOPE_UNSET"),
            "environment variable NOPE_UNSET",
        ),
        (("render", "/nonexistent/results.json"), "cannot read /nonexistent/results.json"),
        (("--role", "bogus"), "invalid choice"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    result = run_collect(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def test_host_clock_skew_is_measured_over_the_wire(tmp_path: Path) -> None:
    [healthy] = [h for h in load_scenario() if h.name == "rdsh01.lab.test"]
    skewed = dataclasses.replace(healthy, clock_skew_seconds=-420.0)
    with LabFleet([skewed], PASSWORD, tmp_path) as lab:
        inv = inventory.load(lab.write_inventory(tmp_path / "inventory.yaml"))
        [report] = runner.run_hosts(inv.targets, {skewed.name: Secret(PASSWORD)})
    skew = next(c for c in report.checks if c.id == "host.time-skew")
    assert skew.status is Status.FAIL
    assert skew.title == "Clock is 7 minutes off: Kerberos and NLA will fail"


def test_a_session_host_whose_network_profile_blocks_all_incoming_is_closed_and_says_why(tmp_path: Path) -> None:
    """The article's personal firewall: 'Block all incoming connections' on the profile of the
    host's network (taken for Public), the Remote Desktop rule enabled all the same."""
    [healthy] = [h for h in load_scenario() if h.name == "rdsh01.lab.test"]
    profiles = [
        {"name": name, "enabled": "True", "default_inbound_action": "Block", "allow_local_firewall_rules": "True"}
        for name in ("Domain", "Private", "Public")
    ]
    blocked = dataclasses.replace(
        healthy,
        facts={
            **healthy.facts,
            "rdp_config": {
                "network_categories": ["Public"],
                "firewall_profiles": [
                    {**p, "allow_inbound_rules": "False" if p["name"] == "Public" else "True"} for p in profiles
                ],
            },
        },
    )
    with LabFleet([blocked], PASSWORD, tmp_path) as lab:
        inv = inventory.load(lab.write_inventory(tmp_path / "inventory.yaml"))
        [report] = runner.run_hosts(inv.targets, {blocked.name: Secret(PASSWORD)})
    by_id = {c.id: c for c in report.checks}
    assert report.facts.probes["rdp_config"].errors == ()  # the probe output met its contract
    assert (by_id["rdp.firewall-closed"].status, by_id["rdp.firewall-closed"].title) == (
        Status.FAIL,
        "Windows Firewall blocks all incoming connections on the Public profile, whatever its rules allow",
    )
    assert by_id["net.tcp-blocked"].status is Status.FAIL  # and from the workstation, the port is closed
    assert by_id["rdp.not-listening"].status is Status.PASS  # TermService itself listens


def test_collect_lab_serves_until_sigterm(tmp_path: Path) -> None:
    inv_path = tmp_path / "lab-inventory.yaml"
    env = {**os.environ, PASSWORD_ENV: PASSWORD}
    lab = subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "lab", "--inventory-out", str(inv_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        ready = lab.stdout.readline()
        assert ready.startswith("lab ready: 11 hosts on 127.0.0.1; inventory ")
        # The other terminal needs the password variable too; its value is never printed.
        assert f"try, with ${PASSWORD_ENV} set as here: collect --inventory {inv_path}" in ready
        assert PASSWORD not in ready
        result = run_collect(
            "--inventory",
            str(inv_path),
            "--output",
            str(tmp_path / "out"),
            "-q",
            env={PASSWORD_ENV: PASSWORD},
        )
        assert result.returncode == 1, result.stderr
        assert "failing_hosts=7 not_collected=1" in result.stderr
    finally:
        lab.terminate()
        out, err = lab.communicate(timeout=20)
    assert lab.returncode == 0, err
    assert out.strip() == "lab stopped" and "Traceback" not in err


def test_collect_lab_without_password_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "collector.cli", "lab"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"set {PASSWORD_ENV}" in result.stderr and not list(tmp_path.iterdir())


def test_scenario_that_breaks_a_probe_schema_fails_at_start(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(
        "hosts:\n  - name: sh.lab.test\n    roles: [session_host]\n"
        "    facts:\n      rdp_config: {port_number: 'three thousand'}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.cli",
            "lab",
            "--scenario",
            str(scenario),
            "--inventory-out",
            str(tmp_path / "inv.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, PASSWORD_ENV: PASSWORD},
    )
    assert result.returncode == 2, result.stderr
    assert "host sh.lab.test: probe rdp_config: data.port_number:" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "inv.yaml").exists()
