"""Certificate checks (``cert.*``): a ChainAnalysis in, one CheckResult per check out. Pure.

Each check's metadata (id, title, severity, remediation, references) is data in ``certs.yaml``,
beside this module, whose registered functions decide the checks; ``collect rules`` and the
reports list them from there. The results are per endpoint and vantage point: the same gateway
can pass from the workstation and fail from a client whose root store differs, and both results
say where they were seen from.

Every result names the certificate it is about (subject, issuer, SHA-1 thumbprint as Windows
shows it, validity), so the admin can find it in ``Cert:\\LocalMachine\\My`` on the server.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from collector.certs import (
    SERVER_AUTH_OIDS,
    CertificateError,
    CertInfo,
    ChainAnalysis,
    PathEnd,
    ReadCertificate,
    TrustStore,
    UnreadableChainError,
    analyse_chain,
    weak_key,
    weak_signature,
)
from collector.checks import CheckSpec, Verdict, catalogue_data, judges, registry, specs_of
from collector.model import WHY_UNKNOWN, CheckResult, Evidence, Status

DEFAULT_EXPIRES_SOON_DAYS = 30

_SPECS = specs_of("certs")
CHECKS: tuple[CheckSpec, ...] = tuple(_SPECS.values())
"""The cert.* catalogue, in report order."""

# Where the certificate an endpoint serves is chosen: said once in certs.yaml, appended where it matters.
WHERE_BOUND = catalogue_data().text["where_bound"]


# --- evidence helpers ---------------------------------------------------------------------------


def cert_evidence(info: CertInfo, role: str, vantage: str) -> tuple[Evidence, ...]:
    """The certificate an admin must find: subject, issuer, thumbprint (as Windows shows it), validity."""
    return (
        Evidence(f"{role} subject", info.subject, vantage),
        Evidence(f"{role} issuer", info.issuer, vantage),
        Evidence(f"{role} thumbprint (SHA-1)", info.thumbprint, vantage),
        Evidence(f"{role} validity", info.validity, vantage),
    )


def _role(analysis: ChainAnalysis, info: CertInfo) -> str:
    if info.thumbprint == analysis.leaf.thumbprint:
        return "leaf"
    if analysis.anchor is not None and info.thumbprint == analysis.anchor.thumbprint:
        return "trust anchor"
    sent = [c.thumbprint for c in analysis.sent]
    if info.thumbprint in sent:
        return f"chain #{sent.index(info.thumbprint) + 1}"
    return "issuer"


def _days(delta: datetime.timedelta) -> str:
    days = round(delta.total_seconds() / 86400)
    if days == 0:
        hours = max(1, int(delta.total_seconds() // 3600))
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{days} day{'s' if days != 1 else ''}"


def _date(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class _Context:
    analysis: ChainAnalysis
    vantage: str
    expires_soon: datetime.timedelta

    def about(self, *certs: CertInfo) -> tuple[Evidence, ...]:
        out: list[Evidence] = []
        for c in certs:
            out += cert_evidence(c, _role(self.analysis, c), self.vantage)
        return tuple(out)

    def fact(self, label: str, value: str) -> Evidence:
        return Evidence(label, value, self.vantage)


# --- the checks ---------------------------------------------------------------------------------


@judges("cert.expired")
def _expired(ctx: _Context) -> Verdict:
    a = ctx.analysis
    expired = [c for c in a.judged if c.not_after < a.now]
    if expired:
        first = expired[0]
        title = (
            f"Certificate {first.common_name} expired {_days(a.now - first.not_after)} ago ({_date(first.not_after)})"
        )
        if len(expired) > 1:
            title += f", and {len(expired) - 1} more on the path"
        return Verdict(Status.FAIL, title, ctx.about(*expired))
    return Verdict(
        Status.PASS,
        f"No certificate on the path has expired (leaf valid until {_date(a.leaf.not_after)})",
        ctx.about(a.leaf),
    )


@judges("cert.not-yet-valid")
def _not_yet_valid(ctx: _Context) -> Verdict:
    a = ctx.analysis
    early = [c for c in a.judged if c.not_before > a.now]
    if early:
        first = early[0]
        return Verdict(
            Status.FAIL,
            f"Certificate {first.common_name} is not valid until {_date(first.not_before)} "
            f"(in {_days(first.not_before - a.now)}): a clock is wrong, or it was issued post-dated",
            (*ctx.about(*early), ctx.fact("judged at", a.now.strftime("%Y-%m-%d %H:%M UTC"))),
        )
    return Verdict(Status.PASS, "Every certificate on the path is already valid", ctx.about(a.leaf))


@judges("cert.expires-soon")
def _expires_soon(ctx: _Context) -> Verdict:
    a = ctx.analysis
    soon = [c for c in a.judged if a.now <= c.not_after <= a.now + ctx.expires_soon]
    threshold = ctx.fact("threshold", f"{ctx.expires_soon.days} days")
    if soon:
        first = min(soon, key=lambda c: c.not_after)
        return Verdict(
            Status.WARN,
            f"Certificate {first.common_name} expires in {_days(first.not_after - a.now)} ({_date(first.not_after)})",
            (*ctx.about(*soon), threshold),
        )
    valid = [c for c in a.judged if c.not_after >= a.now]
    if not valid:
        return Verdict(Status.PASS, "Nothing left to expire soon: see cert.expired", (threshold,))
    first = min(valid, key=lambda c: c.not_after)
    return Verdict(
        Status.PASS,
        f"The first certificate on the path to expire, {first.common_name}, lasts "
        f"{_days(first.not_after - a.now)} more",
        (*ctx.about(first), threshold),
    )


@judges("cert.name-mismatch")
def _name_mismatch(ctx: _Context) -> Verdict:
    a = ctx.analysis
    match = a.name
    assert match is not None
    facts = (
        ctx.fact("name connected to", match.server_name),
        ctx.fact("names in the certificate", ", ".join(match.presented) or "none"),
    )
    if not match.matched:
        return Verdict(
            Status.FAIL,
            f"{match.server_name} is not a name in the certificate "
            f"(it names {', '.join(match.presented) or 'nothing'})",
            (*facts, *ctx.about(a.leaf)),
        )
    if not a.leaf.has_san:
        return Verdict(
            Status.WARN,
            f"{match.server_name} matches only the subject CN: the certificate has no subjectAltName "
            "(Windows accepts it; browsers and non-Windows RD clients do not)",
            (*facts, *ctx.about(a.leaf)),
        )
    return Verdict(Status.PASS, f"The certificate names {match.server_name} ({match.via})", facts)


def _explained(ctx: _Context) -> bool:
    """Whether another cert.* check already reports why a strict validator rejects the chain."""
    a = ctx.analysis
    return bool(
        any(c.not_after < a.now or c.not_before > a.now for c in a.judged)
        or (a.name is not None and (not a.name.matched or not a.leaf.has_san))
        or _eku_problems(a)
        or any(weak_signature(c) for c in a.judged)
        or any(weak_key(c) for c in a.judged)
        or a.path_end is not PathEnd.TRUSTED
        or a.rfc5280_error
    )


@judges("cert.untrusted")
def _untrusted(ctx: _Context) -> Verdict:
    a = ctx.analysis
    store = ctx.fact("trust store", a.trust_label)
    last = a.path[-1]
    if a.path_end is PathEnd.MISSING_ISSUER:
        return Verdict(
            Status.UNKNOWN,
            f"Trust cannot be judged: the path stops at {last.common_name}, whose issuer was not sent "
            "(see cert.chain-incomplete)",
            (store, ctx.fact("missing issuer", a.missing_issuer), *ctx.about(last)),
        )
    if a.path_end is PathEnd.TOO_LONG:
        return Verdict(
            Status.FAIL,
            f"The path from {a.leaf.common_name} is longer than {len(a.path) - 1} certificates (a loop?)",
            (store, *ctx.about(a.leaf)),
        )
    if a.path_end is PathEnd.UNTRUSTED_ROOT:
        if len(a.path) == 1:
            title = f"The self-signed certificate {last.common_name} is not trusted here"
        else:
            title = f"The chain ends at {last.common_name}, a root that is not trusted here"
        return Verdict(Status.FAIL, title, (store, *ctx.about(last)))
    anchor = a.anchor
    assert anchor is not None
    path = ctx.fact("path", " > ".join(c.common_name for c in reversed(a.path)))
    if a.rfc5280_error:
        return Verdict(
            Status.FAIL,
            f"The path to {anchor.common_name} breaks RFC 5280: {a.rfc5280_error}",
            (store, path, *ctx.about(anchor)),
        )
    if a.strict_error and not a.rfc5280_note and not _explained(ctx):
        return Verdict(
            Status.FAIL,
            f"RFC 5280 validation rejects the chain: {a.strict_error}",
            (store, path, *ctx.about(anchor)),
        )
    notes = (ctx.fact("note", a.rfc5280_note),) if a.rfc5280_note else ()
    return Verdict(Status.PASS, f"The chain leads to the trusted root {anchor.common_name}", (store, path, *notes))


@judges("cert.chain-incomplete")
def _chain_incomplete(ctx: _Context) -> Verdict:
    a = ctx.analysis
    last = a.path[-1]
    if a.path_end is PathEnd.MISSING_ISSUER:
        urls = ", ".join(a.missing_issuer_urls)
        title = f"{last.common_name}'s issuer {a.missing_issuer} is not sent"
        title += f" (AIA: {urls})" if urls else " and the certificate has no AIA URL to fetch it from"
        evidence = [
            ctx.fact("missing issuer", a.missing_issuer),
            ctx.fact("AIA caIssuers", urls or "none"),
            *ctx.about(last),
        ]
        evidence += [ctx.fact("near miss", m) for m in a.near_misses]
        return Verdict(Status.FAIL, title, tuple(evidence))
    end = "a trusted root" if a.path_end is PathEnd.TRUSTED else "a root"
    return Verdict(
        Status.PASS,
        f"The certificates sent lead to {end} ({last.common_name})",
        (ctx.fact("sent", f"{len(a.sent)} certificate(s)"),),
    )


@judges("cert.self-signed")
def _self_signed(ctx: _Context) -> Verdict:
    a = ctx.analysis
    leaf = a.leaf
    if leaf.self_signed:
        trusted = " (it is in the trust store, so trusted here only)" if a.path_end is PathEnd.TRUSTED else ""
        return Verdict(Status.WARN, f"The certificate {leaf.common_name} is self-signed{trusted}", ctx.about(leaf))
    return Verdict(Status.PASS, f"The certificate is issued by {leaf.issuer}", ctx.about(leaf))


def _signed_certs(a: ChainAnalysis) -> tuple[CertInfo, ...]:
    """Certificates whose signature a client checks: the path without a self-signed root at its end."""
    path = a.path
    if len(path) > 1 and path[-1].self_signed:
        return path[:-1]
    if len(path) == 1 and path[0].self_signed and a.path_end is PathEnd.TRUSTED:
        return ()
    return path


@judges("cert.weak-signature")
def _weak_signature(ctx: _Context) -> Verdict:
    a = ctx.analysis
    weak = [(c, r) for c in _signed_certs(a) if (r := weak_signature(c))]
    if weak:
        c, reason = weak[0]
        return Verdict(
            Status.FAIL,
            f"Certificate {c.common_name} is {reason}",
            tuple(e for c, r in weak for e in (ctx.fact(c.common_name, r), *ctx.about(c))),
        )
    algorithms = sorted({c.signature_algorithm for c in _signed_certs(a)})
    return Verdict(
        Status.PASS,
        "Certificates are signed with strong hashes",
        (ctx.fact("signature algorithms", ", ".join(algorithms) or "none checked"),),
    )


@judges("cert.weak-key")
def _weak_key(ctx: _Context) -> Verdict:
    a = ctx.analysis
    weak = [(c, r) for c in a.judged if (r := weak_key(c))]
    if weak:
        c, reason = weak[0]
        return Verdict(
            Status.FAIL,
            f"Certificate {c.common_name} has a weak {reason}",
            tuple(e for c, r in weak for e in (ctx.fact(c.common_name, r), *ctx.about(c))),
        )
    return Verdict(
        Status.PASS,
        f"Keys are large enough (leaf {a.leaf.key})",
        (ctx.fact("keys", ", ".join(f"{c.common_name}: {c.key}" for c in a.judged)),),
    )


def _eku_problems(a: ChainAnalysis) -> list[tuple[CertInfo, str]]:
    problems = []
    for c in a.path[:-1] if a.path_end is PathEnd.TRUSTED and len(a.path) > 1 else a.path:
        if c.eku is not None and not SERVER_AUTH_OIDS.intersection(c.eku):
            problems.append((c, ", ".join(c.eku_names) or "empty"))
    return problems


@judges("cert.no-server-auth-eku")
def _no_server_auth_eku(ctx: _Context) -> Verdict:
    a = ctx.analysis
    problems = _eku_problems(a)
    if problems:
        c, ekus = problems[0]
        who = "The certificate" if c is a.leaf else f"Issuing CA {c.common_name}"
        return Verdict(
            Status.FAIL,
            f"{who} is limited to {ekus}: no Server Authentication",
            tuple(e for c, k in problems for e in (ctx.fact(f"{c.common_name} EKU", k), *ctx.about(c))),
        )
    leaf_eku = ", ".join(a.leaf.eku_names) if a.leaf.eku is not None else "no EKU extension (any purpose)"
    return Verdict(Status.PASS, f"The certificate allows Server Authentication ({leaf_eku})", ())


@judges("cert.chain-order")
def _chain_order(ctx: _Context) -> Verdict:
    a = ctx.analysis
    sent = ctx.fact("sent", ", ".join(f"#{i} {c.common_name}" for i, c in enumerate(a.sent, 1)))
    if a.order_problems:
        return Verdict(
            Status.WARN,
            f"The chain is not sent in order: {a.order_problems[0]}",
            (sent, *(ctx.fact("problem", p) for p in a.order_problems)),
        )
    return Verdict(Status.PASS, "The chain is sent in order", (sent,))


def chain_results(
    analysis: ChainAnalysis,
    *,
    host: str,
    endpoint: str,
    vantage: str,
    expires_soon_days: int = DEFAULT_EXPIRES_SOON_DAYS,
) -> tuple[CheckResult, ...]:
    """One result per cert.* check for an analysed chain, in catalogue order."""
    if expires_soon_days < 0:
        raise ValueError("expires_soon_days must not be negative")
    ctx = _Context(analysis, vantage, datetime.timedelta(days=expires_soon_days))
    return tuple(
        check.spec.result(check.judge(ctx), host=host, endpoint=endpoint, vantage=vantage)
        for check in registry().of_file("certs")
    )


def unknown_results(
    reason: str, *, host: str, endpoint: str, vantage: str, evidence: Sequence[Evidence] = ()
) -> tuple[CheckResult, ...]:
    """Every cert.* check as unknown, with why no chain could be judged (never a pass); ``evidence``
    follows the reason (e.g. the thumbprint of a certificate that cannot be read)."""
    why = Evidence(WHY_UNKNOWN, reason, vantage)
    return tuple(
        meta.result(
            Verdict(Status.UNKNOWN, f"{meta.title}: not judged ({reason})", (why, *evidence)),
            host=host,
            endpoint=endpoint,
            vantage=vantage,
        )
        for meta in CHECKS
    )


def evaluate_chain(
    chain: Sequence[bytes | x509.Certificate | ReadCertificate],
    *,
    server_name: str,
    trust: TrustStore,
    now: datetime.datetime,
    host: str,
    endpoint: str,
    vantage: str,
    expires_soon_days: int = DEFAULT_EXPIRES_SOON_DAYS,
) -> tuple[CheckResult, ...]:
    """Analyse a chain as sent and judge it; an empty or unreadable chain gives unknown results.

    A chain holding a certificate that cannot be read in full (a duplicated extension, an invalid
    version, a malformed name...) is judged ``unknown`` on every cert.* check, not ``fail``: the
    reason names the certificate (position and thumbprint) and the defect. Not ``fail``, because
    whether a client refuses such a certificate depends on its parser, not on the certificate
    alone: an OpenSSL client that verifies the chain against its root and checks the host name
    connects to a server whose leaf has version 5, a PrintableString holding '@' or a
    subjectAltName entry cryptography cannot read (the lab serves them, the tests connect), while
    OpenSSL refuses a CA with a duplicated extension and cryptography refuses all of them. A
    verdict on expiry, names, trust or order would be a guess about fields that could not be read.
    The defect itself is every result's "why unknown": reported, and never as a pass.
    """
    try:
        analysis = analyse_chain(chain, server_name=server_name, trust=trust, now=now)
    except UnreadableChainError as exc:
        unreadable = exc.unreadable
        found = (
            (Evidence(f"certificate #{exc.position} thumbprint (SHA-1)", unreadable.thumbprint, vantage),)
            if unreadable.thumbprint
            else ()
        )
        return unknown_results(str(exc), host=host, endpoint=endpoint, vantage=vantage, evidence=found)
    except CertificateError as exc:
        return unknown_results(str(exc), host=host, endpoint=endpoint, vantage=vantage)
    return chain_results(analysis, host=host, endpoint=endpoint, vantage=vantage, expires_soon_days=expires_soon_days)
