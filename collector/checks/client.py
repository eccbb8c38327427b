"""The RDP client's side: the article's fixes (UDP off, gateway tracing, cached credentials),
the disconnects the client itself recorded (RDPClient event 1026) and the servers it tried
(1024: a wrong server name), and agents running on it that are known to intercept TLS
(evidence for SSL inspection, the article's Fix 3)."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collector.checks import Verdict, events, failed_steps, judges, not_read
from collector.codes import USER_INITIATED, describe_disconnect
from collector.model import WHY_UNKNOWN, Evidence, HostFacts, Status

RDPCLIENT_LOG = "Microsoft-Windows-TerminalServices-RDPClient/Operational"


def _v(facts: HostFacts, probe: str) -> str:
    return f"{facts.target.name} (WinRM probe {probe})"


@judges("client.udp-disabled")
def udp_disabled(facts: HostFacts) -> Verdict:
    data = facts.probes["client"].data
    v = _v(facts, "client")
    if why := failed_steps(facts, "client", "client registry"):
        return not_read("The client's UDP settings could not be read", why, v)
    evidence = (
        Evidence("fClientDisableUDP (policy)", str(data["disable_udp_policy"]), v),
        Evidence("DisableUDPTransport", str(data["disable_udp_transport"]), v),
        Evidence("RDGClientTransport", str(data["rdg_client_transport"]), v),
    )
    if data["disable_udp_policy"] == 1 or data["disable_udp_transport"] == 1:
        return Verdict(Status.WARN, "UDP is turned off on this client: it connects over TCP only", evidence)
    return Verdict(Status.PASS, "The client may use UDP", evidence)


@judges("client.rdg-trace")
def rdg_trace(facts: HostFacts) -> Verdict:
    users = facts.probes["client"].data["users"]
    v = _v(facts, "client")
    if why := failed_steps(facts, "client", "user hives"):
        return not_read("The users' RD Gateway client tracing settings could not be read", why, v)
    tracing = [u for u in users if u["rdg_trace"]]
    evidence = []
    for u in tracing:
        who = u["account"] or u["sid"]
        state = f"RDGClientTrace={u['rdg_trace']}, file {u['rdg_trace_file'] or '(default)'}"
        state += ", found" if u["trace_exists"] else ", not written yet"
        evidence.append(Evidence(f"tracing for {who}", state, v))
        evidence += [Evidence(f"trace line ({who})", line, v) for line in u["trace_matches"]]
    if not tracing:
        return Verdict(
            Status.PASS,
            "RD Gateway client tracing is off",
            (Evidence("logged-on users checked", str(len(users)), v),),
        )
    if any("0x904" in line for u in tracing for line in u["trace_matches"]):
        return Verdict(Status.WARN, "The RD Gateway client trace records 0x904 failures", tuple(evidence))
    return Verdict(Status.PASS, "RD Gateway client tracing is on and shows no 0x904", tuple(evidence))


MAX_SERVERS_SHOWN = 20


def _unread_client_log(facts: HostFacts) -> Verdict | None:
    """Why the client's own connection log cannot be judged; None when it can."""
    v = _v(facts, "events")
    title = "The client's connection log could not be read"
    log = events.log_entry(facts, RDPCLIENT_LOG)
    if log is None:
        return not_read(title, f"{RDPCLIENT_LOG} was not read by the events probe", v)
    if not log["available"]:
        return not_read(title, f"{RDPCLIENT_LOG} does not exist on this host", v)
    if why := failed_steps(facts, "events", f"Get-WinEvent {RDPCLIENT_LOG}"):
        return not_read(title, why, v)
    return None


