"""The output folder across runs: find the previous complete run, prune old ones, and remove what
runs that never finished left behind.

A run folder is named by its UTC start (``20261126T021500Z``, ``-2`` on a clash); ``latest``
names the newest complete one. Retention never removes the run ``latest`` points at, and never
touches anything that is not a run folder.

A run is written into a hidden ``.<run>.partial`` folder that becomes ``<run>`` when it is
complete. A run that is killed or crashes leaves that folder behind; ``remove_stale_partials``
removes it once no run owns it any more. A run in progress says that it owns its partial folder
with a small owner record in it (``OWNER_FILE``): the process, when the OS started it, the machine
and its boot. A partial folder is stale when

- its owner record names this machine and a process that is gone (or a process with the same
  number that started at another time, or a boot that is over), or
- it has no readable owner record, or one that this machine cannot verify (another machine's, or
  a system that does not say when a process started), and nothing in it changed for
  ``STALE_AFTER``.

A partial folder whose owner is running is never removed, however old.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.history import Baseline

RUN_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
PARTIAL_NAME = re.compile(r"^\.(?P<run>\d{8}T\d{6}Z(-\d+)?)\.partial$")
# The owner record a run in progress keeps in its partial folder; removed before the folder is published.
OWNER_FILE = ".owner.json"
# A partial folder whose owner cannot be verified here is stale once nothing in it changed for
# this long: a run writes a page and a record as each host finishes, and each host has a deadline
# of minutes, so a day without a change is a run that is gone.
STALE_AFTER = timedelta(hours=24)
_OWNER_MAX_BYTES = 4096


def partial_name(run_name: str) -> str:
    """The hidden folder a run is written into until it is complete."""
    return f".{run_name}.partial"


def latest_run(output: Path) -> Path | None:
    """The run folder ``latest`` points at (a symlink, or ``latest.txt`` where there are none)."""
    link = output / "latest"
    if link.is_symlink() or link.is_dir():
        target = link.resolve()
        return target if target.is_dir() else None
    text = output / "latest.txt"
    if text.is_file():
        folder = output / text.read_text(encoding="utf-8").strip()
        return folder if folder.is_dir() and RUN_NAME.match(folder.name) else None
    return None


def previous_baseline(output: Path) -> tuple[Baseline | None, str]:
    """What the next run compares with: the latest complete run's problems, or None and why not
    (a message, never an exception)."""
    folder = latest_run(output)
    if folder is None:
        return None, "no previous run"
    try:
        with (folder / "results.json").open(encoding="utf-8") as results:
            return Baseline.read(results), ""
    except OSError as exc:
        return None, f"previous run {folder.name} has no readable results.json ({exc.strerror or exc})"
    except ValueError as exc:
        return None, f"previous run {folder.name} cannot be compared: {exc}"
    except RecursionError:
        return None, f"previous run {folder.name} cannot be compared: its results.json nests too deeply"


def prune(output: Path, keep: int) -> list[str]:
    """Delete the oldest run folders beyond ``keep``; the one ``latest`` names always stays. Stale
    partial folders go too (``remove_stale_partials``): the names removed, runs first."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    runs = sorted(
        (p for p in output.iterdir() if p.is_dir() and not p.is_symlink() and RUN_NAME.match(p.name)),
        key=lambda p: p.name,
    )
    current = latest_run(output)
    protected = {current.name} if current else set()
    removed = []
    for folder in runs[: max(0, len(runs) - keep)]:
        if folder.name in protected:
            continue
        shutil.rmtree(folder)
        removed.append(folder.name)
    return removed + remove_stale_partials(output)


# --- partial folders of runs that never finished -------------------------------------------------


