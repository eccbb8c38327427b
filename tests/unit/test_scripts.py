"""The probe scripts as sent to hosts: identity marker, helper inserted, PowerShell 5.1 only."""

from __future__ import annotations

import re

import pytest

from collector import contract, scripts

PS7_ONLY = [
    (r"\?\?", "null-coalescing ??"),
    (r"\?\.", "null-conditional ?."),
    (r"&&|\|\|", "pipeline chain operators"),
    (r"-Parallel\b", "ForEach-Object -Parallel"),
    (r"-AsArray\b", "ConvertTo-Json -AsArray"),
    (r"-EnumsAsStrings\b", "ConvertTo-Json -EnumsAsStrings"),
    (r"\s\?\s[^:]+\s:\s", "ternary operator"),
]


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
def test_probe_uses_powershell_51_syntax_only(name: str) -> None:
    text = scripts.load(name).text
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for pattern, what in PS7_ONLY:
        assert not re.search(pattern, code), f"{name}.ps1 uses {what}"


@pytest.mark.parametrize("name", scripts.names())
def test_probe_is_read_only(name: str) -> None:
    code = "\n".join(
        line for line in scripts.load(name).text.splitlines() if not line.lstrip().startswith("#")
    )
    verbs = [m.group(0) for m in re.finditer(r"\b[A-Z][a-z]+-[A-Z]\w+", code)]
    writers = [
        v
        for v in verbs
        if re.match(r"(Set|Remove|New|Stop|Restart|Start|Enable|Disable|Clear|Rename)-", v)
        and v not in ("New-Object",)
    ]
    assert writers == [], f"{name}.ps1 calls commands that change the host: {writers}"


def test_identify_ignores_scripts_without_marker() -> None:
    assert scripts.identify("Get-Process") is None
    assert scripts.identify("# collector-probe: services v3\nparam()") == ("services", 3)
