"""The incident path: one client's connection to one session host through its gateway, joined
across the three hosts, with the hop where it stops and the evidence that decided it.

The inventory says client C uses gateway G to reach session host H. Each host saw part of a
connection: C resolved and reached G and received its certificate; G's CAP and RAP authorized
or refused C's user and G reached H or not; H authenticated the user and started a session or
refused the logon. This module joins those views into hops, in the order a connection crosses
them, each with a status, and merges the three hosts' events into one timeline in UTC on the
workstation's clock: each host's time stamps are corrected by its measured clock skew (the host
probe's clock against the workstation's receipt time, as ``host.time-skew`` measures it), so a
client's disconnect and the gateway's refusal that caused it line up even when the clocks do not.

Pure: host reports (facts and the checks' verdicts) in, ``IncidentPath`` out. Where a host check
already judged a hop (a stopped gateway service, a re-signed certificate, a missing logon right)
its verdict is reused, never re-judged; the rest is decided from the facts and the events.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from collector.checks import events as ev
from collector.checks.client import agent_product, chain_status, own_validation, own_validation_accepts
from collector.checks.host import clock_skew_s
from collector.codes import USER_INITIATED, describe_disconnect
from collector.model import (
    WHY_UNKNOWN,
    CheckResult,
    Evidence,
    HostClock,
    HostFacts,
    HostReport,
    IncidentPath,
    PathEvent,
    PathStep,
    Role,
    Status,
)

ISO = "%Y-%m-%dT%H:%M:%SZ"
MATCH_S = 60  # a client's failure and a gateway or host event this close (after correction) are one attempt
TIMELINE_MAX = 100  # newest events kept per path
CROSS_HOST = "across hosts (timeline, UTC on the workstation's clock)"

# Host checks whose failure breaks a hop, by hop and by the side of the path they are judged on.
HOP_CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    "client-tls": {
        "client": ("rdg.ssl-inspection",),
        "gateway": ("rdg.cert-no-private-key", "rdg.cert-binding-mismatch"),
    },
    "gateway-cap": {"gateway": ("rdg.service-stopped", "rdg.policy-config", "host.time-skew", "host.secure-channel")},
    "gateway-resource": {
        "session_host": ("rdp.service-stopped", "rdp.disabled", "rdp.not-listening", "rdp.firewall-closed")
    },
    "session-logon": {"session_host": ("rdp.user-rights", "rdp.licensing", "host.time-skew", "host.secure-channel")},
}

# Which gateway and session host events speak for which hop, and how: "ok", "failed", or "" (context).
# A later gateway step implies the earlier ones passed (a RAP decision means the CAP let the user in).
HOP_EVENTS: dict[str, dict[tuple[str, int], str]] = {
    "gateway-cap": {
        (ev.GATEWAY_LOG, 200): "ok",
        (ev.GATEWAY_LOG, 201): "failed",
        **{(ev.GATEWAY_LOG, i): "ok" for i in (300, 301, 302, 303, 304)},
    },
    "gateway-rap": {
        (ev.GATEWAY_LOG, 300): "ok",
        (ev.GATEWAY_LOG, 301): "failed",
        **{(ev.GATEWAY_LOG, i): "ok" for i in (302, 303, 304)},
    },
    "gateway-resource": {(ev.GATEWAY_LOG, 302): "ok", (ev.GATEWAY_LOG, 303): "", (ev.GATEWAY_LOG, 304): "failed"},
    "session-logon": {
        (ev.RCM_LOG, 1149): "ok",
        (ev.LSM_LOG, 21): "ok",
        (ev.LSM_LOG, 25): "ok",
        **{(ev.LSM_LOG, i): "" for i in (22, 23, 24, 39, 40)},
        (ev.RDPCORE_LOG, 131): "",
        (ev.RDPCORE_LOG, 140): "failed",
        (ev.SECURITY_LOG, 4625): "failed",
    },
}
# The hop an event belongs to itself (a 302 speaks for the CAP hop only by implication).
OWN_HOP = {
    **{(ev.GATEWAY_LOG, i): "gateway-cap" for i in (200, 201)},
    **{(ev.GATEWAY_LOG, i): "gateway-rap" for i in (300, 301)},
    **{(ev.GATEWAY_LOG, i): "gateway-resource" for i in (302, 303, 304)},
    **dict.fromkeys(HOP_EVENTS["session-logon"], "session-logon"),
}
# The outcome an event has on the timeline (its own step, not what it implies for earlier ones).
OWN_OUTCOME = {key: HOP_EVENTS[hop][key] for key, hop in OWN_HOP.items()}
# What each step is called where it is the one a connection stops at.
HOP_NAMES = {
    "client-dns": "name resolution of the gateway",
    "client-tcp": "TCP 443 to the gateway",
    "client-udp": "UDP 3391 to the gateway",
    "client-tls": "TLS to the gateway (its certificate as the client sees it)",
    "gateway-cap": "connection authorization (CAP)",
    "gateway-rap": "resource authorization (RAP)",
    "gateway-resource": "the gateway's connection to the session host",
    "session-logon": "logon on the session host",
}
# Events of one second in the order a connection makes them: mstsc starts, the gateway's CAP, RAP
# and connection, the session host's logon, then the ends.
_STEP_RANK = {
    (ev.RDPCLIENT_LOG, 1024): 0,
    **{(ev.GATEWAY_LOG, i): 1 for i in (200, 201)},
    **{(ev.GATEWAY_LOG, i): 2 for i in (300, 301)},
    **{(ev.GATEWAY_LOG, i): 3 for i in (302, 304)},
    **dict.fromkeys(HOP_EVENTS["session-logon"], 4),
    (ev.GATEWAY_LOG, 303): 5,
    (ev.RDPCLIENT_LOG, 1026): 6,
}
STEPS = {
    "client-dns": "{client} resolves {gateway}",
    "client-tcp": "{client} reaches {gateway} on TCP 443",
    "client-udp": "UDP 3391 between {client} and {gateway} (optional: TCP works without it)",
    "client-tls": "{client} trusts the certificate {gateway} presents",
    "gateway-cap": "{gateway} authenticates and authorizes the user (CAP, events 200/201)",
    "gateway-rap": "{gateway} allows the user to reach {session_host} (RAP, events 300/301)",
    "gateway-resource": "{gateway} reaches {session_host} on the RDP port (events 302/304)",
    "session-logon": "{session_host} accepts the logon (1149, LocalSessionManager 21, Security 4625)",
}


@dataclass(frozen=True)
class _Side:
    """One host of the path: its report (None when not in the run) and how to place its events in time."""

    role: str  # client | gateway | session_host
    name: str
    report: HostReport | None
    skew_s: float | None

    @property
    def facts(self) -> HostFacts | None:
        return self.report.facts if self.report else None

    def data(self, probe: str) -> Mapping[str, Any]:
        """``probe``'s data; call it once ``missing(probe)`` has said it is there."""
        if self.report is None or probe not in self.report.facts.probes:
            raise KeyError(f"{self.name} has no {probe} facts")
        return self.report.facts.probes[probe].data

    def failing(self, check_ids: Iterable[str]) -> list[CheckResult]:
        if self.report is None:
            return []
        wanted = set(check_ids)
        return [c for c in self.report.checks if c.id in wanted and c.status is Status.FAIL]

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.report.checks if c.id == check_id), None) if self.report else None

    def missing(self, probe: str) -> str | None:
        """Why this side's ``probe`` facts are not there, or None when they are."""
        if self.report is None:
            return f"{self.name} is not in this run"
        facts = self.report.facts
        whole = next((p for p in facts.problems if not p.probe), None)
        if whole is not None:
            return f"{self.name} was not collected ({whole.kind.value}): {whole.reason}"
        if probe in facts.probes:
            return None
        failed = next((p for p in facts.problems if p.probe == probe), None)
        if failed is not None:
            return f"probe {probe} on {self.name} failed ({failed.kind.value}): {failed.reason}"
        return f"probe {probe} was not collected on {self.name}"

    def vantage(self, probe: str) -> str:
        return f"{self.name} (WinRM probe {probe})"


