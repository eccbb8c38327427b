"""What a run leaves on the workstation holds an administrator's findings: Security-event user
names and saved-credential targets. A run folder is private to the collector's account and group,
partial folders of runs that died do not pile up, and a host whose report cannot be rendered costs
its own page only, never the run."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector import report, runs, schema
from collector.model import CheckResult, Evidence, HostReport, RunReport, Severity, Status
from tests.builders import facts, service

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX modes and groups")
RUN = "20260101T000000Z"


def host(name: str, evidence: str = "Stopped") -> HostReport:
    f = facts((), [service("TermService", "Stopped")])
    check = CheckResult(
        "rdp.service-stopped",
        Status.FAIL,
        Severity.CRITICAL,
        "TermService not running",
        name,
        (Evidence("TermService", evidence, f"{name} (WinRM)"),),
        "Start it",
    )
    return HostReport(facts=dataclasses.replace(f, target=dataclasses.replace(f.target, name=name)), checks=(check,))


def run_of(*hosts: HostReport, run_id: str = RUN) -> RunReport:
    return RunReport(run_id, "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", "0.1.0", "ws", "inv.yaml", hosts)


def publish(output: Path, run_id: str = RUN, *hosts: HostReport) -> Path:
    hosts = hosts or (host("h1.corp.example"),)
    writer = report.RunWriter(output, run_id)
    for h in hosts:
        writer.write_host_soon(h, run_of(*hosts, run_id=writer.run_id))
    return writer.finish(run_of(*hosts, run_id=writer.run_id))


@pytest.fixture
def umask() -> Iterator[None]:
    """Whatever a test sets with os.umask is put back."""
    before = os.umask(0o022)
    os.umask(before)
    try:
        yield
    finally:
        os.umask(before)


# --- partial folders of runs that never finished -------------------------------------------------


def partial(output: Path, run_name: str, owner: dict[str, object] | None = None) -> Path:
    """A partial folder as a run leaves it: a page, a record, and (unless None) an owner record
    that is this process's, with ``owner`` changed."""
    folder = output / runs.partial_name(run_name)
    (folder / "hosts").mkdir(parents=True)
    (folder / "records").mkdir()
    (folder / "hosts" / "h1.corp.example.html").write_text("<!doctype html>", encoding="utf-8")
    if owner is not None:
        record = {**json.loads(runs.owner_record()), **owner}
        (folder / runs.OWNER_FILE).write_text(json.dumps(record), encoding="utf-8")
    return folder


def dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_the_partial_of_a_run_that_died_goes_and_one_whose_run_is_alive_stays(tmp_path: Path) -> None:
    dead = partial(tmp_path, "20260101T000000Z", {"pid": dead_pid()})
    alive = partial(tmp_path, "20260102T000000Z", {})  # this process: a run in progress
    writing = report.RunWriter(tmp_path, "20260103T000000Z")  # a real run, not finished
    elsewhere = partial(tmp_path, "20260104T000000Z", {"pid": dead_pid(), "machine": socket.gethostname() + "-other"})
    no_owner = partial(tmp_path, "20260105T000000Z")
    assert json.loads((writing.partial / runs.OWNER_FILE).read_text("utf-8"))["pid"] == os.getpid()

    assert runs.remove_stale_partials(tmp_path) == [".20260101T000000Z.partial"]
    assert not dead.exists()
    # Another machine's process cannot be asked, and a folder without an owner record may be a
    # run that has not written it yet: both stay until nothing in them changed for STALE_AFTER.
    assert alive.is_dir() and writing.partial.is_dir() and elsewhere.is_dir() and no_owner.is_dir()
    later = datetime.now(UTC) + runs.STALE_AFTER + timedelta(hours=1)
    assert runs.remove_stale_partials(tmp_path, now=later) == [
        ".20260104T000000Z.partial",
        ".20260105T000000Z.partial",
    ]
    # A run in progress is never removed, however long ago it last wrote.
    assert alive.is_dir() and writing.partial.is_dir()
    assert writing.finish(run_of(run_id=writing.run_id)).is_dir()


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/stat").is_file(), reason="needs the process start time")
def test_a_pid_now_used_by_another_process_does_not_keep_a_partial(tmp_path: Path) -> None:
    reused = partial(tmp_path, RUN, {"process_start": "1"})  # this PID, but a process started at another time
    rebooted = partial(tmp_path, "20260102T000000Z", {"boot": "an-earlier-boot"})
    assert runs.remove_stale_partials(tmp_path) == [".20260101T000000Z.partial", ".20260102T000000Z.partial"]
    assert not reused.exists() and not rebooted.exists()


