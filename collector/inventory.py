"""Load and validate ``inventory.yaml`` into host targets, with file:line in every message.

Validation is pydantic (types, unknown keys, allowed values); this module adds what a schema
cannot say (duplicate keys and names, relations between hosts, refused plain passwords) and
maps every problem back to the YAML line it came from, because the person reading the message
is looking at the file, not at a Python path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from collector.model import HostTarget, Role

DEFAULT_PORTS = {"https": 5986, "http": 5985}
AUTH_METHODS = ("negotiate", "ntlm", "kerberos", "credssp", "basic")

PLAIN_TEXT_REFUSAL = (
    "a plain password is not accepted in the inventory (it would end up in backups, "
    "version control and support tickets); use password_env: VARIABLE, "
    "password_keyring: SERVICE, or password_prompt: true"
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory, located in the file."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class InventoryError(Exception):
    """The inventory cannot be used; ``problems`` lists every reason found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
_SERVICE_CLASS = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")


class _Settings(BaseModel):
    """Connection settings that defaults, groups and hosts may each set (most specific wins)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transport: Literal["http", "https"] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    auth: Literal["negotiate", "ntlm", "kerberos", "credssp", "basic"] | None = None
    username: str | None = None
    password_env: str | None = None
    password_keyring: str | None = None
    password_prompt: bool | None = None
    password: Any = None  # present only to be refused with an explanation
    cert_validation: bool | None = None
    ca_file: str | None = None
    allow_unencrypted: bool | None = None
    connect_timeout: PositiveSeconds | None = None
    operation_timeout: PositiveSeconds | None = None
    host_deadline: PositiveSeconds | None = None
    spn_service: str | None = None
    delegate: bool | None = None
    rdp_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    gateway_port: Annotated[int, Field(ge=1, le=65535)] | None = None

    @field_validator("spn_service")
    @classmethod
    def _service_class(cls, value: str | None) -> str | None:
        if value is not None and not _SERVICE_CLASS.fullmatch(value):
            raise ValueError(
                f"must be a Kerberos service class such as HTTP, WSMAN or host (the part before the "
                f"'/' of the SPN; the host part is always the host's name), not {value!r}"
            )
        return value

    @field_validator("password")
    @classmethod
    def _refuse_plain_password(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(PLAIN_TEXT_REFUSAL)
        return value


class _Host(_Settings):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")]
    address: str | None = None
    roles: Annotated[list[Literal["client", "gateway", "session_host"]], Field(min_length=1)]
    gateway: str | None = None
    session_hosts: list[str] = []


class _Group(_Settings):
    name: Annotated[str, Field(min_length=1)]
    hosts: list[_Host] = []


class _Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    defaults: _Settings = _Settings()
    groups: list[_Group] = []
    hosts: list[_Host] = []


@dataclass(frozen=True)
class CredentialRef:
    """Where a password comes from. Holds no secret, so it may be logged and reported."""

    username: str
    source: Literal["env", "keyring", "prompt", "none"]
    name: str = ""

    def describe(self) -> str:
        return {"env": f"env:{self.name}", "keyring": f"keyring:{self.name}", "prompt": "prompt"}.get(
            self.source, "none"
        )


@dataclass(frozen=True)
class Inventory:
    path: str
    targets: tuple[HostTarget, ...]
    credentials: dict[str, CredentialRef]  # host name -> reference


# ---------------------------------------------------------------------------------------------
# YAML with positions


# libyaml's parser when PyYAML was built with it (the wheels are): a 500-host inventory parses in
# a fraction of the pure-Python parser's time, before a single host can start.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


MAX_DEPTH = 64  # an inventory nests a few levels: deeper is a mistake


def _check_tree(
    node: yaml.Node, file: str, path: str, problems: list[Problem], ancestors: tuple[yaml.Node, ...] = ()
) -> bool:
    """Record duplicate keys (PyYAML would keep the last one silently); False when the document
    cannot be walked (an alias inside its own anchor, such as ``hosts: &h [*h]``, nests without
    end), so its data must not be validated."""
    line = node.start_mark.line + 1
    if any(node is above for above in ancestors):
        problems.append(
            Problem(file, line, path, "is an alias of something that contains it, so it never ends (move the anchor)")
        )
        return False
    if len(ancestors) >= MAX_DEPTH:
        problems.append(Problem(file, line, path[:60] + "...", f"nests deeper than {MAX_DEPTH} levels"))
        return False
    inside = (*ancestors, node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            key_line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(file, key_line, _join(path, key), f"duplicate key (first set on line {seen[key]})")
                )
            seen.setdefault(key, key_line)
            if not _check_tree(value_node, file, _join(path, key), problems, inside):
                return False
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            if not _check_tree(item, file, f"{path}[{index}]", problems, inside):
                return False
    return True


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The line of the deepest node that ``loc`` reaches (1-based; 0 when unknown)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if match is None:
                return line
            key_node, node = match
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _loc_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        path = _join(path, part)
    return path


def _pydantic_message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see inventory.yaml in the project for every key)"
    if kind == "literal_error":
        return f"{err['msg'].replace('Input should be', 'must be')}, not {err['input']!r}"
    if kind == "missing":
        return "is required"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


# ---------------------------------------------------------------------------------------------
# Public API


def load(path: str | Path) -> Inventory:
    """Read and validate an inventory file; raises InventoryError naming file, line and field."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError([Problem(file, 0, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise InventoryError([Problem(file, 0, "", "is not UTF-8 text")]) from None
    return parse(text, file)


