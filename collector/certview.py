"""Certificates as the report shows them: one row per certificate of every chain a host's probes saw.

Pure presentation helper: it reads the base64 DER that probes carry (``chain_der``) through
``collector.certs.read_certificate`` (every field read at once, a malformed certificate a reason
in words, never an exception) and states facts (subject, issuer, validity, days left, thumbprint, where the
chain was seen). It judges nothing: the ``cert.*`` checks decide what is wrong. Days left are
counted from a reference time the caller passes (the run's time), never the wall clock, so
re-rendering an old run gives the same page.
"""

from __future__ import annotations

import base64
import binascii
import functools
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector import certs
from collector.model import HostFacts

# Where the known probes keep a chain, and how to say where it was seen. Any other probe field
# holding a ``chain_der`` list is still shown, labelled with its probe and field path.
_KNOWN: dict[tuple[str, str], str] = {
    ("gateway", "certificate"): "RD Gateway SSL certificate, in the gateway's own store",
    ("rdp_config", "listener_certificate"): "RDP listener certificate, in the session host's own store",
    ("client", "gateway_tls"): "chain the client received from its gateway",
}

_WORKSTATION: dict[str, str] = {
    "check-tls": "chain the workstation received over TLS",
    "check-rdp": "chain the workstation received from the RDP listener",
}


@dataclass(frozen=True)
class CertRow:
    """One certificate of a chain; ``error`` is set (and the rest may be empty) when it did not parse."""

    position: int  # 0 = the leaf the endpoint presents, then its issuers as sent
    subject: str
    common_name: str
    issuer: str
    not_before: str  # ISO 8601 UTC
    not_after: str
    days_left: int | None  # whole days from the reference time to not_after; negative once expired
    thumbprint: str  # SHA-1 of the DER, upper-case hex: what certlm.msc and CertHash show
    dns_names: tuple[str, ...] = ()
    self_issued: bool = False
    error: str = ""

    @property
    def expired(self) -> bool:
        return self.days_left is not None and self.days_left < 0


@dataclass(frozen=True)
class ChainView:
    """One chain as one probe saw it from one vantage point."""

    host: str  # the host whose probe reported it
    probe: str
    field: str
    where: str  # in words: which certificate, seen from where
    endpoint: str  # the name:port it was fetched from, when the probe says
    certs: tuple[CertRow, ...]
    host_status: tuple[str, ...] = ()  # what the host's own chain engine reported (X509ChainStatusFlags)


