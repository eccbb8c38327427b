"""What the report pages present: grouping, headline, collection state, paths, certificates, the
fleet summary, self-containment and escaping. Rendering decides nothing; these pin what it shows."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from collector import certview, report
from collector.model import (
    CheckResult,
    CollectionFailure,
    CollectionProblem,
    Evidence,
    HostChanges,
    HostFacts,
    HostReport,
    HostTarget,
    NotJudged,
    ProbeError,
    ProbeResult,
    Role,
    RunChanges,
    RunReport,
    Severity,
    Status,
    fold_unknowns,
)
from tests.browser import hostile

S, W, F, U = Status.PASS, Status.WARN, Status.FAIL, Status.UNKNOWN


def chk(check_id: str, status: Status, severity: Severity = Severity.CRITICAL, host: str = "h") -> CheckResult:
    return CheckResult(check_id, status, severity, f"title of {check_id}", host, (Evidence("fact", "value", "v"),))


def rep(name: str, roles: tuple[Role, ...], checks: tuple[CheckResult, ...], **target: object) -> HostReport:
    return HostReport(HostFacts(target=HostTarget(name=name, address="10.0.0.1", roles=roles, **target)), checks)


def run_of(*hosts: HostReport, **kw: object) -> RunReport:
    fields = {"started": "2026-03-01T07:59:00Z", "finished": "2026-03-01T08:00:00Z", **kw}
    return RunReport(
        "20260301T075900Z", tool_version="0.1.0", workstation="ws", inventory="inv.yaml", hosts=hosts, **fields
    )


def test_checks_are_grouped_by_concern_problems_first_inside_and_across() -> None:
    groups = report.group_checks(
        [
            chk("host.time-skew", S),
            chk("rdp.port-nondefault", W, Severity.INFO),
            chk("rdp.service-stopped", F),
            chk("host.pending-reboot", U, Severity.INFO),
            chk("zzz.custom", S),
            chk("rdp.disabled", S),
        ]
    )
    assert [(g.key, g.heading) for g in groups] == [
        ("rdp", "Session host: Remote Desktop listener"),
        ("host", "Host: clock, domain, TLS settings, reboot"),
        ("zzz", "Other checks (zzz.*)"),
    ]
    assert [c.id for c in groups[0].checks] == ["rdp.service-stopped", "rdp.port-nondefault", "rdp.disabled"]
    assert [c.id for c in groups[1].checks] == ["host.pending-reboot", "host.time-skew"]
    assert groups[0].worst is F and (groups[0].count(F), groups[0].count(S)) == (1, 1)


def unknown(check_id: str, why: str, endpoint: str = "", title: str = "") -> CheckResult:
    evidence = (Evidence("endpoint", endpoint, "workstation"), Evidence("why unknown", why, "workstation"))
    return CheckResult(
        check_id, U, Severity.CRITICAL, title or f"title of {check_id}", "h", evidence, endpoint=endpoint
    )


def test_unknowns_that_say_the_same_thing_fold_into_one_line_where_the_first_stood() -> None:
    ep, other = "rdsh1:3389", "gw1:443"
    checks = (
        chk("cert.name-mismatch", F),
        unknown("cert.expired", "no TCP connection", ep, "No certificate has expired: not judged (no TCP connection)"),
        unknown("cert.untrusted", "no TCP connection", ep),
        chk("cert.weak-key", S),
        unknown("cert.chain-order", "no TCP connection", ep),
        unknown("cert.self-signed", "no TCP connection", other),  # another endpoint: its own line
        unknown("cert.weak-signature", "probe x failed", ep),  # another reason: its own line
        unknown("cert.expires-soon", "probe x failed", ep),
    )
    rows = fold_unknowns(checks)
    assert [r.id if isinstance(r, CheckResult) else "folded" for r in rows] == [
        "cert.name-mismatch",
        "folded",
        "cert.weak-key",
        "cert.self-signed",
        "cert.weak-signature",
        "cert.expires-soon",
    ]
    folded = rows[1]
    assert isinstance(folded, NotJudged)
    assert (folded.reason, folded.endpoint) == ("no TCP connection", ep)
    assert [c.id for c in folded.checks] == ["cert.expired", "cert.untrusted", "cert.chain-order"]
    assert folded.plain_title(folded.checks[0]) == "No certificate has expired"
    # Fewer than FOLD_AT alike stay one by one; a group's rows are its checks folded.
    assert fold_unknowns(checks[1:3]) == checks[1:3]
    assert report.group_checks(checks)[0].rows == fold_unknowns(report.sorted_checks(checks))


def test_an_unknown_line_says_why_not_its_first_evidence() -> None:
    check = unknown("net.tls-handshake", "no TCP connection", "rdsh1:3389")
    assert check.why_unknown == "no TCP connection"
    assert chk("rdp.disabled", S).why_unknown == ""
    html = report.render_host(rep("h", (Role.SESSION_HOST,), (check,)), run_of())
    assert '<span class="why">no TCP connection</span>' in html
    assert '<span class="why">rdsh1:3389</span>' not in html


def test_a_refused_endpoint_shows_its_unjudged_certificate_checks_as_one_line() -> None:
    from collector.checks import certs as cert_checks

    results = cert_checks.unknown_results("no TCP connection", host="h", endpoint="h:3389", vantage="workstation")
    html = report.render_host(rep("h", (Role.SESSION_HOST,), results), run_of())
    assert html.count('class="check unknown folded"') == 1
    assert f"{len(results)} checks not judged" in html
    assert re.findall(r'<li data-check="([^"]+)">', html) == [c.id for c in report.sorted_checks(results)]
    assert ": not judged (no TCP connection)" not in html  # said once, on the line, not in every title


def test_headline_is_the_worst_finding_ordered_cause_first() -> None:
    host = rep("s1", (Role.SESSION_HOST,), (chk("rdp.not-listening", F), chk("rdp.service-stopped", F)))
    headline = report.host_headline(host, (), (host,))
    assert (headline.status, headline.text, headline.check.id) == (
        F,
        "title of rdp.service-stopped",
        "rdp.service-stopped",
    )


def test_headline_of_a_passing_host_points_at_the_first_broken_hop_on_its_path() -> None:
    client = rep("c1", (Role.CLIENT,), (chk("client.udp-disabled", S),), gateway="gw1", session_hosts=("s1",))
    gateway = rep("gw1", (Role.GATEWAY,), (chk("rdg.service-stopped", F), chk("host.time-skew", W)))
    fleet = (client, gateway, rep("s1", (Role.SESSION_HOST,), (chk("rdp.disabled", F),)))
    page = report.host_page(client, run_of(*fleet))
    assert page.headline.text == "Checks here pass, but the path breaks at gw1 (RD Gateway)"
    assert (page.headline.elsewhere, page.headline.check.id) == ("gw1", "rdg.service-stopped")


def test_a_finding_on_the_host_comes_before_what_it_causes_at_its_endpoint() -> None:
    refused = CheckResult("net.tcp-blocked", F, Severity.CRITICAL, "No TCP connection", "s1", endpoint="s1:3389")
    host = rep("s1", (Role.SESSION_HOST,), (refused, chk("rdp.service-stopped", F)))
    assert [c.id for c in report.sorted_checks(host.checks)] == ["rdp.service-stopped", "net.tcp-blocked"]
    assert report.host_headline(host, (), (host,)).check.id == "rdp.service-stopped"


@pytest.mark.parametrize(
    ("statuses", "text"),
    [((S, U, U), "Nothing failed, but 2 check(s) could not be judged"), ((S, S), "All 2 checks pass")],
)
def test_headline_without_problems(statuses: tuple[Status, ...], text: str) -> None:
    host = rep("s1", (Role.SESSION_HOST,), tuple(chk(f"rdp.c{i}", s) for i, s in enumerate(statuses)))
    assert report.host_headline(host, (), (host,)).text == text


def test_probe_lines_say_what_happened_to_each_probe() -> None:
    facts = HostFacts(
        target=HostTarget(name="s1", address="s1", roles=(Role.SESSION_HOST,)),
        probes={
            "host": ProbeResult("host", 1, {}, errors=(ProbeError("Get-CimInstance", "access denied"),), duration_s=0.5)
        },
        problems=(CollectionProblem(CollectionFailure.BAD_OUTPUT, "data.port_number: not an int", probe="rdp_config"),),
        planned=("host", "services", "rdp_config"),
    )
    lines = report.probe_lines(HostReport(facts, ()))
    assert [(p.name, p.state, p.reason) for p in lines] == [
        ("host", "collected", ""),
        ("services", "not run", "no result was recorded"),
        ("rdp_config", "failed", "bad-output: data.port_number: not an int"),
    ]
    assert lines[0].errors == (ProbeError("Get-CimInstance", "access denied"),) and lines[0].duration_s == 0.5
    down = HostFacts(
        target=facts.target, problems=(CollectionProblem(CollectionFailure.TIMEOUT, "no answer"),), planned=("host",)
    )
    assert report.probe_lines(HostReport(down, ()))[0].reason == "the host could not be collected (timeout)"


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        ("RDSH01.corp.example", "rdsh01.corp.example.html"),
        ("../../etc/passwd", "_.._etc_passwd.html"),
        ("a/b\\c d", "a_b_c_d.html"),
        ("..", "_.html"),
    ],
)
def test_host_filenames_never_leave_the_hosts_folder(name: str, filename: str) -> None:
    assert report.host_filename(name) == filename


@pytest.mark.parametrize(
    ("ref", "target"),
    [
        ("https://learn.microsoft.com/en-us/troubleshoot/rds", "https://learn.microsoft.com/en-us/troubleshoot/rds"),
        ("HTTP://intranet/kb/1", "HTTP://intranet/kb/1"),
        ("javascript:alert(1)", ""),
        (" https://x.example/", ""),
        ("data:text/html,<script>alert(1)</script>", ""),
        ('https://x.example/" onclick="alert(1)', ""),
        ("System log 7023, 7034", ""),
    ],
)
def test_only_plain_http_urls_become_links(ref: str, target: str) -> None:
    assert report.link_target(ref) == target


def test_wording_of_days_and_durations() -> None:
    assert [report.days_text(d) for d in (None, -1, -3, 0, 1, 45)] == [
        "unknown",
        "expired 1 day ago",
        "expired 3 days ago",
        "0 days left",
        "1 day left",
        "45 days left",
    ]
    assert [report.seconds_text(s) for s in (None, 0.2, 42.4, 185)] == ["unknown", "under 1 s", "42 s", "3 min 5 s"]
    assert report.when("2026-03-01T08:00:00Z") == "2026-03-01 08:00:00 UTC" and report.when("soon") == "soon"


def fleet_cert(cn: str, days: int, hosts: tuple[str, ...], reference: datetime) -> certview.FleetCert:
    expiry = (reference + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    row = certview.CertRow(0, f"CN={cn}", cn, "CN=CA", "", expiry, days, hashlib.sha1(cn.encode()).hexdigest())  # noqa: S324
    return certview.FleetCert(row, tuple((h, "where") for h in hosts))


def test_timeline_places_expiries_around_the_run() -> None:
    ref = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    certs = (
        fleet_cert("old.corp.example", -3, ("a",), ref),
        fleet_cert("soon.corp.example", 20, ("a", "b"), ref),
        fleet_cert("ca", 3650, ("a", "b", "c"), ref),
    )
    tl = report.timeline(certs, ref)
    expired, soon, far = tl.marks
    assert expired.x_dot < tl.now_x < soon.x_dot < far.x_dot == tl.plot_right
    assert (expired.x_start, expired.x_end) == (expired.x_dot, tl.now_x)  # the bar runs from expiry to the run
    assert (soon.x_start, soon.x_end) == (tl.now_x, soon.x_dot)
    assert far.clipped and not soon.clipped and soon.hosts == ("a", "b")
    assert [m.y for m in tl.marks] == [46, 68, 90] and tl.height == 46 + 3 * 22 + 8
    assert [t[1:] for t in tl.ticks[:3]] == [("Feb", "2026"), ("Mar", ""), ("Apr", "")]
    assert tl.ticks[11][1:] == ("Jan", "2027")
    assert tl.now_label == "2026-03-01" and tl.more == 0


def test_timeline_shows_the_soonest_forty_and_counts_the_rest() -> None:
    ref = datetime(2026, 3, 1, tzinfo=UTC)
    certs = tuple(fleet_cert(f"h{i:02}", i, ("a",), ref) for i in range(45))
    tl = report.timeline(certs, ref)
    assert len(tl.marks) == 40 and tl.more == 5 and tl.later_than == "2026-04-09"
    assert report.timeline((), ref) is None


def test_index_summary_counts_hosts_problems_and_findings() -> None:
    hosts = (
        rep(
            "s1",
            (Role.SESSION_HOST,),
            (chk("rdp.service-stopped", F), chk("rdp.not-listening", F), chk("host.time-skew", S)),
        ),
        rep("s2", (Role.SESSION_HOST,), (chk("rdp.not-listening", F), chk("rdp.nla-disabled", W, Severity.WARNING))),
        rep("c1", (Role.CLIENT,), (chk("client.udp-disabled", W, Severity.INFO), chk("host.time-skew", U))),
        rep("c2", (Role.CLIENT,), (chk("host.time-skew", S),)),
    )
    page = report.index_page(run_of(*hosts))
    assert page.headline.text == "2 of 4 host(s) have failing checks"
    assert page.hosts_by_status == {"fail": 2, "warn": 1, "unknown": 0, "pass": 1}
    assert page.problems_by_severity == {"critical": 3, "warning": 1, "info": 1}
    assert [(f.id, f.hosts) for f in page.findings] == [
        ("rdp.service-stopped", ("s1",)),
        ("rdp.not-listening", ("s1", "s2")),
        ("rdp.nla-disabled", ("s2",)),
        ("client.udp-disabled", ("c1",)),
    ]
    assert [r.problem_ids for r in page.rows][:2] == [
        ("rdp.service-stopped", "rdp.not-listening"),
        ("rdp.not-listening", "rdp.nla-disabled"),
    ]
    assert page.duration_s == 60.0
    twice = rep(
        "s3",
        (Role.SESSION_HOST,),
        (chk("rdp.nla-disabled", W), replace(chk("rdp.nla-disabled", F), endpoint="s3:3389")),
    )
    [row] = report.host_rows([twice])
    assert [(c.id, c.status) for c in row.distinct_problems] == [("rdp.nla-disabled", F)]


class Tags(HTMLParser):
    """Every element and attribute as a browser's parser sees them (escaped text stays text)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def inline(tag: str, html: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)


