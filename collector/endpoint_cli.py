"""``collect check-tls`` and ``collect check-rdp``: one endpoint, from this workstation, no WinRM.

For the incident responder who needs an answer in seconds: connect to the gateway's 443 or the
session host's 3389 from here, capture what it serves, and judge it with the same checks a full
collection uses. Problems first, one line per check, then the certificate chain as sent.

Exit codes as for a collection: 0 nothing at or above --fail-on, 1 a problem at or above it (a
refused connection or a timeout included: they are ``net.tcp-blocked`` results), 2 usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Sequence

from collector import certs
from collector.checks.certs import DEFAULT_EXPIRES_SOON_DAYS, WHERE_BOUND
from collector.exits import EXIT_USAGE, exit_code
from collector.model import CheckResult, NotJudged, Severity, Status, fold_unknowns, to_dict
from collector.probes.tcp import DEFAULT_TIMEOUT_S
from collector.terminal import printable
from collector.workstation import VANTAGE, EndpointReport, check_rdp, check_tls

MAX_TIMEOUT_S = 600.0  # a budget per probe step; beyond this it is a typo (and "inf" no socket takes)


class _Usage(Exception):
    """A usage error inside these commands: exit 2 with a one-line message."""


# --- output -------------------------------------------------------------------------------------


def ordered(results: Sequence[CheckResult]) -> list[CheckResult]:
    """Problems first (fail, warn, unknown, pass), the most severe first within each status."""
    return sorted(results, key=lambda r: (-r.status.rank, -r.severity.rank))


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _level(result: CheckResult) -> Severity:
    """The level shown for a result: a warn counts at most as a warning (as --fail-on counts it)."""
    if result.status is Status.WARN and result.severity is Severity.CRITICAL:
        return Severity.WARNING
    return result.severity


def render_text(report: EndpointReport) -> str:
    """The readable verdict: one line per check (problems first), the chain, then what to do.

    Subjects, issuers, titles quoting the server's answers and the reasons are the endpoint's
    text: every line goes through ``printable``, and the chain's cells before they are measured.
    The tool's own multi-line texts (remediation) are split into lines first."""
    lines = [f"{report.command} {report.endpoint} from {VANTAGE} (connecting to {report.address})", ""]
    width = max(len(r.id) for r in report.results)
    for r in fold_unknowns(ordered(report.results)):
        if isinstance(r, NotJudged):
            worst = max((c.severity for c in r.checks), key=lambda s: s.rank)
            count = f"{len(r.checks)} checks"
            ids = ", ".join(c.id for c in r.checks)
            lines.append(f"unknown {worst.value:8} {count:{width}}  not judged ({r.reason}): {ids}")
            continue
        status = r.status.value.upper() if r.is_problem else r.status.value
        lines.append(f"{status:7} {_level(r).value:8} {r.id:{width}}  {r.title}")
    lines.append("")
    hs = report.handshake
    if report.chain and hs is not None:
        lines.append(f"Certificate chain as sent ({hs.protocol}, {hs.cipher}):")
        rows = [["#", "subject", "issuer", "thumbprint (SHA-1)", "valid from", "valid until", "key", "signature"]]
        for i, c in enumerate(report.chain, 1):
            cells = [
                str(i),
                c.subject,
                c.issuer,
                c.thumbprint,
                c.not_before.strftime("%Y-%m-%d"),
                c.not_after.strftime("%Y-%m-%d"),
                c.key,
                c.signature_algorithm,
            ]
            rows.append([printable(cell) for cell in cells])
        lines += _table(rows)
        lines.append(f"  trust store: {report.trust_label}")
    elif report.chain_problem and hs is not None:
        lines.append(f"Certificate chain as sent ({hs.protocol}, {hs.cipher}), not judged: {report.chain_problem}")
        lines += _table(
            [["#", "thumbprint (SHA-1)"], *([str(i), certs.thumbprint(d)] for i, d in enumerate(hs.chain, 1))]
        )
        lines.append(f"  trust store: {report.trust_label}")
    else:
        lines.append("No certificate chain was captured.")
    problems = [r for r in ordered(report.results) if r.is_problem]
    if problems:
        lines += ["", "What to do:"]
        bound = False
        seen: set[str] = set()
        for r in problems:
            if r.id in seen:
                continue
            seen.add(r.id)
            text = r.remediation
            if WHERE_BOUND in text:
                text, bound = text.replace(WHERE_BOUND, "").rstrip(), True
            first, *rest = text.split("\n")
            lines += [f"- {r.id}: {first}", *(f"    {line}" for line in rest)]
        if bound:
            lines += WHERE_BOUND.split("\n")
    return "\n".join(printable(line) for line in lines)


