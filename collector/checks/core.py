"""The check registry: every check's spec, read from the data files beside this module, paired
with the function that judges it.

``catalogue.yaml`` names the concerns (the prefix of a check id: ``rdp`` in ``rdp.disabled``) and
the check files in catalogue order. Each check file (``host.yaml``...) holds the specs judged by
the module of the same name (``host.py``): its scope, the concerns its ids may start with, shared
passages of text (``text:``, used as ``{{name}}`` in any file) and its checks, in order. The data
is read once, with ``yaml.safe_load``, and validated; ``registry()`` then imports the check modules,
whose ``@judges(...)`` functions register themselves, and refuses to start unless every spec has
its function and every function its spec.
"""

from __future__ import annotations

import enum
import functools
import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from collector.model import CheckResult, Evidence, HostTarget, Role, Severity, Status

ID_PATTERN = r"[a-z]+\.[a-z0-9]+(?:-[a-z0-9]+)*"
_ID = re.compile(ID_PATTERN)
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
PACKAGE = "collector.checks"


class Scope(enum.StrEnum):
    """Where a check's facts come from, which decides what its judging function takes."""

    HOST = "host"
    """A host's WinRM probes: ``judge(facts: HostFacts) -> Verdict``, run by ``checks.evaluate``."""
    ENDPOINT = "endpoint"
    """The workstation's own probes of an endpoint: the function takes what its probe returned."""
    FLEET = "fleet"
    """Two hosts' facts, once every host is collected (``fleet.evaluate_fleet``)."""
    COLLECTION = "collection"
    """A host whose facts could not be collected: ``judge(facts, problem) -> Verdict``."""


# Where each scope's results are seen from, as `collect rules` says it (a host check adds its roles).
VANTAGE = {
    Scope.ENDPOINT: "workstation",
    Scope.FLEET: "across hosts (client vs. gateway, client vs. workstation)",
    Scope.COLLECTION: "collector",
}


@dataclass(frozen=True)
class Verdict:
    """What a check function decides; the check's spec adds id, severity and remediation."""

    status: Status
    title: str
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class CheckSpec:
    """One check as its data file describes it: what every result of it carries."""

    id: str
    scope: Scope
    severity: Severity
    title: str
    remediation: str
    references: tuple[str, ...]
    roles: frozenset[Role] = frozenset()
    """The host roles it is judged for (host and fleet scope; for a fleet check, none means any)."""
    needs: tuple[str, ...] = ()
    """The probes whose facts it reads (host and fleet scope): missing, the result is unknown."""
    unknown_hint: str = ""
    """What to do when the facts were not collected (e.g. an opt-in flag), added to the reason."""
    applies_if: str = ""
    """A field of the host's inventory entry that must be set for the check to mean anything
    (``session_hosts``: a comparison with the session hosts it lists needs some); otherwise the
    check is left out, like a role's."""
    file: str = ""
    """The data file it comes from, and so the module whose function judges it."""

    @property
    def concern(self) -> str:
        return self.id.split(".", 1)[0]

    def applies_to(self, roles: Iterable[Role]) -> bool:
        return bool(self.roles.intersection(roles))

    def applies_to_target(self, target: HostTarget) -> bool:
        """Whether the inventory entry gives the check what it compares (``applies_if``)."""
        return not self.applies_if or bool(getattr(target, self.applies_if))

    def result(self, verdict: Verdict, *, host: str, endpoint: str = "", vantage: str = "") -> CheckResult:
        """This check's result; when it is about an endpoint seen from a vantage point, the
        endpoint leads the evidence."""
        lead = (Evidence("endpoint", endpoint, vantage),) if endpoint and vantage else ()
        return CheckResult(
            id=self.id,
            status=verdict.status,
            severity=self.severity,
            title=verdict.title,
            host=host,
            evidence=(*lead, *verdict.evidence),
            remediation=self.remediation,
            references=self.references,
            endpoint=endpoint,
        )


# --- the data files ------------------------------------------------------------------------------

Line = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\n]+$")]
Text = Annotated[str, StringConstraints(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Concern(_Strict):
    prefix: Annotated[str, StringConstraints(pattern=r"^[a-z]+$")]
    label: Line
    """How the README's table of checks names it."""
    title: Line
    """The heading of its group on a host page."""


class _Index(_Strict):
    concerns: list[_Concern] = Field(min_length=1)
    files: list[Annotated[str, StringConstraints(pattern=r"^[a-z_]+$")]] = Field(min_length=1)


class _Spec(_Strict):
    id: Annotated[str, StringConstraints(pattern=f"^{ID_PATTERN}$")]
    title: Line
    severity: Severity
    roles: list[Role] = []
    needs: list[Annotated[str, StringConstraints(pattern=r"^[a-z_]+$")]] = []
    applies_if: Literal["", "session_hosts", "gateway"] = ""
    unknown_hint: Line | Literal[""] = ""
    remediation: Text
    references: list[Line]


class _File(_Strict):
    scope: Scope
    concerns: list[str] = Field(min_length=1)
    """The concerns its ids may start with."""
    text: dict[Annotated[str, StringConstraints(pattern=r"^[a-z_]+$")], Text] = {}
    checks: list[_Spec] = Field(min_length=1)


class CatalogueError(Exception):
    """The check data or the functions that judge it do not fit together: the message says where."""


def _read(name: str) -> Any:
    path = resources.files(PACKAGE).joinpath(f"{name}.yaml")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(f"collector/checks/{name}.yaml: {exc}") from None


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], name: str) -> _M:
    try:
        return model.model_validate(_read(name))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise CatalogueError(f"collector/checks/{name}.yaml: {problems}") from None


