"""The data that flows through a run: facts in, check results out.

Everything here is a frozen dataclass so a stage cannot change what an earlier stage produced.
``results.json`` is derived from these types (``to_dict``) and read back into them
(``run_from_dict``), so a run can be re-rendered without the hosts.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, TypeAdapter
    from pydantic_core import CoreSchema

SCHEMA_VERSION = 1

_T = TypeVar("_T")


class _ReadAsTuple:
    """How ``reader`` reads a JSON array into an ``Items`` field: as a tuple. pydantic reads a
    ``Sequence`` into a list, but a record read back is to equal the one the run built (of
    tuples), and be as immutable and hashable."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(tuple, handler(source))


# A field's items: a Sequence to the type checker and the code that builds the model (which
# passes tuples), a tuple when read back from results.json.
Items = Annotated[Sequence[_T], _ReadAsTuple()]


class Role(enum.StrEnum):
    CLIENT = "client"
    GATEWAY = "gateway"
    SESSION_HOST = "session_host"


WHY_UNKNOWN = "why unknown"  # the evidence label an unknown check's reason travels under


class Status(enum.StrEnum):
    """Outcome of one check. ``unknown`` means the facts it needs were not collected."""

    PASS = "pass"  # noqa: S105
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Order for "problems first": fail, warn, unknown, pass."""
        return {"fail": 3, "warn": 2, "unknown": 1, "pass": 0}[self.value]


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 2, "warning": 1, "info": 0}[self.value]


class CollectionFailure(enum.StrEnum):
    """Why facts could not be collected from a host; each is also a ``collect.*`` check."""

    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth-failed"
    TIMEOUT = "timeout"
    BAD_OUTPUT = "bad-output"


@dataclass(frozen=True)
class ProbeError:
    """A step inside a probe that failed on the host; the rest of the probe still reported."""

    step: str
    message: str


@dataclass(frozen=True)
class ProbeResult:
    """One probe's validated output from one host (the envelope of DESIGN §3)."""

    probe: str
    version: int
    data: Mapping[str, Any]
    errors: Items[ProbeError] = ()
    duration_s: float = 0.0
    received_utc: str = ""  # the workstation's clock when the output arrived (for clock skew)


@dataclass(frozen=True)
class CollectionProblem:
    """A failure to collect: the whole host (``probe`` empty) or one probe."""

    kind: CollectionFailure
    reason: str
    probe: str = ""


@dataclass(frozen=True)
class HostTarget:
    """What the runner needs to reach one host. Never holds a secret."""

    name: str
    address: str
    roles: tuple[Role, ...]
    transport: str = "https"
    port: int = 5986
    auth: str = "negotiate"
    username: str = ""
    cert_validation: bool = True
    ca_file: str = ""
    allow_unencrypted: bool = False
    # Whether Negotiate may fall back to NTLM (and CredSSP use NTLM inside): None takes the default,
    # on only where the server is authenticated first (HTTPS with certificate validation).
    allow_ntlm: bool | None = None
    connect_timeout_s: float = 10.0
    operation_timeout_s: float = 60.0
    host_deadline_s: float = 120.0
    spn_service: str = "HTTP"  # Kerberos asks for <spn_service>/<name>, as Invoke-Command does
    delegate: bool = False  # forward a Kerberos TGT to the host (second hop); explicit opt-in
    rdp_port: int = 3389  # the session host's RDP listener, probed from the workstation
    gateway_port: int = 443  # the gateway's HTTPS transport, probed from the workstation
    gateway: str = ""
    session_hosts: tuple[str, ...] = ()
    group: str = ""

    @property
    def ntlm_allowed(self) -> bool:
        """NTLM hands a crackable, relayable response to whoever answers; over HTTPS with a
        validated certificate that can only be the host itself (and the TLS channel is bound in)."""
        if self.allow_ntlm is not None:
            return self.allow_ntlm
        return self.transport == "https" and self.cert_validation


