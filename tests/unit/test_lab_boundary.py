"""The lab's edges: it is an extra that says how to get it when missing, it knows the collector only
through the probe contract and the probe scripts, and what it answers still covers what the
collector asks for."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import collector.lab
from collector import runner
from collector.lab import emulate, fleet
from collector.model import HostTarget, Role

LAB = Path(collector.lab.__file__).parent
# The shared truth the lab may use: the schemas of probe output and the probe scripts themselves.
ALLOWED = ("collector.contract", "collector.scripts", "collector.lab")
MISSING = "the lab needs the 'lab' extra (psrpcore is not installed): pip install 'rdp-collector[lab]'"


def test_the_lab_names_the_extra_when_psrpcore_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psrpcore" else find_spec(name, *a)
    )
    assert collector.lab.missing_lab_dependency() == MISSING


def test_nothing_is_missing_where_the_lab_extra_is_installed() -> None:
    assert collector.lab.missing_lab_dependency() is None


def collector_imports(path: Path) -> set[str]:
    """The collector modules a source file imports (``from collector import x`` as collector.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "collector"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "collector":
            module = node.module or ""
            found |= {f"{module}.{a.name}" for a in node.names} if module == "collector" else {module}
    return found


def test_the_lab_imports_only_the_contract_the_scripts_and_itself() -> None:
    sources = sorted(LAB.rglob("*.py"))
    assert LAB / "wsman" / "server.py" in sources
    imported = {f"{path.relative_to(LAB)}: {name}" for path in sources for name in collector_imports(path)}
    assert imported
    assert [i for i in sorted(imported) if not i.split(": ")[1].startswith(ALLOWED)] == []


def test_without_psrpcore_the_lab_package_still_imports_and_says_what_to_install() -> None:
    blocked = "import sys; sys.modules['psrpcore'] = None  # as if not installed\n"
    code = blocked + "import collector.lab\nprint(collector.lab.missing_lab_dependency())"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == MISSING


@pytest.mark.parametrize("host", fleet.load_scenario(), ids=lambda h: h.name)
def test_the_lab_answers_every_probe_the_collector_plans_for_a_demo_host(host: fleet.ScenarioHost) -> None:
    target = HostTarget(
        name=host.name,
        address=host.name,
        roles=tuple(Role(r) for r in host.roles),
        gateway=host.gateway,
        session_hosts=host.session_hosts,
    )
    planned = runner.plan(target, runner.RunOptions(user_context=True))
    assert [probe for probe, _ in fleet.probe_calls(host)] == [call.probe for call in planned]
    for call in planned:  # every parameter the collector sends is one the probe's param() block declares
        assert set(call.parameters) <= set(emulate.probe_defaults(call.probe)), call.probe