def parse_time(value: str) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime; None for empty or unreadable text."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def days_between(reference: datetime | None, moment: datetime | None) -> int | None:
    """Whole days from ``reference`` to ``moment`` (floor, so one second past expiry is -1)."""
    if reference is None or moment is None:
        return None
    return int((moment - reference).total_seconds() // 86400)


@functools.lru_cache(maxsize=1024)
def cert_row(position: int, der_b64: str, reference: datetime | None) -> CertRow:
    """Read one base64 DER certificate; garbage, or a certificate with a field that cannot be read
    (a duplicated extension, an invalid version, a malformed name), becomes a row that says why
    (with the SHA-1 of its bytes, to find it on the host) instead of an exception.

    Remembered: the same certificates (a fleet's CAs, a host's own) are shown on the host's page
    and again on the index, and parsing is most of what a page costs."""
    try:
        der = base64.b64decode(der_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        return CertRow(position, "", "", "", "", "", None, "", error=f"not a readable certificate ({exc})")
    read = certs.read_certificate(der)
    if isinstance(read, certs.UnreadableCertificate):
        found = f"; SHA-1 of its bytes {read.thumbprint}" if read.thumbprint else ""
        return CertRow(
            position, "", "", "", "", "", None, "", error=f"not a readable certificate ({read.reason}){found}"
        )
    info = read.info
    return CertRow(
        position=position,
        subject=read.subject_rfc4514,
        common_name=read.subject_cn,
        issuer=read.issuer_rfc4514,
        not_before=_iso(info.not_before),
        not_after=_iso(info.not_after),
        days_left=days_between(reference, info.not_after),
        thumbprint=info.thumbprint,
        dns_names=info.dns_names,
        self_issued=info.self_issued,
    )


def _reported_row(found: Mapping[str, Any], reference: datetime | None) -> CertRow:
    """A certificate the host described without sending its DER: show what it said."""
    not_after = str(found.get("not_after") or "")
    return CertRow(
        position=0,
        subject=str(found.get("subject") or ""),
        common_name="",
        issuer=str(found.get("issuer") or ""),
        not_before=str(found.get("not_before") or ""),
        not_after=not_after,
        days_left=days_between(reference, parse_time(not_after)),
        thumbprint=str(found.get("thumbprint") or "").upper(),
        error="the host sent no DER for this certificate; its own description is shown",
    )


def _chains(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
    """Every mapping under ``value`` that carries a ``chain_der`` list, with its field path."""
    if isinstance(value, Mapping):
        if isinstance(value.get("chain_der"), list):
            yield path, value
        for key, inner in value.items():
            if key != "chain_der":
                yield from _chains(inner, (*path, str(key)))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _chains(inner, (*path, str(i)))


def certificates_only(value: Any) -> Any:
    """``value`` cut down to the mappings that carry a ``chain_der`` list (kept whole) and the
    keys and list positions that lead to them (other list items become None, so a chain's field
    path does not change); None when nothing in it carries a chain. The DER strings are interned:
    a CA's certificate sent by many hosts is kept once."""
    if isinstance(value, Mapping):
        if isinstance(value.get("chain_der"), list):
            return {**value, "chain_der": [sys.intern(d) if isinstance(d, str) else d for d in value["chain_der"]]}
        kept = {key: certificates_only(inner) for key, inner in value.items()}
        kept = {key: inner for key, inner in kept.items() if inner is not None}
        return kept or None
    if isinstance(value, list):
        kept_items = [certificates_only(inner) for inner in value]
        return kept_items if any(item is not None for item in kept_items) else None
    return None


def _chain_view(
    facts: HostFacts,
    probe: str,
    field: str,
    where: str,
    found: Mapping[str, Any],
    endpoint: str,
    reference: datetime | None,
) -> ChainView | None:
    ders = [d for d in found["chain_der"] if isinstance(d, str)]
    if ders:
        rows = tuple(cert_row(i, der, reference) for i, der in enumerate(ders))
    elif found.get("subject") or found.get("thumbprint"):
        rows = (_reported_row(found, reference),)
    else:
        return None  # e.g. a TLS attempt that never connected: nothing was seen
    status = found.get("chain_status")
    return ChainView(
        host=facts.target.name,
        probe=probe,
        field=field,
        where=where,
        endpoint=endpoint,
        certs=rows,
        host_status=tuple(str(s) for s in status) if isinstance(status, list) else (),
    )


def host_chains(facts: HostFacts, reference: datetime | None) -> tuple[ChainView, ...]:
    """Every certificate chain in one host's facts: its probes' data (in probe-name order), then
    what the workstation's own probes of its endpoints received."""
    views: list[ChainView | None] = []
    for probe_name in sorted(facts.probes):
        for path, found in _chains(facts.probes[probe_name].data, ()):
            field = ".".join(path)
            where = _KNOWN.get((probe_name, field), f"{probe_name} probe, field {field or '(top)'}")
            endpoint = ""
            if found.get("name"):
                endpoint = f"{found['name']}:{found['port']}" if found.get("port") else str(found["name"])
            views.append(_chain_view(facts, probe_name, field, where, found, endpoint, reference))
    endpoints: Mapping[str, Mapping[str, Any]] = getattr(facts, "endpoints", None) or {}
    for endpoint in sorted(endpoints):
        found = endpoints[endpoint]
        if isinstance(found, Mapping) and isinstance(found.get("chain_der"), list):
            kind = str(found.get("probe") or "")
            where = _WORKSTATION.get(kind, f"chain the workstation received ({kind or 'endpoint probe'})")
            views.append(
                _chain_view(facts, f"workstation {kind}".strip(), "endpoints", where, found, endpoint, reference)
            )
    return tuple(v for v in views if v is not None)


@dataclass(frozen=True)
class FleetCert:
    """One distinct certificate across the fleet, and every place it was seen."""

    row: CertRow
    seen: tuple[tuple[str, str], ...]  # (host, where) pairs


def fleet_certificates(chains: Sequence[ChainView]) -> tuple[FleetCert, ...]:
    """Distinct parsed certificates (by thumbprint), soonest expiry first; for the fleet timeline."""
    by_thumb: dict[str, tuple[CertRow, list[tuple[str, str]]]] = {}
    for chain in chains:
        for row in chain.certs:
            if row.error or row.days_left is None:
                continue
            entry = by_thumb.setdefault(row.thumbprint, (row, []))
            place = (chain.host, chain.where)
            if place not in entry[1]:
                entry[1].append(place)
    ordered = sorted(by_thumb.values(), key=lambda e: (e[0].days_left, e[0].subject))
    return tuple(FleetCert(row=row, seen=tuple(seen)) for row, seen in ordered)