def csp_sources(html: str) -> dict[str, str]:
    policy = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_pages_are_self_contained_and_their_csp_allows_exactly_their_own_inline_code(tmp_path: Path) -> None:
    report.render_run(hostile.hostile_run(), tmp_path)
    for page in [tmp_path / "index.html", *sorted((tmp_path / "hosts").iterdir())]:
        html = page.read_text("utf-8")
        [script], [style] = inline("script", html), inline("style", html)
        csp = csp_sources(html)
        assert csp["default-src"] == "'none'" and csp["base-uri"] == "'none'"
        assert csp["script-src"] == sha256(script) and csp["style-src"] == sha256(style), page.name
        # Nothing is loaded from anywhere: no src attribute, no link but the empty icon, no url() in
        # CSS, no event-handler attribute, and links only to the run's own pages or plain https.
        tags = Tags(html).tags
        assert not [t for t, a in tags if "src" in a or any(k.startswith("on") for k in a)], page.name
        assert [a for t, a in tags if t == "link"] == [{"rel": "icon", "href": "data:,"}]
        assert "url(" not in style and "@import" not in style
        hrefs = {a["href"] for t, a in tags if t == "a"}
        own = r"(\.\./index\.html|(hosts/)?[a-z0-9._-]+\.html|#[^ ]+|https://)"
        assert all(re.match(own, h) for h in hrefs), hrefs


