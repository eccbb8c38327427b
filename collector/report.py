"""Write a run folder: one HTML page per host, the fleet index and ``results.json``.

Rendering only presents verdicts that the checks made: it orders, groups, counts and lays out,
and never decides that something is wrong. Every page is one self-contained file (inline CSS and
JavaScript under a hash-pinned Content-Security-Policy, no request to any other host) that reads
complete with JavaScript off; Jinja2 autoescapes every template, so host data is never markup.

Every file is written atomically (temp file + rename) into a hidden ``.<run>.partial`` folder that
becomes ``<run>`` when the run is complete; ``latest`` moves last. An interrupted run leaves no
half-written report and a ``latest`` that still points at the previous complete run.

Reports name users and saved-credential targets: what the collector writes is private to its
account and group (folders 0750, files 0640, less where the process umask takes more away; the
kernel applies the umask as each file and folder is created). A host whose page or record cannot
be rendered gets a page and a record that say so, and the run is published regardless.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Collection, Iterable, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from collector import certview, path, runs
from collector.incident import HOP_NAMES
from collector.model import (
    CheckResult,
    CollectionProblem,
    Evidence,
    HostFacts,
    HostReport,
    IncidentPath,
    NotJudged,
    PathStep,
    ProbeError,
    Role,
    RunReport,
    Severity,
    Status,
    fold_unknowns,
    host_from_dict,
    to_dict,
)
from collector.terminal import printable

STATUS_ORDER = (Status.FAIL, Status.WARN, Status.UNKNOWN, Status.PASS)
SEVERITY_ORDER = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
ROLE_NAMES = {Role.CLIENT: "client", Role.GATEWAY: "RD Gateway", Role.SESSION_HOST: "session host"}

# Concerns, by check id prefix, in the order a connection meets them when nothing else decides.
CONCERNS: dict[str, str] = {
    "collect": "Collection",
    "host": "Host: clock, domain, TLS settings, reboot",
    "net": "Network: names, ports, proxy",
    "rdp": "Session host: Remote Desktop listener",
    "rdg": "RD Gateway",
    "client": "Client",
    "cert": "Certificates: trust, names, validity",
}


# --- templates -----------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files("collector.templates").joinpath(name).read_text("utf-8")


def _csp_hash(text: str) -> str:
    """A CSP source for exactly this inline text: nothing else inline may run or style the page."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("collector.templates"))),
        autoescape=True,  # every template, whatever its name: host data is never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates are package data: no stat() of each one per page
    )
    # Inline CSS and JS: each page is one self-contained file (admin networks are often offline).
    # The CSP allows exactly these by hash, so even a markup injection could not run a script.
    assets = {name: _asset(name) for name in ("report.css", "index.js", "host.js")}
    env.globals.update(
        css=assets["report.css"],
        index_js=assets["index.js"],
        host_js=assets["host.js"],
        csp={name: _csp_hash(text) for name, text in assets.items()},
        Status=Status,
        STATUS_ORDER=STATUS_ORDER,
        SEVERITY_ORDER=SEVERITY_ORDER,
        ROLE_NAMES=ROLE_NAMES,
        HOP_NAMES=HOP_NAMES,
        host_filename=host_filename,
        duration_s=duration_s,
    )
    env.tests["folded"] = lambda row: isinstance(row, NotJudged)
    env.filters.update(
        sorted_checks=sorted_checks, when=when, days=days_text, seconds=seconds_text, link_target=link_target
    )
    return env


_ENV: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV


# --- ordering and wording ------------------------------------------------------------------------


