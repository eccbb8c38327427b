"""The metrics textfile against node_exporter, the program that reads it in production (Debian
package ``prometheus-node-exporter``). A file it cannot parse is dropped whole, and the run's
metrics silently vanish from monitoring, so names that need escaping are used on purpose."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import metrics, report
from collector.model import CheckResult, HostReport, ProbeResult, Role, RunReport, Severity, Status
from tests.builders import facts, service

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]

SUBJECT = 'CN=rdgw "prod" \\ Ünïcode,\nO=Corp'  # a quote, a backslash, non-ASCII and a newline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """node_exporter with only its textfile collector, reading a folder of ours; (folder, URL)."""
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        pytest.fail("node_exporter is not installed; dev/test installs it (apt-get install prometheus-node-exporter)")
    folder = tmp_path / "textfile"
    folder.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={folder}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield folder, f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def scrape(url: str) -> str:
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our own loopback URL
                return answer.read().decode("utf-8")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def a_run() -> RunReport:
    f = facts((Role.GATEWAY,), [service("TSGateway")])
    cert = {"subject": SUBJECT, "not_after": "2026-03-02T00:00:30Z"}
    f = dataclasses.replace(
        f,
        target=dataclasses.replace(f.target, name="rdgw01.corp.example"),
        probes={**f.probes, "gateway": ProbeResult("gateway", 1, {"certificate": cert})},
        duration_s=2.5,
    )
    checks = (
        CheckResult("rdg.cert-binding-mismatch", Status.FAIL, Severity.CRITICAL, "t", "rdgw01.corp.example"),
        CheckResult("host.time-skew", Status.PASS, Severity.CRITICAL, "t", "rdgw01.corp.example"),
    )
    hosts = (HostReport(facts=f, checks=checks),)
    return RunReport("r1", "2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z", "0.1.0", "ws", "inv.yaml", hosts)


def test_node_exporter_reads_every_metric_of_the_file_the_run_writes(node_exporter: tuple[Path, str]) -> None:
    folder, url = node_exporter
    report.atomic_write(folder / "rdp_collector.prom", metrics.render(a_run()))  # as `collect --metrics` does
    exposed = scrape(url)
    assert "\nnode_textfile_scrape_error 0\n" in exposed
    ours = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in exposed.splitlines() if line.startswith("rdp_")}
    assert ours['rdp_collector_checks{severity="critical",status="fail"}'] == "1"
    assert ours['rdp_collector_checks{severity="critical",status="pass"}'] == "1"
    assert ours['rdp_collector_host_problems{host="rdgw01.corp.example"}'] == "1"
    assert ours['rdp_collector_host_collected{host="rdgw01.corp.example"}'] == "1"
    assert ours['rdp_collector_collection_duration_seconds{host="rdgw01.corp.example"}'] == "2.5"
    # The subject came through whole: node_exporter escapes it back the way the file did.
    subject = SUBJECT.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    expiry = f'rdp_collector_certificate_expiry_days{{host="rdgw01.corp.example",subject="{subject}",where="gateway"}}'
    assert ours[expiry] == "60"
    assert ours["rdp_collector_run_duration_seconds"] == "30"
    assert float(ours["rdp_collector_last_run_timestamp_seconds"]) == 1767225630


def test_node_exporter_ignores_a_file_not_named_prom(node_exporter: tuple[Path, str]) -> None:
    """Why `collect --metrics` warns about such a name before the run."""
    folder, url = node_exporter
    report.atomic_write(folder / "rdp_collector.txt", metrics.render(a_run()))
    assert metrics.name_problem(folder / "rdp_collector.txt") is not None
    exposed = scrape(url)
    assert "\nnode_textfile_scrape_error 0\n" in exposed
    assert not any(line.startswith("rdp_collector_") for line in exposed.splitlines())