def test_every_hostile_string_is_escaped_on_every_page(tmp_path: Path) -> None:
    report.render_run(hostile.hostile_run(), tmp_path)
    pages = {p.name: p.read_text("utf-8") for p in [tmp_path / "index.html", *(tmp_path / "hosts").iterdir()]}
    for name, html in pages.items():
        assert "<script>window" not in html and "<img src=x" not in html and "<svg onload" not in html, name
        assert 'href="javascript:' not in html.lower(), name
    gateway = pages["gw01.corp.example.html"]
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in gateway
    assert "{{ 7*7 }}{% raw %}" in gateway  # data is never a template
    # The certificate's subject is markup too; it is shown as text, and days left count from the run.
    assert "expired 3 days ago" in gateway and "&#34;&gt;&lt;img src=x onerror=" in gateway
    # Unknowns folded into one line escape their shared reason, endpoint and each title.
    assert "3 checks not judged" in gateway and "&lt;/style&gt;&lt;script&gt;window.__pwned=5" in gateway


def test_host_pages_written_during_a_run_are_rewritten_with_every_hop_known(tmp_path: Path) -> None:
    client = rep("c1.corp.example", (Role.CLIENT,), (chk("client.udp-disabled", S),), gateway="gw1.corp.example")
    gateway = rep("gw1.corp.example", (Role.GATEWAY,), (chk("rdg.service-stopped", F),))
    run = run_of(client, gateway)
    writer = report.RunWriter(tmp_path, run.run_id)
    writer.write_host(client, run)
    live = (writer.partial / "hosts" / "c1.corp.example.html").read_text("utf-8")
    assert "not in run" in live and "All 1 checks pass" in live  # the gateway has not finished yet
    writer.write_host(gateway, run)
    # A host written again (a fleet-wide check changed it) replaces its earlier self.
    writer.write_host(replace(client, checks=(chk("client.udp-disabled", W),)), run)
    again = (writer.partial / "hosts" / "c1.corp.example.html").read_text("utf-8")
    assert "warn</span> <strong>title of client.udp-disabled</strong>" in again
    assert again.count('aria-current="page"') == 1  # one client hop on its path, not two
    final = (writer.finish(run) / "hosts" / "c1.corp.example.html").read_text("utf-8")
    assert "not in run" not in final and "path breaks at gw1.corp.example (RD Gateway)" in final
    assert '<a href="gw1.corp.example.html">gw1.corp.example</a>' in final


