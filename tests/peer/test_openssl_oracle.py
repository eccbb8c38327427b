"""OpenSSL as an oracle independent of ``cryptography``: for every chain, ``openssl s_server`` serves it,
``openssl s_client -verify_hostname NAME -CAfile ROOT -verify_return_error`` judges it, the TLS
probe captures it and ``collector.checks.certs`` judges it; the two verdicts must agree.

Half the chains come from the lab PKI (cryptography), half from the ``openssl`` command line
(``req`` / ``x509 -req`` with extension files), so neither side only ever judges its own output.
OpenSSL runs at its default security level, so it also has an opinion on SHA-1 and RSA-1024.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import select
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector import certs
from collector.checks import certs as cert_checks
from collector.lab.pki import VARIANTS, LabPKI
from collector.model import Status
from collector.probes.tls import probe_tls

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

NAME = "gw01.corp.example"

# The oracle's verify codes (X509_V_ERR_*) and the check that must fail for each.
ORACLE_CHECK = {
    9: "cert.not-yet-valid",
    10: "cert.expired",
    18: "cert.untrusted",  # self-signed leaf
    19: "cert.untrusted",  # self-signed root in the chain, not trusted
    20: "cert.chain-incomplete",
    21: "cert.chain-incomplete",
    26: "cert.no-server-auth-eku",
    62: "cert.name-mismatch",
    66: "cert.weak-key",
    68: "cert.weak-signature",
}

# What the oracle says about each case: pinned, so a change in either side is seen.
ORACLE_CODE = {
    "good": 0,
    "expires-soon": 0,
    "expired": 10,
    "not-yet-valid": 9,
    "wrong-name": 62,
    "self-signed": 18,
    "sha1": 68,
    "rsa1024": 66,
    "missing-intermediate": 20,
    "wrong-order": 0,
    "no-server-auth": 26,
    "inspection": 19,
    "cli-good": 0,
    "cli-wrong-name": 62,
    "cli-sha1": 68,
    "cli-self-signed": 18,
    "cli-missing-intermediate": 20,
    "cli-client-auth": 26,
    "cli-rsa1024": 66,
    "cli-cn-only": 0,  # OpenSSL falls back to the CN without SAN; we warn (cert.name-mismatch), not fail
}


@dataclass(frozen=True)
class Case:
    leaf: Path
    key: Path
    chain: Path | None  # the certificates sent after the leaf, in order
    root: Path  # the oracle's and our trust anchor


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("openssl is not installed; dev/test installs it (apt-get install openssl)")
    return path


def sh(openssl: str, command: str, cwd: Path) -> None:
    """Run ``openssl COMMAND`` (shell-style quoting, no shell) in ``cwd``; fail with its stderr."""
    run = subprocess.run([openssl, *shlex.split(command)], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"openssl {command}: {run.stderr}"


LEAF_EXT = """basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = {eku}
{san}authorityKeyIdentifier = keyid
authorityInfoAccess = caIssuers;URI:http://pki.oracle.example/issuing.crt
"""


@pytest.fixture(scope="module")
def cli_cases(openssl: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """A root, an RSA issuing CA and leaves made with the openssl command line only."""
    d = tmp_path_factory.mktemp("openssl-pki")
    (d / "root.cnf").write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n"
        "[dn]\nO = oracle lab\nCN = Oracle Root CA\n"
        "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
    )
    sh(openssl, "req -x509 -new -config root.cnf -newkey rsa:2048 -nodes -sha256 -days 3650 "
       "-keyout root.key -out root.pem", d)  # fmt: skip
    (d / "int.ext").write_text(
        "basicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
    )
    sh(openssl, "req -new -newkey rsa:2048 -nodes -keyout int.key -out int.csr "
       "-subj '/O=oracle lab/CN=Oracle Issuing CA'", d)  # fmt: skip
    sh(openssl, "x509 -req -in int.csr -CA root.pem -CAkey root.key -set_serial 2 -days 1825 -sha256 "
       "-extfile int.ext -out int.pem", d)  # fmt: skip

    def leaf(case: str, *, eku: str = "serverAuth", san: str | None = NAME, digest: str = "sha256",
             newkey: str = "ec -pkeyopt ec_paramgen_curve:P-256") -> None:  # fmt: skip
        (d / f"{case}.ext").write_text(LEAF_EXT.format(eku=eku, san=f"subjectAltName = DNS:{san}\n" if san else ""))
        sh(openssl, f"req -new -newkey {newkey} -nodes -keyout {case}.key -out {case}.csr -subj /CN={NAME}", d)
        sh(openssl, f"x509 -req -in {case}.csr -CA int.pem -CAkey int.key -set_serial {secrets.randbits(63)} "
           f"-days 365 -{digest} -extfile {case}.ext -out {case}.pem", d)  # fmt: skip

    leaf("cli-good")
    leaf("cli-wrong-name", san="other.corp.example")
    leaf("cli-sha1", digest="sha1")
    leaf("cli-client-auth", eku="clientAuth")
    leaf("cli-rsa1024", newkey="rsa:1024")
    leaf("cli-cn-only", san=None)
    (d / "ss.cnf").write_text(
        f"[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n[dn]\nCN = {NAME}\n"
        "[ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{NAME}\n"
    )
    sh(openssl, "req -x509 -new -config ss.cnf -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 "
       "-keyout cli-self-signed.key -out cli-self-signed.pem", d)  # fmt: skip

    root, issuing = d / "root.pem", d / "int.pem"
    cases = {
        name: Case(d / f"{name}.pem", d / f"{name}.key", issuing, root)
        for name in ("cli-good", "cli-wrong-name", "cli-sha1", "cli-client-auth", "cli-rsa1024", "cli-cn-only")
    }
    cases["cli-self-signed"] = Case(d / "cli-self-signed.pem", d / "cli-self-signed.key", None, root)
    cases["cli-missing-intermediate"] = Case(d / "cli-good.pem", d / "cli-good.key", None, root)
    return cases


@pytest.fixture(scope="module")
def lab_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """The lab variants (cryptography), written out for openssl."""
    d = tmp_path_factory.mktemp("lab-pki")
    pki = LabPKI.create()
    root = d / "root.pem"
    root.write_bytes(pki.root.cert_pem)
    cases = {}
    for variant in VARIANTS:
        chain = pki.chain(variant, NAME)
        pems = chain.chain_pem.split(b"-----END CERTIFICATE-----\n")
        leaf, rest = pems[0] + b"-----END CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n".join(pems[1:])
        (d / f"{variant}.pem").write_bytes(leaf)
        (d / f"{variant}.key").write_bytes(chain.key_pem)
        if rest.strip():
            (d / f"{variant}.chain.pem").write_bytes(rest)
        cases[variant] = Case(
            d / f"{variant}.pem", d / f"{variant}.key", d / f"{variant}.chain.pem" if rest.strip() else None, root
        )
    return cases


@pytest.fixture
def s_server(openssl: str) -> Iterator:
    procs: list[subprocess.Popen[bytes]] = []

    def start(case: Case, connections: int) -> int:
        args = [openssl, *shlex.split(
            f"s_server -accept 127.0.0.1:0 -cert {shlex.quote(str(case.leaf))} -key {shlex.quote(str(case.key))} "
            f"-cipher ALL:@SECLEVEL=0 -naccept {connections}"
        )]  # fmt: skip
        if case.chain is not None:
            args += ["-cert_chain", str(case.chain)]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)  # stdin stays open: s_server quits on EOF there
        assert proc.stdout is not None
        fd, seen, deadline = proc.stdout.fileno(), b"", time.monotonic() + 10
        while time.monotonic() < deadline:  # raw reads: a buffered readline could hide the line from select
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            chunk = os.read(fd, 4096) if ready else b""
            seen += chunk
            if match := re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", seen):
                return int(match.group(1))
            if not chunk and proc.poll() is not None:
                break
        proc.kill()
        pytest.fail(f"openssl s_server did not start: {seen!r} {proc.stderr.read() if proc.stderr else ''}")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(5)


def oracle(openssl: str, port: int, root: Path) -> int:
    command = (
        f"s_client -connect 127.0.0.1:{port} -servername {NAME} -verify_hostname {NAME} "
        f"-CAfile {shlex.quote(str(root))} -verify_return_error"
    )
    run = subprocess.run(
        [openssl, *shlex.split(command)],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    match = re.search(r"Verify return code: (\d+)", run.stdout) or re.search(r"verify error:num=(\d+)", run.stderr)
    assert match, f"no verify code from s_client: {run.stdout[-500:]} {run.stderr[-500:]}"
    return int(match.group(1))


def ours(port: int, root: Path) -> dict[str, str]:
    probe = probe_tls(NAME, "127.0.0.1", port, timeout=10)
    assert probe.ok and probe.handshake is not None, probe.reason
    results = cert_checks.evaluate_chain(
        probe.handshake.chain,
        server_name=NAME,
        trust=certs.TrustStore(str(root), certs.load_ca_file(root)),
        now=datetime.datetime.now(datetime.UTC),
        host=NAME,
        endpoint=f"{NAME}:{port}",
        vantage="workstation",
    )
    return {r.id: r.status.value for r in results if r.status is not Status.PASS}


def agree(code: int, problems: dict[str, str]) -> None:
    failing = {check for check, status in problems.items() if status == "fail"}
    if code == 0:
        assert failing == set(), f"openssl accepts the chain, we fail {failing}"
    else:
        assert failing == {ORACLE_CHECK[code]}, f"openssl says {code}, we fail {failing}"


@pytest.mark.parametrize("case", [c for c in ORACLE_CODE if not c.startswith("cli-")])
def test_lab_chains_agree_with_openssl(case: str, lab_cases, s_server, openssl: str) -> None:
    c = lab_cases[case]
    port = s_server(c, connections=2)
    code = oracle(openssl, port, c.root)
    problems = ours(port, c.root)
    assert code == ORACLE_CODE[case]
    agree(code, problems)


@pytest.mark.parametrize("case", [c for c in ORACLE_CODE if c.startswith("cli-")])
def test_openssl_made_chains_agree_with_openssl(case: str, cli_cases, s_server, openssl: str) -> None:
    c = cli_cases[case]
    port = s_server(c, connections=2)
    code = oracle(openssl, port, c.root)
    problems = ours(port, c.root)
    assert code == ORACLE_CODE[case]
    agree(code, problems)
    if case == "cli-cn-only":
        assert problems == {"cert.name-mismatch": "warn"}
    if case == "cli-missing-intermediate":
        assert problems == {"cert.chain-incomplete": "fail", "cert.untrusted": "unknown"}