def sorted_checks(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Problems first: by status (fail, warn, unknown, pass), then severity; among equals, what was
    found on the host itself before what was seen at one of its endpoints from elsewhere, then
    catalogue order. Both run from causes to symptoms: a stopped service before the port it
    leaves closed, on the host and as the workstation sees it."""
    return sorted(results, key=lambda c: _problem_order(c.id, c.status, c.severity, c.endpoint))


def _problem_order(check_id: str, status: Status, severity: Severity, endpoint: str = "") -> tuple[Any, ...]:
    order = _catalogue_order()
    return (-status.rank, -severity.rank, bool(endpoint), order.get(check_id, len(order)), check_id)


@functools.cache
def _catalogue_order() -> dict[str, int]:
    from collector.checks import catalogue

    ids = ["collect.unreachable", "collect.auth-failed", "collect.timeout", "collect.bad-output"]
    ids += [c.id for c in catalogue()]
    return {check_id: i for i, check_id in enumerate(ids)}


def when(value: str) -> str:
    """An ISO 8601 UTC timestamp as people read it ('2026-01-01 09:30:00 UTC'); other text as is."""
    moment = certview.parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else value


def days_text(days: int | None) -> str:
    if days is None:
        return "unknown"
    if days < 0:
        return f"expired {-days} day{'s' if days != -1 else ''} ago"
    return f"{days} day{'s' if days != 1 else ''} left"


_LINKABLE = re.compile(r"https?://[^\s<>\"']+\Z", re.IGNORECASE)


def link_target(text: str) -> str:
    """The text itself when it is a plain http(s) URL, else '' (shown as text, never as a link):
    a ``javascript:`` or ``data:`` reference from a host never becomes clickable."""
    return text if _LINKABLE.match(text.strip()) and text == text.strip() else ""


def seconds_text(value: float | None) -> str:
    """A duration as people say it: 'under 1 s', '42 s', '3 min 5 s'."""
    if value is None:
        return "unknown"
    if value < 1:
        return "under 1 s"
    whole = round(value)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def duration_s(started: str, finished: str) -> float | None:
    start, end = certview.parse_time(started), certview.parse_time(finished)
    return (end - start).total_seconds() if start and end else None


def problem_key(check: CheckResult) -> str:
    """How run history names a problem (``collector.history``): check id, and endpoint if any."""
    return f"{check.id} @ {check.endpoint}" if check.endpoint else check.id


def reference_time(run: RunReport) -> datetime | None:
    """The moment days-left are counted from: the run's start. Never the wall clock, so
    re-rendering a run gives the same page, and never its end, so a host page written as the host
    finishes needs no rewrite when the run ends."""
    return certview.parse_time(run.started)


# --- host page -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckGroup:
    """The checks of one concern, problems first."""

    key: str
    heading: str
    checks: tuple[CheckResult, ...]

    @property
    def worst(self) -> Status:
        return self.checks[0].status

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status is status)

    @property
    def rows(self) -> tuple[CheckResult | NotJudged, ...]:
        """What the page lists: the checks, with unknowns that say the same thing folded."""
        return fold_unknowns(self.checks)


def group_checks(checks: Iterable[CheckResult]) -> tuple[CheckGroup, ...]:
    """Checks by concern (id prefix). Groups follow the first appearance of their checks in
    ``sorted_checks``, so the group holding the worst finding comes first, and so on."""
    groups: dict[str, list[CheckResult]] = {}
    for check in sorted_checks(checks):
        groups.setdefault(check.id.split(".", 1)[0], []).append(check)
    return tuple(
        CheckGroup(key, CONCERNS.get(key, f"Other checks ({key}.*)"), tuple(items)) for key, items in groups.items()
    )


@dataclass(frozen=True)
class Headline:
    """The one line that answers "what is broken" for a page."""

    status: Status
    text: str
    check: CheckResult | None = None  # the finding behind the text
    elsewhere: str = ""  # the host the finding is on, when it is not this page's host
    incident: IncidentPath | None = None  # the connection that stops, when that is the headline
    hop: PathStep | None = None  # where it stops, with the evidence that decided it


def incident_headline(incident: IncidentPath, hop: PathStep, here: str = "") -> Headline:
    """A connection that stops: whose, to where, at which host and step."""
    at = "here" if here and hop.host.lower() == here.lower() else f"at {hop.host}"
    text = f"{incident.client}'s connection to {incident.session_host} stops {at}: {HOP_NAMES.get(hop.key, hop.key)}"
    elsewhere = "" if at == "here" else hop.host
    return Headline(Status.FAIL, text, None, elsewhere, incident, hop)


def host_headline(
    host: HostReport,
    routes: Sequence[path.Route],
    fleet: Sequence[HostReport],
    incidents: Sequence[IncidentPath] = (),
) -> Headline:
    """The worst failure here; else the first connection through this host that stops (joined across
    the client, gateway and session host); else the worst warning here, then the first broken hop on
    its paths."""
    ordered = sorted_checks(host.checks)
    top = ordered[0] if ordered else None
    if top is not None and top.status is Status.FAIL:
        return Headline(top.status, top.title, top)
    for incident in incidents:
        stop = incident.first_broken
        if stop is not None and incident.involves(host.name):
            return incident_headline(incident, stop, host.name)
    if top is not None and top.is_problem:
        return Headline(top.status, top.title, top)
    reports = {h.name.lower(): h for h in fleet}
    for route in routes:
        broken = route.first_broken
        if broken is None or broken[1].name.lower() == host.name.lower():
            continue
        stage, hop = broken
        other = reports.get(hop.name.lower())
        finding = sorted_checks(other.checks)[0] if other and other.checks else None
        text = f"Checks here pass, but the path breaks at {hop.name} ({ROLE_NAMES[stage.role]})"
        return Headline(Status.FAIL, text, finding, hop.name)
    if top is not None and top.status is Status.UNKNOWN:
        unknown = sum(1 for c in host.checks if c.status is Status.UNKNOWN)
        return Headline(Status.UNKNOWN, f"Nothing failed, but {unknown} check(s) could not be judged", top)
    return Headline(Status.PASS, f"All {len(host.checks)} checks pass")


@dataclass(frozen=True)
class ProbeLine:
    """What happened to one probe on one host, in words."""

    name: str
    state: str  # collected | failed | not run
    version: int | None = None
    duration_s: float | None = None
    errors: tuple[ProbeError, ...] = ()
    reason: str = ""


def probe_lines(host: HostReport) -> tuple[ProbeLine, ...]:
    """Every planned or collected probe: collected (with any failed steps), failed (why), or not run."""
    facts = host.facts
    failed = {p.probe: p for p in facts.problems if p.probe}
    whole = next((p for p in facts.problems if not p.probe), None)
    lines = []
    for name in dict.fromkeys([*facts.planned, *facts.probes, *failed]):
        if name in facts.probes:
            p = facts.probes[name]
            lines.append(ProbeLine(name, "collected", p.version, p.duration_s, tuple(p.errors)))
        elif name in failed:
            lines.append(ProbeLine(name, "failed", reason=f"{failed[name].kind.value}: {failed[name].reason}"))
        else:
            reason = f"the host could not be collected ({whole.kind.value})" if whole else "no result was recorded"
            lines.append(ProbeLine(name, "not run", reason=reason))
    return tuple(lines)


@dataclass(frozen=True)
class HostPage:
    """Everything a host page shows, arranged; the template only lays it out."""

    host: HostReport
    run: RunReport
    headline: Headline
    groups: tuple[CheckGroup, ...]
    routes: tuple[path.Route, ...]
    chains: tuple[certview.ChainView, ...]
    probes: tuple[ProbeLine, ...]
    host_problems: tuple[CollectionProblem, ...]
    new_problems: frozenset[str]  # problem keys that are new since the previous run
    resolved: tuple[str, ...]  # problem keys the previous run had and this one does not
    incidents: tuple[IncidentPath, ...] = ()  # the joined connections this host is on

    def count(self, status: Status) -> int:
        return sum(1 for c in self.host.checks if c.status is status)

    def is_new(self, check: CheckResult) -> bool:
        return check.is_problem and problem_key(check) in self.new_problems

    def anchor(self, incident: IncidentPath | None) -> str:
        """The in-page id of one of this page's connections."""
        return f"path-{self.incidents.index(incident) + 1}" if incident in self.incidents else "incidents-h"


def _changes(run: RunReport, name: str) -> tuple[frozenset[str], tuple[str, ...]]:
    changes = getattr(run, "changes", None)
    mine = changes.for_host(name) if changes is not None else None
    return (frozenset(mine.new), tuple(mine.resolved)) if mine is not None else (frozenset(), ())


def incidents_of(run: RunReport, name: str) -> tuple[IncidentPath, ...]:
    """The run's joined connections that ``name`` is on (as client, gateway or session host)."""
    return tuple(p for p in run.paths if p.involves(name))


def host_page(host: HostReport, run: RunReport) -> HostPage:
    routes = path.routes_for(host.facts.target, run.hosts)
    new, resolved = _changes(run, host.name)
    incidents = incidents_of(run, host.name)
    return HostPage(
        host=host,
        run=run,
        headline=host_headline(host, routes, run.hosts, incidents),
        groups=group_checks(host.checks),
        routes=routes,
        chains=certview.host_chains(host.facts, reference_time(run)),
        probes=probe_lines(host),
        host_problems=tuple(p for p in host.facts.problems if not p.probe),
        new_problems=new,
        resolved=resolved,
        incidents=incidents,
    )


def render_host(report: HostReport, run: RunReport) -> str:
    page = host_page(report, run)
    return environment().get_template("host.html.j2").render(page=page, host=report, run=page.run)


# --- fleet index ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostRow:
    host: HostReport
    problems: tuple[CheckResult, ...]  # fail and warn results, worst first
    collection: str  # "complete" or the host-wide failure kind

    @property
    def problem_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.id for c in self.problems))

    @property
    def distinct_problems(self) -> tuple[CheckResult, ...]:
        """The worst result of each failing check id (one id may fail on the host and at an endpoint)."""
        first: dict[str, CheckResult] = {}
        for c in self.problems:
            first.setdefault(c.id, c)
        return tuple(first.values())


