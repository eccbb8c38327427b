"""Unattended runs against the lab: changes since the last run, retention, metrics, and a run
stopped by the scheduler (SIGTERM) leaving the previous report as it was."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from collector.lab.fleet import PASSWORD_ENV, LabFleet, load_scenario

pytestmark = pytest.mark.lab
PASSWORD = "nightly-Pa55word"


def collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, PASSWORD_ENV: PASSWORD},
    )


def test_second_run_reports_changes_prunes_and_writes_metrics(tmp_path: Path) -> None:
    hosts = [h for h in load_scenario() if h.name in ("rdsh01.lab.test", "rdsh06.lab.test")]
    out, prom = tmp_path / "out", tmp_path / "metrics" / "rdp.prom"
    with LabFleet(hosts, PASSWORD, tmp_path / "lab") as lab:
        inv = lab.write_inventory(tmp_path / "inventory.yaml")
        misnamed = tmp_path / "rdp.txt"
        first = collect("--inventory", str(inv), "--output", str(out), "-q", "--metrics", str(misnamed))
        assert first.returncode == 1, first.stderr
        assert " new=" not in first.stderr  # nothing to compare with yet
        # A name node_exporter would never read is said at the start; the run and the file go on.
        assert first.stderr.startswith(f"collect: warning: --metrics {misnamed}: node_exporter's textfile")
        assert "rdp_collector_checks" in misnamed.read_text()
        lab.servers["rdsh01.lab.test"].stop()  # rdsh01 goes down overnight
        second = collect("--inventory", str(inv), "--output", str(out), "-q", "--keep", "1", "--metrics", str(prom))
    assert second.returncode == 1, second.stderr
    summary = second.stderr.strip().splitlines()[-1]
    assert " new=1 resolved=0 still_failing=2 " in summary
    results = json.loads((out / "latest" / "results.json").read_text())
    changes = {h["host"]: h for h in results["changes"]["hosts"]}
    assert changes["rdsh01.lab.test"]["new"] == ["collect.unreachable"]
    still = changes["rdsh06.lab.test"]["still_failing"]
    assert still[0].startswith("net.tcp-blocked @ rdsh06.lab.test:") and still[1:] == ["rdp.firewall-closed"]
    runs = [p.name for p in out.iterdir() if not p.name.startswith(".") and p.name != "latest"]
    assert runs == [(out / "latest").resolve().name]  # --keep 1 pruned the first run
    assert "--metrics" not in second.stderr  # a .prom name: no warning
    text = prom.read_text()
    assert 'rdp_collector_host_collected{host="rdsh01.lab.test"} 0' in text
    assert 'rdp_collector_certificate_expiry_days{host="rdsh06.lab.test",where="rdp-listener"' in text


def test_sigterm_mid_run_keeps_latest_and_leaves_no_visible_partial(tmp_path: Path) -> None:
    [healthy] = [h for h in load_scenario() if h.name == "rdsh01.lab.test"]
    silent = dataclasses.replace(healthy, name="hung01.lab.test", fault="hang")
    out = tmp_path / "out"
    with LabFleet([healthy, silent], PASSWORD, tmp_path / "lab") as lab:
        inv = lab.write_inventory(tmp_path / "inventory.yaml")
        only_healthy = yaml.safe_load(inv.read_text())
        only_healthy["hosts"] = [h for h in only_healthy["hosts"] if h["name"] == healthy.name]
        first_inv = tmp_path / "healthy.yaml"
        first_inv.write_text(yaml.safe_dump(only_healthy))
        first = collect("--inventory", str(first_inv), "--output", str(out), "-q")
        previous = (out / "latest").resolve()
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "--inventory", str(inv), "--output", str(out), "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, PASSWORD_ENV: PASSWORD},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(p.name.endswith(".partial") for p in out.iterdir()):
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert first.returncode == 0, first.stderr
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert (out / "latest").resolve() == previous
    visible = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert sorted(visible) == sorted([previous.name, "latest"])
    assert not list(out.rglob("*.tmp"))