@dataclass(frozen=True)
class _Placed:
    """An event read back from a host, placed on the workstation's clock."""

    side: _Side
    log: str
    event: Mapping[str, Any]
    recorded: datetime
    at: datetime

    @property
    def key(self) -> tuple[str, int]:
        return (self.log, self.event["id"])

    def to_model(self, outcome: str) -> PathEvent:
        return PathEvent(
            time_utc=_iso(self.at),
            recorded_utc=_iso(self.recorded),
            host=self.side.name,
            role=Role(self.side.role),
            log=self.log,
            event_id=self.event["id"],
            summary=ev.summary(self.log, self.event),
            outcome=outcome,
        )


def _iso(moment: datetime) -> str:
    return moment.strftime(ISO)


def _offset(skew_s: float) -> str:
    return f"{abs(skew_s):.0f} s {'fast' if skew_s > 0 else 'slow'}"


# --- reading and matching events -----------------------------------------------------------------


def _placed(side: _Side, logs: Iterable[str], start: datetime, end: datetime) -> list[_Placed]:
    """This side's events of ``logs`` within the window, on the workstation's clock."""
    facts = side.facts
    if facts is None or "events" not in facts.probes:
        return []
    shift = timedelta(seconds=side.skew_s or 0.0)
    out = []
    for log in logs:
        for event in ev.events_of(facts, log):
            recorded = ev.parse_time(event.get("time_utc"))
            if recorded is None:
                continue
            at = recorded - shift
            if start <= at <= end + timedelta(seconds=MATCH_S):
                out.append(_Placed(side, log, event, recorded, at))
    return sorted(out, key=_order)


