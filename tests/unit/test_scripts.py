"""The probe scripts as sent to hosts: identity marker, helper inserted, PowerShell 5.1 only,
read-only. Parsed with tree-sitter-powershell, so a syntax error fails here, not on a host."""

from __future__ import annotations

import re

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

from collector import contract, scripts

PARSER = Parser(Language(tree_sitter_powershell.language()))

PS7_ONLY = [
    (r"\?\?", "null-coalescing ??"),
    (r"\?\.", "null-conditional ?."),
    (r"&&|\|\|", "pipeline chain operators"),
    (r"-Parallel\b", "ForEach-Object -Parallel"),
    (r"-AsArray\b", "ConvertTo-Json -AsArray"),
    (r"-EnumsAsStrings\b", "ConvertTo-Json -EnumsAsStrings"),
    (r"\s\?\s[^:]+\s:\s", "ternary operator"),
]
# Verbs that change a host. New-Object only builds .NET objects in memory.
WRITE_VERBS = re.compile(
    r"^(Set|Remove|New|Stop|Restart|Start|Enable|Disable|Clear|Rename|Install|Uninstall|"
    r"Register|Unregister|Add|Invoke|Suspend|Resume|Reset|Update)-",
    re.IGNORECASE,
)
ALLOWED = {"New-Object", "Add-ProbeError", "Start-Sleep"}
# The one probe that changes a host, only behind --user-context: a one-shot task it always removes.
OPT_IN_WRITERS = {
    "user_credentials": {
        "New-ScheduledTaskAction",
        "New-ScheduledTaskPrincipal",
        "Register-ScheduledTask",
        "Start-ScheduledTask",
        "Unregister-ScheduledTask",
        "Remove-Item",
    }
}
# Read-only probes that still write one thing: rdp_config's `secedit /export` can only hand the
# user rights over as a file, so it exports to two temp files of the probe's own and deletes them
# in a finally block. Exactly that deletion is allowed, nowhere else (test_temp_file_cleanup_only).
TEMP_FILE_CLEANUP = {"rdp_config": "Remove-Item -LiteralPath $seceditFiles -Force -ErrorAction SilentlyContinue"}


def walk(node: Node):
    yield node
    for child in node.children:
        yield from walk(child)


def code_of(name: str) -> str:
    return "\n".join(line for line in scripts.load(name).text.splitlines() if not line.lstrip().startswith("#"))


def test_every_probe_has_a_schema_and_loads() -> None:
    assert scripts.names() == sorted(contract.SCHEMAS)
    for name in scripts.names():
        probe = scripts.load(name)
        assert probe.version == contract.SCHEMAS[name][0]
        assert scripts.identify(probe.text) == (name, probe.version)
        assert "function Write-ProbeResult" in probe.text
        assert scripts.COMMON_LINE not in probe.text
        # param() must stay the first statement: only comments may precede it.
        before_param = probe.text.split("param(", 1)[0]
        assert all(line.startswith("#") or not line.strip() for line in before_param.splitlines())


@pytest.mark.parametrize("name", scripts.names())
def test_probe_parses_without_errors(name: str) -> None:
    source = scripts.load(name).text.encode()
    tree = PARSER.parse(source)
    bad = [(n.type, n.start_point[0] + 1) for n in walk(tree.root_node) if n.type == "ERROR" or n.is_missing]
    assert bad == [], f"{name}.ps1 has syntax errors at {bad}"


@pytest.mark.parametrize("name", scripts.names())
def test_probe_uses_powershell_51_syntax_only(name: str) -> None:
    code = code_of(name)
    for pattern, what in PS7_ONLY:
        assert not re.search(pattern, code), f"{name}.ps1 uses {what}"


@pytest.mark.parametrize("name", scripts.names())
def test_probe_is_read_only(name: str) -> None:
    source = scripts.load(name).text.encode()
    tree = PARSER.parse(source)
    commands = {source[n.start_byte : n.end_byte].decode() for n in walk(tree.root_node) if n.type == "command_name"}
    allowed = ALLOWED | OPT_IN_WRITERS.get(name, set()) | ({"Remove-Item"} if name in TEMP_FILE_CLEANUP else set())
    writers = sorted(c for c in commands if WRITE_VERBS.match(c) and c not in allowed)
    assert writers == [], f"{name}.ps1 calls commands that change the host: {writers}"


def _commands(source: bytes, command_name: str) -> list[Node]:
    return [
        n.parent
        for n in walk(PARSER.parse(source).root_node)
        if n.type == "command_name" and source[n.start_byte : n.end_byte].decode() == command_name
    ]


@pytest.mark.parametrize("name", sorted(TEMP_FILE_CLEANUP))
def test_temp_file_cleanup_only(name: str) -> None:
    """The allowed deletion is the one statement named, in a finally block, of files the probe made."""
    source = scripts.load(name).text.encode()
    [removal] = _commands(source, "Remove-Item")
    assert source[removal.start_byte : removal.end_byte].decode() == TEMP_FILE_CLEANUP[name]
    ancestors = []
    node = removal.parent
    while node is not None:
        ancestors.append(node.type)
        node = node.parent
    assert "finally_clause" in ancestors
    text = scripts.load(name).text
    # The files are new names under the session's temp folder, and secedit only exports to them.
    assert "(Join-Path -Path $env:TEMP -ChildPath ('rdp-collector-rights-' + [guid]::NewGuid()" in text
    assert "'/export' '/mergedpolicy' '/areas' 'USER_RIGHTS' '/cfg' $seceditFiles[0] '/log' $seceditFiles[1]" in text
    assert not re.search(r"secedit[^\n]*/(configure|import|generaterollback)", text, re.IGNORECASE)


def test_the_one_wmi_method_called_only_reads() -> None:
    """Only rdp_config holds a WMI object with callable methods (Get-WmiObject; CIM instances have none), and
    the one method it calls is GetGracePeriodDays, which reads the days left (no Set*, Add*, ChangeMode...)."""
    holders = {name for name in scripts.names() if "Get-WmiObject" in code_of(name)}
    assert holders == {"rdp_config"}
    text = code_of("rdp_config")
    assert text.count("Get-WmiObject") == 1 and "$terminalSettings = Get-WmiObject" in text
    assert re.findall(r"\$terminalSettings\.(\w+)\(", text) == ["GetGracePeriodDays"]


def test_only_opt_in_probes_change_hosts() -> None:
    assert set(OPT_IN_WRITERS) == set(contract.OPT_IN_PROBES)
    assert "CHANGES THE HOST" in scripts.load("user_credentials").text


def test_lint_catches_what_it_claims() -> None:
    """The lint itself: PowerShell 7 syntax and a write command are found."""
    assert PARSER.parse(b"$a = $b ?? 'x'\nGet-X && Get-Y\n").root_node.has_error
    src = b"Stop-Service -Name TermService\n"
    names = [
        src[n.start_byte : n.end_byte].decode() for n in walk(PARSER.parse(src).root_node) if n.type == "command_name"
    ]
    assert names == ["Stop-Service"] and WRITE_VERBS.match(names[0])


def test_identify_ignores_scripts_without_marker() -> None:
    assert scripts.identify("Get-Process") is None
    assert scripts.identify("# collector-probe: services v3\nparam()") == ("services", 3)