@dataclass(frozen=True)
class Finding:
    """One check id that is a problem somewhere, and where."""

    id: str
    status: Status
    severity: Severity
    title: str  # the worst instance's own wording
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class TimelineMark:
    y: int
    x_start: float  # where the bar starts (the reference time, or the expiry when expired)
    x_end: float
    x_dot: float
    clipped: bool  # expiry beyond the right edge (or before the left one)
    cert: certview.FleetCert
    label: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Timeline:
    """Geometry of the certificate expiry chart (an inline SVG), in viewBox units."""

    width: int
    height: int
    plot_left: int
    plot_right: int
    now_x: float
    now_label: str
    ticks: tuple[tuple[float, str, str], ...]  # x, month, year (only where the year starts or at the first)
    marks: tuple[TimelineMark, ...]
    more: int  # certificates left off (they expire after the last one shown)
    later_than: str


TIMELINE_ROWS = 40
_ROW, _TOP, _LEFT, _RIGHT, _WIDTH = 22, 46, 380, 860, 1100


def _common_name(row: certview.CertRow) -> str:
    return row.common_name or row.subject or row.thumbprint[:16]


def timeline(certs: Sequence[certview.FleetCert], reference: datetime | None) -> Timeline | None:
    """Place each certificate's expiry on one axis from a little before the run to about a year
    after; later expiries sit at the right edge with their date, long-expired ones at the left."""
    if reference is None or not certs:
        return None
    shown = list(certs[:TIMELINE_ROWS])
    start = reference - timedelta(days=45)
    end = reference + timedelta(days=400)
    span = (end - start).total_seconds()

    def x(moment: datetime) -> tuple[float, bool]:
        fraction = (moment - start).total_seconds() / span
        clipped = not 0 <= fraction <= 1
        return _LEFT + (_RIGHT - _LEFT) * min(max(fraction, 0.0), 1.0), clipped

    now_x = x(reference)[0]
    marks = []
    for i, cert in enumerate(shown):
        expiry = certview.parse_time(cert.row.not_after)
        if expiry is None:
            continue
        x_dot, clipped = x(expiry)
        hosts = tuple(dict.fromkeys(h for h, _ in cert.seen))
        label = _common_name(cert.row)
        marks.append(
            TimelineMark(
                y=_TOP + i * _ROW,
                x_start=min(now_x, x_dot),
                x_end=max(now_x, x_dot),
                x_dot=x_dot,
                clipped=clipped,
                cert=cert,
                label=label if len(label) <= 28 else label[:27] + "…",
                hosts=hosts,
            )
        )
    ticks: list[tuple[float, str, str]] = []
    month = datetime(start.year, start.month, 1, tzinfo=UTC)
    while month <= end:
        if month >= start:
            ticks.append((x(month)[0], month.strftime("%b"), str(month.year) if month.month == 1 or not ticks else ""))
        month = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    last = shown[-1].row.not_after if shown else ""
    return Timeline(
        width=_WIDTH,
        height=_TOP + len(marks) * _ROW + 8,
        plot_left=_LEFT,
        plot_right=_RIGHT,
        now_x=now_x,
        now_label=reference.strftime("%Y-%m-%d"),
        ticks=tuple(ticks),
        marks=tuple(marks),
        more=len(certs) - len(shown),
        later_than=when(last)[:10],
    )


