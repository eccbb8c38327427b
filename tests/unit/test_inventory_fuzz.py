"""Any inventory document ends in a validated inventory or an InventoryError naming what and
where, never another exception; through the CLI that is exit 2 with no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import inventory

KEYS = [
    "defaults",
    "groups",
    "hosts",
    "name",
    "address",
    "roles",
    "gateway",
    "session_hosts",
    "transport",
    "port",
    "auth",
    "username",
    "password_env",
    "password",
    "password_prompt",
    "password_keyring",
    "cert_validation",
    "ca_file",
    "host_deadline",
    "connect_timeout",
    "allow_unencrypted",
    "colour",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["client", "gateway", "session_host", "https", "http", "ntlm", "basic", "a.example"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    max_leaves=25,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4) | VALUES


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_any_document_is_accepted_or_refused_with_a_location(document: object) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        inv = inventory.parse(text, "fuzz.yaml")
    except inventory.InventoryError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml" and problem.message
            assert str(problem).startswith("fuzz.yaml")
    else:
        assert inv.targets and all(t.name for t in inv.targets)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_accepted_or_refused_with_a_location(text: str) -> None:
    try:
        inventory.parse(text, "fuzz.yaml")
    except inventory.InventoryError as exc:
        assert exc.problems and all(p.file == "fuzz.yaml" for p in exc.problems)


def test_cli_exit_2_without_traceback_on_garbage(tmp_path: Path) -> None:
    cases = ["\x00\x01binary", "hosts: [1, 2", "hosts:\n  - name: [\n", "- just\n- a list\n", "hosts: 5\n"]
    for i, text in enumerate(cases):
        path = tmp_path / f"inv{i}.yaml"
        path.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "collector.cli", "--inventory", str(path), "-o", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (text, result.stderr)
        assert "Traceback" not in result.stderr and str(path) in result.stderr