def owner_record(now: datetime | None = None) -> str:
    """What a run in progress writes into its partial folder (as ``OWNER_FILE``): this process,
    when the OS started it, this machine and its boot, and the time."""
    pid = os.getpid()
    return json.dumps(
        {
            "pid": pid,
            "process_start": _process_identity(pid)[1] or "",
            "boot": _boot_id(),
            "machine": socket.gethostname(),
            "written": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def remove_stale_partials(output: Path, *, max_age: timedelta = STALE_AFTER, now: datetime | None = None) -> list[str]:
    """Remove the partial folders in ``output`` that no run in progress owns (see the module's
    rules); returns the names removed, sorted. Only folders named ``.<run name>.partial`` are
    considered; a symlink (or junction) with such a name, or anything inside a folder, is never
    followed. A folder that cannot be read or removed stays, and is not reported; a missing
    ``output`` is nothing to remove."""
    try:
        with os.scandir(output) as scan:
            entries = sorted((e for e in scan if PARTIAL_NAME.match(e.name)), key=lambda e: e.name)
    except OSError:
        return []
    moment = now or datetime.now(UTC)
    removed = []
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.is_symlink() or _is_junction(entry):
                continue
            folder = Path(entry.path)
            if _owned(folder, max_age, moment):
                continue
            shutil.rmtree(folder)  # removes links found inside, never what they point at
        except (OSError, ValueError, ArithmeticError):  # unreadable, vanished, or not removable: it stays
            continue
        removed.append(entry.name)
    return removed


def _is_junction(entry: os.DirEntry[str]) -> bool:
    is_junction = getattr(entry, "is_junction", None)  # Python 3.12+; junctions exist on Windows only
    return bool(is_junction()) if is_junction is not None else False


def _owned(folder: Path, max_age: timedelta, now: datetime) -> bool:
    """Whether a run in progress may still own ``folder``."""
    owner = _read_owner(folder / OWNER_FILE)
    if owner is not None and owner.get("machine") == socket.gethostname():
        pid = owner["pid"]
        boot = _boot_id()
        if owner.get("boot") and boot and owner["boot"] != boot:
            return False  # written before this machine last started
        alive, started = _process_identity(pid)
        if alive is False:
            return False
        if alive and owner.get("process_start") and started:
            return started == owner["process_start"]  # else the number now belongs to another process
    return _changed_within(folder, max_age, now)


def _read_owner(path: Path) -> dict[str, Any] | None:
    """The owner record, or None when there is none that reads as one (never a link, a pipe or a
    large file: only what a run writes)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _OWNER_MAX_BYTES:
            return None
        data = json.loads(os.read(fd, _OWNER_MAX_BYTES + 1))
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)
    if not isinstance(data, dict) or type(data.get("pid")) is not int or not 0 < data["pid"] < 2**31:
        return None
    if not all(isinstance(data.get(key, ""), str) for key in ("process_start", "boot", "machine")):
        return None
    return data


def _changed_within(folder: Path, max_age: timedelta, now: datetime) -> bool:
    """Whether the folder, or one of the folders directly in it, changed within ``max_age``
    (a run in progress adds a page and a record as each host finishes)."""
    newest = os.lstat(folder).st_mtime
    with os.scandir(folder) as scan:
        for entry in scan:
            if entry.is_dir(follow_symlinks=False):
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return now - datetime.fromtimestamp(newest, UTC) < max_age


def _boot_id() -> str:
    """This boot of this machine, where the system says (Linux); else ''."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _process_identity(pid: int) -> tuple[bool | None, str | None]:
    """Whether process ``pid`` exists (None: cannot tell), and when it started as the OS counts it
    (None where the system does not say): a number in use by a process that started at another
    time is another process."""
    if pid <= 0:
        return False, None
    if sys.platform == "win32":
        return _windows_process(pid)
    try:
        os.kill(pid, 0)  # signal 0: delivers nothing, only says whether the process exists
    except ProcessLookupError:
        return False, None
    except PermissionError:
        pass  # it exists, as another user's
    except OSError:
        return None, None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return True, None  # no /proc (macOS, BSD): alive, start unknown
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (command)", which may hold spaces
    return True, (fields[19] if len(fields) > 19 else None)  # field 22, starttime: ticks after boot


def _windows_process(pid: int) -> tuple[bool | None, str | None]:
    """``_process_identity`` on Windows, where signal 0 would interrupt the process: its handle,
    exit code and creation time."""
    if sys.platform != "win32":
        return None, None
    try:
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
        kernel32.GetProcessTimes.argtypes = (wintypes.HANDLE, *[ctypes.POINTER(wintypes.FILETIME)] * 4)
        kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            error = ctypes.get_last_error()
            # ERROR_INVALID_PARAMETER: no such process; ERROR_ACCESS_DENIED: one we may not query.
            return {87: False, 5: True}.get(error), None
        try:
            code = wintypes.DWORD()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return None, None
            if code.value != 259:  # STILL_ACTIVE
                return False, None
            times = [wintypes.FILETIME() for _ in range(4)]
            if not kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
                return True, None
            return True, str(times[0].dwHighDateTime << 32 | times[0].dwLowDateTime)
        finally:
            kernel32.CloseHandle(handle)
    except Exception:  # no ctypes, or a call this Windows does not have: cannot tell
        return None, None