@judges("client.recent-disconnects")
def recent_disconnects(facts: HostFacts) -> Verdict:
    if (unread := _unread_client_log(facts)) is not None:
        return unread
    data = facts.probes["events"].data
    v = _v(facts, "events")
    log = events.log_entry(facts, RDPCLIENT_LOG)
    assert log is not None
    disconnects = [e for e in log["events"] if e["id"] == 1026]
    reasons: Counter[int] = Counter()
    for event in disconnects:
        value = event["data"].get("Value") or event["data"].get("Reason") or ""
        if value.strip().lstrip("-").isdigit():
            reasons[int(value)] += 1
    failures = {code: n for code, n in reasons.items() if code not in USER_INITIATED}
    evidence = tuple(
        Evidence(f"1026 disconnects in {data['since_hours']} h", f"{n} x {describe_disconnect(code)}", v)
        for code, n in reasons.most_common()
    ) or (Evidence(f"1026 disconnects in {data['since_hours']} h", "none", v),)
    if failures:
        worst = max(failures, key=lambda c: failures[c])
        return Verdict(
            Status.WARN,
            f"{sum(failures.values())} failed connection(s) recorded, most often "
            f"{describe_disconnect(worst).split(':')[0]}",
            evidence,
        )
    return Verdict(Status.PASS, "No failed connections recorded by the client", evidence)


def _server_name(value: str) -> str:
    """The server a 1024 names, without a ``:port`` mstsc may carry with it."""
    name, _, port = value.strip().rpartition(":")
    return name if port.isdigit() and name and ":" not in name else value.strip()


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass
class _Attempts:
    """mstsc's connections to one server in the window: how many, and the failed ones' reasons."""

    started: int = 0
    failures: list[int] = field(default_factory=list)


def _mstsc_servers(log: Mapping[str, Any]) -> dict[str, _Attempts]:
    """Each server mstsc started a connection to (event 1024 names it), with the failures that
    followed (1026 with a reason the user did not cause) up to the next 1024, oldest first."""
    floor = datetime.min.replace(tzinfo=UTC)
    servers: dict[str, _Attempts] = {}
    current: _Attempts | None = None
    for event in sorted(log["events"], key=lambda e: events.parse_time(e.get("time_utc")) or floor):
        if event["id"] == 1024 and (name := _server_name(events.field(event, "Value"))):
            current = servers.setdefault(name.lower(), _Attempts())
            current.started += 1
        elif event["id"] == 1026 and current is not None:
            reason = events.disconnect_reason(event)
            if reason is not None and reason not in USER_INITIATED:
                current.failures.append(reason)
    return servers


@judges("client.unlisted-server")
def unlisted_server(facts: HostFacts) -> Verdict:
    """The article's "incorrect client configuration (wrong server name)": connections that failed
    to a server the inventory does not list for this client. An address is not compared (the
    client's facts do not say which host it is); a connection that worked is no finding."""
    if (unread := _unread_client_log(facts)) is not None:
        return unread
    v = _v(facts, "events")
    listed = facts.target.session_hosts
    log = events.log_entry(facts, RDPCLIENT_LOG)
    assert log is not None
    window = f"{facts.probes['events'].data['since_hours']} h"
    servers = _mstsc_servers(log)
    unlisted = [
        name
        for name, seen in servers.items()
        if seen.failures and not _is_address(name) and not any(events.same_host(name, h) for h in listed)
    ]
    evidence = [Evidence("session hosts in the inventory", ", ".join(listed), "inventory")]
    # The unlisted failures first, then the busiest; a helpdesk workstation may try hundreds.
    shown = sorted(servers, key=lambda name: (name not in unlisted, -servers[name].started))
    for name in shown[:MAX_SERVERS_SHOWN]:
        seen = servers[name]
        last = f"; last failure: {describe_disconnect(seen.failures[-1])}" if seen.failures else ""
        evidence.append(
            Evidence(f"mstsc to {name} in {window}", f"{seen.started} started, {len(seen.failures)} failed{last}", v)
        )
    if len(shown) > MAX_SERVERS_SHOWN:
        evidence.append(Evidence("other servers mstsc tried", f"{len(shown) - MAX_SERVERS_SHOWN} more", v))
    if unlisted:
        return Verdict(
            Status.WARN,
            f"mstsc failed to connect to {', '.join(unlisted)}, which the inventory does not list for this client: "
            "a wrong server name?",
            tuple(evidence),
        )
    if not servers:
        return Verdict(Status.PASS, f"mstsc started no connection in {window}", tuple(evidence))
    return Verdict(Status.PASS, "No failed connection to a server the inventory does not list", tuple(evidence))


