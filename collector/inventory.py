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
    allow_ntlm: bool | None = None
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

# How many values (every mapping, list, key and scalar) a document may stand for once each alias
# is replaced by what its anchor holds. A host entry is 6 to 20 of them (a client naming a gateway
# and four session hosts is 14; each setting a host overrides adds 2), so a 5,000-host estate is
# about 70,000, and 150,000 when every client names a 20-host farm through an alias: the bound
# leaves that room several times over, and validating a million values takes about a second.
# Aliases nested in each other's anchors ("billion laughs") multiply instead: a few hundred bytes
# stand for billions of values, which validation (it sees plain nested data) would walk one by one.
MAX_VALUES = 1_000_000

EXPANSION_REFUSAL = (
    "expands to more than {limit:,} values through YAML aliases (anchors reused inside each "
    "other); write the hosts out or use defaults/groups for shared settings"
)
SIZE_REFUSAL = "has more than {limit:,} values, far more than any estate needs; split it into several inventories"


_MERGE = "tag:yaml.org,2002:merge"  # the tag of a ``<<`` key, which merges its mappings into this one


def _check_tree(root: yaml.Node, file: str, path: str, problems: list[Problem]) -> bool:
    """Record duplicate keys (PyYAML would keep the last one silently); False when the document
    cannot be walked (an alias inside its own anchor, such as ``hosts: &h [*h]``, nests without
    end, and nesting deeper than MAX_DEPTH is a mistake), so its data must not be validated.

    An anchored node is walked once, where it is defined: its duplicate keys are reported there
    and not again for every alias of it, and aliases nested in each other cost one visit per node
    instead of one per path through them. Each walked node's height (how many levels its deepest
    value lies below it) is kept, so an alias still counts toward the depth where it is used."""
    heights: dict[int, int] = {}  # id(node) -> levels below it, for every node walked to the end
    open_ids: set[int] = set()  # the node being walked and its ancestors

    def walk(node: yaml.Node, path: str, depth: int) -> int | None:
        if id(node) in open_ids:
            message = "is an alias of something that contains it, so it never ends (move the anchor)"
            problems.append(Problem(file, node.start_mark.line + 1, path, message))
            return None
        if depth >= MAX_DEPTH:
            problems.append(_too_deep(file, node, path))
            return None
        height = heights.get(id(node))
        if height is not None:  # an alias of a node walked already
            if depth + height >= MAX_DEPTH:
                problems.append(_too_deep(file, *_descend(node, path, MAX_DEPTH - depth, heights)))
                return None
            return height
        open_ids.add(id(node))
        height = 0
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = _key_text(key_node)
                key_line = key_node.start_mark.line + 1
                if key in seen and key_node.tag != _MERGE:
                    problems.append(
                        Problem(file, key_line, _join(path, key), f"duplicate key (first set on line {seen[key]})")
                    )
                seen.setdefault(key, key_line)
                below = walk(value_node, _join(path, key), depth + 1)
                if below is None:
                    return None
                height = max(height, below + 1)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                below = walk(item, f"{path}[{index}]", depth + 1)
                if below is None:
                    return None
                height = max(height, below + 1)
        open_ids.discard(id(node))
        heights[id(node)] = height
        return height

    return walk(root, path, 0) is not None


def _key_text(key_node: yaml.Node) -> str:
    """A mapping key as text. A list or mapping used as a key is not spelled out (that would print
    every node in it, nested as deep as it goes): building the data refuses it as unhashable."""
    return str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"


def _too_deep(file: str, node: yaml.Node, path: str) -> Problem:
    return Problem(file, node.start_mark.line + 1, path[:60] + "...", f"nests deeper than {MAX_DEPTH} levels")