@dataclass(frozen=True)
class HostFacts:
    """Everything collected from one host: probe results and what could not be collected."""

    target: HostTarget
    probes: Mapping[str, ProbeResult] = field(default_factory=dict)
    problems: Items[CollectionProblem] = ()
    planned: Items[str] = ()  # the probes the runner meant to run for this host's roles
    # The workstation's own probes of the host's endpoints (TLS on the gateway port, RDP on the
    # listener): what was seen, per endpoint, and the checks judged on it at collection time.
    endpoints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    endpoint_results: Items[CheckResult] = ()
    workstation_dns: Mapping[str, Any] = field(default_factory=dict)  # how the workstation resolves this host
    started: str = ""
    finished: str = ""
    duration_s: float = 0.0
    # What the host's PowerShell runspace pool warned about, in its own words (bounded): kept for
    # the report rather than printed on the administrator's terminal.
    session_warnings: Items[str] = ()


@dataclass(frozen=True)
class Evidence:
    """One fact that decided a check, and where it was seen from (the vantage point)."""

    label: str
    value: str
    vantage: str


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict for one host (and endpoint, where it applies)."""

    id: str
    status: Status
    severity: Severity
    title: str
    host: str
    evidence: Items[Evidence] = ()
    remediation: str = ""
    references: Items[str] = ()
    endpoint: str = ""

    @property
    def is_problem(self) -> bool:
        return self.status in (Status.FAIL, Status.WARN)

    @property
    def why_unknown(self) -> str:
        """Why an unknown check could not judge (its "why unknown" evidence); empty when it says not."""
        return next((e.value for e in self.evidence if e.label == WHY_UNKNOWN), "")


@dataclass(frozen=True)
class NotJudged:
    """Unknown checks that could not judge for the same reason at the same endpoint, shown as
    one line: eleven ``cert.*`` checks behind one refused port say one thing."""

    reason: str
    endpoint: str
    checks: tuple[CheckResult, ...]

    def plain_title(self, check: CheckResult) -> str:
        """The check's title without the reason the line already gives once."""
        return check.title.removesuffix(f": not judged ({self.reason})")


FOLD_AT = 3  # this many unknowns sharing a reason fold into one line; fewer read as well one by one


def fold_unknowns(checks: Sequence[CheckResult]) -> tuple[CheckResult | NotJudged, ...]:
    """``checks`` in order, with the unknowns that share a reason and endpoint (``FOLD_AT`` or
    more) as one ``NotJudged`` where the first of them stood."""
    alike: dict[tuple[str, str], list[CheckResult]] = {}
    for check in checks:
        if check.status is Status.UNKNOWN and check.why_unknown:
            alike.setdefault((check.why_unknown, check.endpoint), []).append(check)
    rows: list[CheckResult | NotJudged] = []
    for check in checks:
        same = alike.get((check.why_unknown, check.endpoint), []) if check.status is Status.UNKNOWN else []
        if len(same) < FOLD_AT:
            rows.append(check)
        elif check is same[0]:
            rows.append(NotJudged(check.why_unknown, check.endpoint, tuple(same)))
    return tuple(rows)


@dataclass(frozen=True)
class HostReport:
    facts: HostFacts
    checks: Items[CheckResult]

    @property
    def name(self) -> str:
        return self.facts.target.name

    @property
    def worst(self) -> Status:
        return max((c.status for c in self.checks), key=lambda s: s.rank, default=Status.UNKNOWN)

    @property
    def collected(self) -> bool:
        """True when no host-wide collection failure happened."""
        return not any(p.probe == "" for p in self.facts.problems)


@dataclass(frozen=True)
class HostChanges:
    """Problem keys (``check id`` or ``check id @ endpoint``) per kind of change, sorted."""

    host: str
    new: tuple[str, ...] = ()
    resolved: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.new or self.resolved)


@dataclass(frozen=True)
class RunChanges:
    previous_run_id: str
    hosts: tuple[HostChanges, ...]
    hosts_added: tuple[str, ...] = ()
    hosts_removed: tuple[str, ...] = ()

    def for_host(self, name: str) -> HostChanges | None:
        return next((h for h in self.hosts if h.host == name), None)

    def totals(self) -> dict[str, int]:
        return {
            "new": sum(len(h.new) for h in self.hosts),
            "resolved": sum(len(h.resolved) for h in self.hosts),
            "still_failing": sum(len(h.still_failing) for h in self.hosts),
        }


@dataclass(frozen=True)
class PathEvent:
    """One event on a connection path, placed on the workstation's clock.

    ``time_utc`` is the host's own time stamp corrected by that host's measured clock skew, so
    events of the client, the gateway and the session host line up; ``recorded_utc`` is what
    the host wrote. ``outcome`` is "ok" (the step succeeded), "failed", or "" (informational)."""

    time_utc: str
    recorded_utc: str
    host: str
    role: Role
    log: str
    event_id: int
    summary: str
    outcome: str = ""