@judges("client.cached-credentials")
def cached_credentials(facts: HostFacts) -> Verdict:
    users = facts.probes["user_credentials"].data["users"]
    v = _v(facts, "user_credentials")
    evidence = []
    stale = 0
    unread = [f"{u['account']}: {u['error']}" for u in users if u["error"]]
    if why := failed_steps(facts, "user_credentials", "logged-on users"):
        unread.append(why)
    unread += [
        f"probe user_credentials step {e.step} failed: {e.message}"
        for e in facts.probes["user_credentials"].errors
        if e.step.startswith("cmdkey as ")
    ]
    for user in users:
        targets = [t for t in user["targets"] if t.upper().startswith("TERMSRV/") or "RDG" in t.upper()]
        stale += len(targets)
        evidence.append(Evidence(f"saved RDP credentials of {user['account']}", ", ".join(targets) or "none", v))
    if stale:
        return Verdict(Status.WARN, f"{stale} saved Remote Desktop credential(s) could be stale", tuple(evidence))
    if unread:
        return Verdict(
            Status.UNKNOWN,
            "Saved Remote Desktop credentials could not be listed for every user",
            (*evidence, Evidence(WHY_UNKNOWN, "; ".join(unread), v)),
        )
    return Verdict(Status.PASS, "No saved Remote Desktop credentials", tuple(evidence))


# Processes of endpoint agents known to intercept TLS (or steer it through a cloud proxy that
# does), by process name as Get-Process shows it: the client probe's AgentProcesses default.
TLS_AGENTS: dict[str, str] = {
    "ZSATunnel": "Zscaler Client Connector",
    "ZSAService": "Zscaler Client Connector",
    "stAgentSvc": "Netskope Client",
    "nsdiag": "Netskope Client",
    "wssad": "Symantec WSS Agent",
    "PanGPS": "Palo Alto Networks GlobalProtect",
    "PanGPA": "Palo Alto Networks GlobalProtect",
    "vpnagent": "Cisco AnyConnect / Secure Client",
    "acumbrellaagent": "Cisco Umbrella roaming module",
    "fppsvc": "Forcepoint One Endpoint",
    "websense": "Forcepoint (Websense) Endpoint",
}


def agent_product(agent: Mapping[str, Any]) -> str:
    """The product a running agent belongs to: ours by process name, else what the file says."""
    known = {k.lower(): v for k, v in TLS_AGENTS.items()}.get(agent["process"].lower())
    return known or agent["product"] or agent["company"] or agent["process"]


def chain_status(seen: Mapping[str, Any]) -> str:
    """The X509Chain status the client reported for its gateway's chain, or that it reported none."""
    return ", ".join(seen.get("chain_status") or ()) or "no chain errors"


def own_validation_accepts(seen: Mapping[str, Any]) -> bool:
    """Whether the client's own .NET validation accepted its gateway's certificate: SslPolicyErrors
    reads "None" when chain, name and trust all pass."""
    return seen.get("policy_errors") in (None, "None")


def own_validation(seen: Mapping[str, Any]) -> str:
    """That validation in words: a bare "None" would look like a missing value."""
    if own_validation_accepts(seen):
        return f"accepted (SslPolicyErrors None; {chain_status(seen)})"
    return f"refused (SslPolicyErrors {seen['policy_errors']}; {chain_status(seen)})"


@judges("client.tls-intercepting-agent")
def tls_intercepting_agent(facts: HostFacts) -> Verdict:
    data = facts.probes["client"].data
    v = _v(facts, "client")
    running = data["agents"]
    if not running and (why := failed_steps(facts, "client", "TLS-intercepting agents")):
        return not_read("The running processes could not be listed", why, v)
    if not running:
        return Verdict(
            Status.PASS,
            "No agent known to intercept TLS is running",
            (Evidence("processes looked for", ", ".join(data["agents_checked"]) or "none", v),),
        )
    evidence = tuple(
        Evidence(
            f"{a['process']} (PID {a['process_id']})",
            f"{agent_product(a)}; {a['path'] or 'path not readable'}" + (f"; {a['company']}" if a["company"] else ""),
            v,
        )
        for a in running
    )
    products = list(dict.fromkeys(agent_product(a) for a in running))
    return Verdict(
        Status.WARN,
        f"{', '.join(products)} running: it may intercept TLS to the gateway (see rdg.ssl-inspection)",
        evidence,
    )