def _order(p: _Placed) -> tuple[datetime, int, int]:
    """Time first; within a second, the step of the connection, then the log's own record order."""
    return (p.at, _STEP_RANK.get(p.key, 3), p.event["record_id"])


def _addresses(facts: HostFacts | None) -> set[str]:
    """Addresses a host is known by (inventory address, the workstation's DNS answer), loopback left out."""
    if facts is None:
        return set()
    candidates = [facts.target.address, *(facts.workstation_dns.get("addresses") or [])]
    out = set()
    for value in candidates:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            continue
        if not (address.is_loopback or address.is_unspecified):
            out.add(str(address))
    return out


def _client_users(facts: HostFacts | None) -> tuple[str, ...]:
    """The client's users as its probes name them (logged-on users; saved-credential owners)."""
    if facts is None:
        return ()
    names: list[str] = []
    if "client" in facts.probes:
        names += [u["account"] for u in facts.probes["client"].data["users"] if u["account"]]
    if "user_credentials" in facts.probes:
        names += [u["account"] for u in facts.probes["user_credentials"].data["users"] if u["account"]]
    return tuple(dict.fromkeys(names))


def _matcher(users: Sequence[str], addresses: set[str]) -> Callable[[_Placed], bool]:
    sams = {ev.sam_name(u) for u in users}

    def matches(p: _Placed) -> bool:
        user = ev.event_user(p.log, p.event)
        if user and ev.sam_name(user) in sams:
            return True
        return bool(addresses) and ev.event_address(p.log, p.event) in addresses

    return matches


def _for_resource(p: _Placed, session_host: str) -> bool:
    """Gateway events that name a resource must name this session host; CAP events name none."""
    if p.log != ev.GATEWAY_LOG or p.event["id"] in (200, 201):
        return True
    return ev.same_host(ev.field(p.event, "Resource"), session_host)


def _client_attempts(client: _Side, session_host: str, start: datetime, end: datetime) -> list[_Placed]:
    """The client's RDPClient events that belong to connections to ``session_host``: each 1024 names
    the server it connects to, and the events after it (up to the next 1024) are that attempt's; events
    before any 1024 in the window are kept, since they cannot be placed elsewhere."""
    out, target = [], ""
    for p in _placed(client, (ev.RDPCLIENT_LOG,), start, end):
        if p.event["id"] == 1024:
            target = ev.field(p.event, "Value")
        if not target or ev.same_host(target, session_host):
            out.append(p)
    return out


def _is_failure(p: _Placed) -> bool:
    reason = ev.disconnect_reason(p.event) if p.event["id"] == 1026 else None
    return reason is not None and reason not in USER_INITIATED


