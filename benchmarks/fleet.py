"""How close a full collection comes to the ideal, on a lab fleet with real network-like delays.

    python benchmarks/fleet.py --hosts 200 --latency-ms 50 --probe-seconds 1 --concurrency 50

Starts N lab session hosts on loopback (WS-Management + PSRP), each answering every WinRM request
after LATENCY and every probe after PROBE-SECONDS, runs `collect --inventory` against them as a
separate process, and prints one figure a line. The hosts take Basic over HTTP by default, which
keeps the lab's own CPU out of the figures; --auth ntlm and --transport https measure what real
estates use (an NTLM handshake and message sealing per connection, TLS):

    wall: the collector's wall time (process start to exit, reports written)
    ideal: ceil(N / C) x (probe seconds + 5 round trips)
    ratio: wall / ideal
    peak_rss_mb: the collector process's peak resident memory
    cpu_s_per_host: the collector's user + system CPU time divided by N
    lab_cpu_s_per_host: the lab's CPU time during the run, divided by N (it shares the machine)
    cpu_floor: (collector CPU + lab CPU) / cores: no run on this machine can be faster
    machine_busy: the share of the machine's CPU time (every core, every process) that was busy
    one_core_hosts_per_s: 1 / cpu_s_per_host: the collector's Python runs on one core at a time
        (one interpreter lock), so it cannot collect hosts faster than this
    ideal_hosts_per_s: C / (probe seconds + 5 round trips): the pace the ideal bound assumes
    speedup vs naive: per host, against one Client.execute_ps per probe, host after host

With --protocol-only the collector runs without the workstation's own TLS/RDP probes of each
host and without rendering host pages (see protocol_only.py): what is left is the protocol work
of C hosts at once. The header line says which collector ran.

Why the ideal counts five round trips: a PSRP session needs at least Create (the runspace pool),
a Receive that sees it opened, a Command, a Receive with the output, and a Delete. A host's
probes run side by side in its pool, each over its own connection (their Commands go out
together and their Receives wait together), so a host costs one probe's server time plus those
five round trips; C hosts are collected at once. The ideal leaves CPU out: here the lab's
servers run on the same cores as the collector, and ``cpu_floor`` says what the two together
cost. The lab reads a message it has seen before (every host gets the same pool settings and
probe scripts) from a cache, so that it takes as little CPU as it can from the collector it
measures. The naive baseline is what an administrator writes first: pypsrp's Client.execute_ps
per probe (a new runspace pool each time), one host after the other; it runs on a smaller fleet
(--naive-hosts) and is compared per host.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pypsrp.client import Client

from collector import scripts
from collector.lab.fleet import LAB_USER, PASSWORD_ENV, LabFleet, load_scenario
from collector.model import HostTarget, Role
from collector.runner import RunOptions, plan

PASSWORD = "benchmark-Pa55"  # noqa: S105 - the lab's throwaway password


def fleet_hosts(count: int, transport: str = "http", auth: str = "basic") -> list:
    """N healthy session hosts, copies of the demo's rdsh01 under new names."""
    import dataclasses

    [template] = [h for h in load_scenario() if h.name == "rdsh01.lab.test"]
    return [
        dataclasses.replace(template, name=f"rdsh{i:04d}.bench.test", transport=transport, auth=auth)
        for i in range(count)
    ]