def render_json(report: EndpointReport) -> str:
    """The results as a JSON list, derived from the CheckResult type (every field, enums as values).

    ASCII only: JSON escapes every control and non-ASCII character but DEL, which can stand only
    inside a string and is escaped here, so no endpoint text reaches the terminal raw."""
    return json.dumps([to_dict(r) for r in report.results], indent=2, ensure_ascii=True).replace("\x7f", "\\u007f")


# --- commands -----------------------------------------------------------------------------------


def _parser(command: str, default_port: int, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"collect {command}",
        description=description,
        epilog="Exit codes: 0 nothing at or above --fail-on, 1 problems found, 2 usage error.",
    )
    parser.add_argument("name", metavar="NAME", help="the name clients use (sent as SNI, checked in the certificate)")
    parser.add_argument("--address", help="connect to this address instead of resolving NAME")
    parser.add_argument("--port", type=int, default=default_port, help=f"TCP port (default: {default_port})")
    parser.add_argument(
        "--ca-file",
        action="append",
        default=[],
        metavar="FILE",
        help="CA certificates to trust besides the system store (internal PKI); repeatable",
    )
    parser.add_argument(
        "--expires-soon-days",
        type=int,
        default=DEFAULT_EXPIRES_SOON_DAYS,
        metavar="N",
        help=f"warn when a certificate expires within N days (default: {DEFAULT_EXPIRES_SOON_DAYS})",
    )
    parser.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        default="critical",
        help="exit 1 when a problem at or above this severity is found (default: critical)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"budget for each probe: resolve, connect, handshake, answer (default: {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the check results as JSON")
    return parser


def _validated(args: argparse.Namespace) -> certs.TrustStore:
    if not args.name.strip() or any(ch.isspace() for ch in args.name):
        raise _Usage(f"NAME must be a host name or address, not {args.name!r}")
    if args.address is not None and (not args.address.strip() or any(ch.isspace() for ch in args.address)):
        raise _Usage(f"--address must be a host name or address, not {args.address!r}")
    if not 1 <= args.port <= 65535:
        raise _Usage(f"--port must be between 1 and 65535, not {args.port}")
    if args.expires_soon_days < 0:
        raise _Usage(f"--expires-soon-days must not be negative, not {args.expires_soon_days}")
    if not 0 < args.timeout <= MAX_TIMEOUT_S:
        raise _Usage(f"--timeout must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds, not {args.timeout:g}")
    try:
        return certs.workstation_trust(args.ca_file)
    except certs.CertificateError as exc:
        raise _Usage(f"--ca-file: {exc}") from None


def _run(
    command: str,
    argv: Sequence[str],
    default_port: int,
    description: str,
    probe: Callable[..., EndpointReport],
) -> int:
    args = _parser(command, default_port, description).parse_args(argv)
    try:
        trust = _validated(args)
    except _Usage as exc:
        print(printable(f"collect {command}: {exc}"), file=sys.stderr, flush=True)
        return EXIT_USAGE
    report = probe(
        args.name,
        address=args.address,
        port=args.port,
        trust=trust,
        now=datetime.datetime.now(datetime.UTC),
        expires_soon_days=args.expires_soon_days,
        timeout=args.timeout,
    )
    print(render_json(report) if args.json else render_text(report), flush=True)
    if report.connection_problem:
        print(
            printable(f"collect {command}: {report.endpoint}: {report.connection_problem}"), file=sys.stderr, flush=True
        )
    if report.chain_problem:
        print(printable(f"collect {command}: {report.endpoint}: {report.chain_problem}"), file=sys.stderr, flush=True)
    return exit_code(report.results, Severity(args.fail_on))


def cmd_check_tls(argv: Sequence[str]) -> int:
    """``collect check-tls NAME``: an RD Gateway (or any TLS endpoint) as this workstation sees it."""
    return _run(
        "check-tls",
        argv,
        443,
        "Check a TLS endpoint (an RD Gateway's 443) from this workstation: TCP, TLS handshake, the "
        "certificate chain (expiry, name, trust, completeness, order, EKU, key, signature) and the RD "
        "Gateway HTTP transport's answer. No WinRM, no credentials.",
        check_tls,
    )


def cmd_check_rdp(argv: Sequence[str]) -> int:
    """``collect check-rdp NAME``: a session host's RDP listener as this workstation sees it."""
    return _run(
        "check-rdp",
        argv,
        3389,
        "Check an RDP listener (a session host's 3389) from this workstation: TCP, the X.224 "
        "negotiation (TLS, NLA, classic RDP security), the TLS handshake and the listener's certificate "
        "chain. No logon is attempted and no credential is sent.",
        check_rdp,
    )
