"""Every `collect` command line in the shell and console examples of the README and the pages it
links (docs/*.md, benchmarks/README.md) is one the CLI takes: run commands are parsed and, for
--host, turned into their inventory; `explain` runs. A renamed option or a changed rule fails here
instead of in front of someone following the documents."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from collector import cli, endpoint_cli
from tests.readme import README, document, fenced, fenced_everywhere

# Commands that reach the network: parsed here, not run (their own tests run them).
PARSED_ONLY = {"check-rdp", "check-tls"}
# Serves until stopped: only its name is checked here (tests/lab runs it).
NOT_RUN_HERE = {"lab"}


def documented_commands() -> list[tuple[str, list[str]]]:
    """(document, the arguments after `collect`) of every command in a shell or console block."""
    commands = []
    for name, block in fenced_everywhere("sh", "console"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.removeprefix("$ ").strip()
            if line.startswith("collect "):
                commands.append((name, shlex.split(line, comments=True)[1:]))
    return commands


DOCUMENTED = documented_commands()
COMMANDS = [argv for _, argv in DOCUMENTED]
# Where the examples live, and at least how many each holds: moving or dropping one fails here.
COMMANDS_PER_DOCUMENT = {"README.md": 7, "docs/one-endpoint.md": 3, "docs/scheduling.md": 1, "docs/lab.md": 2}


def test_the_documents_have_the_commands_a_newcomer_copies() -> None:
    firsts = {argv[0] for name, argv in DOCUMENTED if name == "README.md"}
    assert {"--inventory", "--host", "explain", "check-rdp", "check-tls"} <= firsts
    assert "lab" in {argv[0] for argv in COMMANDS}
    found = {name: sum(1 for n, _ in DOCUMENTED if n == name) for name in COMMANDS_PER_DOCUMENT}
    assert all(found[name] >= least for name, least in COMMANDS_PER_DOCUMENT.items()), found
    assert len(COMMANDS) >= sum(COMMANDS_PER_DOCUMENT.values())


@pytest.mark.parametrize("argv", COMMANDS, ids=[f"{name}: {' '.join(a)}"[:80].strip() for name, a in DOCUMENTED])
def test_each_documented_command_is_one_the_cli_takes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if argv[0] in cli.COMMANDS:
        if argv[0] in NOT_RUN_HERE:
            return
        if argv[0] in PARSED_ONLY:
            args = endpoint_cli._parser(argv[0], 0, "").parse_args(argv[1:])  # an unknown option exits 2
            assert args.name and not args.name.startswith("-")
            return
        assert argv[0] == "explain", f"add a way to check 'collect {argv[0]}' here"
        assert cli.main(argv) == 0, capsys.readouterr().err
        assert "Likely causes" in capsys.readouterr().out
        return
    args = cli._run_parser().parse_args(argv)  # an unknown option exits 2 here
    if args.host:
        built = cli._single_host_inventory(args)  # a UsageError or InventoryError fails the test
        assert built.targets[0].name == args.host
        named = {args.host, *([args.gateway] if args.gateway else []), *(args.session_host or [])}
        assert {t.name for t in built.targets} == named
    else:
        assert args.inventory is not None


def console_sessions() -> list[tuple[list[str], list[str]]]:
    """(command, the output lines a document shows for it) from the documents' ``console`` blocks."""
    sessions: list[tuple[list[str], list[str]]] = []
    for _, block in fenced_everywhere("console"):
        for line in block.splitlines():
            if line.startswith("$ collect "):
                sessions.append((shlex.split(line)[2:], []))
            elif sessions and line.strip() not in ("", "..."):
                sessions[-1][1].append(line.rstrip())
    return sessions


def test_what_the_documents_show_explain_print_is_what_it_prints(capsys: pytest.CaptureFixture[str]) -> None:
    shown = [(argv, lines) for argv, lines in console_sessions() if argv[0] == "explain"]
    assert len(shown) == 2
    assert sum(len(lines) for _, lines in shown) >= 13  # the output lines compared, not only the commands
    for argv, lines in shown:
        assert cli.main(argv) == 0
        printed = capsys.readouterr().out.splitlines()
        missing = [line for line in lines if line not in printed]
        assert not missing, f"collect {' '.join(argv)} no longer prints: {missing}"


def test_the_readme_options_table_and_the_parser_name_the_same_options() -> None:
    section = README[README.index("### Options") : README.index("**Exit codes:**")]
    table = set(re.findall(r"`(--[a-z-]+)(?=[` ])", section))  # not node_exporter's --collector.*
    parser = {
        option
        for action in cli._run_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--version")
    }
    assert len(table) >= 23
    assert table - parser == set(), "the README names options the CLI does not have"
    assert parser - table == set(), "options the README's table does not explain"


def test_the_options_the_documents_give_check_tls_and_check_rdp_exist() -> None:
    page = document("docs/one-endpoint.md")
    section = page[page.index("`collect check-tls GATEWAY") : page.index("Then the one connection that fails")]
    named = set(re.findall(r"`(--[a-z-]+)", section)) | set(re.findall(r"\[(--[a-z-]+)", section))
    assert {"--address", "--port", "--json", "--fail-on", "--expires-soon-days"} <= named
    parser = {o for a in endpoint_cli._parser("check-tls", 443, "")._actions for o in a.option_strings}
    assert named <= parser


BROKEN_INVENTORY = """\
defaults:
  username: 'CORP\\admin'
  password_env: RDPDIAG_PASSWORD
hosts:
  - name: rdgw01.corp.example
    roles: [gateway]
  - name: rdsh01.corp.example
    roles: [session_host]
  - name: rdsh02.corp.example
    roles: [gatway]
  - name: ws01.corp.example
    roles: [clint]
    gateway: rdgw01.corp.example
  - name: ws02.corp.example
    roles: [client]
    gateway: rdgw9.corp.example
"""


def test_the_inventory_mistakes_the_readme_shows_are_what_collect_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = [block.splitlines() for block in fenced("text")]
    assert len(shown) == 2
    fields, references = shown[0], shown[1]
    monkeypatch.chdir(tmp_path)
    Path("inventory.yaml").write_text(BROKEN_INVENTORY, encoding="utf-8")
    assert cli.main(["--inventory", "inventory.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == fields
    fixed = BROKEN_INVENTORY.replace("[gatway]", "[session_host]").replace("[clint]", "[client]")
    Path("inventory.yaml").write_text(fixed, encoding="utf-8")
    assert cli.main(["--inventory", "inventory.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == references