def parse(text: str, file: str = "<inventory>") -> Inventory:
    """Validate inventory text; every problem found is reported at once."""
    try:
        root, data = _compose_and_construct(text)
    except UnicodeEncodeError as exc:  # libyaml takes UTF-8: a lone surrogate cannot be given to it
        line = text.count("\n", 0, exc.start) + 1
        raise InventoryError(
            [Problem(file, line, "", f"not valid YAML: {text[exc.start]!r} is not a Unicode character")]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise InventoryError([Problem(file, line, "", f"not valid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise InventoryError([Problem(file, 0, "", f"not valid YAML: {exc}")]) from None

    return from_document(data, file, root)


def _compose_and_construct(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once: the node tree (for line numbers and duplicate keys, which PyYAML would silently
    collapse) and the plain data built from it."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return root, None if root is None else loader.construct_document(root)
    finally:
        loader.dispose()


def from_document(data: Any, file: str, root: yaml.Node | None = None) -> Inventory:
    """Validate an inventory already in memory (``root`` gives line numbers when it came from YAML)."""
    if data is None:
        raise InventoryError([Problem(file, 1, "", "is empty; it needs at least a 'hosts:' list")])
    if not isinstance(data, dict):
        raise InventoryError([Problem(file, 1, "", "must be a mapping with 'defaults', 'groups' and 'hosts'")])

    problems: list[Problem] = []
    if root is not None and not _check_tree(root, file, "", problems):
        raise InventoryError(sorted(problems, key=lambda p: p.line))
    try:
        model = _Inventory.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(Problem(file, _line_of(root, loc), _loc_path(loc), _pydantic_message(err)))
        raise InventoryError(sorted(problems, key=lambda p: p.line)) from None

    inventory = _resolve(model, file, root, problems)
    if problems:
        raise InventoryError(sorted(problems, key=lambda p: p.line))
    return inventory


def _hosts_with_loc(model: _Inventory) -> Iterator[tuple[_Host, _Group | None, tuple[str | int, ...]]]:
    for gi, group in enumerate(model.groups):
        for hi, host in enumerate(group.hosts):
            yield host, group, ("groups", gi, "hosts", hi)
    for hi, host in enumerate(model.hosts):
        yield host, None, ("hosts", hi)


def _merged(*layers: _Settings) -> dict[str, Any]:
    """Settings from the least to the most specific layer; later non-None values win."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key in _Settings.model_fields:
            value = getattr(layer, key)
            if value is not None:
                merged[key] = value
    return merged


def _set_at(
    loc: tuple[str | int, ...], group_loc: tuple[str | int, ...], key: str, host: _Host, group: _Group | None
) -> tuple[str | int, ...]:
    """Where ``key`` was set for this host: the host, its group or the defaults (most specific first)."""
    if getattr(host, key) is not None:
        return (*loc, key)
    if group is not None and getattr(group, key) is not None:
        return (*group_loc, key)
    return ("defaults", key)


def _resolve(model: _Inventory, file: str, root: yaml.Node | None, problems: list[Problem]) -> Inventory:
    entries = list(_hosts_with_loc(model))
    if not entries:
        problems.append(Problem(file, 1, "hosts", "no hosts: add at least one under 'hosts:' or a group"))

    def problem(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(file, _line_of(root, loc), _loc_path(loc), message))

    first_seen: dict[str, tuple[str | int, ...]] = {}
    roles_by_name: dict[str, set[str]] = {}
    for host, _, loc in entries:
        key = host.name.lower()
        if key in first_seen:
            line = _line_of(root, first_seen[key])
            problem((*loc, "name"), f"duplicate host {host.name!r} (first defined on line {line})")
        else:
            first_seen[key] = loc
            roles_by_name[key] = set(host.roles)

    # A gateway reaches, on its clients' behalf, the session hosts those clients name.
    brokered: dict[str, list[str]] = {}
    for host, _, _ in entries:
        if host.gateway:
            brokered.setdefault(host.gateway.lower(), []).extend(host.session_hosts)

    targets: list[HostTarget] = []
    credentials: dict[str, CredentialRef] = {}
    for host, group, loc in entries:
        group_loc = loc[:2] if group else ()
        layers = [model.defaults] + ([group] if group else []) + [host]
        s = _merged(*layers)
        transport = s.get("transport", "https")
        auth = s.get("auth", "negotiate")

        if host.gateway is not None:
            if "client" not in host.roles:
                problem((*loc, "gateway"), "only a host with the client role names a gateway")
            elif "gateway" not in roles_by_name.get(host.gateway.lower(), set()):
                problem(
                    (*loc, "gateway"),
                    f"gateway {host.gateway!r} is not a host with the gateway role in this inventory",
                )
        for i, sh in enumerate(host.session_hosts):
            if "session_host" not in roles_by_name.get(sh.lower(), set()):
                problem(
                    (*loc, "session_hosts", i),
                    f"session host {sh!r} is not a host with the session_host role in this inventory",
                )
        if host.session_hosts and "client" not in host.roles:
            problem((*loc, "session_hosts"), "only a host with the client role names session hosts")

        if auth == "basic" and transport == "http" and not s.get("allow_unencrypted", False):
            problem(
                (*loc, "auth"),
                "basic auth over http sends the password readable on the wire; use transport: https, "
                "or set allow_unencrypted: true if this is a lab",
            )
        ca_file = s.get("ca_file", "")
        if ca_file and not Path(ca_file).expanduser().is_file():
            problem((*loc, "ca_file") if host.ca_file else ("defaults", "ca_file"), f"no such file: {ca_file}")

        sources = [k for k in ("password_env", "password_keyring") if s.get(k)]
        if s.get("password_prompt"):
            sources.append("password_prompt")
        if len(sources) > 1:
            problem(loc, f"choose one password source, not {', '.join(sources)}")
        username = s.get("username", "")
        if sources and not username:
            problem(loc, "a password source is set but no username")
        if s.get("password_env"):
            ref = CredentialRef(username, "env", s["password_env"])
        elif s.get("password_keyring"):
            ref = CredentialRef(username, "keyring", s["password_keyring"])
        elif s.get("password_prompt"):
            ref = CredentialRef(username, "prompt")
        else:
            ref = CredentialRef(username, "none")
        if ref.source == "none" and auth in ("ntlm", "credssp", "basic"):
            problem(loc, f"auth {auth} needs a username and a password source (password_env, ...)")
        if auth == "kerberos" and "\\" in username:
            user = username.rpartition("\\")[2]
            problem(
                _set_at(loc, group_loc, "username", host, group),
                f"Kerberos names an account user@REALM (e.g. {user}@CORP.EXAMPLE, the user principal "
                f"name); {username!r} would be read as another principal. With auth negotiate a "
                "DOMAIN\\user name is used for NTLM only",
            )
        if s.get("delegate") and auth not in ("kerberos", "negotiate"):
            problem(
                _set_at(loc, group_loc, "delegate", host, group),
                f"delegate forwards a Kerberos ticket and needs auth kerberos or negotiate, not {auth}",
            )

        targets.append(
            HostTarget(
                name=host.name,
                address=host.address or host.name,
                roles=tuple(Role(r) for r in host.roles),
                transport=transport,
                port=s.get("port", DEFAULT_PORTS[transport]),
                auth=auth,
                username=username,
                cert_validation=s.get("cert_validation", True),
                ca_file=str(Path(ca_file).expanduser()) if ca_file else "",
                allow_unencrypted=s.get("allow_unencrypted", False),
                connect_timeout_s=s.get("connect_timeout", 10.0),
                operation_timeout_s=s.get("operation_timeout", 60.0),
                host_deadline_s=s.get("host_deadline", 120.0),
                spn_service=s.get("spn_service", "HTTP"),
                delegate=s.get("delegate", False),
                rdp_port=s.get("rdp_port", 3389),
                gateway_port=s.get("gateway_port", 443),
                gateway=host.gateway or "",
                session_hosts=tuple(
                    dict.fromkeys(host.session_hosts + brokered.get(host.name.lower(), []))
                    if "gateway" in host.roles
                    else host.session_hosts
                ),
                group=group.name if group else "",
            )
        )
        credentials[host.name] = ref
    return Inventory(path=file, targets=tuple(targets), credentials=credentials)