@dataclass(frozen=True)
class Concern:
    prefix: str
    label: str
    title: str


@dataclass(frozen=True)
class Catalogue:
    """The data files as read and checked: the concerns, then every spec in catalogue order."""

    concerns: tuple[Concern, ...]
    files: tuple[str, ...]
    specs: tuple[CheckSpec, ...]
    text: Mapping[str, str]

    def of_file(self, file: str) -> dict[str, CheckSpec]:
        """The specs of one file by id, in its order."""
        return {s.id: s for s in self.specs if s.file == file}


@functools.cache
def catalogue_data() -> Catalogue:
    """Every spec, read from the data files once and validated; no module is imported."""
    index = _validated(_Index, "catalogue")
    prefixes = [c.prefix for c in index.concerns]
    if len(set(prefixes)) != len(prefixes) or len(set(index.files)) != len(index.files):
        raise CatalogueError("collector/checks/catalogue.yaml: a concern or a file is named twice")
    files = {name: _validated(_File, name) for name in index.files}
    text: dict[str, str] = {}
    for name, data in files.items():
        for key, value in data.text.items():
            if key in text:
                raise CatalogueError(f"collector/checks/{name}.yaml: text {key!r} is defined in another file too")
            text[key] = value
    used: set[str] = set()

    def expand(value: str, where: str) -> str:
        def one(match: re.Match[str]) -> str:
            if match[1] not in text:
                raise CatalogueError(f"{where}: no text is called {match[1]!r} (a file's text: defines one)")
            used.add(match[1])
            return text[match[1]]

        expanded = _PLACEHOLDER.sub(one, value)
        if "{{" in expanded:
            raise CatalogueError(f"{where}: a '{{{{' that names no text (a text is used as {{{{name}}}})")
        return expanded

    specs: list[CheckSpec] = []
    for name, data in files.items():
        for i, raw in enumerate(data.checks):
            where = f"collector/checks/{name}.yaml: checks[{i}] ({raw.id})"
            specs.append(
                CheckSpec(
                    id=raw.id,
                    scope=data.scope,
                    severity=raw.severity,
                    title=raw.title,
                    remediation=expand(raw.remediation, where),
                    references=tuple(raw.references),
                    roles=frozenset(raw.roles),
                    needs=tuple(raw.needs),
                    unknown_hint=raw.unknown_hint,
                    applies_if=raw.applies_if,
                    file=name,
                )
            )
            _check_spec(specs[-1], raw, data, prefixes, where)
    for name, data in files.items():
        if idle := set(data.concerns) - {s.concern for s in specs if s.file == name}:
            raise CatalogueError(f"collector/checks/{name}.yaml: concerns {', '.join(sorted(idle))} have no check here")
    if unused := set(text) - used:
        raise CatalogueError(f"collector/checks: text {', '.join(sorted(unused))} is used by no check")
    _check_together(specs)
    concerns = tuple(Concern(c.prefix, c.label, c.title) for c in index.concerns)
    return Catalogue(concerns, tuple(index.files), tuple(specs), text)


def _check_spec(spec: CheckSpec, raw: _Spec, data: _File, prefixes: Sequence[str], where: str) -> None:
    """What one spec must say for its scope, and that its id belongs in its file."""
    from collector.contract import SCHEMAS

    if spec.concern not in prefixes:
        raise CatalogueError(f"{where}: {spec.concern!r} is no concern of catalogue.yaml")
    if spec.concern not in data.concerns:
        raise CatalogueError(f"{where}: a {spec.concern}.* check in a file of {', '.join(data.concerns)}.* checks")
    if len(set(raw.roles)) != len(raw.roles) or len(set(raw.needs)) != len(raw.needs):
        raise CatalogueError(f"{where}: a role or a probe is named twice")
    if unknown := [p for p in spec.needs if p not in SCHEMAS]:
        raise CatalogueError(f"{where}: needs {', '.join(unknown)}, which no probe is called")
    judged_from_host = spec.scope in (Scope.HOST, Scope.FLEET)
    if judged_from_host and not spec.needs:
        raise CatalogueError(f"{where}: a {spec.scope} check names the probes it needs")
    if spec.scope is Scope.HOST and not spec.roles:
        raise CatalogueError(f"{where}: a host check names the roles it is judged for")
    if not judged_from_host and (spec.roles or spec.needs or spec.applies_if):
        raise CatalogueError(f"{where}: an {spec.scope} check has no roles, needs or applies_if")
    if spec.unknown_hint and spec.scope is not Scope.HOST:
        raise CatalogueError(f"{where}: only a host check says what to do when its facts were not collected")


