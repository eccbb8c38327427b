"""The check registry: the data files and the judging functions hold together (every spec has its
function and every function its spec, ids unique, each id in a file of its concern), data that does
not is refused with the file and the entry, and what reads the registry (`collect rules`, the report's
order, explain's code-to-check mapping) sees one catalogue."""

from __future__ import annotations

import ast
import copy
import inspect
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from collector import checks, codes
from collector.checks import certs as cert_checks
from collector.checks import core as reg
from collector.checks.core import CatalogueError, Scope
from collector.model import HostTarget, Role

PACKAGE = Path(inspect.getfile(checks)).parent


@pytest.fixture
def fresh() -> Iterator[None]:
    """The data is read once per process: read it again under a test, and again after it."""
    reg.catalogue_data.cache_clear()
    reg.registry.cache_clear()
    yield
    reg.catalogue_data.cache_clear()
    reg.registry.cache_clear()


def test_every_spec_has_its_function_and_every_function_its_spec() -> None:
    built = reg.registry()
    data = reg.catalogue_data()
    assert [c.spec for c in built.checks] == list(data.specs)
    assert {(c.spec.file, c.id) for c in built.checks} == set(reg._JUDGES)
    for check in built.checks:
        assert check.judge.__module__ == f"collector.checks.{check.spec.file}", check.id


def test_each_module_decorates_what_its_file_defines_and_nothing_else() -> None:
    """Read from the source, not the registry: a @judges line in a module that catalogue.yaml does
    not list would never be imported, so the registry alone could not see it."""
    data = reg.catalogue_data()
    for path in sorted(PACKAGE.glob("*.py")):
        decorated = {
            arg.value
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef)
            for dec in node.decorator_list
            if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Name) and dec.func.id == "judges"
            for arg in dec.args
            if isinstance(arg, ast.Constant)
        }
        assert decorated == set(data.of_file(path.stem)), path.name


def test_the_index_lists_every_data_file_and_each_has_its_module() -> None:
    data = reg.catalogue_data()
    yaml_files = {p.stem for p in PACKAGE.glob("*.yaml")}
    assert yaml_files == {"catalogue", *data.files}
    assert all((PACKAGE / f"{name}.py").is_file() for name in data.files)
    shipped = {e.name for e in resources.files("collector.checks").iterdir() if e.name.endswith(".yaml")}
    assert shipped == {f"{name}.yaml" for name in yaml_files}


def test_ids_are_unique_within_a_scope_and_a_shared_id_is_one_check() -> None:
    specs = reg.catalogue_data().specs
    keys = [(s.scope, s.id) for s in specs]
    assert len(keys) == len(set(keys))
    by_id: dict[str, set[Any]] = {}
    for s in specs:
        by_id.setdefault(s.id, set()).add((s.severity, s.scope))
    shared = {i for i, seen in by_id.items() if len(seen) > 1}
    # Seen over WinRM and from the workstation: one id, one severity.
    assert shared == {"net.dns-unresolved", "net.tcp-blocked", "rdp.nla-disabled", "rdp.security-layer"}
    assert all(len({severity for severity, _ in by_id[i]}) == 1 for i in shared)


def test_each_id_starts_with_a_concern_of_its_file() -> None:
    data = reg.catalogue_data()
    prefixes = [c.prefix for c in data.concerns]
    for spec in data.specs:
        assert spec.concern in prefixes, spec.id
        declared = reg._read(spec.file)["concerns"]
        assert spec.concern in declared, (spec.file, spec.id)


def test_what_each_scope_says() -> None:
    for spec in reg.catalogue_data().specs:
        assert spec.title and spec.remediation and "{{" not in spec.remediation, spec.id
        if spec.scope is Scope.HOST:
            assert spec.roles and spec.needs and spec.references, spec.id
        elif spec.scope is Scope.FLEET:
            assert spec.needs and spec.references, spec.id
        else:
            assert not (spec.roles or spec.needs or spec.applies_if or spec.unknown_hint), spec.id


