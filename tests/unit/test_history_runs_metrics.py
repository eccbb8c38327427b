"""Night-to-night: what changed since the previous run, retention, and the metrics textfile."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from collector import history, metrics, report, runs
from collector.model import CheckResult, HostReport, ProbeResult, Role, RunReport, Severity, Status
from tests.builders import facts, service


def host(name: str, *failing: str, passing: tuple[str, ...] = ()) -> HostReport:
    f = facts((Role.SESSION_HOST,), [service("TermService")])
    f = dataclasses.replace(f, target=dataclasses.replace(f.target, name=name))
    checks = [CheckResult(i, Status.FAIL, Severity.CRITICAL, "t", name) for i in failing]
    checks += [CheckResult(i, Status.PASS, Severity.CRITICAL, "t", name) for i in passing]
    return HostReport(facts=f, checks=tuple(checks))


def run(run_id: str, *hosts: HostReport) -> RunReport:
    return RunReport(run_id, "2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z", "0.1.0", "ws", "inv.yaml", hosts)


def test_compare_new_resolved_still_failing_and_membership() -> None:
    before = run("r1", host("a", "rdp.disabled", "host.time-skew"), host("gone", "rdp.disabled"))
    after = run("r2", host("a", "rdp.disabled", "rdp.firewall-closed", passing=("host.time-skew",)), host("b"))
    changes = history.compare(before, after)
    a = changes.for_host("a")
    assert (a.new, a.resolved, a.still_failing) == (("rdp.firewall-closed",), ("host.time-skew",), ("rdp.disabled",))
    assert changes.hosts_added == ("b",) and changes.hosts_removed == ("gone",)
    assert changes.totals() == {"new": 1, "resolved": 1, "still_failing": 1}
    assert changes.previous_run_id == "r1"


def test_a_host_changes_are_known_from_the_baseline_alone_as_it_finishes() -> None:
    baseline = history.Baseline.of(run("r1", host("A.corp", "rdp.disabled", "host.time-skew")))
    changed = history.host_changes(baseline, host("a.CORP", "rdp.disabled", "rdp.firewall-closed"))
    assert (changed.host, changed.new, changed.resolved, changed.still_failing) == (
        "a.CORP",
        ("rdp.firewall-closed",),
        ("host.time-skew",),
        ("rdp.disabled",),
    )
    assert history.host_changes(baseline, host("new.corp", "rdp.disabled")).new == ("rdp.disabled",)
    # The whole-run comparison agrees, and keeps the previous run's spelling of a removed host.
    changes = history.compare(baseline, run("r2", host("b")))
    assert changes.hosts_removed == ("A.corp",) and changes.hosts_added == ("b",)


def test_endpoint_is_part_of_a_problem() -> None:
    mk = lambda ep: CheckResult("cert.expired", Status.FAIL, Severity.CRITICAL, "t", "a", endpoint=ep)  # noqa: E731
    before = run("r1", dataclasses.replace(host("a"), checks=(mk("a:443"),)))
    after = run("r2", dataclasses.replace(host("a"), checks=(mk("a:3389"),)))
    a = history.compare(before, after).for_host("a")
    assert a.new == ("cert.expired @ a:3389",) and a.resolved == ("cert.expired @ a:443",)


def publish(output: Path, r: RunReport, run_id: str) -> Path:
    writer = report.RunWriter(output, run_id)
    return writer.finish(dataclasses.replace(r, run_id=writer.run_id))


def test_previous_baseline_is_the_run_latest_names_read_back_from_results(tmp_path: Path) -> None:
    assert runs.previous_baseline(tmp_path) == (None, "no previous run")
    endpoint = CheckResult("cert.expired", Status.FAIL, Severity.CRITICAL, "t", "b", endpoint="b:3389")
    warned = CheckResult("host.time-skew", Status.WARN, Severity.WARNING, "t", "b")
    b = dataclasses.replace(host("b", "rdp.disabled"), checks=(*host("b", "rdp.disabled").checks, endpoint, warned))
    published = run("x", host("a", "rdp.disabled", passing=("host.time-skew",)), b)
    publish(tmp_path, published, "20260101T000000Z")
    baseline, why = runs.previous_baseline(tmp_path)
    assert why == "" and baseline.run_id == "20260101T000000Z"
    # The same problems as the run had in memory, read without rebuilding the run.
    assert baseline.problems == history.Baseline.of(published).problems
    assert baseline.problems["b"] == {"rdp.disabled", "cert.expired @ b:3389", "host.time-skew"}
    (tmp_path / "20260101T000000Z" / "results.json").write_text("{broken")
    baseline, why = runs.previous_baseline(tmp_path)
    assert baseline is None and "cannot be compared" in why
    (tmp_path / "20260101T000000Z" / "results.json").write_text('{"schema_version": 99, "run_id": "x", "hosts": []}')
    assert "schema version 99" in runs.previous_baseline(tmp_path)[1]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("null", "it holds a JSON null, not an object"),
        ('{"schema_version": 1, "run_id": "x", "hosts": {}}', "its run_id or its host records are not"),
        ('{"schema_version": 1, "run_id": "x", "hosts": [7]}', "its run_id or its host records are not"),
        (
            '{"schema_version": 1, "run_id": "x", "hosts": [{"facts": {"target": {}}, "checks": []}]}',
            "a host record is damaged (KeyError: 'name')",
        ),
        (
            '{"schema_version": 1, "run_id": "x", "hosts": [{"facts": {"target": {"name": "a"}}, "checks": [null]}]}',
            "a host record is damaged (TypeError",
        ),
        ("[" * 100_000 + "]" * 100_000, "its results.json nests too deeply"),
    ],
    ids=["null", "hosts not a list", "host not a record", "no name", "check not a record", "nested"],
)
def test_a_damaged_previous_run_is_not_compared_and_the_run_goes_on(tmp_path: Path, content: str, words: str) -> None:
    """The nightly run reads the previous results.json before it starts; a damaged one costs the
    comparison (a warning says why), never the run."""
    publish(tmp_path, run("x", host("a", "rdp.disabled")), "20260101T000000Z")
    (tmp_path / "20260101T000000Z" / "results.json").write_text(content)
    baseline, why = runs.previous_baseline(tmp_path)
    assert baseline is None
    assert why.startswith("previous run 20260101T000000Z cannot be compared: ") and words in why, why


def test_prune_keeps_newest_and_never_the_latest(tmp_path: Path) -> None:
    for i in range(5):
        publish(tmp_path, run("x", host("a")), f"2026010{i + 1}T000000Z")
    (tmp_path / "notes").mkdir()  # not a run folder: never touched
    # Point latest at an old run, as after a restore: it must survive pruning.
    os.replace(tmp_path / "latest", tmp_path / "old-latest")
    os.symlink("20260102T000000Z", tmp_path / "latest")
    removed = runs.prune(tmp_path, keep=2)
    assert removed == ["20260101T000000Z", "20260103T000000Z"]
    remaining = sorted(p.name for p in tmp_path.iterdir() if runs.RUN_NAME.match(p.name))
    assert remaining == ["20260102T000000Z", "20260104T000000Z", "20260105T000000Z"]
    assert (tmp_path / "notes").is_dir()
    with pytest.raises(ValueError, match="at least 1"):
        runs.prune(tmp_path, keep=0)


def test_metrics_text(tmp_path: Path) -> None:
    a = host("a.corp.example", "rdp.disabled", passing=("host.time-skew",))
    cert = {"subject": 'CN=gw "one"', "not_after": "2026-01-31T00:00:30Z"}
    a = dataclasses.replace(
        a,
        facts=dataclasses.replace(
            a.facts,
            probes={**a.facts.probes, "gateway": ProbeResult("gateway", 1, {"certificate": cert})},
            duration_s=1.25,
        ),
    )
    text = metrics.render(run("r", a))
    assert 'rdp_collector_checks{status="fail",severity="critical"} 1' in text
    assert 'rdp_collector_checks{status="pass",severity="critical"} 1' in text
    assert 'rdp_collector_host_problems{host="a.corp.example"} 1' in text
    assert 'rdp_collector_collection_duration_seconds{host="a.corp.example"} 1.250' in text
    assert (
        'rdp_collector_certificate_expiry_days{host="a.corp.example",where="gateway",subject="CN=gw \\"one\\""} 30.0'
        in text
    )
    assert "rdp_collector_run_duration_seconds 30.000" in text
    assert text.endswith("\n") and all(line.startswith(("#", "rdp_collector_")) for line in text.splitlines())


def test_a_metrics_file_node_exporter_would_never_read_is_named_before_the_run() -> None:
    assert metrics.name_problem(Path("/var/lib/prometheus/node-exporter/rdp_collector.prom")) is None
    problem = metrics.name_problem(Path("/var/lib/prometheus/node-exporter/rdp_collector.txt"))
    assert problem == "node_exporter's textfile collector reads only files whose names end in .prom"
