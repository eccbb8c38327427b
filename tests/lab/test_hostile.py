"""A hostile host cannot hurt the run: every answer is untrusted input.

One fleet mixes a host for every hostile mode of the lab (collector.lab.hostile) with healthy
hosts and is collected through the command line, as a scheduler would run it. Per hostile host:
the right ``collect.*`` result with the reason in words (or, where the host's lie is harmless
once escaped, a complete collection). For the run: every healthy host complete, the run folder,
index, results.json, metrics and summary line written, the exit code as documented, the
collector's memory under a ceiling, nothing raw on the terminal, and no credential material at a
server that should not have any.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from collector.lab import hostile
from collector.lab.fleet import PASSWORD_ENV, LabFleet, ScenarioHost, load_scenario

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

PASSWORD = "hostile-Pa55word"
HEALTHY = ("rdsh01.lab.test", "gw01.lab.test", "client01.lab.test")
MEMORY_CEILING_MB = 400  # about 100 MB for a run like this; a gzip bomb or a parsed flood is GBs


@dataclass(frozen=True)
class Expected:
    kind: str  # the collect.* result, "" for a host that must be collected whole
    probe: str  # the probe it concerns, "" for the session
    pattern: str  # what the reason must say


EXPECTED: dict[str, Expected] = {
    "dtd-bomb": Expected(
        "bad-output", "", r"^127\.0\.0\.1:\d+ sent XML with a document type declaration \(<!DOCTYPE s:Envelope>\)"
    ),
    "attribute-flood": Expected(
        "bad-output", "", r"announced a reply of 2,2\d\d,\d{3} bytes; a WS-Management reply is at most 1,048,576"
    ),
    "chunked-flood": Expected("bad-output", "", r"sent a reply larger than the 1,048,576 bytes .*reading stopped"),
    "gzip-bomb": Expected("bad-output", "", r"sent a reply compressed with Content-Encoding 'gzip' .*refused unread"),
    "redirect": Expected(
        "bad-output", "", r"answered HTTP 307, a redirect to http://127\.0\.0\.1:\d+/wsman/elsewhere: WinRM never"
    ),
    "ntlm-only": Expected("auth-failed", "", r"offers only NTLM, and NTLM is off for ntlmonly\.lab\.test"),
    "unsealed": Expected("bad-output", "", r"answered an encrypted \(sealed\) request in clear text"),
    "huge-integer": Expected("bad-output", "host", r"^probe host: output is not a probe's JSON \(Exceeds the limit"),
    "deep-json": Expected("bad-output", "services", r"^probe services: output nests too deeply"),
    "control-chars": Expected("", "", ""),
    "bad-certificate": Expected("", "", ""),
    "lone-surrogate": Expected("", "", ""),
}


def hostile_name(mode: str) -> str:
    return f"{mode.replace('-', '')}.lab.test"


def hostile_host(mode: str) -> ScenarioHost:
    # NTLM over HTTP (sealed) for all but the streamed flood, which goes out in clear text and so
    # meets Basic: sealed, "not sealed" would be the first thing wrong with it.
    auth = "basic" if mode == "chunked-flood" else "negotiate"
    return ScenarioHost(name=hostile_name(mode), roles=("session_host",), hostile=mode, auth=auth)


def test_every_hostile_mode_is_in_the_fleet() -> None:
    assert set(EXPECTED) == hostile.HOSTILE


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    output: Path
    maxrss_mb: float
    results: dict
    fleet: LabFleet


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("hostile")
    healthy = [h for h in load_scenario() if h.name in HEALTHY]
    # The rogue acceptor's positive control: told NTLM is allowed, the collector does answer it.
    control = ScenarioHost(name="ntlmallowed.lab.test", roles=("session_host",), hostile="ntlm-only")
    # The malformed listener certificate needs a listener: a session host whose TermService runs.
    [rdsh01] = [h for h in healthy if h.name == "rdsh01.lab.test"]
    listener = dataclasses.replace(rdsh01, name=hostile_name("bad-certificate"), hostile="bad-certificate")
    hosts = [*healthy, *(hostile_host(m) for m in EXPECTED if m != "bad-certificate"), listener, control]
    with LabFleet(hosts, PASSWORD, tmp / "lab") as fleet:
        document = fleet.inventory_document()
        for entry in document["hosts"]:
            if entry["name"] == hostile_name("ntlm-only"):
                del entry["allow_ntlm"]  # the default over http: Negotiate without its NTLM fallback
        inventory = tmp / "inventory.yaml"
        inventory.write_text(yaml.safe_dump(document, sort_keys=False))
        output, rss = tmp / "out", tmp / "maxrss"
        # The collector's own high-water mark, read in its process (a child's ru_maxrss seen from
        # here would be the largest of every child this test session ever waited for).
        wrapper = (
            "import resource, sys\n"
            "from collector.cli import main\n"
            "code = main(sys.argv[2:])\n"
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
            "sys.exit(code)\n"
        )
        args = ["--inventory", str(inventory), "--output", str(output), "-q", "--metrics", str(tmp / "run.prom")]
        result = subprocess.run(
            [sys.executable, "-c", wrapper, str(rss), *args],
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=150,
            env={**os.environ, PASSWORD_ENV: PASSWORD},
        )
        results = json.loads((output / "latest" / "results.json").read_text(encoding="utf-8"))
        yield Run(
            result.returncode,
            result.stdout,
            result.stderr,
            output,
            int(rss.read_text()) / 1024,
            results,
            fleet,
        )


def host_record(run: Run, name: str) -> dict:
    return next(h for h in run.results["hosts"] if h["facts"]["target"]["name"] == name)


def test_the_run_is_written_whole_and_keeps_its_contract(run: Run) -> None:
    assert run.code == 1, run.stderr  # collection failures are critical problems
    lines = run.stderr.splitlines()
    summary = lines[-1]
    assert summary.startswith("collect: summary hosts=16 ") and " exit=1 run=" in summary, summary
    assert [line for line in lines if line.startswith("collect: summary")] == [summary]
    folder = (run.output / "latest").resolve()
    assert summary.endswith(f"run={folder}")
    assert (folder / "index.html").is_file() and (folder / "results.json").is_file()
    assert len(list((folder / "hosts").glob("*.html"))) == 16
    assert not list(run.output.glob(".*.partial"))
    metrics = (run.output.parent / "run.prom").read_text(encoding="utf-8")
    assert 'rdp_collector_host_collected{host="rdsh01.lab.test"} 1\n' in metrics
    assert 'rdp_collector_host_collected{host="dtdbomb.lab.test"} 0\n' in metrics
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert run.maxrss_mb < MEMORY_CEILING_MB, run.maxrss_mb


def test_healthy_hosts_are_complete(run: Run) -> None:
    for name in HEALTHY:
        facts = host_record(run, name)["facts"]
        assert facts["problems"] == [], (name, facts["problems"])
        assert set(facts["probes"]) == set(facts["planned"]), name


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_each_hostile_host_gets_the_right_result(run: Run, mode: str) -> None:
    record = host_record(run, hostile_name(mode))
    expected = EXPECTED[mode]
    problems = record["facts"]["problems"]
    collect_checks = [c for c in record["checks"] if c["id"].startswith("collect.")]
    if not expected.kind:
        assert problems == [] and collect_checks == [], problems
        assert set(record["facts"]["probes"]) == set(record["facts"]["planned"])
        return
    assert [(p["kind"], p["probe"]) for p in problems] == [(expected.kind, expected.probe)], problems
    assert re.search(expected.pattern, problems[0]["reason"]), problems[0]["reason"]
    assert [c["id"] for c in collect_checks] == [f"collect.{expected.kind}"]
    if expected.probe:  # one probe refused; the rest of the host was collected
        assert set(record["facts"]["probes"]) == set(record["facts"]["planned"]) - {expected.probe}


def test_nothing_a_host_wrote_reaches_the_terminal_raw(run: Run) -> None:
    for char in ("\x1b", "\x07", "\x9b", "\r", "\ud800"):
        assert char not in run.stderr + run.stdout, repr(char)


def test_host_strings_are_kept_as_data_and_escaped_in_the_page(run: Run) -> None:
    caption = host_record(run, hostile_name("lone-surrogate"))["facts"]["probes"]["host"]["data"]["os_caption"]
    assert caption == "Windows \ufffd Server"  # an unpaired surrogate is no character: replaced, as UTF-16 does
    record = host_record(run, hostile_name("control-chars"))
    assert record["facts"]["probes"]["host"]["data"]["os_caption"].endswith(hostile.TERMINAL_ATTACK)
    folder = (run.output / "latest").resolve()
    page = (folder / "hosts" / f"{hostile_name('control-chars')}.html").read_text(encoding="utf-8")
    assert hostile.HTML_ATTACK not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_no_credential_reached_a_server_that_should_have_none(run: Run) -> None:
    fleet = run.fleet
    assert fleet.trap is not None and fleet.trap.requests == 0  # the redirect was not followed
    assert fleet.servers[hostile_name("ntlm-only")].ntlm_messages == []  # not even an NTLM NEGOTIATE
    # The control: told that NTLM is allowed, the collector completes NTLM with the same rogue.
    assert fleet.servers["ntlmallowed.lab.test"].ntlm_messages == [1, 3]
    for path in run.output.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_a_certificate_nobody_can_parse_is_a_judgement_not_a_crash(run: Run) -> None:
    record = host_record(run, hostile_name("bad-certificate"))
    unknown = [c for c in record["checks"] if c["id"].startswith("cert.") and c["status"] == "unknown"]
    assert unknown, [c["id"] for c in record["checks"]]
    said = " ".join(e["value"] for c in unknown for e in c["evidence"])
    assert "invalid X.509 version 5" in said
    # Both vantage points met it: the host's own report and the workstation's TLS probe of its RDP port.
    assert {e["vantage"].split()[0] for c in unknown for e in c["evidence"]} >= {"workstation"}
    assert record["facts"]["endpoints"], "the workstation's endpoint results were kept"