@dataclass(frozen=True)
class IndexPage:
    run: RunReport
    headline: Headline
    failing: tuple[HostRow, ...]  # hosts whose worst status is fail, for the headline
    rows: tuple[HostRow, ...]
    hosts_by_status: dict[str, int]
    problems_by_severity: dict[str, int]
    counts: dict[str, int]
    not_collected: int
    findings: tuple[Finding, ...]
    routes: tuple[path.Route, ...]
    timeline: Timeline | None
    certificates: tuple[certview.FleetCert, ...]
    duration_s: float | None
    incidents: tuple[IncidentPath, ...] = ()  # every joined connection of the run
    stopped: tuple[Headline, ...] = ()  # the connections that stop, where and why


def host_rows(hosts: Iterable[HostReport]) -> tuple[HostRow, ...]:
    rows = []
    for h in hosts:
        problems = tuple(c for c in sorted_checks(h.checks) if c.is_problem)
        whole = next((p for p in h.facts.problems if not p.probe), None)
        rows.append(HostRow(h, problems, whole.kind.value if whole else "complete"))
    return tuple(rows)


def findings(hosts: Iterable[HostReport]) -> tuple[Finding, ...]:
    """Problem check ids across the fleet, worst first, each with the hosts it is on."""
    by_id: dict[str, list[tuple[CheckResult, str]]] = {}
    for h in hosts:
        for c in h.checks:
            if c.is_problem:
                by_id.setdefault(c.id, []).append((c, h.name))
    out = []
    for check_id, found in by_id.items():
        worst = sorted_checks(c for c, _ in found)[0]
        names = tuple(dict.fromkeys(name for _, name in found))
        key = _problem_order(check_id, worst.status, worst.severity, worst.endpoint)
        out.append((key, Finding(check_id, worst.status, worst.severity, worst.title, names)))
    return tuple(finding for _, finding in sorted(out, key=lambda pair: pair[0]))