def _symptom(client: _Side, attempts: Sequence[_Placed], session_host: str, since_hours: int) -> str:
    if client.facts is None or "events" not in client.facts.probes:
        return f"what {client.name} recorded is not known: {client.missing('events')}"
    ends = [p for p in attempts if p.event["id"] == 1026]
    if not ends:
        return f"{client.name} recorded no disconnect from {session_host} in {since_hours} h"
    failures = [p for p in ends if _is_failure(p)]
    if not failures:
        return f"{len(ends)} session(s) of {client.name} with {session_host} in {since_hours} h, all ended normally"
    reasons: dict[int, int] = {}
    for p in failures:
        code = ev.disconnect_reason(p.event)
        if code is not None:
            reasons[code] = reasons.get(code, 0) + 1
    worst = max(reasons, key=lambda c: reasons[c])
    return (
        f"{len(failures)} of {len(ends)} connection(s) of {client.name} to {session_host} in {since_hours} h "
        f"failed, most often {describe_disconnect(worst).split(':')[0]}"
    )


# --- deciding hops -------------------------------------------------------------------------------


def _from_checks(failing: Sequence[CheckResult], host: str) -> tuple[str, tuple[Evidence, ...]]:
    first = failing[0]
    evidence = tuple(
        Evidence(f"{c.id}: {e.label}", e.value, e.vantage)
        for c in failing
        for e in c.evidence
        if e.label != WHY_UNKNOWN
    )
    return f"{first.title} ({first.id} on {host})", evidence


def _checks_verdict(hop: str, sides: Mapping[str, _Side]) -> tuple[_Side, list[CheckResult]] | None:
    for role, ids in HOP_CHECKS.get(hop, {}).items():
        failing = sides[role].failing(ids)
        if failing:
            return sides[role], failing
    return None


_Static = tuple[_Side, Status, str, tuple[Evidence, ...]]  # who decided, status, finding, evidence


def _static_dns(client: _Side, gateway: str) -> _Static:
    why = client.missing("network")
    if why:
        return client, Status.UNKNOWN, why, ()
    answer = next((a for a in client.data("network")["dns"] if ev.same_host(a["name"], gateway)), None)
    if answer is None:
        return client, Status.UNKNOWN, f"{client.name}'s network probe did not resolve {gateway}", ()
    value = ", ".join(answer["addresses"]) or f"does not resolve: {answer['error']}"
    evidence = (Evidence(f"resolve {gateway}", value, client.vantage("network")),)
    if not answer["addresses"]:
        return client, Status.FAIL, f"{gateway} does not resolve from {client.name}: {answer['error']}", evidence
    return client, Status.PASS, f"resolves {gateway} to {', '.join(answer['addresses'])}", evidence


def _static_tcp(client: _Side, gateway: str) -> _Static:
    why = client.missing("network")
    if why:
        return client, Status.UNKNOWN, why, ()
    attempt = next(
        (a for a in client.data("network")["tcp"] if ev.same_host(a["name"], gateway) and a["port"] == 443),
        None,
    )
    if attempt is None:
        return client, Status.UNKNOWN, f"{client.name}'s network probe did not connect to {gateway}:443", ()
    value = f"connected in {attempt['elapsed_ms']} ms" if attempt["connected"] else f"FAILED: {attempt['error']}"
    evidence = (Evidence(f"TCP {gateway}:443", value, client.vantage("network")),)
    if not attempt["connected"]:
        return (
            client,
            Status.FAIL,
            f"no TCP connection from {client.name} to {gateway}:443: {attempt['error']}",
            evidence,
        )
    return client, Status.PASS, f"connects to {gateway}:443 in {attempt['elapsed_ms']} ms", evidence


def _static_udp(client: _Side, gateway: _Side, attempts: Sequence[_Placed]) -> _Static:
    evidence: list[Evidence] = []
    client_off: bool | None = None
    if client.missing("client") is None:
        data = client.data("client")
        client_off = data["disable_udp_policy"] == 1 or data["disable_udp_transport"] == 1
        evidence.append(
            Evidence(
                "client UDP settings",
                f"fClientDisableUDP={data['disable_udp_policy']}, DisableUDPTransport={data['disable_udp_transport']}",
                client.vantage("client"),
            )
        )
    listening: bool | None = None
    if gateway.missing("listeners") is None:
        udp = [u for u in gateway.data("listeners")["udp"] if u["port"] == 3391]
        listening = bool(udp)
        evidence.append(
            Evidence("UDP 3391 on the gateway", "listening" if udp else "nothing listens", gateway.vantage("listeners"))
        )
    established = [p for p in attempts if p.event["id"] == 1103]
    if established:
        evidence.append(
            Evidence("UDP transport established (1103)", f"{len(established)} time(s)", client.vantage("events"))
        )
    if client_off:
        return client, Status.WARN, f"UDP is turned off on {client.name}: it connects over TCP only", tuple(evidence)
    if listening is False:
        return gateway, Status.WARN, f"{gateway.name} does not listen on UDP 3391: TCP only", tuple(evidence)
    if client_off is False and listening:
        finding = f"{gateway.name} listens on UDP 3391 and {client.name} may use UDP"
        return gateway, Status.PASS, finding, tuple(evidence)
    reasons = [r for r in (client.missing("client"), gateway.missing("listeners")) if r]
    return client, Status.UNKNOWN, "; ".join(reasons) or "UDP 3391 could not be judged", tuple(evidence)