def test_applies_if_keeps_a_check_to_the_hosts_whose_entry_says_what_it_compares() -> None:
    unlisted = checks.registry().get("client.unlisted-server", Scope.HOST).spec
    alone = HostTarget(name="c", address="c", roles=(Role.CLIENT,))
    listed = HostTarget(name="c", address="c", roles=(Role.CLIENT,), session_hosts=("sh",))
    assert not unlisted.applies_to_target(alone) and unlisted.applies_to_target(listed)
    inspection = checks.registry().get("rdg.ssl-inspection", Scope.FLEET).spec
    assert inspection.applies_if == "gateway" and not inspection.applies_to_target(alone)


def test_shared_text_is_written_once_and_expanded_where_it_is_named() -> None:
    data = reg.catalogue_data()
    where_bound = data.text["where_bound"]
    assert where_bound == cert_checks.WHERE_BOUND
    using = {s.id for s in data.specs if where_bound in s.remediation}
    assert {s.id for s in data.specs if s.file == "certs"} <= using
    assert {"net.tls-handshake", "rdp.negotiation"} <= using


# --- data that does not hold together is refused, naming the file and the entry ----------------


def _edited(edit: Callable[[dict[str, Any]], None], file: str) -> Callable[[str], Any]:
    real = reg._read

    def read(name: str) -> Any:
        document = copy.deepcopy(real(name))
        if name == file:
            edit(document)
        return document

    return read


def _first(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        document["checks"][0][field] = value

    return edit


def _drop(field: str) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        del document["checks"][0][field]

    return edit


def _append_copy_of_first(document: dict[str, Any]) -> None:
    document["checks"].append(dict(document["checks"][0]))


BROKEN: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    # (case, file, edit, words of the error)
    ("unknown field", "host", _first("severty", "info"), "host.yaml: checks.0.severty: Extra inputs"),
    ("bad severity", "rdp", _first("severity", "fatal"), "rdp.yaml: checks.0.severity: Input should be"),
    ("bad id", "host", _first("id", "Host.Time_Skew"), "host.yaml: checks.0.id: String should match"),
    ("no remediation", "client", _drop("remediation"), "client.yaml: checks.0.remediation: Field required"),
    ("two lines of title", "host", _first("title", "a\nb"), "host.yaml: checks.0.title: String should match"),
    ("duplicate id", "network", _append_copy_of_first, "net.dns-unresolved is defined twice"),
    ("wrong concern", "host", _first("id", "rdp.time-skew"), "a rdp.* check in a file of host.* checks"),
    ("unknown concern", "host", _first("id", "hots.time-skew"), "'hots' is no concern of catalogue.yaml"),
    ("unknown probe", "host", _first("needs", ["hots"]), "needs hots, which no probe is called"),
    ("host check without roles", "host", _first("roles", []), "names the roles it is judged for"),
    ("host check without probes", "host", _first("needs", []), "names the probes it needs"),
    ("endpoint check with roles", "endpoints", _first("roles", ["client"]), "has no roles, needs or applies_if"),
    ("hint off a host check", "certs", _first("unknown_hint", "x"), "only a host check says what to do"),
    ("unknown text", "certs", _first("remediation", "see {{nowhere}}"), "no text is called 'nowhere'"),
    ("other severity elsewhere", "endpoints", _first("severity", "info"), "has another severity elsewhere"),
    ("reference to no check", "host", _first("references", ["host.nope"]), "refers to host.nope, no check"),
    ("applies_if on no field", "client", _first("applies_if", "roles"), "checks.0.applies_if: Input should be"),
]


@pytest.mark.parametrize(("file", "edit", "words"), [row[1:] for row in BROKEN], ids=[row[0] for row in BROKEN])
def test_data_that_does_not_hold_together_is_refused(
    monkeypatch: pytest.MonkeyPatch, fresh: None, file: str, edit: Callable[[dict[str, Any]], None], words: str
) -> None:
    monkeypatch.setattr(reg, "_read", _edited(edit, file))
    with pytest.raises(CatalogueError) as error:
        reg.catalogue_data()
    assert words in str(error.value)