def index_page(run: RunReport) -> IndexPage:
    rows = host_rows(run.hosts)
    failing = tuple(r for r in rows if r.host.worst is Status.FAIL)
    total = len(run.hosts)
    if failing:
        headline = Headline(Status.FAIL, f"{len(failing)} of {total} host(s) have failing checks")
    elif any(r.host.worst is Status.WARN for r in rows):
        warned = sum(1 for r in rows if r.host.worst is Status.WARN)
        headline = Headline(Status.WARN, f"No failing checks; {warned} of {total} host(s) have warnings")
    elif any(r.host.worst is Status.UNKNOWN for r in rows):
        headline = Headline(Status.UNKNOWN, f"Nothing failed, but some checks could not be judged on {total} host(s)")
    else:
        headline = Headline(Status.PASS, f"Every check passes on {total} host(s)")
    by_severity = {s.value: 0 for s in SEVERITY_ORDER}
    for h in run.hosts:
        for c in h.checks:
            if c.is_problem:
                by_severity[c.severity.value] += 1
    reference = reference_time(run)
    chains = [chain for h in run.hosts for chain in certview.host_chains(h.facts, reference)]
    certs = certview.fleet_certificates(chains)
    return IndexPage(
        run=run,
        headline=headline,
        failing=failing,
        rows=rows,
        hosts_by_status={s.value: sum(1 for h in run.hosts if h.worst is s) for s in STATUS_ORDER},
        problems_by_severity=by_severity,
        counts=run.counts(),
        not_collected=sum(1 for h in run.hosts if not h.collected),
        findings=findings(run.hosts),
        routes=path.fleet_routes(run.hosts),
        timeline=timeline(certs, reference),
        certificates=certs,
        duration_s=duration_s(run.started, run.finished),
        incidents=tuple(run.paths),
        stopped=tuple(incident_headline(p, p.first_broken) for p in run.paths if p.first_broken is not None),
    )


def render_index(run_report: RunReport) -> str:
    return environment().get_template("index.html.j2").render(page=index_page(run_report), run=run_report)


def host_json(host: HostReport) -> str:
    """One host's record as it appears in results.json's ``hosts`` list."""
    return json.dumps(to_dict(host))


def results_chunks(run_report: RunReport, host_records: Iterable[str] | None = None) -> Iterable[str]:
    """results.json piece by piece, so a large run is never one string in memory: the run's
    fields, then one host record at a time (``host_records``, already encoded, or encoded here)."""
    head = to_dict(dataclasses.replace(run_report, hosts=()))
    records = host_records if host_records is not None else (host_json(h) for h in run_report.hosts)
    yield "{"
    for index, (key, value) in enumerate(head.items()):
        yield (",\n" if index else "\n") + json.dumps(key) + ": "
        if key != "hosts":
            yield json.dumps(value)
            continue
        yield "["
        for number, record in enumerate(records):
            yield ("," if number else "") + "\n" + record
        yield "\n]"
    yield "\n}\n"


def results_json(run_report: RunReport) -> str:
    return "".join(results_chunks(run_report))


# --- a host whose report cannot be rendered ------------------------------------------------------

# The check a host's record carries when its page or its record could not be rendered.
REPORT_FAILED = "collect.report-failed"


@dataclass(frozen=True)
class HostOutput:
    """What is written for one host: its page (UTF-8) and its results record."""

    page: bytes
    record: str
    failure: str = ""  # why its page or record could not be rendered, in words; "" when both were


def failure_words(exc: BaseException) -> str:
    """Why something could not be rendered, in words that can themselves be written anywhere."""
    if isinstance(exc, UnicodeEncodeError):
        bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
        codes = ", ".join(f"U+{ord(char):04X}" for char in bad[:4]) + (", ..." if len(bad) > 4 else "")
        what = (
            "a lone UTF-16 surrogate, which is not a character"
            if bad and all(0xD800 <= ord(char) <= 0xDFFF for char in bad)
            else exc.reason
        )
        return f"it holds text that cannot be written as UTF-8 ({codes}: {what})"
    words = printable(f"{type(exc).__name__}: {exc}")
    return words if len(words) <= 500 else words[:500] + " (...)"


