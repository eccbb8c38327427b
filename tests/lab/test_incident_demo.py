"""The demo fleet collected for real (`collect demo`): each broken scenario leads its page with
the right finding, the healthy trio raises no false critical, and client02's story is told
end to end: its 0x904 disconnects matched, across a 200 s clock error, by gw01's CAP refusals."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from collector import cli
from collector.lab.fleet import PASSWORD_ENV

pytestmark = pytest.mark.lab

CAP_STOP = "client02.lab.test's connection to rdsh01.lab.test stops {where}: connection authorization (CAP)"
# The first line of every host page: what is broken, cause before symptom.
HEADLINES = {
    "client01.lab.test": re.compile(r"PASS All \d+ checks pass"),
    "client02.lab.test": CAP_STOP.format(where="at gw01.lab.test"),
    "client03.lab.test": "The client receives a certificate re-signed by CN=Contoso SSL Inspection CA,"
    "O=rdp-collector lab: TLS inspection on the path",
    "gw01.lab.test": CAP_STOP.format(where="here"),
    "gw02.lab.test": "HTTP.sys serves a different certificate on 0.0.0.0:443 than RD Gateway is set to use",
    "rdsh01.lab.test": CAP_STOP.format(where="at gw01.lab.test"),
    "rdsh02.lab.test": "TermService not running on the session host",
    "rdsh03.lab.test": "The host could not be reached over WinRM",
    "rdsh04.lab.test": "Remote Desktop is turned off by Group Policy",
    "rdsh05.lab.test": "The self-signed certificate rdsh05.lab.test is not trusted here",
    "rdsh06.lab.test": "Windows Firewall does not allow TCP 3389 in",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PASSWORD_ENV, "incident-Pa55word")
        assert cli.main(["demo", "--output", str(out), "--quiet"]) == 1  # the demo fleet has broken hosts
    return (out / "latest").resolve()


@pytest.fixture(scope="module")
def results(demo: Path) -> dict[str, Any]:
    return json.loads((demo / "results.json").read_text("utf-8"))


def lead(html: str) -> str:
    match = re.search(r'<p class="lead">(.*?)</p>', html, re.S)
    assert match
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


def path_of(results: dict[str, Any], client: str) -> dict[str, Any]:
    return next(p for p in results["paths"] if p["client"] == client)


def test_each_page_leads_with_its_finding(demo: Path) -> None:
    for name, expected in HEADLINES.items():
        text = lead((demo / "hosts" / f"{name}.html").read_text("utf-8"))
        if isinstance(expected, re.Pattern):
            assert expected.fullmatch(text.replace("pass ", "PASS ", 1)), (name, text)
        else:
            assert text.split(" ", 1)[1] == expected and text.startswith("fail "), (name, text)


def test_no_false_critical_on_the_healthy_trio(results: dict[str, Any]) -> None:
    for host in results["hosts"]:
        if host["facts"]["target"]["name"] in ("client01.lab.test", "gw01.lab.test", "rdsh01.lab.test"):
            assert [c["id"] for c in host["checks"] if c["status"] == "fail"] == []


def test_client02s_disconnects_are_gw01s_cap_refusals_once_its_clock_is_corrected(results: dict[str, Any]) -> None:
    path = path_of(results, "client02.lab.test")
    assert (path["gateway"], path["session_host"], path["users"]) == (
        "gw01.lab.test",
        "rdsh01.lab.test",
        ["LAB\\client02-user"],
    )
    statuses = [(h["key"], h["status"]) for h in path["hops"]]
    assert statuses == [
        ("client-dns", "pass"),
        ("client-tcp", "pass"),
        ("client-udp", "warn"),  # UDP forced off on client02: TCP only, not a failure
        ("client-tls", "pass"),
        ("gateway-cap", "fail"),
        ("gateway-rap", "unknown"),  # not reached: no event for this user past the CAP
        ("gateway-resource", "pass"),  # gw01 tests rdsh01:3389 itself (the inventory lists it under gw01)
        ("session-logon", "unknown"),
    ]
    assert path["hops"][6]["finding"].startswith("gw01.lab.test connects to rdsh01.lab.test:3389 in ")
    cap = path["hops"][4]
    assert cap["host"] == "gw01.lab.test"
    assert cap["finding"].startswith(
        "CAP denied: LAB\\client02-user from 10.20.1.22 (error 23003: the user (or the client computer) is not in a "
        "user group of any CAP, or NPS refused the request); 3 time(s) in the window"
    )
    skew = {c["host"]: c["skew_s"] for c in path["clocks"]}
    assert -202 <= skew["client02.lab.test"] <= -199 and skew["gw01.lab.test"] == 0.0
    matched = next(e["value"] for e in cap["evidence"] if e["label"] == "the client's failed attempts")
    found = re.fullmatch(
        r"3 of 3 fall within (\d+) s of one of these events on gw01\.lab\.test once the clocks are corrected "
        r"\(client02\.lab\.test's clock is (\d+) s slow\); on the hosts' own clocks they are up to (\d+) s apart",
        matched,
    )
    assert found, matched
    within, slow, apart = map(int, found.groups())
    assert 5 <= within <= 15 and 199 <= slow <= 202 and apart >= 180  # refused 10 s before each disconnect
    assert path["symptom"] == (
        "3 of 3 connection(s) of client02.lab.test to rdsh01.lab.test in 24 h failed, most often 0x904 (2308)"
    )
    # The merged timeline alternates attempt, refusal, disconnect, three times, in corrected time.
    kinds = [(e["host"], e["event_id"]) for e in path["timeline"]]
    assert kinds == [("client02.lab.test", 1024), ("gw01.lab.test", 201), ("client02.lab.test", 1026)] * 3
    times = [e["time_utc"] for e in path["timeline"]]
    assert times == sorted(times)


def test_client01_reaches_rdsh01_and_client03_stops_at_tls(results: dict[str, Any]) -> None:
    healthy = path_of(results, "client01.lab.test")
    assert {h["status"] for h in healthy["hops"]} == {"pass"}
    assert [e["event_id"] for e in healthy["timeline"]] == [1024, 200, 300, 302, 1149, 21, 1026, 24, 303]
    inspected = path_of(results, "client03.lab.test")
    broken = next(h for h in inspected["hops"] if h["status"] == "fail")
    assert (broken["key"], broken["host"]) == ("client-tls", "client03.lab.test")
    assert broken["evidence"][-1]["value"] == "Zscaler Client Connector (ZSATunnel, PID 4312)"


def test_the_index_lists_the_connections_that_stop(demo: Path) -> None:
    html = (demo / "index.html").read_text("utf-8")
    stopped = re.search(r'<ul class="worst stopped">(.*?)</ul>', html, re.S)
    assert stopped
    items = [
        " ".join(unescape(re.sub(r"<[^>]+>", " ", li)).split())
        for li in re.findall(r"<li>(.*?)</li>", stopped.group(1), re.S)
    ]
    assert [i.split(" : ", 1)[0] for i in items] == [
        CAP_STOP.format(where="at gw01.lab.test"),
        "client03.lab.test's connection to rdsh01.lab.test stops at client03.lab.test: "
        "TLS to the gateway (its certificate as the client sees it)",
    ]