def test_changes_since_the_previous_run_are_shown_on_index_and_host_page() -> None:
    host = rep("s1", (Role.SESSION_HOST,), (chk("rdp.service-stopped", F), chk("rdp.not-listening", F)))
    changes = RunChanges(
        previous_run_id="20260228T075900Z",
        hosts=(
            HostChanges(
                "s1", new=("rdp.service-stopped",), resolved=("rdp.disabled",), still_failing=("rdp.not-listening",)
            ),
        ),
    )
    run = run_of(host, changes=changes)
    index = report.render_index(run)
    assert "Since the previous run" in index and "20260228T075900Z" in index
    assert "1 new</span>" in index and "1 resolved</span>" in index and "1 still open</span>" in index
    page = report.host_page(host, run)
    assert [page.is_new(c) for c in host.checks] == [True, False] and page.resolved == ("rdp.disabled",)
    html = report.render_host(host, run)
    assert html.count("new since last run") == 1 and "resolved since last run" in html
    assert "Since the previous run" not in report.render_index(run_of(host))


def test_a_host_kept_as_a_summary_is_written_again_whole_from_its_record(tmp_path: Path) -> None:
    """A session host no client names is kept as a summary once written; it is on its gateway's
    route, so finish writes its page again, from its record, exactly as if it had been kept whole."""
    chain = {"subject": "CN=sh1", "not_after": "2027-01-01T00:00:00Z", "chain_der": ["MIIB"]}
    session_host = HostReport(
        HostFacts(
            target=HostTarget(name="sh1.corp.example", address="10.0.0.2", roles=(Role.SESSION_HOST,)),
            probes={
                "rdp_config": ProbeResult(
                    "rdp_config", 1, {"listener_certificate": chain, "security_layer": 2}, (ProbeError("step", "boom"),)
                )
            },
            started="2026-03-01T07:59:10Z",
            duration_s=1.5,
        ),
        (chk("rdp.nla-disabled", W, host="sh1.corp.example"), chk("rdp.disabled", S, host="sh1.corp.example")),
    )
    gateway = rep(
        "gw1.corp.example", (Role.GATEWAY,), (chk("rdg.service-stopped", S),), session_hosts=("sh1.corp.example",)
    )
    client = rep("c1.corp.example", (Role.CLIENT,), (chk("client.udp-disabled", S),), gateway="gw1.corp.example")
    writer = report.RunWriter(tmp_path, "20260301T075900Z", whole={"c1.corp.example", "gw1.corp.example"})
    so_far = run_of()
    kept = {h.name: writer.write_host(h, so_far) for h in (session_host, gateway, client)}
    assert kept["gw1.corp.example"] is gateway and kept["c1.corp.example"] is client
    summary = kept["sh1.corp.example"]
    assert summary == report.summary(session_host) and summary is not session_host
    assert [c.evidence for c in summary.checks] == [(), ()]
    assert summary.facts.probes["rdp_config"].data == {"listener_certificate": chain}  # what the index reads
    assert (summary.worst, summary.facts.duration_s) == (W, 1.5)

    final = run_of(client, gateway, summary)
    folder = writer.finish(final)
    whole_run = replace(final, hosts=(client, gateway, session_host))
    page = (folder / "hosts" / "sh1.corp.example.html").read_text("utf-8")
    assert page == report.render_host(session_host, whole_run)
    assert "boom" in page and "fact" in page  # the probe error and the evidence, from the record
    records = {h["facts"]["target"]["name"]: h for h in json.loads((folder / "results.json").read_text())["hosts"]}
    assert records["sh1.corp.example"] == json.loads(report.host_json(session_host))
    assert (folder / "index.html").read_text("utf-8") == report.render_index(whole_run)