def _writable(value: Any) -> Any:
    """Plain JSON data (``to_dict``'s) with every string that UTF-8 cannot hold made writable:
    each lone surrogate becomes U+FFFD, as a UTF-16 decoder would have it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {_writable(k): _writable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_writable(v) for v in value]
    return value


def _strict_record(data: Any) -> str:
    """``host_json`` that refuses what a UTF-8 file cannot hold (a lone surrogate would only be
    escaped, and results.json is to be read by any JSON reader)."""
    record = json.dumps(data)
    if "\\ud" in record:  # a surrogate, escaped: check that each is half of a character
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    return record


def unrendered_check(host: HostReport, why: str) -> CheckResult:
    """The result a host's record carries when its report could not be rendered."""
    return CheckResult(
        REPORT_FAILED,
        Status.UNKNOWN,
        Severity.WARNING,
        f"The report of this host could not be rendered: {why}",
        host.name,
        (Evidence("report writer", why, "workstation"),),
        "The host was collected and judged; only its report failed. The other hosts' reports are "
        "complete. Keep this run's results.json for the collector's maintainers.",
    )


def _plain_page(title: str, body: str) -> bytes:
    """A page of the tool's own words (``title`` and ``body`` already escaped), nothing inline to
    run or style: what is written when a page cannot be rendered from its template."""
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; base-uri 'none'; "
        "form-action 'none'\">\n"
        '<meta name="referrer" content="no-referrer">\n<link rel="icon" href="data:,">\n'
        f"<title>{title} · Remote Desktop diagnostics</title>\n</head>\n<body>\n<main>\n{body}</main>\n"
        "</body>\n</html>\n"
    ).encode()


def unrendered_page(host_name: str, why: str) -> bytes:
    """The page of a host whose report could not be rendered: that, and why (host data is text)."""
    name = html.escape(printable(host_name))
    return _plain_page(
        f"{name} · report not rendered",
        '<nav aria-label="Breadcrumb"><a href="../index.html">Fleet index</a> › '
        f"<span>{name}</span></nav>\n<h1>{name}</h1>\n"
        f"<p><strong>The report of this host could not be rendered:</strong> {html.escape(why)}.</p>\n"
        f"<p>Its record in results.json says so too (check <code>{REPORT_FAILED}</code>); every other "
        "host's report was written as usual.</p>\n",
    )


def index_output(run: RunReport) -> bytes:
    """The fleet index, UTF-8; when it cannot be rendered, a page that says so and why and links
    every host's page, so the run is published regardless."""
    try:
        return render_index(run).encode("utf-8")
    except Exception as exc:
        links = "".join(
            f'<li><a href="hosts/{host_filename(h.name)}">{html.escape(printable(h.name))}</a></li>\n'
            for h in run.hosts
        )
        return _plain_page(
            "Fleet index not rendered",
            "<h1>Fleet index</h1>\n"
            f"<p><strong>The fleet index could not be rendered:</strong> {html.escape(failure_words(exc))}.</p>\n"
            f"<p>The hosts' pages and results.json were written:</p>\n<ul>\n{links}</ul>\n",
        )


def host_output(report: HostReport, run: RunReport) -> HostOutput:
    """The host's page and results record. What a host sent never stops a run from being
    published: when either cannot be rendered or serialised (any exception but the disk's, which
    comes from writing them), the host gets a page saying that its report could not be rendered
    and why, and a record carrying ``REPORT_FAILED`` with the same words. The record keeps what
    can be kept: the host whole if it serialised, else with its text made writable, else its
    target alone."""
    failed: dict[str, list[str]] = {}  # why -> what failed for that reason
    page = b""
    try:
        page = render_host(report, run).encode("utf-8")
    except Exception as exc:
        failed.setdefault(failure_words(exc), []).append("page")
    record = ""
    try:
        record = _strict_record(to_dict(report))
    except Exception as exc:
        failed.setdefault(failure_words(exc), []).append("results record")
    if not failed:
        return HostOutput(page, record)
    why = "; ".join(" and ".join(f"its {what}" for what in whats) + f": {words}" for words, whats in failed.items())
    marked = dataclasses.replace(report, checks=(*report.checks, unrendered_check(report, why)))
    try:
        record = _strict_record(to_dict(marked) if record else _writable(to_dict(marked)))
    except Exception:
        bare = HostReport(HostFacts(target=report.facts.target), (unrendered_check(report, why),))
        record = json.dumps(_writable(to_dict(bare)))
    if not page:
        page = unrendered_page(report.name, why)
    return HostOutput(page, record, why)


# --- the run folder ------------------------------------------------------------------------------


# Modes of what a run writes, before the process umask takes its share: the account that runs the
# collector and its group (a web server given the output folder's group, see docs/scheduling.md) only.
FILE_MODE = 0o640
FOLDER_MODE = 0o750