def _static_tls(client: _Side, gateway: str) -> _Static:
    why = client.missing("client")
    if why:
        return client, Status.UNKNOWN, why, ()
    seen = client.data("client")["gateway_tls"]
    v = client.vantage("client")
    if not seen:
        return client, Status.UNKNOWN, f"{client.name} did not open TLS to {gateway}", ()
    if not seen["connected"] or not seen["chain_der"]:
        error = seen["error"] or "no certificate received"
        return (
            client,
            Status.FAIL,
            f"no TLS session from {client.name} to {gateway}: {error}",
            (Evidence("TLS", error, v),),
        )
    evidence = (Evidence("the client's own chain validation", own_validation(seen), v),)
    if not own_validation_accepts(seen):
        return (
            client,
            Status.FAIL,
            f"{client.name} does not trust the certificate {gateway} presents "
            f"({seen['policy_errors']}: {chain_status(seen)})",
            evidence,
        )
    return (
        client,
        Status.PASS,
        f"{client.name} trusts the certificate it receives ({seen['protocol'] or 'TLS'})",
        evidence,
    )


def _gateway_tcp(gateway: _Side, host: str) -> _Static | None:
    """The gateway's own TCP test of the session host's RDP port, when the inventory lists the host
    under the gateway (its network probe then tests it); None when it was not tested."""
    if gateway.missing("network") is not None:
        return None
    attempt = next(
        (a for a in gateway.data("network")["tcp"] if ev.same_host(a["name"], host) and a["port"] == 3389),
        None,
    )
    if attempt is None:
        return None
    value = f"connected in {attempt['elapsed_ms']} ms" if attempt["connected"] else f"FAILED: {attempt['error']}"
    evidence = (Evidence(f"TCP {host}:3389", value, gateway.vantage("network")),)
    if not attempt["connected"]:
        return (
            gateway,
            Status.FAIL,
            f"no TCP connection from {gateway.name} to {host}:3389: {attempt['error']}",
            evidence,
        )
    return gateway, Status.PASS, f"{gateway.name} connects to {host}:3389 in {attempt['elapsed_ms']} ms", evidence


def _agents(client: _Side) -> tuple[Evidence, ...]:
    if client.missing("client") is not None:
        return ()
    return tuple(
        Evidence(
            "TLS-intercepting agent running",
            f"{agent_product(a)} ({a['process']}, PID {a['process_id']})",
            client.vantage("client"),
        )
        for a in client.data("client")["agents"]
    )


def _event_rows(found: Sequence[_Placed], outcome: Callable[[_Placed], str]) -> tuple[Evidence, ...]:
    """Failed events grouped by what they say (count, last time), then the last success."""
    groups: dict[str, list[_Placed]] = {}
    for p in found:
        if outcome(p) == "failed":
            groups.setdefault(ev.summary(p.log, p.event), []).append(p)
    rows = [
        Evidence(
            f"event {ps[-1].event['id']}",
            f"{text}: {len(ps)} time(s), last at {_iso(ps[-1].at)}",
            ps[-1].side.vantage("events"),
        )
        for text, ps in sorted(groups.items(), key=lambda g: -len(g[1]))
    ]
    ok = [p for p in found if outcome(p) == "ok"]
    if ok:
        last = ok[-1]
        rows.append(
            Evidence(
                f"event {last.event['id']}",
                f"{ev.summary(last.log, last.event)} at {_iso(last.at)}",
                last.side.vantage("events"),
            )
        )
    return tuple(rows)