def test_the_run_waits_for_the_writer_once_its_backlog_is_full(tmp_path: Path, monkeypatch) -> None:
    """Pages waiting for the writer each hold a whole host report: past ``backlog`` of them the
    run waits for the oldest, so a large run's memory does not grow with the hosts it has done."""
    gate = threading.Event()
    written = []
    write = report.RunWriter._write

    def slow(self, host, run):
        gate.wait(10)
        written.append(host.name)
        write(self, host, run)

    monkeypatch.setattr(report.RunWriter, "_write", slow)
    writer = report.RunWriter(tmp_path, "20260301T075900Z", backlog=2)
    hosts = [rep(f"h{i}", (Role.SESSION_HOST,), (chk("rdp.disabled", S),)) for i in range(3)]
    for host in hosts[:2]:
        assert writer.write_host_soon(host, run_of()) is host  # at once: the backlog has room
    third = threading.Thread(target=writer.write_host_soon, args=(hosts[2], run_of()))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # two pages waiting: the third waits until the first is written
    gate.set()
    third.join(10)
    assert not third.is_alive()
    writer.wait()
    assert written == ["h0", "h1", "h2"]


def test_the_session_s_warnings_are_on_the_page_escaped_not_on_the_terminal() -> None:
    host = rep("h", (Role.SESSION_HOST,), (chk("rdp.disabled", Status.PASS),))
    warned = replace(host, facts=replace(host.facts, session_warnings=("MaxMemoryPerShellMB <b>soon</b>",)))
    page = report.render_host(warned, run_of(warned))
    assert "The host's PowerShell session warned, in its own words:" in page
    assert "<code>MaxMemoryPerShellMB &lt;b&gt;soon&lt;/b&gt;</code>" in page
    assert "session warned" not in report.render_host(host, run_of(host))


def test_a_pool_warning_is_kept_bounded_and_never_printed() -> None:
    """pypsrp would hand it to Python's warnings machinery, which prints it raw."""
    from types import SimpleNamespace

    from collector.winrm import _MAX_POOL_WARNING_CHARS, _MAX_POOL_WARNINGS, _MeteredPool

    pool = _MeteredPool.__new__(_MeteredPool)
    pool.warnings = []
    for _ in range(_MAX_POOL_WARNINGS + 5):
        pool._process_runspacepool_warning(SimpleNamespace(data="x" * (_MAX_POOL_WARNING_CHARS + 100)))
    assert len(pool.warnings) == _MAX_POOL_WARNINGS
    assert {len(w) for w in pool.warnings} == {_MAX_POOL_WARNING_CHARS}