def test_a_shared_text_nobody_uses_is_refused(monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    monkeypatch.setattr(reg, "_read", _edited(lambda d: d["text"].update(spare="unused words"), "certs"))
    with pytest.raises(CatalogueError, match="text spare is used by no check"):
        reg.catalogue_data()


def test_a_concern_a_file_declares_but_does_not_hold_is_refused(monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    monkeypatch.setattr(reg, "_read", _edited(lambda d: d["concerns"].append("cert"), "host"))
    with pytest.raises(CatalogueError, match=r"host\.yaml: concerns cert have no check here"):
        reg.catalogue_data()


def test_a_spec_without_a_function_and_a_function_without_a_spec_are_refused() -> None:
    data = reg.catalogue_data()
    judging = dict(reg._JUDGES)
    del judging[("rdp", "rdp.disabled")]
    judging[("rdp", "rdp.extra")] = judging[("rdp", "rdp.licensing")]
    with pytest.raises(CatalogueError) as error:
        reg.pair(data, judging)
    assert "rdp.disabled (rdp.yaml) has no @judges function in rdp.py" in str(error.value)
    assert "rdp.py: licensing judges rdp.extra, which rdp.yaml does not define" in str(error.value)


def test_a_function_for_an_id_in_another_file_is_refused() -> None:
    """services.py judges rdp.service-stopped; a function elsewhere for it has no spec in its own file."""
    judging = {**reg._JUDGES, ("rdp", "rdp.service-stopped"): reg._JUDGES[("services", "rdp.service-stopped")]}
    with pytest.raises(CatalogueError, match=r"rdp\.yaml does not define"):
        reg.pair(reg.catalogue_data(), judging)


def test_the_decorator_refuses_a_second_function_for_an_id_and_functions_outside_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reg, "_JUDGES", dict(reg._JUDGES))

    def judge(facts: Any) -> Any:
        raise AssertionError

    with pytest.raises(CatalogueError, match=r"judging functions live in collector\.checks"):
        reg.judges("host.time-skew")(judge)
    judge.__module__ = "collector.checks.host"
    with pytest.raises(CatalogueError, match=r"two functions judge host\.time-skew"):
        reg.judges("host.time-skew")(judge)
    with pytest.raises(CatalogueError, match="'Host' is not a check id"):
        reg.judges("Host")(judge)
    with pytest.raises(CatalogueError, match="names the check ids"):
        reg.judges()


# --- what reads the registry ---------------------------------------------------------------------


def test_rules_and_the_catalogue_follow_the_registry_order() -> None:
    built = checks.registry()
    assert [e.id for e in checks.rules()] == list(built.ids())
    assert checks.catalogue() == built.of_scope(Scope.HOST)
    assert [c.id for c in built.of_scope(Scope.COLLECTION)] == [
        "collect.unreachable",
        "collect.auth-failed",
        "collect.timeout",
        "collect.bad-output",
    ]


def test_explain_names_only_checks_the_registry_holds(monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    assert codes.check_ids() <= set(checks.registry().ids())
    reg.registry.cache_clear()
    monkeypatch.setattr(codes, "check_ids", lambda: frozenset({"rdp.disabled", "rdp.nope"}))
    with pytest.raises(CatalogueError, match=r"codes.py: explain names rdp.nope, which no check is"):
        reg.registry()


def test_the_report_groups_by_the_registry_concerns() -> None:
    """The report keeps its own table of concern headings for now: it must say what the registry says."""
    from collector import report

    assert {c.prefix: c.title for c in checks.registry().concerns} == report.CONCERNS


def test_the_table_by_concern_lists_every_id_once_under_its_concern() -> None:
    from collector import reference_cli

    built = checks.registry()
    rows = reference_cli.concerns_markdown().splitlines()[2:]
    assert len(rows) == len(built.concerns)
    listed = []
    for row, concern in zip(rows, built.concerns, strict=True):
        label, cell = row.removeprefix("| ").removesuffix(" |").split(" | ")
        ids = [i.strip("`") for i in cell.split(", ")]
        assert label == concern.label
        assert all(i.startswith(f"{concern.prefix}.") for i in ids), row
        listed += ids
    assert sorted(listed) == sorted(built.ids())
