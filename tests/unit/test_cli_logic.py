"""Exit codes, --fail-on, the results.json round trip and the run folder's atomic publication."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector import cli, exits, pipeline, report
from collector.model import (
    CheckResult,
    Evidence,
    HostReport,
    Role,
    RunReport,
    Severity,
    Status,
    run_from_dict,
    to_dict,
)
from tests.builders import facts, service


def host(status: Status, severity: Severity) -> HostReport:
    check = CheckResult("x.y", status, severity, "t", "h1.corp.example")
    return HostReport(facts=facts((Role.SESSION_HOST,), [service("TermService")]), checks=(check,))


@pytest.mark.parametrize(
    ("status", "severity", "fail_on", "code"),
    [
        (Status.FAIL, Severity.CRITICAL, Severity.CRITICAL, 1),
        (Status.FAIL, Severity.WARNING, Severity.CRITICAL, 0),
        (Status.FAIL, Severity.WARNING, Severity.WARNING, 1),
        (Status.WARN, Severity.CRITICAL, Severity.CRITICAL, 0),  # a warn never counts as critical
        (Status.WARN, Severity.CRITICAL, Severity.WARNING, 1),
        (Status.FAIL, Severity.INFO, Severity.INFO, 1),
        (Status.UNKNOWN, Severity.CRITICAL, Severity.INFO, 0),
        (Status.PASS, Severity.CRITICAL, Severity.INFO, 0),
    ],
)
def test_exit_code_follows_fail_on(status: Status, severity: Severity, fail_on: Severity, code: int) -> None:
    assert exits.exit_code(host(status, severity).checks, fail_on) == code


def sample_run() -> RunReport:
    check = CheckResult(
        "rdp.service-stopped",
        Status.FAIL,
        Severity.CRITICAL,
        "TermService not running",
        "h1.corp.example",
        (Evidence("TermService", "Stopped", "h1 (WinRM)"),),
        "Start it",
        ("ref",),
    )
    h = HostReport(facts=facts((Role.SESSION_HOST,), [service("TermService", "Stopped")]), checks=(check,))
    return RunReport(
        "20260101T000000Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", "0.1.0", "ws", "inv.yaml", (h,)
    )


def test_results_json_round_trips() -> None:
    run = sample_run()
    data = json.loads(report.results_json(run))
    assert data["schema_version"] == 1
    assert data["hosts"][0]["checks"][0]["status"] == "fail"
    assert run_from_dict(data) == run
    assert to_dict(run_from_dict(data)) == data


def test_unknown_schema_version_is_refused() -> None:
    data = to_dict(sample_run())
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="schema version 99"):
        run_from_dict(data)


def _broken(change) -> object:
    data = json.loads(report.results_json(sample_run()))
    return change(data) or data


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("null", "it holds a JSON null, not an object"),
        ("{not json", "is not JSON: Expecting property name"),
        ("[" * 100_000 + "]" * 100_000, "is not a results.json: it nests too deeply"),
        (_broken(lambda d: d.update(schema_version=99)), "results schema version 99 is not supported"),
        (_broken(lambda d: d["hosts"].append(None)), "hosts.1: Input should be a dictionary"),
        (_broken(lambda d: d["hosts"][0]["checks"][0].update(status="great")), "hosts.0.checks.0.status: Input"),
        (
            _broken(lambda d: d["hosts"][0]["facts"]["probes"]["services"].update(data={"services": 7})),
            "hosts.0.facts.probes.services: probe services: data.services: Input should be a valid list",
        ),
    ],
    ids=["null", "not JSON", "nested", "version", "host shape", "check status", "probe contract"],
)
def test_render_refuses_a_results_json_it_cannot_read_with_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object, words: str
) -> None:
    """A results.json of unknown origin is checked before anything is rendered from it: the
    model's shape, then each probe's data against its contract; exit 2 naming file and field."""
    results = tmp_path / "results.json"
    results.write_text(document if isinstance(document, str) else json.dumps(document))
    assert cli.main(["render", str(results), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"collect: {results} ") and words in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_run_folder_is_published_atomically_and_latest_moves_last(tmp_path: Path) -> None:
    run = sample_run()
    first = report.RunWriter(tmp_path, "20260101T000000Z")
    first.write_host(run.hosts[0], run)
    assert not (tmp_path / "20260101T000000Z").exists()  # invisible until finished
    assert not (tmp_path / "latest").exists()
    folder = first.finish(run)
    assert (tmp_path / "latest").resolve() == folder.resolve()
    assert sorted(p.name for p in folder.rglob("*")) == [
        "h1.corp.example.html",
        "hosts",
        "index.html",
        "results.json",
    ]

    # A second run interrupted half way leaves 'latest' on the first one and no visible folder.
    second = report.RunWriter(tmp_path, "20260101T000000Z")
    assert second.run_id == "20260101T000000Z-2"
    second.write_host(run.hosts[0], run)
    assert (tmp_path / "latest").resolve() == folder.resolve()
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == ["20260101T000000Z", "latest"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_pages_written_in_the_background_are_all_there_at_finish(tmp_path: Path) -> None:
    run = sample_run()
    writer = report.RunWriter(tmp_path, "20260101T000000Z")
    writer.write_host_soon(run.hosts[0], run)
    folder = writer.finish(run)
    assert (folder / "hosts" / "h1.corp.example.html").read_text("utf-8").startswith("<!doctype html>")
    assert json.loads((folder / "results.json").read_text("utf-8"))["hosts"][0]["facts"]["target"]["name"] == (
        "h1.corp.example"
    )
    assert not (folder / report.RunWriter.RECORDS).exists()  # the records became results.json


def test_a_page_that_cannot_be_written_fails_the_finish_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sample_run()
    writer = report.RunWriter(tmp_path, "20260101T000000Z")

    def disk_full(path: Path, content: object, *, durable: bool = False) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "atomic_write", disk_full)
    writer.write_host_soon(run.hosts[0], run)  # returns at once; the error waits for finish
    with pytest.raises(OSError, match="No space left"):
        writer.finish(run)
    assert not (tmp_path / "latest").exists()  # nothing was published


def test_host_page_escapes_host_data(tmp_path: Path) -> None:
    run = sample_run()
    hostile = CheckResult(
        "rdp.service-stopped",
        Status.FAIL,
        Severity.CRITICAL,
        "<script>alert(1)</script>",
        "h1.corp.example",
        (Evidence('"><img src=x onerror=alert(1)>', "<b>x</b>", "v"),),
    )
    page = report.render_host(HostReport(facts=run.hosts[0].facts, checks=(hostile,)), run)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "<b>x</b>" not in page


def test_problems_first_ordering() -> None:
    mk = lambda s, sev, i: CheckResult(i, s, sev, "t", "h")  # noqa: E731
    ordered = report.sorted_checks(
        [
            mk(Status.PASS, Severity.CRITICAL, "a"),
            mk(Status.UNKNOWN, Severity.INFO, "b"),
            mk(Status.FAIL, Severity.WARNING, "c"),
            mk(Status.FAIL, Severity.CRITICAL, "d"),
            mk(Status.WARN, Severity.CRITICAL, "e"),
        ]
    )
    assert [c.id for c in ordered] == ["d", "c", "e", "b", "a"]


class _Terminal:
    """A stream that claims to be a terminal, capturing what is written."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.parts = tty, []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_display_one_line_per_host_in_logs_and_nothing_when_quiet() -> None:
    failing = host(Status.FAIL, Severity.CRITICAL)
    log = _Terminal(tty=False)
    display = cli._Display(1, quiet=False, stream=log)
    display.host_done(failing)
    display.close()
    assert "".join(log.parts) == "h1.corp.example: fail (x.y)\n"
    quiet = _Terminal(tty=False)
    cli._Display(1, quiet=True, stream=quiet).host_done(failing)
    assert quiet.parts == []


