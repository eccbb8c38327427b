"""The reports in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser).

One browser for the module. Every request a page makes is watched: anything that is not a file of
the run folder is aborted and recorded, and each test fails if one happened. The demo fleet's
pages are used as an administrator would (search, filters, sorting, links, copy, print, dark
mode, JavaScript off); a run made of hostile strings must show them as text and run none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from collector import report
from tests.browser import hostile

pytestmark = pytest.mark.peer

CHROMIUM = Path(os.environ.get("COLLECT_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Watch:
    """What the pages of one test did that they must not: leave the file system, fail, pop dialogs."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Runs:
    demo: Path
    hostile: Path
    results: dict[str, Any]  # the demo's results.json: what the pages must present

    def host(self, name: str) -> dict[str, Any]:
        return next(h for h in self.results["hosts"] if h["facts"]["target"]["name"] == name)


RANK = {"fail": 3, "warn": 2, "unknown": 1, "pass": 0}


def worst(host: dict[str, Any]) -> str:
    return max((c["status"] for c in host["checks"]), key=RANK.__getitem__, default="unknown")


def problems(host: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in host["checks"] if c["status"] in ("fail", "warn")]


def names_where(runs: Runs, keep: Any) -> list[str]:
    return sorted(h["facts"]["target"]["name"] for h in runs.results["hosts"] if keep(h))


def chain_ders(value: Any) -> list[str]:
    """Every base64 DER anywhere in a host's facts, found independently of the code under test."""
    if isinstance(value, dict):
        found = [d for d in value.get("chain_der", []) if isinstance(d, str)]
        return found + [d for k, v in value.items() if k != "chain_der" for d in chain_ders(v)]
    if isinstance(value, list):
        return [d for v in value for d in chain_ders(v)]
    return []


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "collector.cli", "demo", "--output", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr  # the demo fleet has broken hosts
    bad = tmp_path_factory.mktemp("hostile")
    report.render_run(hostile.hostile_run(), bad)
    demo = (out / "latest").resolve()
    return Runs(demo=demo, hostile=bad, results=json.loads((demo / "results.json").read_text("utf-8")))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # The test command installs Debian's chromium; without it this must fail, not skip.
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: dev/test installs Debian's chromium (apt-get install chromium)")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _context(browser: object, watch: Watch, **options: object) -> object:
    context = browser.new_context(locale="en-US", timezone_id="UTC", viewport={"width": 1280, "height": 900}, **options)

    def route(route: object) -> None:
        url = route.request.url
        if url.startswith(("file://", "data:", "about:")):
            route.continue_()
        else:
            watch.outside.append(url)
            route.abort()

    context.route("**/*", route)
    context.on(
        "request", lambda r: None if r.url.startswith(("file://", "data:", "about:")) else watch.outside.append(r.url)
    )
    context.on("page", lambda p: _watch_page(p, watch))
    return context


def _watch_page(page: object, watch: Watch) -> None:
    page.on("pageerror", lambda e: watch.errors.append(f"pageerror: {e}"))
    page.on(
        "console",
        lambda m: watch.errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )

    def dialog(d: object) -> None:
        watch.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser: object, watch: Watch) -> Iterator[object]:
    context = _context(browser, watch)
    yield context.new_page()
    context.close()
    assert watch.outside == [], "a page tried to reach beyond the run folder"
    assert watch.errors == []
    assert watch.dialogs == []


def visible_rows(page: object) -> list[str]:
    return page.locator("#hosts tbody tr:visible th a").all_inner_texts()