@dataclass(frozen=True)
class PathStep:
    """One step a connection takes from the client to the session host, and what decided its status.

    ``key`` names the step (client-dns, client-tcp, client-udp, client-tls, gateway-cap,
    gateway-rap, gateway-resource, session-logon); ``host`` is the host whose facts decided it."""

    key: str
    step: str
    host: str
    status: Status
    finding: str
    evidence: Items[Evidence] = ()


@dataclass(frozen=True)
class HostClock:
    """A host's clock against the workstation's (host minus workstation, seconds; None: not measured)."""

    host: str
    skew_s: float | None


@dataclass(frozen=True)
class IncidentPath:
    """One client's way to one session host through its gateway, joined across the three hosts.

    Hops in the order a connection crosses them, each with a status; the first failing hop is
    where the connection stops. The timeline merges the three hosts' events for this client in
    the ``--since`` window, in UTC on the workstation's clock."""

    client: str
    gateway: str
    session_host: str
    users: Items[str]  # the client's users whose events were joined
    since_hours: int
    window_start: str
    window_end: str
    symptom: str  # what the client recorded, in words
    hops: Items[PathStep]
    timeline: Items[PathEvent] = ()
    clocks: Items[HostClock] = ()

    @property
    def first_broken(self) -> PathStep | None:
        return next((hop for hop in self.hops if hop.status is Status.FAIL), None)

    @property
    def label(self) -> str:
        return f"{self.client} → {self.gateway} → {self.session_host}"

    def involves(self, name: str) -> bool:
        return name.lower() in {self.client.lower(), self.gateway.lower(), self.session_host.lower()}


@dataclass(frozen=True)
class RunReport:
    run_id: str
    started: str
    finished: str
    tool_version: str
    workstation: str
    inventory: str
    hosts: Items[HostReport]
    schema_version: int = SCHEMA_VERSION
    changes: RunChanges | None = None  # against the previous complete run, when there is one
    paths: Items[IncidentPath] = ()  # every client's path to each of its session hosts, joined

    def counts(self) -> dict[str, int]:
        """Check results by status across the fleet."""
        counts = {s.value: 0 for s in Status}
        for host in self.hosts:
            for check in host.checks:
                counts[check.status.value] += 1
        return counts


_SCALARS = (str, int, float, bool, type(None))
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_dict(obj: Any) -> Any:
    """Plain JSON-ready data from any model object (enums become their values).

    Written for speed as much as clarity: every host's record goes through it as the host
    finishes, and a host's facts are mostly plain JSON already (probe data), which the exact-type
    checks pass through without the slower dataclass and ABC tests."""
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    if kind is dict:
        return {str(k): to_dict(v) for k, v in obj.items()}
    if kind is list or kind is tuple:
        return [to_dict(v) for v in obj]
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELD_NAMES.setdefault(kind, tuple(f.name for f in dataclasses.fields(obj)))
    if names is not None:
        return {name: to_dict(getattr(obj, name)) for name in names}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (for messages about a file of unknown origin)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    kinds: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return kinds.get(type(value), type(value).__name__)


@functools.cache
def reader(kind: type[_T]) -> TypeAdapter[_T]:
    """pydantic's reader of one model type, built once (per process, on first use): it rebuilds the
    frozen dataclasses from results.json, in lax mode where JSON differs from Python (enums from
    their values, tuples from arrays), with the dataclass defaults for fields an older file lacks,
    and raises a ValidationError (a ValueError) naming the field at fault. The JSON Schema of
    results.json is generated from the same reader (``collector.schema``)."""
    from pydantic import TypeAdapter

    return TypeAdapter(kind)


def host_from_dict(d: Mapping[str, Any]) -> HostReport:
    """Rebuild one host's record (an item of ``results.json``'s ``hosts``)."""
    return reader(HostReport).validate_python(d)


def run_from_dict(d: Mapping[str, Any]) -> RunReport:
    """Rebuild a run from ``results.json``; raises ValueError on a schema it does not know (a
    pydantic ValidationError, naming the field, on a document that does not fit the model)."""
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"results schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
    return reader(RunReport).validate_python(d)
