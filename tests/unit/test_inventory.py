"""Inventory validation: every problem named with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector import inventory
from collector.model import Role

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
defaults:
  username: CORP\\svc
  password_env: PW
groups:
  - name: gws
    transport: http
    auth: ntlm
    hosts:
      - name: gw01.corp.example
        roles: [gateway]
hosts:
  - name: sh01.corp.example
    address: 10.0.0.5
    roles: [session_host]
  - name: ws01.corp.example
    roles: [client]
    gateway: gw01.corp.example
    session_hosts: [sh01.corp.example]
"""


def problems(text: str) -> list[inventory.Problem]:
    with pytest.raises(inventory.InventoryError) as info:
        inventory.parse(text, "inv.yaml")
    return list(info.value.problems)


def test_good_inventory_resolves_layers_and_defaults() -> None:
    inv = inventory.parse(GOOD, "inv.yaml")
    by_name = {t.name: t for t in inv.targets}
    gw = by_name["gw01.corp.example"]
    assert (gw.transport, gw.port, gw.auth, gw.group) == ("http", 5985, "ntlm", "gws")
    sh = by_name["sh01.corp.example"]
    assert (sh.address, sh.transport, sh.port, sh.auth) == ("10.0.0.5", "https", 5986, "negotiate")
    assert sh.roles == (Role.SESSION_HOST,)
    ws = by_name["ws01.corp.example"]
    assert ws.address == "ws01.corp.example"
    assert ws.gateway == "gw01.corp.example" and ws.session_hosts == ("sh01.corp.example",)
    assert inv.credentials["sh01.corp.example"] == inventory.CredentialRef("CORP\\svc", "env", "PW")


def test_example_inventory_in_repo_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = (ROOT / "inventory.yaml").read_text()
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder")
    inv = inventory.parse(text.replace("/etc/ssl/certs/corp-root-ca.pem", str(ca)), "inventory.yaml")
    assert len(inv.targets) == 7
    assert {t.name for t in inv.targets if Role.GATEWAY in t.roles} == {
        "rdgw01.corp.example",
        "rdgw02.corp.example",
        "rds-allinone.corp.example",
    }
    branch = next(t for t in inv.targets if t.name == "rdsh-br01.corp.example")
    assert (branch.transport, branch.port, branch.auth) == ("http", 5985, "ntlm")


def test_broken_yaml_names_the_line() -> None:
    [p] = problems("hosts:\n  - name: a\n    roles: [client\n")
    assert p.file == "inv.yaml" and p.line == 4
    assert "not valid YAML" in p.message


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("hosts: &h\n  - *h\n", 1, "hosts[0]", "is an alias of something that contains it"),
        ("defaults: &d\n  more: *d\nhosts: []\n", 1, "defaults.more", "so it never ends (move the anchor)"),
        ("hosts:\n" + "  - " + "[" * 70 + "]" * 70 + "\n", 2, ("hosts[0]" + "[0]" * 63)[:60] + "...", "deeper"),
        ("hosts:\n  - name: a\ud800\n", 2, "", "'\\ud800' is not a Unicode character"),
    ],
    ids=["alias in a list", "alias in a mapping", "nested lists", "lone surrogate"],
)
def test_yaml_that_cannot_be_walked_is_refused_with_its_line(text: str, line: int, field: str, words: str) -> None:
    """A document that names itself (or nests absurdly deep) and text that is not Unicode are
    refused like any other mistake, not with a recursion error or an encoding traceback; an alias
    is reported where its anchor is."""
    [p] = problems(text)
    assert (p.line, p.field) == (line, field)
    assert words in p.message


def test_unknown_key_names_line_and_field() -> None:
    [p] = problems("hosts:\n  - name: a.example\n    roles: [client]\n    adress: 10.0.0.1\n")
    assert (p.line, p.field) == (4, "hosts[0].adress")
    assert "unknown key" in p.message
    assert str(p) == "inv.yaml:4: hosts[0].adress: " + p.message


def test_duplicate_host_names_both_lines() -> None:
    text = "hosts:\n  - name: a.example\n    roles: [client]\n  - name: A.example\n    roles: [gateway]\n"
    [p] = problems(text)
    assert (p.line, p.field) == (4, "hosts[1].name")
    assert "duplicate host 'A.example' (first defined on line 2)" in p.message


def test_duplicate_yaml_key_is_refused() -> None:
    text = "hosts:\n  - name: a.example\n    roles: [client]\n    roles: [gateway]\n"
    [p] = problems(text)
    assert p.line == 4 and "duplicate key (first set on line 3)" in p.message


def test_plain_password_is_refused_with_explanation() -> None:
    text = "defaults:\n  username: u\n  password: hunter2\nhosts:\n  - name: a.example\n    roles: [client]\n"
    [p] = problems(text)
    assert (p.line, p.field) == (3, "defaults.password")
    assert "password_env" in p.message and "plain password" in p.message
    assert "hunter2" not in p.message


def test_unknown_role_and_wrong_type() -> None:
    text = "hosts:\n  - name: a.example\n    roles: [gatway]\n    port: '5986'\n"
    found = problems(text)
    assert [(p.line, p.field) for p in found] == [(3, "hosts[0].roles[0]"), (4, "hosts[0].port")]
    assert "'gatway'" in found[0].message and "client" in found[0].message


def test_client_naming_a_gateway_not_in_inventory() -> None:
    text = "hosts:\n  - name: ws.example\n    roles: [client]\n    gateway: gw.example\n"
    [p] = problems(text)
    assert (p.line, p.field) == (4, "hosts[0].gateway")
    assert "not a host with the gateway role" in p.message


def test_all_problems_reported_at_once_in_line_order() -> None:
    text = (
        "hosts:\n"
        "  - name: ws.example\n"
        "    roles: [client]\n"
        "    gateway: nowhere.example\n"
        "  - name: sh.example\n"
        "    roles: [session_host]\n"
        "    auth: basic\n"
        "    transport: http\n"
        "    username: u\n"
        "    password_env: P\n"
    )
    found = problems(text)
    assert [p.line for p in found] == [4, 7]
    assert "readable on the wire" in found[1].message


def test_empty_and_non_mapping_documents() -> None:
    assert "is empty" in problems("")[0].message
    assert "must be a mapping" in problems("- a\n- b\n")[0].message


def test_two_password_sources_and_missing_username() -> None:
    text = "defaults:\n  password_env: P\n  password_prompt: true\nhosts:\n  - name: a.example\n    roles: [client]\n"
    messages = [p.message for p in problems(text)]
    assert any("choose one password source" in m for m in messages)
    assert any("no username" in m for m in messages)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(inventory.InventoryError) as info:
        inventory.load(tmp_path / "nope.yaml")
    assert "cannot read the file" in str(info.value)


def test_from_document_without_lines() -> None:
    with pytest.raises(inventory.InventoryError) as info:
        inventory.from_document({"hosts": [{"name": "a.example", "roles": ["nope"]}]}, "command line")
    assert str(info.value.problems[0]).startswith("command line")
