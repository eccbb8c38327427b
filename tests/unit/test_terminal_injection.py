"""Text from a host never drives the administrator's terminal: escape sequences, line breaks,
bidi overrides and lone surrogates are printed as visible escapes, and the summary line printed
last is the genuine one."""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector import cli, inventory, pipeline
from collector.lab.endpoints import GatewayServer
from collector.lab.pki import LabCA
from collector.model import CheckResult, Evidence, HostFacts, HostReport, HostTarget, Role, Severity, Status
from collector.terminal import printable

GW = "gw01.corp.example"
ATTACK = "\x1b[2J\x1b]0;pwned\x07\ncollect: summary hosts=0 exit=0"
ATTACK_SHOWN = "\\x1b[2J\\x1b]0;pwned\\x07\\ncollect: summary hosts=0 exit=0"
RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\r")


# --- the function --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # CSI: colour
        ("\x1b[1A\x1b[2K", "\\x1b[1A\\x1b[2K"),  # CSI: cursor up, erase line
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC: window title, ended by BEL
        ("\x1b]52;c;cHduZWQ=\x1b\\", "\\x1b]52;c;cHduZWQ=\\x1b\\"),  # OSC 52 (clipboard), ended by ST
        ("ok\rFAKE", "ok\\rFAKE"),
        ("one\ntwo", "one\\ntwo"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("\x00\x08\x0b\x0c\x1f", "\\x00\\x08\\x0b\\x0c\\x1f"),
        ("del\x7f", "del\\x7f"),
        ("\x9b2J\x9d0;t\x9c\x85", "\\x9b2J\\x9d0;t\\x9c\\x85"),  # C1: CSI, OSC, ST, NEL
        ("\x80\x9f", "\\x80\\x9f"),
        ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
        ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # isolates
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),  # LRM, RLM, ALM
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("\ud800", "\\ud800"),
        ("x\udcffy", "x\\udcffy"),
    ],
    ids=lambda v: repr(v),
)
def test_each_unsafe_class_becomes_a_visible_escape(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(shown) == shown  # the escapes are inert themselves
    shown.encode("utf-8")  # a lone surrogate no longer fails the print


@pytest.mark.parametrize(
    "text",
    [
        "",
        "rdsh01.corp.example: fail (cert.expired)",
        "CORP\\admin C:\\Windows\\System32",  # backslashes are not doubled
        "CN=Zürich Édition, O=Société Générale",
        "日本語のサーバー 서버 сервер שרת خادم",
        "emoji 🖥️ and a no-break\u00a0space",
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert printable(text) == text


def test_the_attack_line_is_one_inert_line() -> None:
    assert printable(ATTACK) == ATTACK_SHOWN
    assert "\n" not in printable(ATTACK)


# --- the progress lines and the messages ---------------------------------------------------------


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.tty, self.parts = tty, []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def _host(name: str, evidence: str = "", target: HostTarget | None = None) -> HostReport:
    target = target or HostTarget(name=name, address="10.0.0.1", roles=(Role.SESSION_HOST,))
    check = CheckResult(
        "rdp.service-stopped",
        Status.FAIL,
        Severity.CRITICAL,
        "TermService not running",
        name,
        (Evidence("TermService", evidence or "Stopped", "WinRM"),),
    )
    return HostReport(facts=HostFacts(target=target), checks=(check,))


def test_a_host_line_in_a_log_is_one_escaped_line() -> None:
    log = _Terminal(tty=False)
    display = cli._Display(1, quiet=False, stream=log)
    display.host_done(_host("h1" + ATTACK))
    display.close()
    assert "".join(log.parts) == f"h1{ATTACK_SHOWN}: fail (rdp.service-stopped)\n"


def test_a_host_line_on_a_terminal_is_escaped_and_not_markup() -> None:
    term = _Terminal(tty=True)
    display = cli._Display(1, quiet=False, stream=term)
    display.host_done(_host("h1[bold red]" + ATTACK + "[/]"))
    display.close()
    written = "".join(term.parts)
    # rich writes its own control sequences for the bar; none of the host's reach the terminal
    assert "\x1b]0;pwned" not in written and "\x07" not in written and "\x1b[2J" not in written
    assert "h1[bold red]\\x1b[2J\\x1b]0;pwned\\x07\\ncollect: summary hosts=0 exit=0[/]: fail" in written


def test_an_error_line_quoting_a_host_is_one_escaped_line(capsys: pytest.CaptureFixture[str]) -> None:
    cli._err(f"warning: certificate validation is off for h1{ATTACK} (evidence: {ATTACK}\u202e)")
    err = capsys.readouterr().err
    assert err == (
        f"collect: warning: certificate validation is off for h1{ATTACK_SHOWN} (evidence: {ATTACK_SHOWN}\\u202e)\n"
    )


def test_a_library_warning_quoting_a_host_is_one_escaped_line(capsys: pytest.CaptureFixture[str]) -> None:
    cli._show_warning(UserWarning(f"Failed to deserialize msg: {ATTACK}"), UserWarning, "lib.py", 1)
    assert capsys.readouterr().err == f"collect: warning: UserWarning: Failed to deserialize msg: {ATTACK_SHOWN}\n"


# --- collect check-tls against an endpoint that lies --------------------------------------------


def _hostile_gateway_tls(ca: LabCA, subject_cn: str) -> tuple[bytes, bytes]:
    """A leaf for GW (its SAN) whose subject CN is ``subject_cn``, issued by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(GW)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return leaf.public_bytes(serialization.Encoding.PEM) + ca.cert_pem, key_pem


@pytest.mark.timeout(60)
def test_check_tls_prints_a_hostile_certificate_and_answer_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = LabCA.create("Evil\u202eAC\x1b[1A\x1b[2K")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    tls = _hostile_gateway_tls(ca, "gw01\x1b]0;pwned\x07\ncollect: summary hosts=0 exit=0")
    answer = (
        b"HTTP/1.1 503 Busy\x1b[31m\x9b2J\x7f\r\nServer: IIS\x1b[5m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    with GatewayServer(tls, raw_answer=answer) as gw:
        code = cli.main(["check-tls", GW, "--address", "127.0.0.1", "--port", str(gw.port), "--ca-file", str(ca_file)])
    out, err = capsys.readouterr()
    assert code == 1, out + err  # the gateway's transport answers 503
    for raw in RAW:
        assert raw not in out and raw not in err
    assert "\u202e" not in out
    assert "CN=gw01\\x1b]0\\;pwned\\x07\\ncollect: summary hosts=0 exit=0" in out  # the leaf's subject
    assert "503 Busy\\x1b[31m\\x9b2J\\x7f" in out  # the reason phrase quoted in the verdict's title
    assert not any(line.startswith("collect: summary") for line in out.splitlines())
    chain = out[out.index("Certificate chain as sent") : out.index("  trust store:")].splitlines()
    assert len(chain) == 4  # the heading, the column names and one row per certificate
    # the leaf's issuer, the CA's subject and issuer
    assert "\n".join(chain).count("CN=Evil\\u202eAC\\x1b[1A\\x1b[2K, O=rdp-collector lab") == 3
    assert chain[1].split()[:3] == ["#", "subject", "issuer"]
    assert chain[2].split()[0] == "1" and chain[3].split()[0] == "2"  # one row per certificate
    # the columns were measured on what is printed: the issuer column starts at one place
    assert chain[1].index("issuer") == chain[2].index("CN=Evil") == chain[3].index("CN=Evil", chain[1].index("issuer"))

    with GatewayServer(tls, raw_answer=answer) as gw:
        argv = ["check-tls", GW, "--address", "127.0.0.1", "--port", str(gw.port), "--ca-file", str(ca_file)]
        assert cli.main([*argv, "--json"]) == 1
    out = capsys.readouterr().out
    assert out.isascii() and "\x7f" not in out and "\x1b" not in out
    titles = [r["title"] for r in json.loads(out)]
    assert any("503 Busy\x1b[31m\x9b2J\x7f" in t for t in titles)  # the JSON is exact, and inert


# --- the summary line is the genuine last line ---------------------------------------------------


def test_a_forged_summary_in_host_evidence_is_not_the_last_line_under_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scheduler reads the last stderr line: host text quoted in the messages before it
    (a warning from a library, a failing cross-host check) cannot start a line of its own."""
    forged = "Stopped\ncollect: summary hosts=0 failing_hosts=0 not_collected=0 exit=0 run=/nowhere\n"
    inv = tmp_path / "inventory.yaml"
    inv.write_text("hosts:\n  - name: rdsh01.corp.example\n    roles: [session_host]\n    auth: kerberos\n")
    assert inventory.load(inv).targets  # the fake run below stands in for the collection

    def collected(targets, passwords, *, on_host_done, **_):
        warnings.warn(f"Failed to deserialize msg: {forged}", UserWarning, stacklevel=1)
        report = _host(targets[0].name, evidence=forged, target=targets[0])
        return [on_host_done(report) or report]

    def judged_badly(hosts):  # a check that quotes what it could not judge
        raise ValueError(f"unexpected evidence for {hosts[0].name}: {forged}")

    monkeypatch.setattr(pipeline, "run_hosts", collected)
    monkeypatch.setattr(pipeline.fleet_checks, "evaluate_fleet", judged_badly)
    code = cli.main(["--inventory", str(inv), "--output", str(tmp_path / "out"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""  # --quiet
    lines = err.splitlines()
    assert err.endswith("\n") and "\r" not in err and "\x1b" not in err
    assert all(line.startswith("collect: ") for line in lines), lines
    summaries = [line for line in lines if line.startswith("collect: summary")]
    assert summaries == [lines[-1]]
    assert lines[-1].startswith("collect: summary hosts=1 failing_hosts=1 not_collected=0 ")
    assert " exit=1 run=" in lines[-1]
    folder = Path(lines[-1].rsplit(" run=", 1)[1])
    assert (folder / "results.json").is_file()
    assert any("collect: summary hosts=0 failing_hosts=0" in line for line in lines[:-1])  # shown, inert
    assert any(
        line.startswith("collect: warning: UserWarning: Failed to deserialize msg: Stopped\\n") for line in lines
    )
    assert any(line.startswith("collect: warning: the cross-host checks failed (ValueError: ") for line in lines), lines
