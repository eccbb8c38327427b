"""The development tooling says one thing: the pre-commit hooks run what dev/check runs, dev/test
is dev/setup plus the whole of dev/check, and the lock pins every dependency the package names."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def script_lines(name: str) -> list[str]:
    return [line.strip() for line in (ROOT / "dev" / name).read_text().splitlines() if line.strip()]


def test_every_pre_commit_hook_runs_a_command_of_dev_check() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    check = script_lines("check")
    assert {hook["id"] for hook in hooks} == {"ruff-check", "ruff-format", "mypy"}
    for hook in hooks:
        assert any(line.startswith(hook["entry"]) for line in check), hook["entry"]


def test_dev_test_is_setup_then_the_whole_check() -> None:
    lines = [line for line in script_lines("test") if not line.startswith(("#", "set ", "cd "))]
    assert lines == ["dev/setup", 'exec dev/check --all "$@"']
    assert "exec dev/test" in (ROOT / ".ci" / "run").read_text()  # CI runs exactly the README's command


def requirement_name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_the_lock_pins_every_dependency_the_package_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    named = {requirement_name(d) for d in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        named |= {requirement_name(d) for d in extra}
    named.discard("rdp-collector")
    pins = {}
    for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            name, _, version = line.partition("==")
            assert version, line  # pinned exactly
            pins[name.lower().replace("_", "-")] = version
    assert named <= set(pins), sorted(named - set(pins))
    assert "/" not in "".join(pins.values())  # no local paths or URLs
