"""The scheduler examples (docs/scheduling.md, which the README links) work as written: people
paste them at night and find out in the morning. The cron line is run (with a stand-in for
`collect`); the systemd units are read as systemd reads them; the Task Scheduler example is
parsed as PowerShell."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.readme import document, fenced

SECTION = document("docs/scheduling.md")
CREDENTIALS = "/etc/rdp-collector/credentials.env"
COLLECT = "/opt/rdp-collector/.venv/bin/collect"


def test_the_cron_line_hands_the_password_to_collect(tmp_path: Path) -> None:
    lines = (line for block in fenced("sh", within=SECTION) for line in block.splitlines())
    [line] = [line for line in lines if line.startswith("30 5 * * * ")]
    command = line.split(" ", 5)[5]  # after the five time fields, what cron gives /bin/sh
    assert CREDENTIALS in command and COLLECT in command
    credentials = tmp_path / "credentials.env"
    credentials.write_text("RDPDIAG_PASSWORD=s3cret-from-file\n", encoding="utf-8")
    seen = tmp_path / "seen"
    stand_in = tmp_path / "collect"
    stand_in.write_text(f'#!/bin/sh\necho "${{RDPDIAG_PASSWORD:-unset}} $*" > {seen}\n', encoding="utf-8")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    command = command.replace(CREDENTIALS, str(credentials)).replace(COLLECT, str(stand_in))
    # cron's environment is nearly empty: no password from the session that edited the crontab.
    run = subprocess.run(["/bin/sh", "-c", command], env={"PATH": os.defpath}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    password, _, arguments = seen.read_text(encoding="utf-8").strip().partition(" ")
    assert password == "s3cret-from-file"
    assert (
        arguments == "--inventory /etc/rdp-collector/inventory.yaml --output /var/lib/rdp-collector --quiet --keep 30"
    )


def test_the_systemd_units_keep_comments_on_lines_of_their_own() -> None:
    [units] = fenced("ini", within=SECTION)
    settings = [line for line in units.splitlines() if line.strip() and not line.lstrip().startswith(("#", ";", "["))]
    assert settings, "no settings found in the systemd example"
    for line in settings:
        # systemd reads '#' after a value as part of the value (a path, a command line).
        assert " #" not in line and " ;" not in line, line
    joined = units.replace("\\\n", " ")  # systemd joins a line ending in a backslash with the next
    assert "EnvironmentFile=/etc/rdp-collector/credentials.env\n" in joined
    [exec_start] = [line for line in joined.splitlines() if line.startswith("ExecStart=")]
    assert exec_start.split()[0] == f"ExecStart={COLLECT}" and "--quiet" in exec_start.split()
    assert "systemctl enable --now rdp-collector.timer" in SECTION


def test_the_task_scheduler_example_is_windows_powershell_that_parses() -> None:
    import tree_sitter_powershell
    from tree_sitter import Language, Parser

    [script] = fenced("powershell", within=SECTION)
    tree = Parser(Language(tree_sitter_powershell.language())).parse(script.encode("utf-8"))
    assert not tree.root_node.has_error
    for cmdlet in ("New-ScheduledTaskAction", "New-ScheduledTaskTrigger", "Register-ScheduledTask"):
        assert cmdlet in script
    # The task runs the collector quietly, with retention, as the account whose keyring holds the password.
    assert "--quiet --keep 30" in script and "-User 'CORP\\svc-rdpdiag'" in script
