"""The RDP probe against xrdp, a real RDP server we did not write (Debian package ``xrdp``).

xrdp runs in the foreground on a loopback port with its own config, certificate and log in a temp
folder. What it answers to the X.224 negotiation and which chain it serves after it must come out
of the probe and the checks exactly as configured.
"""

from __future__ import annotations

import datetime
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from collector import certs
from collector.checks import certs as cert_checks
from collector.checks import endpoints as ep
from collector.lab.pki import LabChain, LabPKI
from collector.model import Status
from collector.probes.rdp import PROTOCOL_HYBRID, PROTOCOL_RDP, PROTOCOL_SSL, probe_rdp

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

NAME = "rdsh01.corp.example"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def xrdp_binary() -> str:
    path = shutil.which("xrdp") or next((p for p in ("/usr/sbin/xrdp",) if Path(p).is_file()), None)
    if path is None:
        pytest.fail("xrdp is not installed; dev/test installs it (apt-get install xrdp)")
    return path


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return LabPKI.create()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def xrdp(xrdp_binary: str, tmp_path: Path) -> Iterator:
    """Start xrdp with a security layer and a chain; returns its port. Stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(security_layer: str, chain: LabChain) -> int:
        folder = tmp_path / f"xrdp-{len(procs)}"
        folder.mkdir()
        (folder / "chain.pem").write_bytes(chain.chain_pem)  # xrdp sends the whole file as the chain
        (folder / "key.pem").write_bytes(chain.key_pem)
        (folder / "key.pem").chmod(0o600)
        port = free_port()
        log = folder / "xrdp.log"
        (folder / "xrdp.ini").write_text(
            "[Globals]\nini_version=1\nfork=false\n"
            f"port=tcp://127.0.0.1:{port}\nsecurity_layer={security_layer}\ncrypt_level=high\n"
            f"certificate={folder / 'chain.pem'}\nkey_file={folder / 'key.pem'}\n"
            "ssl_protocols=TLSv1.2, TLSv1.3\n"
            f"[Logging]\nLogFile={log}\nLogLevel=INFO\nEnableSyslog=false\nEnableConsole=false\n"
            "[Channels]\n"
        )
        proc = subprocess.Popen(
            [xrdp_binary, "--nodaemon", "--config", str(folder / "xrdp.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=folder,
        )
        procs.append(proc)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the log line, not a probe connection, says it is ready
            if log.exists() and f"listening to port {port}" in log.read_text(errors="replace"):
                return port
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
        detail = log.read_text(errors="replace") if log.exists() else ""
        pytest.fail(f"xrdp did not start (exit {proc.poll()}): {detail[-800:]} {proc.stderr.read()[-400:]!r}")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def cert_problems(chain: tuple[bytes, ...], pki: LabPKI) -> dict[str, str]:
    results = cert_checks.evaluate_chain(
        chain,
        server_name=NAME,
        trust=certs.TrustStore("lab root", (pki.root.cert,)),
        now=datetime.datetime.now(datetime.UTC),
        host=NAME,
        endpoint=f"{NAME}:3389",
        vantage="workstation",
    )
    return {r.id: r.status.value for r in results if r.status is not Status.PASS}


def verdicts(port: int) -> dict[str, tuple[str, str]]:
    probe = probe_rdp(NAME, "127.0.0.1", port, timeout=5)
    second = probe_rdp(NAME, "127.0.0.1", port, timeout=5, requested=PROTOCOL_SSL)
    return {meta.id: (v.status.value, v.title) for meta, v in ep.rdp_verdicts(probe, second, "workstation")}


def test_negotiate_selects_tls_and_serves_the_configured_chain(xrdp, pki: LabPKI) -> None:
    chain = pki.chain("good", NAME)
    port = xrdp("negotiate", chain)
    probe = probe_rdp(NAME, "127.0.0.1", port, timeout=5)
    assert probe.negotiation is not None, probe.reason
    assert (probe.negotiation.kind, probe.negotiation.selected_protocol) == ("response", PROTOCOL_SSL)
    assert probe.answer[8:10] == b"\x12\x34"  # xrdp's source reference, as seen on the wire
    assert probe.tls is not None and probe.tls.ok, probe.tls
    assert probe.tls.chain == tuple(c.public_bytes(serialization.Encoding.DER) for c in chain.certificates)
    assert cert_problems(probe.tls.chain, pki) == {}
    statuses = verdicts(port)
    assert statuses["rdp.negotiation"] == (
        "pass",
        "The listener selected PROTOCOL_SSL (TLS), TLS " + probe.tls.protocol,
    )
    assert statuses["rdp.security-layer"][0] == "pass"
    assert statuses["rdp.nla-disabled"] == (
        "warn",
        "NLA is disabled: offered CredSSP, the listener selected plain TLS (the logon screen comes first)",
    )


def test_tls_layer_refuses_a_client_that_offers_only_classic_rdp(xrdp, pki: LabPKI) -> None:
    port = xrdp("tls", pki.chain("good", NAME))
    rdp_only = probe_rdp(NAME, "127.0.0.1", port, timeout=5, requested=PROTOCOL_RDP)
    assert rdp_only.negotiation is not None, rdp_only.reason
    assert (rdp_only.negotiation.kind, rdp_only.negotiation.failure_name) == ("failure", "SSL_REQUIRED_BY_SERVER")
    offered_tls = probe_rdp(NAME, "127.0.0.1", port, timeout=5, requested=PROTOCOL_SSL | PROTOCOL_HYBRID)
    assert offered_tls.negotiation is not None and offered_tls.negotiation.selected_protocol == PROTOCOL_SSL
    assert offered_tls.tls is not None and offered_tls.tls.ok


def test_rdp_layer_selects_classic_rdp_security_quietly(xrdp, pki: LabPKI) -> None:
    """Windows refuses a TLS-offering client with SSL_NOT_ALLOWED_BY_SERVER; xrdp selects PROTOCOL_RDP."""
    port = xrdp("rdp", pki.chain("good", NAME))
    probe = probe_rdp(NAME, "127.0.0.1", port, timeout=5)
    assert probe.negotiation is not None, probe.reason
    assert (probe.negotiation.kind, probe.negotiation.selected_protocol) == ("response", PROTOCOL_RDP)
    assert probe.tls is None
    statuses = verdicts(port)
    assert statuses["rdp.negotiation"][0] == "pass"
    assert statuses["rdp.security-layer"] == (
        "fail",
        "The listener uses classic RDP security: no TLS, so clients cannot verify the server",
    )
    assert statuses["rdp.nla-disabled"] == ("warn", "No NLA: the listener uses classic RDP security")
    assert statuses["net.tls-handshake"][0] == "unknown"


def test_check_rdp_against_xrdp_with_an_expired_certificate(xrdp, pki: LabPKI, tmp_path: Path) -> None:
    port = xrdp("negotiate", pki.chain("expired", NAME))
    ca_file = tmp_path / "lab-root.pem"
    ca_file.write_bytes(pki.root.cert_pem)
    command = ["check-rdp", NAME, "--address", "127.0.0.1", "--port", str(port), "--ca-file", str(ca_file)]
    run = subprocess.run(
        [sys.executable, "-m", "collector.cli", *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[2].startswith("FAIL    critical cert.expired")
    assert any(line.startswith("WARN    warning  rdp.nla-disabled") for line in lines)
    assert any(line.startswith("pass    critical rdp.negotiation") for line in lines)
    assert "Traceback" not in run.stderr