def _machine_ticks() -> tuple[int, int]:
    """All CPU time and idle CPU time of the machine so far, in clock ticks (Linux ``/proc``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # idle + iowait


def run_collector(
    inventory: Path, output: Path, concurrency: int, protocol_only: bool = False
) -> tuple[float, float, float, float, float]:
    """Wall seconds, peak RSS in MB and CPU seconds of one `collect` process, the CPU seconds
    this process (the lab's servers) spent meanwhile, and how busy the machine was.

    The peak is the collector's own high-water mark (``VmHWM``), read while it runs: the child's
    ``ru_maxrss`` would also count this process's memory (the lab's) at the moment it was spawned,
    as Linux carries the parent's high-water mark across fork or vfork and exec.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    lab_before = resource.getrusage(resource.RUSAGE_SELF)
    ticks_before = _machine_ticks()
    start = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                *([str(Path(__file__).with_name("protocol_only.py"))] if protocol_only else ["-m", "collector.cli"]),
                "--inventory",
                str(inventory),
                "--output",
                str(output),
                "-q",
                "--concurrency",
                str(concurrency),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, PASSWORD_ENV: PASSWORD},
        )
        peak_kb = 0
        while process.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(process.pid))
            time.sleep(0.02)
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    wall = time.monotonic() - start
    total, idle = (now - then for now, then in zip(_machine_ticks(), ticks_before, strict=True))
    busy = 1 - idle / total if total else 0.0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lab_after = resource.getrusage(resource.RUSAGE_SELF)
    lab_cpu = (lab_after.ru_utime - lab_before.ru_utime) + (lab_after.ru_stime - lab_before.ru_stime)
    if process.returncode not in (0, 1):
        raise SystemExit(f"collect failed ({process.returncode}): {errors.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, peak_kb / 1024, cpu, lab_cpu, busy


def _high_water_kb(pid: int) -> int:
    """A running process's peak resident memory so far (Linux ``/proc``); 0 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1])


def run_naive(fleet: LabFleet) -> float:
    """Seconds for one Client.execute_ps per probe, host after host (the probes' defaults as inputs)."""
    start = time.monotonic()
    for host in fleet.hosts:
        target = HostTarget(name=host.name, address="127.0.0.1", roles=(Role.SESSION_HOST,))
        client = Client(
            "127.0.0.1",
            port=fleet.ports[host.name],
            username=LAB_USER,
            password=PASSWORD,
            ssl=host.transport == "https",
            auth=host.auth,
            encryption="never" if host.auth == "basic" else "auto",
            # The lab's certificates name the hosts, which are not in DNS; this baseline times the
            # protocol with the lab's throwaway password, so it connects to loopback unverified.
            cert_validation=False,
        )
        for call in plan(target, RunOptions()):
            client.execute_ps(scripts.load(call.probe).text)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--probe-seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--naive-hosts", type=int, default=5)
    parser.add_argument("--auth", choices=["basic", "ntlm"], default="basic", help="default: basic")
    parser.add_argument("--transport", choices=["http", "https"], default="http", help="default: http")
    parser.add_argument(
        "--protocol-only",
        action="store_true",
        help="an experiment: leave out the workstation's endpoint probes and the host pages",
    )
    args = parser.parse_args()
    rtt = args.latency_ms / 1000

    with tempfile.TemporaryDirectory(prefix="collect-bench-") as tmp:
        work = Path(tmp)
        hosts = fleet_hosts(args.hosts, args.transport, args.auth)
        fleet = LabFleet(hosts, PASSWORD, work / "lab", latency=rtt, probe_seconds=args.probe_seconds)
        with fleet:
            inventory = fleet.write_inventory(work / "inventory.yaml")
            wall, rss_mb, cpu, lab_cpu, busy = run_collector(
                inventory, work / "out", args.concurrency, args.protocol_only
            )
        naive_fleet = LabFleet(
            fleet_hosts(args.naive_hosts, args.transport, args.auth),
            PASSWORD,
            work / "naive",
            latency=rtt,
            probe_seconds=args.probe_seconds,
        )
        with naive_fleet:
            naive = run_naive(naive_fleet)

    ideal = math.ceil(args.hosts / args.concurrency) * (args.probe_seconds + 5 * rtt)
    print(
        f"hosts: {args.hosts}  latency_ms: {args.latency_ms:g}  probe_seconds: {args.probe_seconds:g}  "
        f"concurrency: {args.concurrency}  winrm: {args.auth}/{args.transport}  "
        f"collector: {'protocol only' if args.protocol_only else 'full'}"
    )
    print(f"wall: {wall:.2f}")
    print(f"ideal: {ideal:.2f}")
    print(f"ratio: {wall / ideal:.2f}")
    print(f"peak_rss_mb: {rss_mb:.0f}")
    print(f"cpu_s_per_host: {cpu / args.hosts:.3f}")
    print(f"lab_cpu_s_per_host: {lab_cpu / args.hosts:.3f}")
    print(f"cpu_floor: {(cpu + lab_cpu) / (os.cpu_count() or 1):.2f}")
    print(f"machine_busy: {busy:.2f}")
    print(f"one_core_hosts_per_s: {args.hosts / cpu:.1f}")
    print(f"ideal_hosts_per_s: {args.concurrency / (args.probe_seconds + 5 * rtt):.1f}")
    print(f"speedup vs naive: {(naive / args.naive_hosts) / (wall / args.hosts):.1f}")


if __name__ == "__main__":
    main()