def _descend(node: yaml.Node, path: str, levels: int, heights: dict[int, int]) -> tuple[yaml.Node, str]:
    """The first node (in document order) ``levels`` below a walked ``node``, and its path: where
    walking an alias of ``node`` again would have stopped at MAX_DEPTH."""
    while levels > 0:
        levels -= 1
        if isinstance(node, yaml.MappingNode):
            children = [(value, _join(path, _key_text(key))) for key, value in node.value]
        else:
            children = [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
        node, path = next((child, where) for child, where in children if heights[id(child)] >= levels)
    return node, path


def _refuse_expansion(root: yaml.Node, text: str, file: str) -> None:
    """Raise InventoryError when the document stands for more than MAX_VALUES values, before
    anything builds, checks or validates what its aliases expand to."""
    if _expanded_size(root, MAX_VALUES) <= MAX_VALUES:
        return
    line, through_alias = _where_values_exceed(text, MAX_VALUES)
    message = EXPANSION_REFUSAL if through_alias else SIZE_REFUSAL
    raise InventoryError([Problem(file, line, "", message.format(limit=MAX_VALUES))])


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield key_node
            yield value_node
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many values ``root`` stands for with every alias expanded (more than ``limit`` once it
    is known to be over), counted without expanding: an alias adds the size its anchored node
    was found to have, so each node is visited once. An alias inside its own anchor adds nothing
    here; the tree walk refuses it."""
    sizes: dict[int, int] = {}  # id(collection) -> values it stands for, once counted
    frames: list[list[Any]] = [[root, _children(root), 1]]  # collections being counted: node, rest, size
    open_ids = {id(root)}
    total = 1
    while frames and total <= limit:
        frame = frames[-1]
        child = next(frame[1], None)
        if child is None:  # the collection is counted: its parent stands for it too
            frames.pop()
            open_ids.discard(id(frame[0]))
            sizes[id(frame[0])] = frame[2]
            if frames:
                frames[-1][2] += frame[2]
        elif isinstance(child, yaml.ScalarNode) or id(child) in sizes or id(child) in open_ids:
            added = 1 if isinstance(child, yaml.ScalarNode) else sizes.get(id(child), 0)
            frame[2] += added
            total += added
        else:  # a collection met for the first time
            open_ids.add(id(child))
            frames.append([child, _children(child), 1])
            total += 1
    return total


def _where_values_exceed(text: str, limit: int) -> tuple[int, bool]:
    """The line where reading the document (aliases expanded) passes ``limit`` values, and
    whether an alias took it there. The node tree no longer knows where an alias was written,
    so this reads the parser's events: an alias adds what its anchor stood for."""
    sizes: dict[str, int] = {}  # anchor -> values it stands for
    opened: list[tuple[str | None, int]] = []  # collections being read: anchor, total before them
    total = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            total += sizes.get(event.anchor or "", 0)
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            opened.append((event.anchor, total))
            total += 1
            if event.anchor:
                sizes[event.anchor] = 0  # an alias inside its own anchor (the walk refuses it)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = opened.pop()
            if anchor:
                sizes[anchor] = total - before
        if total > limit:
            return (event.start_mark.line + 1 if event.start_mark else 1), isinstance(event, yaml.AliasEvent)
    return 1, True


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
        root, data, problems, walkable = _compose_and_construct(text, file)
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

    return _validated(data, file, root, problems, walkable)


def _compose_and_construct(text: str, file: str) -> tuple[yaml.Node | None, Any, list[Problem], bool]:
    """Parse once: the node tree (for line numbers and duplicate keys, which PyYAML would silently
    collapse), checked, and the plain data built from it; refused first when its aliases make it
    too big (MAX_VALUES). The tree is checked before the data is built because building merges
    each ``<<: *anchor`` into the mapping that names it: a key set there to override a merged
    one would then look like a duplicate, and a duplicate inside the anchor would be found again
    in every mapping merging it."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None, [], True
        _refuse_expansion(root, text, file)
        problems: list[Problem] = []
        walkable = _check_tree(root, file, "", problems)
        return root, loader.construct_document(root), problems, walkable
    finally:
        loader.dispose()


def from_document(data: Any, file: str, root: yaml.Node | None = None) -> Inventory:
    """Validate an inventory already in memory (``root`` gives line numbers when it came from YAML)."""
    problems: list[Problem] = []
    walkable = root is None or _check_tree(root, file, "", problems)
    return _validated(data, file, root, problems, walkable)


def _validated(data: Any, file: str, root: yaml.Node | None, problems: list[Problem], walkable: bool) -> Inventory:
    """The inventory ``data`` describes, or InventoryError with ``problems`` (what the tree check
    found) and every problem validation finds; ``walkable`` False stops before validation."""
    if data is None:
        raise InventoryError([Problem(file, 1, "", "is empty; it needs at least a 'hosts:' list")])
    if not isinstance(data, dict):
        raise InventoryError([Problem(file, 1, "", "must be a mapping with 'defaults', 'groups' and 'hosts'")])
    if not walkable:
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
        validated = s.get("cert_validation", True)
        if auth == "credssp" and (transport != "https" or not validated):
            problem(
                _set_at(loc, group_loc, "auth", host, group),
                "credssp hands the password itself to the host: use it only with transport: https and "
                "cert_validation: true, so that the host has proven who it is first",
            )
        if auth == "ntlm" and s.get("allow_ntlm") is False:
            problem(
                _set_at(loc, group_loc, "allow_ntlm", host, group),
                "auth ntlm contradicts allow_ntlm: false (choose one)",
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
                allow_ntlm=s.get("allow_ntlm"),
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