def test_a_killed_run_leaves_a_partial_the_next_cleanup_removes(tmp_path: Path) -> None:
    """A real run killed mid-way: its owner record names a process that is gone."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from collector import report\n"
        f"report.RunWriter(Path(sys.argv[1]), {RUN!r})\n"
        "os._exit(9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=Path(__file__).parents[2], check=False)
    assert killed.returncode == 9
    assert (tmp_path / runs.partial_name(RUN) / runs.OWNER_FILE).is_file()
    assert runs.remove_stale_partials(tmp_path) == [runs.partial_name(RUN)]
    assert list(tmp_path.iterdir()) == []


def test_only_partial_folders_are_removed_and_links_are_never_followed(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x", encoding="utf-8")
    gone = {"pid": dead_pid()}
    # Names that are not a run's partial folder, each with a dead owner: untouched.
    for name in (".notes.partial", f".{RUN}.partial.bak", f"{RUN}.partial", ".2026.partial", RUN):
        (output / name).mkdir()
        (output / name / runs.OWNER_FILE).write_text(json.dumps({**json.loads(runs.owner_record()), **gone}))
    (output / ".20260109T000000Z.partial").write_text("a file, not a folder", encoding="utf-8")
    # A link named like a partial folder, to a folder with a dead owner: neither followed nor removed.
    (outside / runs.OWNER_FILE).write_text(json.dumps({**json.loads(runs.owner_record()), **gone}))
    (output / ".20260102T000000Z.partial").symlink_to(outside, target_is_directory=True)
    # A stale partial folder holding a link to the outside: the link goes, not what it points at.
    stale = partial(output, "20260103T000000Z", gone)
    (stale / "hosts" / "link").symlink_to(outside, target_is_directory=True)
    (stale / "records" / "file-link").symlink_to(outside / "keep.txt")
    # An owner record that is a link (to a live owner's record) is no owner record.
    tricked = partial(output, "20260104T000000Z")
    (outside / "live.json").write_text(runs.owner_record(), encoding="utf-8")
    (tricked / runs.OWNER_FILE).symlink_to(outside / "live.json")

    later = datetime.now(UTC) + runs.STALE_AFTER + timedelta(hours=1)
    assert runs.remove_stale_partials(output, now=later) == [".20260103T000000Z.partial", ".20260104T000000Z.partial"]
    untouched = [".notes.partial", f".{RUN}.partial.bak", f"{RUN}.partial", ".2026.partial", RUN]
    untouched += [".20260109T000000Z.partial", ".20260102T000000Z.partial"]
    assert sorted(p.name for p in output.iterdir()) == sorted(untouched)
    assert (output / ".20260102T000000Z.partial").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == sorted([runs.OWNER_FILE, "keep.txt", "live.json"])
    assert runs.remove_stale_partials(tmp_path / "missing") == []


def test_prune_with_keep_also_removes_stale_partials(tmp_path: Path) -> None:
    for day in (1, 2, 3):
        publish(tmp_path, f"2026010{day}T000000Z")
    dead = partial(tmp_path, "20260104T000000Z", {"pid": dead_pid()})
    live = partial(tmp_path, "20260105T000000Z", {})
    assert runs.prune(tmp_path, keep=2) == ["20260101T000000Z", dead.name]
    assert not dead.exists() and live.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir() if runs.RUN_NAME.match(p.name)) == [
        "20260102T000000Z",
        "20260103T000000Z",
    ]


# --- modes ---------------------------------------------------------------------------------------


def tree(top: Path) -> Iterator[Path]:
    yield top
    for folder, folders, files in os.walk(top):
        for name in folders + files:
            yield Path(folder) / name


@POSIX
@pytest.mark.parametrize(("mask", "folder_mode", "file_mode"), [(0o022, 0o750, 0o640), (0o077, 0o700, 0o600)])
def test_every_file_and_folder_a_run_writes_is_private_to_account_and_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: None, mask: int, folder_mode: int, file_mode: int
) -> None:
    output = tmp_path / "reports" / "nightly"  # neither exists: the collector creates both
    metrics = tmp_path / "textfile" / "rdp_collector.prom"
    os.umask(mask)
    first = publish(output, RUN, host("h1.corp.example"), host("h2.corp.example"))
    report.atomic_write(metrics, "rdp_collector_up 1\n")
    report.atomic_write(metrics, "rdp_collector_up 1\n")  # written again: a new file, the same mode

    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError(1, "Operation not permitted")

    # Where there are no symlinks, 'latest' is a text file naming the run.
    monkeypatch.setattr(os, "symlink", no_symlinks)
    second = publish(output, "20260102T000000Z")
    os.umask(0o022)

    assert (output / "latest").is_symlink() and (output / "latest.txt").read_text("utf-8") == second.name + "\n"
    written = [*tree(tmp_path / "reports"), *tree(tmp_path / "textfile")]
    assert {first / "results.json", first / "index.html", first / "hosts" / "h2.corp.example.html"} <= set(written)
    assert metrics in written and output / "latest.txt" in written
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in written}
    for name, mode in modes.items():
        path = tmp_path / name
        if path.is_symlink():
            continue  # a symlink has no mode of its own
        expected = folder_mode if path.is_dir() else file_mode
        assert mode & 0o7777 == expected, f"{name}: {mode:o}, not {expected:o}"
    # The owner record went before the run was published; no temp file is left.
    assert not [p for p in written if p.name == runs.OWNER_FILE or p.name.endswith(".tmp")]


def test_importing_the_report_writer_leaves_the_umask_alone(tmp_path: Path) -> None:
    """The umask can only be read by setting it, process-wide, for every thread: not at import."""
    code = (
        "import os\n"
        "def refuse(mask):\n"
        "    raise AssertionError('os.umask called')\n"
        "os.umask = refuse\n"
        "import collector.report, collector.runs\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def other_group() -> int:
    """A group this process may give a folder: one it belongs to other than its own, else (as
    root, who may give any) some other group, else its own."""
    mine = os.getegid()
    supplementary = [g for g in os.getgroups() if g != mine]
    if supplementary:
        return supplementary[0]
    if os.geteuid() == 0:
        return 65534 if mine != 65534 else 1
    return mine


@POSIX
def test_a_setgid_output_folder_gives_every_run_its_group(tmp_path: Path, umask: None) -> None:
    """docs/scheduling.md's way to share reports with a web server: the output folder gets the server's
    group and the setgid bit; each run folder and file then belongs to that group, readable by it."""
    group = other_group()
    output = tmp_path / "shared"
    output.mkdir()
    os.chown(output, -1, group)
    os.chmod(output, 0o2750)  # noqa: S103 - the setgid bit is the point; the group may only read
    os.umask(0o022)
    folder = publish(output, RUN, host("h1.corp.example"))
    report.update_latest(output, folder.name)
    written = [p for p in tree(output) if p != output and not p.is_symlink()]
    assert folder / "hosts" / "h1.corp.example.html" in written
    for path in written:
        info = path.lstat()
        assert info.st_gid == group, f"{path.name}: group {info.st_gid}, not {group}"
        if path.is_dir():
            assert info.st_mode & stat.S_ISGID, path.name  # and its own folders inherit it in turn
            assert stat.S_IMODE(info.st_mode) & 0o777 == 0o750, path.name
        else:
            assert stat.S_IMODE(info.st_mode) == 0o640, path.name


# --- a host whose report cannot be rendered ------------------------------------------------------


def test_a_host_whose_page_cannot_be_written_as_utf8_gets_a_page_saying_why_and_the_run_is_published(
    tmp_path: Path,
) -> None:
    bad = host("bad.corp.example", evidence="Stopped \ud800 by a host")
    good = host("good.corp.example")
    hosts = (bad, good)
    writer = report.RunWriter(tmp_path, RUN)
    writer.write_host_soon(bad, run_of(*hosts))  # on the writer's thread
    writer.write_host(good, run_of(*hosts))
    folder = writer.finish(run_of(*hosts))

    assert (tmp_path / "latest").resolve() == folder.resolve()
    bad_page = (folder / "hosts" / "bad.corp.example.html").read_text("utf-8")
    good_page = (folder / "hosts" / "good.corp.example.html").read_text("utf-8")
    why = (
        "its page and its results record: it holds text that cannot be written as UTF-8 "
        "(U+D800: a lone UTF-16 surrogate, which is not a character)"
    )
    assert "The report of this host could not be rendered:</strong> " + why in bad_page
    assert "<h1>bad.corp.example</h1>" in bad_page and 'href="../index.html"' in bad_page
    assert good_page == report.render_host(good, run_of(*hosts))  # every other host as usual
    assert writer.unrendered == {"bad.corp.example": why}  # for the caller to tell the administrator

    text = (folder / "results.json").read_bytes().decode("utf-8")  # strict UTF-8
    assert "\\ud800" not in text.lower()  # no lone surrogate, not even escaped: any JSON reader reads it
    document = json.loads(text)
    assert schema.problem_in(document) == ""  # what `collect render` accepts
    records = {h["facts"]["target"]["name"]: h for h in document["hosts"]}
    bad_checks = {c["id"]: c for c in records["bad.corp.example"]["checks"]}
    failed = bad_checks[report.REPORT_FAILED]
    assert failed["status"] == "unknown" and why in failed["title"]
    # What could be kept is: the host's own check, its text made writable.
    assert bad_checks["rdp.service-stopped"]["evidence"][0]["value"] == "Stopped \ufffd by a host"
    assert [c["id"] for c in records["good.corp.example"]["checks"]] == ["rdp.service-stopped"]
    assert json.loads(report.host_json(good)) == records["good.corp.example"]
    assert (folder / "index.html").read_text("utf-8").startswith("<!doctype html>")


def test_any_exception_from_rendering_is_the_host_s_page_and_its_words_are_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = report.render_host

    def broken(host_report: HostReport, run: RunReport) -> str:
        if host_report.name.startswith("bad"):
            raise ValueError("<script>alert(1)</script> \x1b[2J")
        return render(host_report, run)

    monkeypatch.setattr(report, "render_host", broken)
    hosts = (host("bad.corp.example"), host("good.corp.example"))
    folder = publish(tmp_path, RUN, *hosts)
    page = (folder / "hosts" / "bad.corp.example.html").read_text("utf-8")
    assert "<script>alert" not in page and "\x1b" not in page
    assert "ValueError: &lt;script&gt;alert(1)&lt;/script&gt; \\x1b[2J" in page
    records = {h["facts"]["target"]["name"]: h for h in json.loads((folder / "results.json").read_text())["hosts"]}
    # The record serialised: it is kept whole, with the failure beside the host's own checks.
    assert [c["id"] for c in records["bad.corp.example"]["checks"]] == ["rdp.service-stopped", report.REPORT_FAILED]
    assert "good.corp.example" in (folder / "index.html").read_text("utf-8")


def test_an_index_that_cannot_be_rendered_still_publishes_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(run: RunReport) -> str:
        raise RuntimeError("template <b>broke</b>")

    monkeypatch.setattr(report, "render_index", broken)
    folder = publish(tmp_path, RUN, host("h1.corp.example"))
    index = (folder / "index.html").read_text("utf-8")
    assert "The fleet index could not be rendered:</strong> RuntimeError: template &lt;b&gt;broke&lt;/b&gt;" in index
    assert '<a href="hosts/h1.corp.example.html">h1.corp.example</a>' in index
    assert (tmp_path / "latest").resolve() == folder.resolve()


def test_the_disk_still_fails_the_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only rendering is the host's page: a disk that refuses is the run's failure, and 'latest' stays."""
    writer = report.RunWriter(tmp_path, RUN)

    def disk_full(path: Path, content: object, *, durable: bool = False) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "atomic_write", disk_full)
    writer.write_host_soon(host("h1.corp.example"), run_of())
    with pytest.raises(OSError, match="No space left"):
        writer.finish(run_of(host("h1.corp.example")))
    assert not (tmp_path / "latest").exists()