def make_folders(folder: Path) -> None:
    """Create ``folder`` and the parents it lacks, each ``FOLDER_MODE`` less the umask; a folder
    that exists is left as it is."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for each in reversed(missing):
        try:
            os.mkdir(each, FOLDER_MODE)
        except FileExistsError:
            if not each.is_dir():
                raise


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    """A new file beside ``path`` (``.<name>.<random>.tmp``), open for writing, created with
    ``mode`` less the umask: never an existing file, and never through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write(
    path: Path, content: str | bytes | Iterable[str], *, durable: bool = False, mode: int = FILE_MODE
) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file.
    ``content`` may be an iterable of text chunks (results.json of a large run is streamed).
    ``durable`` also flushes it to disk before the rename (for results.json, from which every
    page can be rendered again; pages are not worth a disk flush each). The file gets ``mode``
    less the umask (``FILE_MODE``: the account and its group), the folders it needs
    ``FOLDER_MODE``."""
    make_folders(path.parent)
    fd, tmp = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(content, (str, bytes)):
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            else:
                for chunk in content:
                    handle.write(chunk.encode("utf-8"))
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_UNSAFE_FILENAME = re.compile(r"[^a-z0-9._-]")


def host_filename(name: str) -> str:
    """The page name for a host. Inventory names are DNS names already; a name read back from a
    results.json of unknown origin must still not reach outside ``hosts/`` (``../``, slashes)."""
    return (_UNSAFE_FILENAME.sub("_", name.lower()).lstrip(".") or "_") + ".html"


def new_run_id(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def summary(report: HostReport) -> HostReport:
    """What the end of a run reads of a host that no cross-host judgement reads: its checks
    without their evidence, and of its facts the target, collection problems, timings and
    certificate chains (the index, the metrics and the history need no more). Its page and record
    hold everything; a run keeps this so its memory does not grow with the hosts it has done."""
    facts = report.facts
    return HostReport(
        facts=HostFacts(
            target=facts.target,
            probes={
                name: dataclasses.replace(p, data=certview.certificates_only(p.data) or {}, errors=())
                for name, p in facts.probes.items()
            },
            problems=facts.problems,
            planned=facts.planned,
            endpoints=certview.certificates_only(dict(facts.endpoints)) or {},
            started=facts.started,
            finished=facts.finished,
            duration_s=facts.duration_s,
        ),
        checks=tuple(dataclasses.replace(c, evidence=()) for c in report.checks),
    )


class RunWriter:
    """The run folder being written; ``finish`` publishes it, and a writer never finished leaves
    ``latest`` alone.

    Each host's page and its results record are written as the host finishes, so an interrupted
    run keeps them and memory does not hold a large run's output. ``finish`` writes a page again
    only when what it shows changed: the host was judged again by the cross-host checks, or it is
    on a route or connection whose other hosts finished after it.

    What the run keeps of a written host is its ``summary``, unless it is one of ``whole`` (the
    hosts the cross-host checks and connection paths read; None keeps every host whole): a page
    written again is rendered from the host's record on disk."""

    RECORDS = "records"  # host records waiting to become results.json; gone once it is written

    def __init__(self, output: Path, run_id: str, whole: Collection[str] | None = None, backlog: int = 16) -> None:
        self.output = output
        # Pages waiting for the writer thread, each holding a whole host report. While hosts are
        # collected the writer gets a small share of the CPU and would fall further behind the
        # larger the run; past ``backlog`` pages the run waits for it, so memory stays in
        # proportion to the hosts in flight (the caller passes its concurrency), not the fleet.
        self.backlog = max(1, backlog)
        self._whole = None if whole is None else {name.lower() for name in whole}
        make_folders(output)
        suffix = 1
        while True:
            final = output / (run_id if suffix == 1 else f"{run_id}-{suffix}")
            suffix += 1
            if os.path.lexists(final):
                continue
            try:  # the partial folder is this run's only if this run made it
                os.mkdir(output / runs.partial_name(final.name), FOLDER_MODE)
            except FileExistsError:
                continue
            break
        self.run_id = final.name
        self.final = final
        self.partial = output / runs.partial_name(final.name)
        # Says that a run in progress owns the folder, so no other run removes it as stale.
        atomic_write(self.partial / runs.OWNER_FILE, runs.owner_record())
        os.mkdir(self.partial / "hosts", FOLDER_MODE)
        os.mkdir(self.partial / self.RECORDS, FOLDER_MODE)
        self.unrendered: dict[str, str] = {}  # host name -> why its page or record could not be rendered
        self._done: dict[str, HostReport] = {}  # by name, what the run keeps: a host written again replaces itself
        self._lock = threading.Lock()  # hosts finish on the runner's worker threads
        # One thread writes pages as hosts finish, so the runner's loop goes straight back to
        # starting hosts: rendering is the heaviest thing the collector does between probes.
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-writer")
        self._pending: list[Future[None]] = []

    def _record(self, host: HostReport) -> Path:
        return self.partial / self.RECORDS / (host_filename(host.name).removesuffix(".html") + ".json")

    def _kept_whole(self, name: str) -> bool:
        return self._whole is None or name.lower() in self._whole

    def keep(self, report: HostReport) -> HostReport:
        """Take ``report`` as written (or about to be): what the run should keep of it from now on."""
        kept = report if self._kept_whole(report.name) else summary(report)
        with self._lock:
            self._done[report.name.lower()] = kept
        return kept

    def write_host(self, report: HostReport, run_so_far: RunReport) -> HostReport:
        """The host's page, against the run as far as it has got, and its results record; returns
        what the run should keep of the host."""
        kept = self.keep(report)
        self._write_first(report, run_so_far)
        return kept

    def _write_first(self, report: HostReport, run_so_far: RunReport) -> None:
        with self._lock:
            done = tuple(self._done.values())
        self._write(report, dataclasses.replace(run_so_far, hosts=done))

    def _write(self, report: HostReport, run: RunReport) -> None:
        """The host's page and record; one that cannot be rendered is written as ``host_output``
        says, so only the disk can fail here."""
        output = host_output(report, run)
        atomic_write(self.partial / "hosts" / host_filename(report.name), output.page)
        atomic_write(self._record(report), output.record)
        with self._lock:
            if output.failure:
                self.unrendered[report.name] = output.failure
            elif not any(c.id == REPORT_FAILED for c in report.checks):
                self.unrendered.pop(report.name, None)

    def write_host_soon(self, report: HostReport, run_so_far: RunReport) -> HostReport:
        """``write_host`` on the writer's own thread (``wait`` or ``finish`` reports its errors);
        returns what the run should keep of the host, at once unless ``backlog`` pages are
        already waiting: then when the oldest of them is written."""
        kept = self.keep(report)
        # A page written needs no more watching unless it failed (``wait`` raises the first failure).
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        waiting = [f for f in self._pending if not f.done()]
        if len(waiting) >= self.backlog:
            futures.wait(waiting[: len(waiting) - self.backlog + 1])
        self._pending.append(self._background.submit(self._write_first, report, run_so_far))
        return kept

    def wait(self) -> None:
        """Until every page handed to ``write_host_soon`` is written; raises the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def stale(self, host: HostReport, run_report: RunReport) -> bool:
        """Whether the page written while the run went on no longer shows what ``host`` is now."""
        written = self._done.get(host.name.lower())
        return (
            written is not host
            or bool(path.routes_for(host.facts.target, run_report.hosts))
            or bool(incidents_of(run_report, host.name))
        )

    def _whole_report(self, host: HostReport) -> HostReport:
        """``host`` with everything it was judged on: itself, or for a summary the record written
        for it, plus any result the cross-host checks added after its own."""
        if self._kept_whole(host.name):
            return host
        written = host_from_dict(json.loads(self._record(host).read_text(encoding="utf-8")))
        added = host.checks[len(self._done[host.name.lower()].checks) :]
        return dataclasses.replace(written, checks=(*written.checks, *added)) if added else written

    def finish(self, run_report: RunReport) -> Path:
        """Rewrite the pages that changed, write results.json from the host records and the
        index, then make the run visible and point ``latest`` at it."""
        self.wait()
        self._background.shutdown()
        for host in run_report.hosts:
            if self.stale(host, run_report):
                self._write(self._whole_report(host), run_report)
        records = (self._record(h).read_text(encoding="utf-8") for h in run_report.hosts)
        atomic_write(self.partial / "results.json", results_chunks(run_report, records), durable=True)
        atomic_write(self.partial / "index.html", index_output(run_report))
        shutil.rmtree(self.partial / self.RECORDS)
        (self.partial / runs.OWNER_FILE).unlink(missing_ok=True)
        os.replace(self.partial, self.final)
        update_latest(self.output, self.final.name)
        return self.final


def update_latest(output: Path, run_name: str) -> None:
    """Point ``output/latest`` at ``run_name`` atomically (a symlink swapped by rename)."""
    link = output / "latest"
    tmp = output / f".latest.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(run_name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        # No symlinks (Windows without the privilege): a text file naming the run instead.
        tmp.unlink(missing_ok=True)
        atomic_write(output / "latest.txt", run_name + "\n")


def _write_run(run_report: RunReport, destination: Path) -> None:
    records = []
    for host in run_report.hosts:
        output = host_output(host, run_report)
        atomic_write(destination / "hosts" / host_filename(host.name), output.page)
        records.append(output.record)
    atomic_write(destination / "results.json", results_chunks(run_report, records), durable=True)
    atomic_write(destination / "index.html", index_output(run_report))


def render_run(run_report: RunReport, destination: Path) -> Path:
    """Re-render a whole run (host pages, index, results.json) into ``destination``."""
    _write_run(run_report, destination)
    return destination
