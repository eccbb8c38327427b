"""A run whose every host-supplied string is hostile markup, for the rendering safety tests.

Everything a host (or a tampered results.json) controls reaches the pages here: check ids,
titles, evidence, remediation, references (a ``javascript:`` URL among them), probe names, step
errors, collection reasons, host facts, inventory relations, run metadata, and a certificate
whose subject is markup. Each payload would set ``window.__pwned`` if it ever ran.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collector.model import (
    CheckResult,
    CollectionFailure,
    CollectionProblem,
    Evidence,
    HostFacts,
    HostReport,
    HostTarget,
    ProbeError,
    ProbeResult,
    Role,
    RunReport,
    Severity,
    Status,
)

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror="window.__pwned=2">'
JS_URL = "javascript:window.__pwned=3"
SVG = "<svg onload=window.__pwned=4>"
STYLE = "</style><script>window.__pwned=5</script>"
ATTR = "' onmouseover='window.__pwned=6' x='"
TEMPLATE = "{{ 7*7 }}{% raw %}"
SAFE_URL = "https://learn.microsoft.com/en-us/troubleshoot/windows-server/remote/rdp-error-general-troubleshooting"
PAYLOADS = (SCRIPT, IMG, JS_URL, SVG, STYLE, ATTR, TEMPLATE)

FINISHED = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


def _hostile_certificate() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, IMG), x509.NameAttribute(NameOID.ORGANIZATION_NAME, SCRIPT)]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(FINISHED - timedelta(days=400))
        .not_valid_after(FINISHED - timedelta(days=3))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _check(check_id: str, status: Status, host: str) -> CheckResult:
    return CheckResult(
        id=check_id,
        status=status,
        severity=Severity.CRITICAL,
        title=f"{SCRIPT} title {IMG}",
        host=host,
        evidence=(Evidence(label=SVG, value=f"{STYLE} {TEMPLATE}", vantage=ATTR),),
        remediation=f"Run {SCRIPT} then {IMG}",
        references=(JS_URL, f"https://learn.example/{ATTR}", SCRIPT, SAFE_URL),
        endpoint=f"{IMG}:443",
    )


def _not_judged(check_id: str, host: str) -> CheckResult:
    """An unknown check whose reason is hostile; three alike fold into one line on the page."""
    return CheckResult(
        id=check_id,
        status=Status.UNKNOWN,
        severity=Severity.WARNING,
        title=f"{SVG} title: not judged ({SCRIPT} {TEMPLATE})",
        host=host,
        evidence=(Evidence(label="why unknown", value=f"{SCRIPT} {TEMPLATE}", vantage=ATTR),),
        endpoint=f"{STYLE}:3389",
    )


def hostile_run() -> RunReport:
    gw_name, sh_name, client_name = "gw01.corp.example", "rdsh01.corp.example", "client01.corp.example"
    certificate = {
        "thumbprint": SCRIPT,
        "subject": IMG,
        "issuer": IMG,
        "not_before": None,
        "not_after": None,
        "has_private_key": True,
        "private_key_readable": True,
        "chain_der": [_hostile_certificate()],
        "chain_status": [SCRIPT, SVG],
    }
    host_data = {
        "computer_name": SCRIPT,
        "domain": IMG,
        "os_caption": SVG,
        "os_build": STYLE,
        "ps_version": TEMPLATE,
        "utc_now": SCRIPT,
        "last_boot_utc": IMG,
    }
    gateway = HostReport(
        facts=HostFacts(
            target=HostTarget(name=gw_name, address=IMG, roles=(Role.GATEWAY,), group=SCRIPT, session_hosts=(sh_name,)),
            probes={
                "host": ProbeResult("host", 1, host_data, errors=(ProbeError(step=SCRIPT, message=IMG),)),
                "gateway": ProbeResult("gateway", 1, {"certificate": certificate}),
                SVG: ProbeResult(SVG, 1, {}, errors=(ProbeError(step=STYLE, message=ATTR),)),
            },
            problems=(CollectionProblem(CollectionFailure.BAD_OUTPUT, f"probe said {SCRIPT}", probe=IMG),),
            planned=("host", "gateway", SVG, IMG, SCRIPT),
            started=SCRIPT,
            finished=IMG,
        ),
        checks=(
            _check(f"rdg.{IMG}", Status.FAIL, gw_name),
            _check(f"{SCRIPT}.x", Status.UNKNOWN, gw_name),
            *(_not_judged(f"cert.{ATTR}{n}", gw_name) for n in range(3)),
        ),
    )
    session_host = HostReport(
        facts=HostFacts(
            target=HostTarget(name=sh_name, address=SCRIPT, roles=(Role.SESSION_HOST,), transport=IMG, auth=SVG),
            problems=(CollectionProblem(CollectionFailure.UNREACHABLE, f"refused: {IMG} {SCRIPT}"),),
        ),
        checks=(
            _check("collect.unreachable", Status.FAIL, sh_name),
            _check("rdp.service-stopped", Status.UNKNOWN, sh_name),
        ),
    )
    client = HostReport(
        facts=HostFacts(
            target=HostTarget(
                name=client_name, address=ATTR, roles=(Role.CLIENT,), gateway=gw_name, session_hosts=(sh_name, JS_URL)
            ),
        ),
        checks=(_check("client.udp-disabled", Status.PASS, client_name),),
    )
    return RunReport(
        run_id=SCRIPT,
        started="2026-03-01T07:59:00Z",
        finished=FINISHED.strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool_version=IMG,
        workstation=SVG,
        inventory=JS_URL,
        hosts=(gateway, session_host, client),
    )
