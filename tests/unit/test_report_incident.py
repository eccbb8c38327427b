"""How the reports present a connection joined across hosts: the headline of every page on the
path and of the fleet index names where it stops, with the evidence; the host page lists every
step and the merged timeline. The pages only present what collector.incident decided."""

from __future__ import annotations

import re
from html import unescape

from collector import report
from collector.incident import incident_paths
from collector.model import CheckResult, Evidence, HostReport, RunReport, Severity, Status
from tests.unit.test_incident import (
    CLIENT,
    GATEWAY,
    GW,
    NOW_ISO,
    REFUSED_CLIENT,
    REFUSED_GATEWAY,
    SH,
    ev,
    judged,
    trio,
)


def refused_run(gateway_events: list | None = None) -> RunReport:
    hosts = judged(*trio(REFUSED_CLIENT, gateway_events or REFUSED_GATEWAY, client_skew=-200))
    return RunReport(
        "20260301T080000Z",
        "2026-03-01T07:59:00Z",
        NOW_ISO,
        "0.1.0",
        "ws",
        "inv.yaml",
        tuple(hosts),
        paths=incident_paths(hosts, since_hours=24, now=NOW_ISO),
    )


def by_name(run: RunReport, name: str) -> HostReport:
    return next(h for h in run.hosts if h.name == name)


def text_of(html: str, pattern: str) -> str:
    match = re.search(pattern, html, re.S)
    assert match, pattern
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


def test_every_page_on_the_path_leads_with_where_the_connection_stops() -> None:
    run = refused_run()
    lead = "c1.corp.example's connection to sh.corp.example stops"
    for name, where in ((CLIENT, f"at {GW}"), (GW, "here"), (SH, f"at {GW}")):
        host = by_name(run, name)
        page = report.host_page(host, run)
        headline = page.headline
        assert headline.status is Status.FAIL, name
        assert headline.text == f"{lead} {where}: connection authorization (CAP)"
        assert headline.hop is run.paths[0].first_broken and headline.incident is run.paths[0]
        assert headline.elsewhere == ("" if name == GW else GW)


def test_a_failure_on_the_host_itself_stays_its_headline() -> None:
    run = refused_run()
    client = by_name(run, CLIENT)
    own = CheckResult(
        "rdg.ssl-inspection", Status.FAIL, Severity.CRITICAL, "re-signed", CLIENT, (Evidence("a", "b", "c"),)
    )
    headline = report.host_headline(client.__class__(client.facts, (*client.checks, own)), (), run.hosts, run.paths)
    assert (headline.status, headline.text, headline.hop) == (Status.FAIL, "re-signed", None)


def test_a_path_that_does_not_stop_leaves_the_headline_to_the_host() -> None:
    accepted = [ev(GATEWAY, 200, 12.02, Username="CORP\\c1-user", AuthType="NTLM")]
    run = refused_run(accepted)
    assert run.paths[0].first_broken is None
    headline = report.host_page(by_name(run, SH), run).headline
    assert (headline.status, headline.hop) == (Status.PASS, None)


def test_the_host_page_shows_the_steps_the_evidence_and_the_timeline() -> None:
    run = refused_run()
    html = report.render_host(by_name(run, CLIENT), run)
    lead = text_of(html, r'<p class="lead">(.*?)</p>')
    # The badge reads "fail" in the markup (CSS shows it upper case).
    assert lead == (
        "fail c1.corp.example's connection to sh.corp.example stops at gw.corp.example: connection authorization (CAP)"
    )
    assert 'href="#path-1"' in html and 'id="path-1"' in html
    steps = re.findall(r'<li class="step (\w+)( broken)?" data-hop="([\w-]+)">', html)
    assert steps == [
        ("pass", "", "client-dns"),
        ("pass", "", "client-tcp"),
        ("pass", "", "client-udp"),
        ("pass", "", "client-tls"),
        ("fail", " broken", "gateway-cap"),
        ("unknown", "", "gateway-rap"),
        ("unknown", "", "gateway-resource"),
        ("unknown", "", "session-logon"),
    ]
    clocks = text_of(html, r'<p class="muted clocks">(.*?)</p>')
    assert clocks.endswith(
        "Clocks: c1.corp.example 200 s slow (its events are corrected); gw.corp.example in step; "
        "sh.corp.example in step."
    )
    rows = re.findall(r'<table class="events">.*?<tbody>(.*?)</tbody>', html, re.S)[0]
    cells = [text_of(r, r"(.*)") for r in re.findall(r"<tr[^>]*>(.*?)</tr>", rows, re.S)]
    assert cells == [
        "2026-03-01 07:47:57 UTC c1.corp.example (client) 1024 mstsc starts connecting to sh.corp.example "
        "2026-03-01 07:44:37 UTC",
        "2026-03-01 07:47:58 UTC gw.corp.example (RD Gateway) 201 CAP denied: CORP\\c1-user from 10.1.1.1 (error "
        "23003: the user (or the client computer) is not in a user group of any CAP, or NPS refused the request) same",
        "2026-03-01 07:48:00 UTC c1.corp.example (client) 1026 mstsc disconnected: 0x904 (2308): socket closed "
        "(0x904): the connection was lost or refused after it started 2026-03-01 07:44:40 UTC",
    ]


def test_the_index_names_each_stopped_connection_and_its_hop() -> None:
    run = refused_run()
    page = report.index_page(run)
    assert [s.text for s in page.stopped] == [
        "c1.corp.example's connection to sh.corp.example stops at gw.corp.example: connection authorization (CAP)"
    ]
    html = report.render_index(run)
    stopped = text_of(html, r'<ul class="worst stopped">(.*?)</ul>')
    assert stopped.startswith(
        "c1.corp.example's connection to sh.corp.example stops at gw.corp.example: connection authorization (CAP) : "
        "CAP denied: CORP\\c1-user from 10.1.1.1"
    )
    row = text_of(html, r'<table class="incidents">.*?<tbody>(.*?)</tbody>')
    assert row.startswith(
        "c1.corp.example gw.corp.example sh.corp.example fail connection authorization (CAP) on gw.corp.example : "
        "CAP denied"
    )


def test_what_a_host_recorded_is_text_on_the_page_never_markup() -> None:
    hostile = [ev(GATEWAY, 201, 12.02, Username="CORP\\c1-user", IpAddress="<script>alert(1)</script>", ErrorCode="1")]
    run = refused_run(hostile)
    for html in (report.render_host(by_name(run, GW), run), report.render_index(run)):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