def _check_together(specs: Sequence[CheckSpec]) -> None:
    """Ids are unique within a scope; one id seen from two places is one check (one severity);
    a reference that is a check id names a check."""
    seen: dict[tuple[Scope, str], CheckSpec] = {}
    severity: dict[str, Severity] = {}
    for spec in specs:
        if (spec.scope, spec.id) in seen:
            other = seen[(spec.scope, spec.id)]
            raise CatalogueError(f"collector/checks: {spec.id} is defined twice ({other.file}.yaml, {spec.file}.yaml)")
        seen[(spec.scope, spec.id)] = spec
        if severity.setdefault(spec.id, spec.severity) is not spec.severity:
            raise CatalogueError(f"collector/checks/{spec.file}.yaml: {spec.id} has another severity elsewhere")
    for spec in specs:
        for ref in spec.references:
            if _ID.fullmatch(ref) and ref not in severity:
                raise CatalogueError(f"collector/checks/{spec.file}.yaml: {spec.id} refers to {ref}, no check")


def specs_of(file: str) -> dict[str, CheckSpec]:
    """One data file's specs by id, in its order (for a check module's own names)."""
    found = catalogue_data().of_file(file)
    if not found:
        raise CatalogueError(f"collector/checks/{file}.yaml: no such check file in catalogue.yaml")
    return found


# --- the judging functions -----------------------------------------------------------------------

_F = TypeVar("_F", bound=Callable[..., Any])
_JUDGES: dict[tuple[str, str], Callable[..., Any]] = {}


def _file_of(function: Callable[..., Any]) -> str:
    package, _, file = function.__module__.rpartition(".")
    if package != PACKAGE:
        raise CatalogueError(f"{function.__module__}.{function.__qualname__}: judging functions live in {PACKAGE}")
    return file


def judges(*ids: str) -> Callable[[_F], _F]:
    """Register the decorated function as the one that judges these checks (usually one id). Its
    spec is the entry with that id in the data file named like the function's module."""

    if not ids:
        raise CatalogueError("@judges names the check ids the function judges")

    def register(function: _F) -> _F:
        file = _file_of(function)
        for check_id in ids:
            if not _ID.fullmatch(check_id):
                raise CatalogueError(f"{function.__qualname__}: {check_id!r} is not a check id")
            if (file, check_id) in _JUDGES:
                raise CatalogueError(f"{file}.py: two functions judge {check_id}")
            _JUDGES[(file, check_id)] = function
        return function

    return register


@dataclass(frozen=True)
class Check:
    """A registered check: its spec and the function that judges it."""

    spec: CheckSpec
    judge: Callable[..., Any]

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class Registry:
    """Every check in catalogue order, each with its judging function."""

    checks: tuple[Check, ...]
    concerns: tuple[Concern, ...]

    def of_scope(self, scope: Scope) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.spec.scope is scope)

    def of_file(self, file: str) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.spec.file == file)

    def get(self, check_id: str, scope: Scope) -> Check:
        found = next((c for c in self.checks if c.id == check_id and c.spec.scope is scope), None)
        if found is None:
            raise KeyError(f"no {scope} check is called {check_id!r}")
        return found

    def ids(self) -> tuple[str, ...]:
        """Every check id once, in catalogue order."""
        return tuple(dict.fromkeys(c.id for c in self.checks))


def pair(catalogue: Catalogue, judging: Mapping[tuple[str, str], Callable[..., Any]]) -> Registry:
    """Every spec with its function; a spec without one, or a function without a spec, is refused."""
    problems = []
    checks = []
    for spec in catalogue.specs:
        function = judging.get((spec.file, spec.id))
        if function is None:
            problems.append(f"{spec.id} ({spec.file}.yaml) has no @judges function in {spec.file}.py")
        else:
            checks.append(Check(spec, function))
    specs = {(s.file, s.id) for s in catalogue.specs}
    for (file, check_id), function in judging.items():
        if (file, check_id) not in specs:
            problems.append(f"{file}.py: {function.__qualname__} judges {check_id}, which {file}.yaml does not define")
    if problems:
        raise CatalogueError("the check catalogue does not hold together: " + "; ".join(problems))
    return Registry(tuple(checks), catalogue.concerns)


@functools.cache
def registry() -> Registry:
    """The registry, built once: the data files read and checked, every check module imported (its
    functions register themselves), each spec paired with its function."""
    data = catalogue_data()
    for file in data.files:
        importlib.import_module(f"{PACKAGE}.{file}")
    built = pair(data, _JUDGES)
    _check_explained(built)
    return built


def _check_explained(built: Registry) -> None:
    """`collect explain` names checks for each likely cause of a code: each must be one."""
    from collector import codes

    if missing := codes.check_ids() - set(built.ids()):
        raise CatalogueError(f"collector/codes.py: explain names {', '.join(sorted(missing))}, which no check is")
