"""The fleet benchmark still runs and prints every figure it promises (a smoke run on two hosts;
its timing targets are read from a real run, never asserted here), and its protocol-only
collector leaves out exactly what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from collector.lab.fleet import PASSWORD_ENV, LabFleet, load_scenario

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("wall", "ideal", "ratio", "peak_rss_mb", "cpu_s_per_host", "lab_cpu_s_per_host", "cpu_floor")
FIGURES += ("machine_busy", "one_core_hosts_per_s", "ideal_hosts_per_s")


@pytest.mark.parametrize(
    ("options", "winrm"), [((), "basic/http"), (("--auth", "ntlm", "--transport", "https"), "ntlm/https")]
)
def test_the_fleet_benchmark_prints_one_figure_a_line(options: tuple[str, ...], winrm: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fleet.py"),
            *("--hosts", "2", "--latency-ms", "10", "--probe-seconds", "0.2", "--concurrency", "2"),
            *("--naive-hosts", "1", *options),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0] == f"hosts: 2  latency_ms: 10  probe_seconds: 0.2  concurrency: 2  winrm: {winrm}  collector: full"
    figures = {key: float(value) for key, value in (line.split(": ") for line in lines[1:-1])}
    assert set(figures) == set(FIGURES)
    assert figures["ideal"] == 0.25  # one wave of two hosts: 0.2 s of probe + 5 round trips of 10 ms
    assert figures["wall"] >= figures["ideal"]
    # wall and ratio are printed to two decimals: they agree within 0.005 / 0.25 + 0.005.
    assert abs(figures["ratio"] - figures["wall"] / figures["ideal"]) <= 0.05
    # The collector's own peak (an interpreter with its libraries loaded), not the lab's or zero.
    assert 30 < figures["peak_rss_mb"] < 1000
    assert figures["cpu_s_per_host"] > 0 and figures["lab_cpu_s_per_host"] > 0
    assert 0 < figures["machine_busy"] <= 1
    # Printed to one decimal from the same CPU time as cpu_s_per_host (three decimals).
    assert figures["one_core_hosts_per_s"] == pytest.approx(1 / figures["cpu_s_per_host"], rel=0.1)
    assert figures["ideal_hosts_per_s"] == 8.0  # two hosts at once, 0.25 s each
    assert lines[-1].startswith("speedup vs naive: ") and float(lines[-1].split(": ")[1]) > 0


@pytest.mark.lab
def test_the_protocol_only_collector_leaves_out_endpoint_probes_and_pages_and_nothing_else(tmp_path: Path) -> None:
    [host] = [h for h in load_scenario() if h.name == "rdsh01.lab.test"]
    runs = {"full": ["-m", "collector.cli"], "protocol only": [str(ROOT / "benchmarks" / "protocol_only.py")]}
    with LabFleet([host], "bench-Pa55", tmp_path / "lab") as lab:
        inventory = lab.write_inventory(tmp_path / "inventory.yaml")
        for name, command in runs.items():
            run = subprocess.run(
                [sys.executable, *command, "--inventory", str(inventory), "--output", str(tmp_path / name), "-q"],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, PASSWORD_ENV: "bench-Pa55"},
                check=False,
            )
            assert run.returncode == 0, run.stderr[-2000:]
    full, bare = (json.loads((tmp_path / n / "latest" / "results.json").read_text())["hosts"][0] for n in runs)
    assert bare["facts"]["probes"].keys() == full["facts"]["probes"].keys() and bare["facts"]["problems"] == []
    assert full["facts"]["endpoints"] and full["facts"]["endpoint_results"]
    assert bare["facts"]["endpoints"] == {} and bare["facts"]["endpoint_results"] == []

    # The host's own checks are the same; only the results of the workstation's probes are missing.
    def key(check: dict) -> tuple:
        return check["id"], check.get("endpoint"), check["status"]

    assert Counter(map(key, bare["checks"])) == Counter(map(key, full["checks"])) - Counter(
        map(key, full["facts"]["endpoint_results"])
    )
    page = "hosts/rdsh01.lab.test.html"
    assert (tmp_path / "protocol only" / "latest" / page).read_text() == ""  # written, not rendered
    assert "rdsh01.lab.test" in (tmp_path / "full" / "latest" / page).read_text()
    assert "rdsh01.lab.test" in (tmp_path / "protocol only" / "latest" / "index.html").read_text()


@pytest.mark.lab
def test_the_benchmark_fleet_takes_the_winrm_it_is_asked_for(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_fleet", ROOT / "benchmarks" / "fleet.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    hosts = bench.fleet_hosts(3, "https", "ntlm")
    assert [(h.name, h.transport, h.auth) for h in hosts] == [
        (f"rdsh000{i}.bench.test", "https", "ntlm") for i in range(3)
    ]
    # And the inventory the collector reads says so too (no Basic-only allow_unencrypted).
    with LabFleet(hosts[:1], "bench-Pa55", tmp_path / "lab") as lab:
        [entry] = lab.inventory_document()["hosts"]
    assert (entry["transport"], entry["auth"]) == ("https", "ntlm") and "allow_unencrypted" not in entry
