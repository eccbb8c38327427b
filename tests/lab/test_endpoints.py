"""The local probes against the lab's gateway and session host endpoints (real TLS, real X.224 on
loopback), and ``collect check-tls`` / ``collect check-rdp`` as an incident responder runs them."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from collector import certs
from collector.checks import certs as cert_checks
from collector.checks import endpoints as ep
from collector.lab.endpoints import GatewayServer, RdpListenerServer
from collector.lab.pki import VARIANTS, LabPKI
from collector.model import Status
from collector.probes.rdg_http import probe_rdg_http
from collector.probes.rdp import PROTOCOL_HYBRID, PROTOCOL_SSL, probe_rdp
from collector.probes.tls import probe_tls
from tests.cert_variants import CERT_CHECK_IDS, EXPECTED_PROBLEMS
from tests.support.raw_peer import RawServer

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

GW = "gw01.corp.example"
RDSH = "rdsh01.corp.example"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return LabPKI.create()


@pytest.fixture(scope="module")
def ca_file(pki: LabPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pki") / "lab-root.pem"
    path.write_bytes(pki.root.cert_pem)
    return path


def lab_trust(pki: LabPKI) -> certs.TrustStore:
    return certs.TrustStore("lab root", (pki.root.cert,))


def judged(chain: tuple[bytes, ...], pki: LabPKI, name: str) -> dict[str, str]:
    results = cert_checks.evaluate_chain(
        chain,
        server_name=name,
        trust=lab_trust(pki),
        now=datetime.datetime.now(datetime.UTC),
        host=name,
        endpoint=f"{name}:443",
        vantage="workstation",
    )
    return {r.id: r.status.value for r in results if r.status is not Status.PASS}


# --- probes against the lab endpoints -----------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gateway_variants_seen_through_the_tls_probe(variant: str, pki: LabPKI) -> None:
    chain = pki.chain(variant, GW)
    with GatewayServer(chain.tls) as gw:
        probe = probe_tls(GW, "127.0.0.1", gw.port, timeout=5)
    assert probe.ok, probe.reason
    assert probe.handshake is not None
    assert probe.handshake.protocol in ("TLSv1.2", "TLSv1.3")
    assert probe.handshake.chain == tuple(c.public_bytes(serialization.Encoding.DER) for c in chain.certificates)
    assert judged(probe.handshake.chain, pki, GW) == EXPECTED_PROBLEMS[variant]


@pytest.mark.parametrize("variant", ["good", "expired", "self-signed", "missing-intermediate"])
def test_session_host_chain_seen_through_the_rdp_probe(variant: str, pki: LabPKI) -> None:
    chain = pki.chain(variant, RDSH)
    with RdpListenerServer(chain.tls, security_layer="negotiate", user_authentication=True) as listener:
        probe = probe_rdp(RDSH, "127.0.0.1", listener.port, timeout=5)
    assert probe.negotiation is not None and probe.negotiation.selected_protocol == PROTOCOL_HYBRID
    assert probe.tls is not None and probe.tls.ok, probe.tls
    assert judged(probe.tls.chain, pki, RDSH) == EXPECTED_PROBLEMS[variant]
    assert listener.requested == [PROTOCOL_SSL | PROTOCOL_HYBRID]


def rdp_statuses(listener: RdpListenerServer) -> dict[str, tuple[str, str]]:
    probe = probe_rdp(RDSH, "127.0.0.1", listener.port, timeout=5)
    second = probe_rdp(RDSH, "127.0.0.1", listener.port, timeout=5, requested=PROTOCOL_SSL)
    return {meta.id: (v.status.value, v.title) for meta, v in ep.rdp_verdicts(probe, second, "workstation")}


@pytest.mark.parametrize(
    ("layer", "nla", "expected"),
    [
        ("negotiate", True, {"rdp.negotiation": "pass", "rdp.security-layer": "pass", "rdp.nla-disabled": "pass"}),
        ("tls", False, {"rdp.negotiation": "pass", "rdp.security-layer": "pass", "rdp.nla-disabled": "warn"}),
        ("rdp", False, {"rdp.negotiation": "pass", "rdp.security-layer": "fail", "rdp.nla-disabled": "warn"}),
    ],
)
def test_listener_security_settings_are_told_apart(layer: str, nla: bool, expected, pki: LabPKI) -> None:
    with RdpListenerServer(pki.chain("good", RDSH).tls, security_layer=layer, user_authentication=nla) as listener:
        statuses = rdp_statuses(listener)
    assert {k: statuses[k][0] for k in expected} == expected
    assert statuses["net.tcp-blocked"][0] == "pass"
    if nla:
        assert statuses["rdp.nla-disabled"][1] == (
            "NLA is required: a client without CredSSP is refused (HYBRID_REQUIRED_BY_SERVER)"
        )
    if layer == "rdp":
        assert statuses["rdp.negotiation"][1] == (
            "The listener allows only classic RDP security (SSL_NOT_ALLOWED_BY_SERVER): see rdp.security-layer"
        )


def test_a_listener_without_a_usable_certificate(pki: LabPKI) -> None:
    with RdpListenerServer(None, security_layer="tls", user_authentication=False) as listener:
        statuses = rdp_statuses(listener)
    assert statuses["rdp.negotiation"] == (
        "fail",
        "The listener refused: RDP_NEG_FAILURE 3 SSL_CERT_NOT_ON_SERVER: "
        "the server has no usable certificate for its listener",
    )
    assert statuses["net.tls-handshake"][0] == "unknown"


@pytest.mark.parametrize(
    ("kwargs", "status", "title"),
    [
        ({}, "pass", "The gateway challenges with Negotiate, NTLM on its HTTP transport and /rpc"),
        ({"rpc_status": 404}, "warn", "GET /rpc (the RPC-over-HTTP fallback) got 404 Not Found"),
        ({"out_data_status": 503}, "fail", "RDG_OUT_DATA /remoteDesktopGateway/ got 503 Service Unavailable"),
        ({"auth_schemes": ("Basic",)}, "fail", "got 401 offering Basic, not Negotiate/NTLM"),
    ],
)
def test_gateway_http_transport(kwargs, status: str, title: str, pki: LabPKI) -> None:
    with GatewayServer(pki.chain("good", GW).tls, **kwargs) as gw:
        probe = probe_rdg_http(GW, "127.0.0.1", gw.port, timeout=5)
        requests = list(gw.requests)
    verdict = ep.rdg_http_verdict(probe, "workstation")
    assert verdict.status.value == status
    assert title in verdict.title
    assert requests == ["RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1", "GET /rpc HTTP/1.1"]


# --- the commands, as subprocesses --------------------------------------------------------------


def collect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def gateway(pki: LabPKI) -> Iterator[Callable[..., GatewayServer]]:
    servers: list[GatewayServer] = []

    def start(variant: str, **kwargs) -> GatewayServer:
        server = GatewayServer(pki.chain(variant, GW).tls, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_check_tls_healthy_gateway_exits_0_and_shows_the_chain(gateway, pki: LabPKI, ca_file: Path) -> None:
    gw = gateway("good")
    run = collect("check-tls", GW, "--address", "127.0.0.1", "--port", str(gw.port), "--ca-file", str(ca_file))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"check-tls {GW}:{gw.port} from workstation (connecting to 127.0.0.1)"
    assert not any(line.startswith(("FAIL", "WARN", "unknown")) for line in lines)
    assert any(line.startswith("pass    critical rdg.http-transport") for line in lines)
    issuing = certs.cert_info(pki.issuing.cert)  # each chain() has a fresh leaf; the issuing CA is shared
    assert any(line.lstrip().startswith("1  CN=gw01.corp.example, O=rdp-collector lab") for line in lines)
    assert any(line.lstrip().startswith("2  ") and issuing.thumbprint in line for line in lines)
    assert "trust store: system store (" in run.stdout and f"{ca_file} (1 certificates)" in run.stdout
    assert "Traceback" not in run.stderr


def test_check_tls_expired_certificate_exits_1_problem_first(gateway, ca_file: Path) -> None:
    gw = gateway("expired")
    run = collect("check-tls", GW, "--address", "127.0.0.1", "--port", str(gw.port), "--ca-file", str(ca_file))
    assert run.returncode == 1
    first_check = run.stdout.splitlines()[2]
    assert first_check.startswith("FAIL    critical cert.expired")
    assert f"Certificate {GW} expired 3 days ago" in first_check
    assert "What to do:" in run.stdout and "Set-Item RDS:\\GatewayServer\\SSLCertificate\\Thumbprint" in run.stdout


def test_fail_on_decides_whether_a_warning_fails(gateway, ca_file: Path) -> None:
    gw = gateway("expires-soon")
    base = ("check-tls", GW, "--address", "127.0.0.1", "--port", str(gw.port), "--ca-file", str(ca_file))
    assert collect(*base).returncode == 0
    assert collect(*base, "--fail-on", "warning").returncode == 1
    assert collect(*base, "--expires-soon-days", "5", "--fail-on", "warning").returncode == 0


def test_check_tls_json_is_a_list_of_results(gateway, ca_file: Path) -> None:
    gw = gateway("wrong-name")
    run = collect(
        "check-tls", GW, "--address", "127.0.0.1", "--port", str(gw.port), "--ca-file", str(ca_file), "--json"
    )
    assert run.returncode == 1
    results = json.loads(run.stdout)
    assert isinstance(results, list)
    assert [r["id"] for r in results] == [
        "net.tcp-blocked",
        "net.tls-handshake",
        *CERT_CHECK_IDS,
        "rdg.http-transport",
    ]
    for r in results:
        assert {"id", "status", "severity", "title", "evidence", "endpoint"} <= set(r)
        assert r["endpoint"] == f"{GW}:{gw.port}"
        assert all(set(e) == {"label", "value", "vantage"} and e["vantage"] == "workstation" for e in r["evidence"])
    by_id = {r["id"]: r for r in results}
    assert (by_id["cert.name-mismatch"]["status"], by_id["cert.name-mismatch"]["severity"]) == ("fail", "critical")
    assert (
        by_id["cert.name-mismatch"]["title"]
        == f"{GW} is not a name in the certificate (it names DNS:remote.other.example)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "collect check-tls: --port must be between 1 and 65535, not 0"),
        (["--expires-soon-days", "-1"], "collect check-tls: --expires-soon-days must not be negative, not -1"),
        (["--timeout", "0"], "collect check-tls: --timeout must be more than 0 and at most 600 seconds, not 0"),
        (["--timeout", "inf"], "collect check-tls: --timeout must be more than 0 and at most 600 seconds, not inf"),
        (["--timeout", "nan"], "--timeout must be more than 0 and at most 600 seconds, not nan"),
        (["--ca-file", "/nonexistent/ca.pem"], "collect check-tls: --ca-file: cannot read /nonexistent/ca.pem"),
        (["--fail-on", "severe"], "argument --fail-on: invalid choice: 'severe'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    run = collect("check-tls", GW, *args)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


def test_refused_connection_is_a_result_and_one_line(closed_port: int) -> None:
    run = collect("check-tls", GW, "--address", "127.0.0.1", "--port", str(closed_port), "--json")
    assert run.returncode == 1
    by_id = {r["id"]: r for r in json.loads(run.stdout)}
    assert by_id["net.tcp-blocked"]["status"] == "fail"
    assert by_id["cert.expired"]["status"] == "unknown"
    assert by_id["rdg.http-transport"]["status"] == "unknown"
    assert run.stderr.strip().splitlines() == [
        f"collect check-tls: {GW}:{closed_port}: connection refused "
        "(nothing listens on that port, or a firewall rejects it)"
    ]


def test_a_refused_port_says_once_what_it_leaves_unjudged(closed_port: int) -> None:
    run = collect("check-tls", GW, "--address", "127.0.0.1", "--port", str(closed_port))
    lines = run.stdout.splitlines()
    [line] = [x for x in lines if "not judged (no TCP connection): " in x]
    ids = line.split("not judged (no TCP connection): ", 1)[1].split(", ")
    assert line.startswith(f"unknown critical {len(ids)} checks ")
    assert set(ids) == {"net.tls-handshake", *CERT_CHECK_IDS}  # every check the refused port left unjudged
    assert not [x for x in lines if x.endswith("not judged (no TCP connection)")]  # none on a line of its own
    # A reason only one check gives keeps its own line.
    assert [x for x in lines if x.startswith("unknown critical rdg.http-transport ")]


@pytest.fixture
def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "reply", "extra", "message"),
    [
        ("check-tls", None, ["--timeout", "0.5"], "no answer within 0.5 s while starting TLS"),
        ("check-tls", b"220 mail.corp.example ESMTP\r\n", [], "the peer answered, but not with TLS"),
        ("check-rdp", b"\x16\x03\x01\x00\x05hello", [], "not an RDP answer: starts with 16 03 01 00"),
        ("check-rdp", None, ["--timeout", "0.5"], "no answer within 0.5 s while waiting for the X.224"),
    ],
)
def test_silent_and_garbage_peers_give_one_line_and_exit_1(command, reply, extra, message) -> None:
    with RawServer(reply) as peer:
        run = collect(command, GW, "--address", "127.0.0.1", "--port", str(peer.port), *extra)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    stderr = run.stderr.strip().splitlines()
    assert len(stderr) == 1 and stderr[0].startswith(f"collect {command}: {GW}:{peer.port}: ")
    assert message in stderr[0]
    assert "FAIL" in run.stdout


def test_check_rdp_on_a_listener_that_requires_nla(pki: LabPKI, ca_file: Path) -> None:
    with RdpListenerServer(pki.chain("good", RDSH).tls, security_layer="negotiate", user_authentication=True) as lis:
        run = collect(
            "check-rdp", RDSH, "--address", "127.0.0.1", "--port", str(lis.port), "--ca-file", str(ca_file), "--json"
        )
        requested = list(lis.requested)
    assert run.returncode == 0, run.stdout + run.stderr
    by_id = {r["id"]: r for r in json.loads(run.stdout)}
    assert {k: by_id[k]["status"] for k in ("rdp.negotiation", "rdp.security-layer", "rdp.nla-disabled")} == {
        "rdp.negotiation": "pass",
        "rdp.security-layer": "pass",
        "rdp.nla-disabled": "pass",
    }
    assert {by_id[i]["status"] for i in CERT_CHECK_IDS} == {"pass"}
    assert requested == [PROTOCOL_SSL | PROTOCOL_HYBRID, PROTOCOL_SSL]


def test_check_rdp_classic_rdp_security_fails_at_warning(pki: LabPKI) -> None:
    with RdpListenerServer(pki.chain("good", RDSH).tls, security_layer="rdp", user_authentication=False) as lis:
        base = ("check-rdp", RDSH, "--address", "127.0.0.1", "--port", str(lis.port))
        default = collect(*base)
        strict = collect(*base, "--fail-on", "warning")
    assert default.returncode == 0  # classic RDP security is a warning-level problem: clients still connect
    assert strict.returncode == 1
    lines = default.stdout.splitlines()
    assert any(line.startswith("FAIL    warning  rdp.security-layer") for line in lines)
    assert any(line.startswith("WARN    warning  rdp.nla-disabled") for line in lines)
    assert "No certificate chain was captured." in default.stdout