def test_index_shows_the_fleet_at_a_glance(page: object, runs: Runs) -> None:
    page.goto((runs.demo / "index.html").as_uri())
    hosts = runs.results["hosts"]
    by_worst = {s: len(names_where(runs, lambda h, s=s: worst(h) == s)) for s in RANK}
    assert by_worst["fail"] >= 1 and by_worst["pass"] >= 1  # the demo has broken and healthy hosts
    assert page.title().startswith("Remote Desktop diagnostics · ")
    headline = f"FAIL {by_worst['fail']} of {len(hosts)} host(s) have failing checks"
    assert page.locator(".headline .lead").inner_text() == headline
    tiles = page.locator(".tile").all_inner_texts()
    assert (
        f"FAIL {by_worst['fail']}\nWARN {by_worst['warn']}\nUNKNOWN {by_worst['unknown']}\nPASS {by_worst['pass']}"
        in tiles[0]
    )
    critical = sum(1 for h in hosts for c in problems(h) if c["severity"] == "critical")
    assert f"critical {critical}" in tiles[1]
    assert len(visible_rows(page)) == len(hosts)
    # Worst first without sorting anything.
    statuses = page.locator("#hosts tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == sorted(statuses, key=RANK.__getitem__, reverse=True)
    assert page.locator("#shown").inner_text() == f"{len(hosts)} hosts"
    path = page.locator("ol.route").first.inner_text()
    assert "CLIENTS (3)" in path and "gw01.lab.test" in path and "rdsh01.lab.test" in path
    timeline = page.locator("svg.timeline")
    distinct = {d for h in hosts for d in chain_ders(h["facts"])}
    assert timeline.is_visible() and timeline.locator("g.tl-row").count() == min(len(distinct), 40)
    assert "gw01.lab.test" in timeline.text_content() and "expired" not in timeline.text_content()


def test_search_and_filters_narrow_the_table(page: object, runs: Runs) -> None:
    page.goto((runs.demo / "index.html").as_uri())
    search, status, role, check = (page.get_by_label(n, exact=True) for n in ("Search", "Status", "Role", "Check"))
    search.fill("rdsh0")
    assert sorted(visible_rows(page)) == names_where(runs, lambda h: "rdsh0" in h["facts"]["target"]["name"])
    search.fill("Windows Firewall does not allow")  # a problem's title, not its id
    assert (
        sorted(visible_rows(page))
        == names_where(
            runs, lambda h: any(c["title"].startswith("Windows Firewall does not allow") for c in problems(h))
        )
        == ["rdsh06.lab.test"]
    )
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#shown")).to_have_text(f"{len(runs.results['hosts'])} hosts")
    assert len(visible_rows(page)) == len(runs.results["hosts"])
    check.select_option("rdp.not-listening")
    listening = names_where(runs, lambda h: any(c["id"] == "rdp.not-listening" for c in problems(h)))
    assert sorted(visible_rows(page)) == listening and "rdsh02.lab.test" in listening
    assert page.locator("#shown").inner_text() == f"{len(listening)} of {len(runs.results['hosts'])} hosts shown"
    check.select_option("")
    status.select_option("warn")
    role.select_option("client")
    expected = names_where(runs, lambda h: worst(h) == "warn" and "client" in h["facts"]["target"]["roles"])
    assert sorted(visible_rows(page)) == expected and "client02.lab.test" in expected


def test_columns_sort_both_ways(page: object, runs: Runs) -> None:
    page.goto((runs.demo / "index.html").as_uri())
    host_header = page.locator("#hosts thead th").first
    host_header.get_by_role("button").click()
    names = visible_rows(page)
    assert names == sorted(names) and host_header.get_attribute("aria-sort") == "ascending"
    host_header.get_by_role("button").click()
    assert visible_rows(page) == sorted(names, reverse=True)
    page.get_by_role("button", name="Failing / warning checks").click()

    def distinct(host: dict[str, Any]) -> int:
        return len({c["id"] for c in problems(host)})

    assert distinct(runs.host(visible_rows(page)[0])) == max(distinct(h) for h in runs.results["hosts"])


def test_a_link_leads_to_a_host_page_that_answers_what_and_what_to_do(page: object, runs: Runs) -> None:
    page.goto((runs.demo / "index.html").as_uri())
    page.locator("#hosts").get_by_role("link", name="rdsh02.lab.test").click()
    page.wait_for_url("**/hosts/rdsh02.lab.test.html")
    assert page.locator("h1").inner_text() == "rdsh02.lab.test"
    assert page.locator(".headline .lead").inner_text() == "FAIL TermService not running on the session host"
    first = page.locator("article.check").first
    assert first.locator(".id").inner_text() == "rdp.service-stopped"
    assert first.get_by_role("cell", name="Stopped, start mode Disabled", exact=False).is_visible()
    assert "Start-Service -Name TermService" in first.locator("pre.remediation").inner_text()
    groups = page.locator("section.concern h3").all_inner_texts()
    assert groups[0].startswith("Session host: Remote Desktop listener · 2 fail")
    failing = [" fail" in g.split("·")[1] for g in groups]
    assert failing == sorted(failing, reverse=True)  # groups with failures come first
    certs = page.locator("table.certs")
    assert "RDP listener certificate, in the session host's own store" in certs.inner_text()
    rdsh02 = runs.host("rdsh02.lab.test")["facts"]
    assert certs.locator("code.thumb").count() == len(chain_ders(rdsh02)) and "days left" in certs.inner_text()
    probes = {*rdsh02["planned"], *rdsh02["probes"], *(p["probe"] for p in rdsh02["problems"] if p["probe"])}
    assert page.locator("table.probes tbody tr").count() == len(probes)
    assert "collector 0.1.0" in page.locator("footer").inner_text()
    page.get_by_role("link", name="Fleet index").click()
    page.wait_for_url("**/index.html")


def test_copy_button_copies_the_remediation(browser: object, watch: Watch, runs: Runs) -> None:
    context = _context(browser, watch, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto((runs.demo / "hosts" / "rdsh02.lab.test.html").as_uri())
    button = page.get_by_role("button", name="Copy the remediation for rdp.service-stopped")
    button.click()
    expect(button).to_have_text("Copied")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.startswith("On the session host, in an elevated PowerShell:\n  Get-Service -Name TermService")
    assert copied == page.locator("pre.remediation[data-check='rdp.service-stopped']").text_content()
    assert page.locator("button.copy").count() == page.locator("pre.remediation").count() > 0
    context.close()
    assert watch.outside == [] and watch.errors == [] and watch.dialogs == []


def test_the_path_of_a_session_host_links_its_clients_and_gateway(page: object, runs: Runs) -> None:
    page.goto((runs.demo / "hosts" / "rdsh01.lab.test.html").as_uri())
    route = page.locator("ol.route")
    assert route.locator("li.stage .role").all_inner_texts() == ["CLIENTS (3)", "RD GATEWAY", "SESSION HOST"]
    assert route.locator("[aria-current=page]").inner_text().endswith("rdsh01.lab.test")
    route.get_by_role("link", name="client02.lab.test").click()
    page.wait_for_url("**/hosts/client02.lab.test.html")
    # client02's own problems are warnings; its connection, joined across hosts, stops at gw01's CAP.
    lead = (
        "FAIL client02.lab.test's connection to rdsh01.lab.test stops at gw01.lab.test: connection authorization (CAP)"
    )
    assert page.locator(".headline .lead").inner_text() == lead


def test_pages_read_complete_without_javascript(browser: object, watch: Watch, runs: Runs) -> None:
    context = _context(browser, watch, java_script_enabled=False)
    page = context.new_page()
    page.goto((runs.demo / "index.html").as_uri())
    assert not page.locator("#filters").is_visible()
    assert len(visible_rows(page)) == len(runs.results["hosts"])
    assert page.locator("#findings-h").is_visible() and page.locator("svg.timeline").is_visible()
    page.goto((runs.demo / "hosts" / "rdsh02.lab.test.html").as_uri())
    assert page.locator("button.copy").count() == 0
    assert page.locator("pre.remediation").first.is_visible()
    context.close()
    assert watch.outside == [] and watch.errors == []


def _contrast(page: object, selector: str) -> float:
    """WCAG contrast ratio between an element's text colour and the page background."""
    return page.evaluate(
        """(selector) => {
          const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
          const lum = (c) => { const [r, g, b] = rgb(c).map(v => { v /= 255;
            return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
            return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
          const fg = getComputedStyle(document.querySelector(selector)).color;
          const bg = getComputedStyle(document.body).backgroundColor;
          const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
          return (a + 0.05) / (b + 0.05);
        }""",
        selector,
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_light_and_dark_are_readable(page: object, runs: Runs, scheme: str) -> None:
    page.emulate_media(color_scheme=scheme)
    page.goto((runs.demo / "index.html").as_uri())
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == {"light": "rgb(247, 247, 245)", "dark": "rgb(20, 23, 26)"}[scheme]
    for selector in ("h1", ".sub", "#hosts tbody th a", "footer dd"):
        assert _contrast(page, selector) >= 4.5, (scheme, selector)


def test_print_hides_the_controls_and_keeps_the_content(page: object, runs: Runs) -> None:
    page.goto((runs.demo / "index.html").as_uri())
    page.emulate_media(media="print")
    assert not page.locator("#filters").is_visible()
    assert len(visible_rows(page)) == len(runs.results["hosts"])
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000


def test_hostile_strings_are_shown_as_text_and_never_run(page: object, runs: Runs) -> None:
    for name in ("index.html", "hosts/gw01.corp.example.html", "hosts/rdsh01.corp.example.html"):
        page.goto((runs.hostile / name).as_uri())
        page.mouse.move(400, 300)
        for element in page.locator("article.check:visible, td:visible, code:visible").all()[:40]:
            element.hover(timeout=2000)
        assert page.evaluate("() => window.__pwned") is None, name
        assert page.locator("img, iframe, object, embed, svg:not(.timeline)").count() == 0, name
        assert page.locator("a[href^='javascript' i]").count() == 0, name
    page.goto((runs.hostile / "hosts" / "gw01.corp.example.html").as_uri())
    title = page.locator("article.check.fail .title").inner_text()
    assert title == f"{hostile.SCRIPT} title {hostile.IMG}"
    refs = page.locator("article.check.fail .refs")
    assert hostile.JS_URL in refs.inner_text()
    assert refs.get_by_role("link").evaluate_all("links => links.map(a => a.href)") == [hostile.SAFE_URL]
    assert page.get_by_text(hostile.TEMPLATE).first.is_visible()
    certs = page.locator("table.certs").inner_text()
    assert hostile.IMG in certs and "expired 3 days ago" in certs
    # The filters read host data too: choosing the hostile check id runs nothing.
    page.goto((runs.hostile / "index.html").as_uri())
    page.get_by_label("Check", exact=True).select_option(value=f"rdg.{hostile.IMG}")
    page.get_by_label("Search", exact=True).fill(hostile.SCRIPT)
    assert visible_rows(page) == ["gw01.corp.example"]
    assert page.evaluate("() => window.__pwned") is None