def _correlation(failed: Sequence[_Placed], client: _Side, attempts: Sequence[_Placed]) -> tuple[Evidence, ...]:
    """How the client's failed attempts line up with these failures, after and before clock correction."""
    failures = [p for p in attempts if _is_failure(p)]
    if not failed or not failures:
        return ()
    matched, raw_gaps, gaps = 0, [], []
    for attempt in failures:
        nearest = min(failed, key=lambda p: abs((p.at - attempt.at).total_seconds()))
        gap = abs((nearest.at - attempt.at).total_seconds())
        if gap <= MATCH_S:
            matched += 1
            gaps.append(gap)
            raw_gaps.append(abs((nearest.recorded - attempt.recorded).total_seconds()))
    if not matched:
        return (
            Evidence(
                "the client's failed attempts",
                f"none of {len(failures)} falls within {MATCH_S} s of these events: they may be other attempts",
                CROSS_HOST,
            ),
        )
    host = failed[0].side
    value = f"{matched} of {len(failures)} fall within {max(gaps):.0f} s of one of these events on {host.name}"
    skewed = [side for side in (client, host) if side.skew_s]
    if skewed:
        clocks = ", ".join(f"{side.name}'s clock is {_offset(side.skew_s or 0.0)}" for side in skewed)
        value += f" once the clocks are corrected ({clocks})"
        if max(raw_gaps) > MATCH_S:
            value += f"; on the hosts' own clocks they are up to {max(raw_gaps):.0f} s apart"
    return (Evidence("the client's failed attempts", value, CROSS_HOST),)


def _decide_events(
    hop: str, found: Sequence[_Placed], client: _Side, attempts: Sequence[_Placed]
) -> tuple[Status, str, tuple[Evidence, ...]] | None:
    """The latest event that speaks for the hop decides it; earlier refusals leave a warning."""
    table = HOP_EVENTS[hop]

    def outcome(p: _Placed) -> str:
        return table.get(p.key, "")

    decisive = [p for p in found if outcome(p) in ("ok", "failed")]
    if not decisive:
        return None
    rows = _event_rows(found, outcome)
    failed = [p for p in decisive if outcome(p) == "failed"]
    # The hop's own events speak first (a 200 says more about the CAP than the 303 it implies); an
    # implied success counts when it is later than the hop's own last refusal (its 200 not read).
    own = [p for p in decisive if OWN_HOP.get(p.key) == hop]
    last = own[-1] if own and (outcome(own[-1]) == "ok" or own[-1] is decisive[-1]) else decisive[-1]
    when = _iso(last.at)
    if outcome(last) == "failed":
        text = f"{ev.summary(last.log, last.event)}; {len(failed)} time(s) in the window, last at {when}"
        return Status.FAIL, text, (*rows, *_correlation(failed, client, attempts))
    implied = OWN_HOP.get(last.key) != hop
    what = ev.summary(last.log, last.event)
    text = f"implied by a later step: {what} at {when}" if implied else f"{what} at {when}"
    if failed:
        return Status.WARN, f"{text}, after {len(failed)} refusal(s) in the window", rows
    return Status.PASS, text, rows


def _hop(
    key: str, names: Mapping[str, str], host: str, status: Status, finding: str, evidence: Sequence[Evidence]
) -> PathStep:
    return PathStep(key, STEPS[key].format(**names), host, status, finding, tuple(evidence))


