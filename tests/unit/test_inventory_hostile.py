"""Hostile and alias-heavy inventories: YAML aliases nested in each other's anchors ("billion
laughs") are refused at once with file, line and reason, instead of being walked and validated
value by value for hours; ordinary anchors and merge keys keep working."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import inventory

# Nine anchors, each a list of nine aliases of the one before: 342 bytes that stand for more
# than 400 million values.
LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

EXPANSION = (
    "expands to more than 1,000,000 values through YAML aliases (anchors reused inside each other); "
    "write the hosts out or use defaults/groups for shared settings"
)


def laughs_in_hosts(levels: int) -> str:
    """The same attack dressed as an inventory, one level per client's session_hosts, each alias
    on a line of its own: 'l5' stands for 597,871 values, so the first alias of it is where the
    document passes a million."""
    lines = ["hosts:"]
    for level in range(levels):
        lines += [f"  - name: ws{level}.example", "    roles: [client]", f"    session_hosts: &l{level}"]
        items = ["sh.example"] * 9 if level == 0 else [f"*l{level - 1}"] * 9
        lines += [f"      - {item}" for item in items]
    return "\n".join(lines) + "\n"


def laughs_in_merges(levels: int) -> str:
    """Merge keys: each mapping merges nine aliases of the one before."""
    lines = ["defaults:", "  m0: &m0 {k0: 1, k1: 2, k2: 3, k3: 4, k4: 5, k5: 6, k6: 7, k7: 8, k8: 9}"]
    for level in range(1, levels):
        lines.append(f"  m{level}: &m{level} {{<<: [{', '.join([f'*m{level - 1}'] * 9)}]}}")
    return "\n".join(lines) + "\n"


def problems(text: str) -> list[inventory.Problem]:
    with pytest.raises(inventory.InventoryError) as info:
        inventory.parse(text, "inv.yaml")
    return list(info.value.problems)


def first_line(text: str, line: str) -> int:
    return text.splitlines().index(line) + 1


@pytest.mark.timeout(30)
def test_billion_laughs_is_refused_where_it_passes_the_bound() -> None:
    """a..f stand for 672,603 values; the first *f on g's line takes the document past a million."""
    [p] = problems(LAUGHS)
    assert (p.file, p.line, p.field, p.message) == ("inv.yaml", 7, "", EXPANSION)
    assert str(p) == f"inv.yaml:7: {EXPANSION}"


@pytest.mark.timeout(30)
def test_twelve_levels_inside_hosts_are_refused_at_the_alias_line() -> None:
    text = laughs_in_hosts(12)
    [p] = problems(text)
    assert (p.line, p.field, p.message) == (77, "", EXPANSION)
    assert p.line == first_line(text, "      - *l5")  # ws6's first alias: lines 2 + 12 * 6 + 3


@pytest.mark.timeout(30)
def test_billion_laughs_through_merge_keys_is_refused() -> None:
    """m0..m4 stand for 143,005 values, m4 for 127,119: the seventh *m4 on m5's line passes a million."""
    [p] = problems(laughs_in_merges(9))
    assert (p.line, p.field, p.message) == (7, "", EXPANSION)


@pytest.mark.timeout(30)
def test_the_tree_walk_visits_an_anchored_node_once() -> None:
    """Without the bound, the duplicate-key and depth walk alone still ends at once."""
    found: list[inventory.Problem] = []
    root = yaml.compose(laughs_in_hosts(12), Loader=inventory._Loader)
    assert inventory._check_tree(root, "inv.yaml", "", found) is True
    assert found == []


def test_an_inventory_without_aliases_over_the_bound_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each host is 6 values (the mapping, two keys, the name, the list and its role): the fourth
    host starts as the 20th value and its first key, on line 7, is the 21st."""
    monkeypatch.setattr(inventory, "MAX_VALUES", 20)
    text = "".join(f"- name: h{i}.example\n  roles: [client]\n" for i in range(4))
    [p] = problems(text)
    assert (p.line, p.field) == (7, "")
    assert p.message == "has more than 20 values, far more than any estate needs; split it into several inventories"


def test_an_alias_over_a_small_bound_is_named_at_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The line is the alias's own, not its anchor's; the alias before it stayed under the bound."""
    monkeypatch.setattr(inventory, "MAX_VALUES", 20)
    text = "hosts:\n  - &h [a, b, c, d, e]\n  - *h\n  -\n    *h\n  - [*h, *h]\n"
    [p] = problems(text)
    assert (p.line, p.message) == (5, EXPANSION.replace("1,000,000", "20"))


def test_an_estate_of_5000_hosts_with_aliased_farms_stays_under_the_bound() -> None:
    lines = ["hosts:"]
    for farm in range(10):
        lines += [f"  - {{name: sh{farm}-{n}.example, roles: [session_host]}}" for n in range(20)]
    for n in range(4800):
        farm = n % 10
        names = ", ".join(f"sh{farm}-{i}.example" for i in range(20))
        shared = f"&farm{farm} [{names}]" if n < 10 else f"*farm{farm}"
        lines += [f"  - name: ws{n}.example", "    roles: [client]", f"    session_hosts: {shared}"]
    text = "\n".join(lines) + "\n"
    root = yaml.compose(text, Loader=inventory._Loader)
    assert inventory._expanded_size(root, inventory.MAX_VALUES) < inventory.MAX_VALUES // 5
    inv = inventory.parse(text, "inv.yaml")
    assert len(inv.targets) == 5000
    assert inv.targets[-1].session_hosts == tuple(f"sh9-{i}.example" for i in range(20))


