"""`collect rules --markdown` and the page made from it, docs/checks.md, which the README links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector import checks, cli, reference_cli
from collector.checks import CatalogueEntry
from collector.model import Severity

ROOT = Path(__file__).resolve().parents[2]


def test_docs_checks_md_is_what_collect_rules_markdown_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert (ROOT / "docs" / "checks.md").read_text(encoding="utf-8") == printed, (
        "docs/checks.md is out of date with the catalogue: regenerate it with "
        "`collect rules --markdown > docs/checks.md` and review the diff"
    )


def test_the_page_lists_every_id_once_with_its_metadata() -> None:
    page = reference_cli.rules_markdown(checks.rules())
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0].removeprefix("| `").removesuffix("`") for row in rows] == [e.id for e in checks.rules()]
    licensing = next(row for row in rows if row.startswith("| `rdp.licensing`"))
    assert licensing.startswith("| `rdp.licensing` | critical | WinRM (session_host) | RD Licensing is configured | ")
    assert "| `rdg.ssl-inspection` | critical | across hosts (client vs. gateway, client vs. workstation) |" in page


def test_cells_stay_one_table_cell_each() -> None:
    entry = CatalogueEntry(
        "x.pipe", "a | b", Severity.INFO, ("workstation",), "netstat -ano | findstr 3389\nsecond line", ()
    )
    [row] = [line for line in reference_cli.rules_markdown([entry]).splitlines() if line.startswith("| `")]
    assert row == "| `x.pipe` | info | workstation | a \\| b | netstat -ano \\| findstr 3389 |"


def test_the_docs_link_the_page_from_their_checks_section() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "[docs/checks.md](docs/checks.md)" in readme
    page = (ROOT / "docs" / "how-it-works.md").read_text(encoding="utf-8")
    section = page.split("## Checks\n", 1)[1].split("\n## ", 1)[0]
    assert "[docs/checks.md](checks.md)" in section
    for entry in checks.rules():
        assert f"`{entry.id}`" in section, entry.id


def test_json_and_markdown_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rules", "--json", "--markdown"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_rules_with_ids_print_each_check_whole_in_the_order_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "net.tls-handshake", "cert.expired"]) == 0
    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["net.tls-handshake  (critical)", "cert.expired  (critical)"]
    [entry] = [e for e in checks.rules() if e.id == "cert.expired"]
    assert "  checks:   No certificate on the path has expired\n  seen by:  workstation\n" in blocks[1]
    for line in entry.remediation.strip().splitlines():  # the whole remediation, indented
        assert f"    {line}\n" in blocks[1]
    assert blocks[1].rstrip().endswith("references: " + "; ".join(entry.references))


def test_rules_with_a_concern_take_every_check_of_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "cert.*", "cert.expired", "--json"]) == 0
    ids = [e["id"] for e in json.loads(capsys.readouterr().out)]
    assert ids == [e.id for e in checks.rules() if e.id.startswith("cert.")]  # once each


def test_rules_with_an_id_nobody_has_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "cert.expired", "cert.nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "collect: no check is called 'cert.nope' ('collect rules' lists every check id)\n"