def test_display_on_a_terminal_uses_a_progress_bar() -> None:
    term = _Terminal(tty=True)
    display = cli._Display(2, quiet=False, stream=term)
    assert display.live is not None
    display.host_done(host(Status.PASS, Severity.CRITICAL))
    display.close()
    display.close()  # closing twice is harmless
    assert "h1.corp.example: pass" in "".join(term.parts)


def test_causes_come_before_symptoms_among_equals() -> None:
    mk = lambda i: CheckResult(i, Status.FAIL, Severity.CRITICAL, "t", "h")  # noqa: E731
    ordered = report.sorted_checks([mk("rdp.not-listening"), mk("rdp.service-stopped"), mk("collect.timeout")])
    assert [c.id for c in ordered] == ["collect.timeout", "rdp.service-stopped", "rdp.not-listening"]


@pytest.mark.parametrize(("text", "hours"), [("24h", 24), ("24", 24), ("90m", 2), ("7d", 168), (" 3D ", 72)])
def test_since_window(text: str, hours: int) -> None:
    assert cli._hours(text) == hours


@pytest.mark.parametrize("text", ["0h", "40d", "soon", "-3h"])
def test_since_window_refused(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        cli._hours(text)


def test_since_reaches_the_events_probe() -> None:
    from collector.runner import RunOptions, plan

    target = facts((Role.CLIENT,), None).target
    events = next(c for c in plan(target, RunOptions(since_hours=72)) if c.probe == "events")
    assert events.parameters["SinceHours"] == 72


def test_display_revised_line_after_cross_host_checks() -> None:
    log = _Terminal(tty=False)
    cli._Display(1, quiet=False, stream=log).host_done(host(Status.FAIL, Severity.CRITICAL), revised=True)
    assert "".join(log.parts) == "h1.corp.example: fail (x.y) [after cross-host checks]\n"


def test_a_cross_host_judgement_that_fails_costs_its_results_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cross-host checks and connection paths run once every host is in: an exception there
    (facts no one foresaw) must not leave a finished collection unpublished."""
    from collector import inventory
    from collector.model import HostFacts

    inv = inventory.parse("hosts:\n  - name: a.example\n    roles: [session_host]\n", "inv.yaml")

    def collected(targets, passwords, *, on_host_done, **_):
        report = HostReport(
            HostFacts(target=targets[0]), (CheckResult("x.y", Status.PASS, Severity.CRITICAL, "t", "a.example"),)
        )
        return [on_host_done(report) or report]

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "run_hosts", collected)
    monkeypatch.setattr(pipeline.fleet_checks, "evaluate_fleet", broken)
    monkeypatch.setattr(pipeline.incident, "incident_paths", broken)
    code = cli.run_collection(inv, output=tmp_path, concurrency=1, fail_on=Severity.CRITICAL, quiet=True, environ={})
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: the cross-host checks failed (RuntimeError: boom); this run has none" in err
    assert "warning: the connection paths could not be joined (RuntimeError: boom); this run has none" in err
    published = json.loads((tmp_path / "latest" / "results.json").read_text())
    assert [h["facts"]["target"]["name"] for h in published["hosts"]] == ["a.example"]


def test_a_reader_that_stops_reading_ends_the_command_quietly() -> None:
    """`collect rules | head -2`: the pipe closes before the catalogue is written; no traceback."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "rules"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # no reader left: the first write fails
    errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert errors == ""


def test_a_word_that_is_no_command_is_named_with_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rendr", "results.json"]) == 2
    assert capsys.readouterr().err == (
        "collect: no command is called 'rendr' "
        "(commands: check-rdp, check-tls, demo, explain, lab, render, rules; collect --help)\n"
    )


def test_one_connection_from_the_command_line_is_client_gateway_and_session_hosts() -> None:
    """--host for a client, with the gateway and session hosts it uses: each is collected with the
    same account, transport and CA; --address and --port are the client's own; a gateway that is
    also a session host is one host with both roles."""
    args = cli._run_parser().parse_args(
        [
            *("--host", "ws01.corp.example", "--role", "client", "--address", "10.0.0.9", "--port", "5999"),
            *("--gateway", "rdgw01.corp.example", "--session-host", "rdsh01.corp.example"),
            *("--session-host", "rdgw01.corp.example", "--session-host", "rdsh01.corp.example"),
            *("--transport", "http", "--auth", "ntlm", "--username", "CORP\\admin", "--password-env", "PW"),
        ]
    )
    inv = cli._single_host_inventory(args)
    shape = [(t.name, t.address, t.port, [r.value for r in t.roles], t.gateway, t.session_hosts) for t in inv.targets]
    assert shape == [
        (
            "ws01.corp.example",
            "10.0.0.9",
            5999,
            ["client"],
            "rdgw01.corp.example",
            ("rdsh01.corp.example", "rdgw01.corp.example"),
        ),
        (
            "rdgw01.corp.example",
            "rdgw01.corp.example",
            5985,
            ["gateway", "session_host"],
            "",
            ("rdsh01.corp.example", "rdgw01.corp.example"),
        ),
        ("rdsh01.corp.example", "rdsh01.corp.example", 5985, ["session_host"], "", ()),
    ]
    assert {(t.transport, t.auth, t.username) for t in inv.targets} == {("http", "ntlm", "CORP\\admin")}
    assert {(c.source, c.name) for c in inv.credentials.values()} == {("env", "PW")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--role", "gateway", "--session-host", "rdsh01.corp.example"],
            "--gateway and --session-host name a client's connection: use them with --role client",
        ),
        (
            ["--role", "client", "--gateway", "WS01.corp.example"],
            "WS01.corp.example is --host itself; --gateway and --session-host name the other hosts",
        ),
    ],
)
def test_a_connection_named_wrongly_is_a_usage_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--host", "ws01.corp.example", *args]) == 2
    assert capsys.readouterr().err == f"collect: {message}\n"