def test_one_anchor_reused_by_three_hosts_keeps_working() -> None:
    """A settings mapping merged into three hosts (each overriding what it needs, which is not a
    duplicate key) and a list of session hosts aliased by three clients."""
    text = """\
hosts:
  - &branch
    name: sh01.corp.example
    roles: [session_host]
    transport: http
    auth: ntlm
    username: CORP\\svc
    password_env: PW
  - <<: *branch
    name: sh02.corp.example
  - <<: *branch
    name: sh03.corp.example
    transport: https
  - {name: ws01.corp.example, roles: [client], session_hosts: &farm [sh01.corp.example, sh02.corp.example]}
  - {name: ws02.corp.example, roles: [client], session_hosts: *farm}
  - {name: ws03.corp.example, roles: [client], session_hosts: *farm}
"""
    inv = inventory.parse(text, "inv.yaml")
    by_name = {t.name: t for t in inv.targets}
    assert [(t.name, t.transport, t.port, t.auth, t.username) for t in inv.targets[:3]] == [
        ("sh01.corp.example", "http", 5985, "ntlm", "CORP\\svc"),
        ("sh02.corp.example", "http", 5985, "ntlm", "CORP\\svc"),
        ("sh03.corp.example", "https", 5986, "ntlm", "CORP\\svc"),
    ]
    assert inv.credentials["sh03.corp.example"] == inventory.CredentialRef("CORP\\svc", "env", "PW")
    for client in ("ws01.corp.example", "ws02.corp.example", "ws03.corp.example"):
        assert by_name[client].session_hosts == ("sh01.corp.example", "sh02.corp.example")


def test_an_alias_inside_its_own_anchor_is_still_refused() -> None:
    [p] = problems("hosts:\n  - &a {name: a.example, roles: [client]}\n  - *a\n  - &c [*a, [*c]]\n")
    assert (p.line, p.field) == (4, "hosts[2][1][0]")
    assert p.message == "is an alias of something that contains it, so it never ends (move the anchor)"


def test_nesting_through_aliases_still_counts_where_the_alias_is_used() -> None:
    """Seven anchors of ten nested lists, each inside the next: no anchor is deep, the document is."""
    text = "hosts:\n" + "".join(f"  - &a{i} {'[' * 10}{f'*a{i - 1}' if i else 'x'}{']' * 10}\n" for i in range(7))
    [p] = problems(text)
    assert (p.line, p.field) == (2, ("hosts[6]" + "[0]" * 63)[:60] + "...")
    assert p.message == "nests deeper than 64 levels"


@pytest.mark.parametrize("depth", [2, 900], ids=["shallow", "deep"])
def test_a_list_as_a_key_is_refused_as_yaml(depth: int) -> None:
    """The keys are checked before the data is built, without spelling a list key out."""
    [p] = problems("hosts: []\n? " + "[" * depth + "]" * depth + "\n: 1\n")
    assert (p.line, p.message) == (2, "not valid YAML: found unhashable key")


def test_duplicate_key_inside_an_aliased_mapping_is_reported_once() -> None:
    text = """\
hosts:
  - &ws
    name: ws01.corp.example
    roles: [client]
    roles: [client]
  - *ws
  - *ws
"""
    found = problems(text)
    assert [(p.line, p.field, p.message) for p in found] == [
        (3, "hosts[1].name", "duplicate host 'ws01.corp.example' (first defined on line 2)"),
        (3, "hosts[2].name", "duplicate host 'ws01.corp.example' (first defined on line 2)"),
        (5, "hosts[0].roles", "duplicate key (first set on line 4)"),
    ]


def test_duplicate_key_inside_a_merged_mapping_is_reported_once() -> None:
    text = """\
defaults: &d
  auth: ntlm
  auth: kerberos
hosts:
  - <<: *d
    name: a.example
    roles: [client]
  - <<: *d
    name: b.example
    roles: [client]
"""
    [p] = problems(text)
    assert (p.line, p.field, p.message) == (3, "defaults.auth", "duplicate key (first set on line 2)")


def naive_size(node: yaml.Node) -> int:
    if isinstance(node, yaml.MappingNode):
        return 1 + sum(naive_size(k) + naive_size(v) for k, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        return 1 + sum(naive_size(item) for item in node.value)
    return 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.integers(-1, 7), max_size=4), min_size=1, max_size=7))
def test_the_memoised_counts_match_expanding_every_alias(shapes: list[list[int]]) -> None:
    """Anchor i lists aliases of earlier anchors (and scalars for -1 or a later index): the node
    count and the parser-event count both equal the size of the document expanded by hand."""
    lines = ["hosts:"]
    for i, refs in enumerate(shapes):
        items = [f"*a{j}" if 0 <= j < i else "x" for j in refs]
        lines.append(f"  - &a{i} {{k: [{', '.join(items)}]}}")
    text = "\n".join(lines) + "\n"
    root = yaml.compose(text, Loader=inventory._Loader)
    size = naive_size(root)
    assert inventory._expanded_size(root, 10**9) == size
    assert inventory._expanded_size(root, size - 1) > size - 1
    assert inventory._where_values_exceed(text, size) == (1, True)  # never passed: the fallback
    line, _ = inventory._where_values_exceed(text, size - 1)
    assert 1 <= line <= len(lines)