def _path(
    client_report: HostReport, session_host: str, by_name: Mapping[str, HostReport], since_hours: int, end: datetime
) -> IncidentPath:
    target = client_report.facts.target
    start = end - timedelta(hours=since_hours)

    def side(role: str, name: str) -> _Side:
        report = by_name.get(name.lower())
        return _Side(role, report.name if report else name, report, clock_skew_s(report.facts) if report else None)

    client = side("client", target.name)
    gateway = side("gateway", target.gateway)
    host = side("session_host", session_host)
    sides = {"client": client, "gateway": gateway, "session_host": host}
    names = {"client": client.name, "gateway": gateway.name, "session_host": host.name}

    users = _client_users(client.facts)
    attempts = _client_attempts(client, host.name, start, end)
    from_client = _matcher(users, _addresses(client.facts))
    at_gateway = [
        p for p in _placed(gateway, (ev.GATEWAY_LOG,), start, end) if from_client(p) and _for_resource(p, host.name)
    ]
    via = _matcher(users, _addresses(client.facts) | _addresses(gateway.facts))
    session_logs = (ev.RCM_LOG, ev.LSM_LOG, ev.RDPCORE_LOG, ev.SECURITY_LOG)
    at_host = [p for p in _placed(host, session_logs, start, end) if p.key in HOP_EVENTS["session-logon"] and via(p)]

    hops: list[PathStep] = []
    statics = {
        "client-dns": lambda: _static_dns(client, gateway.name),
        "client-tcp": lambda: _static_tcp(client, gateway.name),
        "client-udp": lambda: _static_udp(client, gateway, attempts),
        "client-tls": lambda: _static_tls(client, gateway.name),
    }
    event_hops = {
        "gateway-cap": (gateway, at_gateway),
        "gateway-rap": (gateway, at_gateway),
        "gateway-resource": (gateway, at_gateway),
        "session-logon": (host, at_host),
    }
    for key in STEPS:
        broken = next((h for h in hops if h.status is Status.FAIL), None)
        judged = _checks_verdict(key, sides)
        if judged is not None:
            where, failing = judged
            finding, evidence = _from_checks(failing, where.name)
            extra = _agents(client) if key == "client-tls" else ()
            hops.append(_hop(key, names, where.name, Status.FAIL, finding, (*evidence, *extra)))
            continue
        if key in statics:
            decider, status, finding, evidence = statics[key]()
            if key == "client-tls":
                evidence = (*evidence, *_agents(client))
                inspection = client.check("rdg.ssl-inspection")
                if status is Status.PASS and inspection is not None and inspection.status is Status.PASS:
                    finding += ", and it is the gateway's own (rdg.ssl-inspection)"
            hops.append(_hop(key, names, decider.name, status, finding, evidence))
            continue
        owner, found = event_hops[key]
        tested = _gateway_tcp(gateway, host.name) if key == "gateway-resource" else None
        if tested is not None and tested[1] is Status.FAIL:  # the gateway cannot reach the host now
            hops.append(_hop(key, names, tested[0].name, *tested[1:]))
            continue
        decided = _decide_events(key, [p for p in found if p.key in HOP_EVENTS[key]], client, attempts)
        if decided is not None:
            hops.append(_hop(key, names, owner.name, *decided))
            continue
        if tested is not None:
            hops.append(_hop(key, names, tested[0].name, *tested[1:]))
            continue
        why = owner.missing("events")
        if why:
            finding = why
        elif broken is not None:
            finding = f"not reached in the window: the connection stops earlier, at {HOP_NAMES[broken.key]}"
        else:
            who = ", ".join(users) or "the client's users (none logged on)"
            finding = f"no event of this step for {who} or {client.name}'s addresses in {since_hours} h"
        hops.append(_hop(key, names, owner.name, Status.UNKNOWN, finding, ()))

    placed = sorted((*attempts, *at_gateway, *at_host), key=_order)
    timeline = [
        p.to_model(("failed" if _is_failure(p) else "") if p.log == ev.RDPCLIENT_LOG else OWN_OUTCOME.get(p.key, ""))
        for p in placed
    ]
    return IncidentPath(
        client=client.name,
        gateway=gateway.name,
        session_host=host.name,
        users=users,
        since_hours=since_hours,
        window_start=_iso(start),
        window_end=_iso(end),
        symptom=_symptom(client, attempts, host.name, since_hours),
        hops=tuple(hops),
        timeline=tuple(timeline[-TIMELINE_MAX:]),
        clocks=tuple(HostClock(s.name, s.skew_s) for s in (client, gateway, host)),
    )


def incident_paths(reports: Sequence[HostReport], *, since_hours: int, now: str) -> tuple[IncidentPath, ...]:
    """One path per client that has a gateway, per session host it uses, in inventory order.

    ``now`` (ISO 8601 UTC, the workstation's clock) ends the ``--since`` window the events are
    placed in; the reports are the run's, after the cross-host checks."""
    end = ev.parse_time(now)
    if end is None:
        raise ValueError(f"not an ISO 8601 time: {now!r}")
    by_name = {r.name.lower(): r for r in reports}
    paths = []
    for report in reports:
        target = report.facts.target
        if Role.CLIENT in target.roles and target.gateway:
            paths += [_path(report, host, by_name, since_hours, end) for host in target.session_hosts]
    return tuple(paths)
