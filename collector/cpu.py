"""Keep the collector's threads on one CPU while they collect.

The collector's Python runs one thread at a time (one interpreter lock), yet it has a thread per
host in flight and one per probe, each woken when its answer arrives. Left to the scheduler they
wake on any CPU, and each hand-over of the lock to a thread on another CPU costs a cross-CPU
wake-up and cold caches, dearer still in a virtual machine. Kept on one CPU the same collection
took a fifth less CPU time and, where the collector's CPU sets the pace, 15 to 20 % less wall
time, with Basic and with NTLM over HTTP or HTTPS alike (README, Performance). Linux only;
elsewhere, with a single CPU allowed (``taskset -c N collect ...`` chooses it), or when the CPU
cannot be chosen (a cpuset that changes under the run), nothing changes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def current_cpu() -> int | None:
    """The CPU the calling thread runs on now (Linux ``/proc``), or None where it cannot be read."""
    try:
        stat = Path("/proc/thread-self/stat").read_text(encoding="ascii")
        return int(stat.rsplit(")", 1)[1].split()[36])  # field 39, "processor"; the name may hold spaces
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def one_cpu() -> Iterator[int | None]:
    """Within the block, the calling thread and every thread it starts run on one CPU, the one it
    is on (the scheduler has just chosen it); yields that CPU, or None when nothing changed. The
    thread's own CPUs are given back at the end, so what follows the block is not confined."""
    get = getattr(os, "sched_getaffinity", None)
    put = getattr(os, "sched_setaffinity", None)
    allowed: set[int] = set()
    chosen = None
    if get is not None and put is not None:
        with contextlib.suppress(OSError):
            allowed = get(0)
            cpu = current_cpu()
            if len(allowed) > 1 and cpu in allowed:
                put(0, {cpu})
                chosen = cpu
    try:
        yield chosen
    finally:
        if chosen is not None and put is not None:
            with contextlib.suppress(OSError):
                put(0, allowed)
