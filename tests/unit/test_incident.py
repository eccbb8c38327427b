"""The incident path (collector.incident): a client's connection to a session host through its
gateway, joined across the three hosts' facts, checks and events.

Facts are what the lab's emulator prints for each probe the runner plans (validated against the
probe schemas), on a fixed clock, so every time stamp, skew and gap below is exact."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import jsonschema

from collector import checks, report, runner, schema
from collector.checks import fleet
from collector.incident import incident_paths
from collector.lab import emulate
from collector.lab.emulate import LabCertificate, LabView
from collector.lab.pki import LabCA
from collector.model import (
    HostFacts,
    HostReport,
    HostTarget,
    IncidentPath,
    ProbeResult,
    Role,
    RunReport,
    Status,
    run_from_dict,
)

NOW = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
NOW_ISO = "2026-03-01T08:00:00Z"
CLIENT, GW, SH = "c1.corp.example", "gw.corp.example", "sh.corp.example"
CA = LabCA.create("incident test CA")
CERTS = {kind: LabCertificate.from_pem(CA.issue_server([GW])[0]) for kind in ("server", "other", "listener")}
INSPECTED = LabCertificate.from_pem(LabCA.create("Middlebox CA").issue_server([GW])[0])
RDPCLIENT = "Microsoft-Windows-TerminalServices-RDPClient/Operational"
GATEWAY = "Microsoft-Windows-TerminalServices-Gateway/Operational"
RCM = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
LSM = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"


def svc(name: str, state: str = "Running") -> dict[str, Any]:
    return {
        "name": name,
        "present": True,
        "display_name": name,
        "state": state,
        "start_mode": "Auto",
        "account": "LocalSystem",
        "process_id": 10 if state == "Running" else 0,
    }


SERVICES = [svc(n) for n in ("TermService", "UmRdpService", "SessionEnv", "TSGateway", "W3SVC", "IAS")]


def ev(log: str, eid: int, minutes_ago: float, **data: str) -> dict[str, Any]:
    return {"log": log, "id": eid, "provider": "p", "minutes_ago": minutes_ago, "data": data}


def collect(
    name: str,
    roles: tuple[Role, ...],
    *,
    events: Sequence[dict[str, Any]] = (),
    skew: float = 0.0,
    overrides: dict[str, Any] | None = None,
    services: list[dict[str, Any]] | None = None,
    address: str = "127.0.0.1",
    view: LabView | None = None,
    session_hosts: tuple[str, ...] | None = None,
) -> HostFacts:
    """What the runner would collect from this host: its planned probes, answered on NOW (+ skew)."""
    client = Role.CLIENT in roles
    target = HostTarget(
        name=name,
        address=address,
        roles=roles,
        gateway=GW if client else "",
        session_hosts=session_hosts if session_hosts is not None else ((SH,) if client else ()),
    )
    view = view or LabView(
        addresses={GW: ["10.0.0.5"], SH: ["10.0.0.6"]},
        open_ports=frozenset({(GW, 443), (SH, 3389)}),
        certificates=CERTS,
        gateway_chain=CERTS["server"],
        trusted_roots=(),
        now=lambda: NOW,
    )
    probes = {}
    calls = runner.plan(target)
    for call in calls:
        data = emulate.answer(
            call.probe,
            name=name,
            roles=[r.value for r in roles],
            services=services or SERVICES,
            os={"caption": "Windows", "version": "10.0", "build": "20348"},
            clock_skew_seconds=skew,
            facts=overrides or {},
            events=list(events),
            parameters=call.parameters,
            view=view,
        )
        received = NOW_ISO if call.probe == "host" else ""
        probes[call.probe] = ProbeResult(call.probe, 1, data, duration_s=0.2, received_utc=received)
    return HostFacts(target=target, probes=probes, planned=tuple(c.probe for c in calls))


def judged(*facts: HostFacts) -> list[HostReport]:
    return fleet.evaluate_fleet([HostReport(f, tuple(checks.evaluate(f))) for f in facts])


def paths_of(*facts: HostFacts, since_hours: int = 24) -> IncidentPath:
    [path] = incident_paths(judged(*facts), since_hours=since_hours, now=NOW_ISO)
    return path


def hop(path: IncidentPath, key: str):
    return next(h for h in path.hops if h.key == key)


# client c1's user attempts a connection 12 minutes ago; the gateway refuses it at the CAP 1.2 s
# before mstsc reports 0x904.
REFUSED_CLIENT = [
    ev(RDPCLIENT, 1024, 12.05, Value=SH),
    ev(RDPCLIENT, 1026, 12.0, Value="2308"),
]
REFUSED_GATEWAY = [
    ev(GATEWAY, 201, 12.02, Username="CORP\\c1-user", IpAddress="10.1.1.1", AuthType="NTLM", ErrorCode="23003")
]
HEALTHY_CLIENT = [ev(RDPCLIENT, 1024, 95.0, Value=SH), ev(RDPCLIENT, 1026, 30.0, Value="1")]
HEALTHY_GATEWAY = [
    ev(GATEWAY, 200, 94.03, Username="CORP\\c1-user", IpAddress="10.1.1.1", AuthType="NTLM"),
    ev(GATEWAY, 300, 94.02, Username="CORP\\c1-user", IpAddress="10.1.1.1", Resource=SH),
    ev(GATEWAY, 302, 94.0, Username="CORP\\c1-user", IpAddress="10.1.1.1", Resource=SH, ConnectionProtocol="HTTP"),
]
HEALTHY_SESSION = [
    ev(RCM, 1149, 93.99, Param1="c1-user", Param2="CORP", Param3="10.0.0.5"),
    ev(LSM, 21, 93.98, User="CORP\\c1-user", SessionID="3", Address="10.0.0.5"),
]


def trio(
    client_events: Sequence[dict[str, Any]] = (),
    gateway_events: Sequence[dict[str, Any]] = (),
    session_events: Sequence[dict[str, Any]] = (),
    client_skew: float = 0.0,
) -> tuple[HostFacts, HostFacts, HostFacts]:
    return (
        collect(CLIENT, (Role.CLIENT,), events=client_events, skew=client_skew),
        collect(GW, (Role.GATEWAY,), events=gateway_events),
        collect(SH, (Role.SESSION_HOST,), events=session_events),
    )


def test_a_healthy_connection_passes_every_hop_from_its_events() -> None:
    path = paths_of(*trio(HEALTHY_CLIENT, HEALTHY_GATEWAY, HEALTHY_SESSION))
    assert [(h.key, h.status) for h in path.hops] == [
        ("client-dns", Status.PASS),
        ("client-tcp", Status.PASS),
        ("client-udp", Status.PASS),
        ("client-tls", Status.PASS),
        ("gateway-cap", Status.PASS),
        ("gateway-rap", Status.PASS),
        ("gateway-resource", Status.PASS),
        ("session-logon", Status.PASS),
    ]
    assert path.first_broken is None
    assert hop(path, "gateway-cap").finding == "CAP met: CORP\\c1-user from 10.1.1.1 (NTLM) at 2026-03-01T06:25:58Z"
    assert hop(path, "session-logon").finding == (
        "session logon succeeded: CORP\\c1-user from 10.0.0.5 (session 3) at 2026-03-01T06:26:01Z"
    )
    assert hop(path, "client-tls").finding == (
        "c1.corp.example trusts the certificate it receives (Tls12), and it is the gateway's own (rdg.ssl-inspection)"
    )
    assert hop(path, "client-tls").evidence[0].value == "accepted (SslPolicyErrors None; no chain errors)"
    assert path.symptom == "1 session(s) of c1.corp.example with sh.corp.example in 24 h, all ended normally"
    # The client knows its user as LAB\c1-user, the hosts' events name CORP\c1-user: one account.
    assert path.users == ("LAB\\c1-user",)
    assert [(e.host, e.event_id) for e in path.timeline] == [
        (CLIENT, 1024),
        (GW, 200),
        (GW, 300),
        (GW, 302),
        (SH, 1149),
        (SH, 21),
        (CLIENT, 1026),
    ]
    assert (path.window_start, path.window_end) == ("2026-02-28T08:00:00Z", NOW_ISO)


def test_a_refusal_lines_up_with_the_client_disconnect_only_after_clock_correction() -> None:
    path = paths_of(*trio(REFUSED_CLIENT, REFUSED_GATEWAY, client_skew=-200))
    broken = path.first_broken
    assert broken is not None and (broken.key, broken.host, broken.status) == ("gateway-cap", GW, Status.FAIL)
    assert broken.finding == (
        "CAP denied: CORP\\c1-user from 10.1.1.1 (error 23003: the user (or the client computer) is not in a user "
        "group of any CAP, or NPS refused the request); 1 time(s) in the window, last at 2026-03-01T07:47:58Z"
    )
    rows = {e.label: e.value for e in broken.evidence}
    assert rows["the client's failed attempts"] == (
        "1 of 1 fall within 2 s of one of these events on gw.corp.example once the clocks are corrected "
        "(c1.corp.example's clock is 200 s slow); on the hosts' own clocks they are up to 198 s apart"
    )
    assert {c.host: c.skew_s for c in path.clocks} == {CLIENT: -200.0, GW: 0.0, SH: 0.0}
    assert [(e.host, e.event_id, e.outcome, e.time_utc, e.recorded_utc) for e in path.timeline] == [
        (CLIENT, 1024, "", "2026-03-01T07:47:57Z", "2026-03-01T07:44:37Z"),
        (GW, 201, "failed", "2026-03-01T07:47:58Z", "2026-03-01T07:47:58Z"),
        (CLIENT, 1026, "failed", "2026-03-01T07:48:00Z", "2026-03-01T07:44:40Z"),
    ]
    # Later steps were not reached; they are unknown, not passed.
    assert [(h.key, h.status) for h in path.hops[5:]] == [
        ("gateway-rap", Status.UNKNOWN),
        ("gateway-resource", Status.UNKNOWN),
        ("session-logon", Status.UNKNOWN),
    ]
    assert hop(path, "gateway-rap").finding == (
        "not reached in the window: the connection stops earlier, at connection authorization (CAP)"
    )
    assert (
        path.symptom
        == "1 of 1 connection(s) of c1.corp.example to sh.corp.example in 24 h failed, most often 0x904 (2308)"
    )


def test_without_a_measured_skew_the_attempts_do_not_line_up() -> None:
    client, gateway, host = trio(REFUSED_CLIENT, REFUSED_GATEWAY, client_skew=-200)
    import dataclasses

    unmeasured = dataclasses.replace(
        client, probes={**client.probes, "host": dataclasses.replace(client.probes["host"], received_utc="")}
    )
    path = paths_of(unmeasured, gateway, host)
    assert {c.host: c.skew_s for c in path.clocks}[CLIENT] is None
    rows = {e.label: e.value for e in path.first_broken.evidence}
    assert rows["the client's failed attempts"] == (
        "none of 1 falls within 60 s of these events: they may be other attempts"
    )


def test_an_earlier_refusal_then_success_is_a_warning_and_a_later_step_implies_success() -> None:
    gateway_events = [
        ev(GATEWAY, 201, 50, Username="CORP\\c1-user", ErrorCode="23003"),
        ev(GATEWAY, 200, 20, Username="CORP\\c1-user", AuthType="NTLM"),
        ev(GATEWAY, 302, 19.9, Username="CORP\\c1-user", Resource="SH", ConnectionProtocol="HTTP"),
    ]
    path = paths_of(*trio((), gateway_events, ()))
    cap, rap = hop(path, "gateway-cap"), hop(path, "gateway-rap")
    assert cap.status is Status.WARN
    assert cap.finding == "CAP met: CORP\\c1-user (NTLM) at 2026-03-01T07:40:00Z, after 1 refusal(s) in the window"
    # No 300 was read: the 302 (to the NetBIOS name of this session host) implies the RAP let it through.
    assert rap.status is Status.PASS
    assert rap.finding == "implied by a later step: CORP\\c1-user connected to SH (HTTP) at 2026-03-01T07:40:06Z"


def test_resource_failures_count_only_for_this_session_host() -> None:
    gateway_events = [
        ev(GATEWAY, 200, 30, Username="CORP\\c1-user"),
        ev(GATEWAY, 304, 29, Username="CORP\\c1-user", Resource="other.corp.example", ErrorCode="10060"),
        ev(GATEWAY, 304, 28, Username="CORP\\c1-user", Resource=SH, ErrorCode="10061"),
    ]
    path = paths_of(*trio((), gateway_events, ()))
    broken = path.first_broken
    assert (broken.key, broken.host) == ("gateway-resource", GW)
    assert broken.finding.startswith(
        "could not reach sh.corp.example for CORP\\c1-user (error 10061: connection refused: nothing listens on the "
        "RDP port); 1 time(s) in the window"
    )
    assert all("other.corp.example" not in e.summary for e in path.timeline)


def test_events_of_other_users_and_outside_the_window_are_left_out() -> None:
    gateway_events = [
        ev(GATEWAY, 201, 30, Username="CORP\\someone-else", IpAddress="10.9.9.9", ErrorCode="23003"),
        ev(GATEWAY, 201, 90, Username="CORP\\c1-user", ErrorCode="23003"),
    ]
    path = paths_of(*trio((), gateway_events, ()), since_hours=1)
    assert hop(path, "gateway-cap").status is Status.UNKNOWN
    assert hop(path, "gateway-cap").finding == (
        "no event of this step for LAB\\c1-user or c1.corp.example's addresses in 1 h"
    )
    assert path.timeline == ()


def test_gateway_events_are_matched_by_the_client_address_too() -> None:
    client = collect(CLIENT, (Role.CLIENT,), address="10.1.1.77")
    gateway_events = [ev(GATEWAY, 201, 5, Username="CORP\\other-account", IpAddress="10.1.1.77", ErrorCode="23003")]
    path = paths_of(client, collect(GW, (Role.GATEWAY,), events=gateway_events), collect(SH, (Role.SESSION_HOST,)))
    assert (path.first_broken.key, path.first_broken.status) == ("gateway-cap", Status.FAIL)


def test_host_checks_decide_their_hops_with_their_own_evidence() -> None:
    stopped = [svc(n, "Stopped" if n == "TSGateway" else "Running") for n in ("TSGateway", "W3SVC", "IAS")]
    denied = {"rdp_config": {"user_rights": {"deny_remote_interactive": [{"sid": "S-1-1-0", "account": "Everyone"}]}}}
    path = paths_of(
        collect(CLIENT, (Role.CLIENT,)),
        collect(GW, (Role.GATEWAY,), services=stopped),
        collect(SH, (Role.SESSION_HOST,), overrides=denied, events=HEALTHY_SESSION),
    )
    cap, logon = hop(path, "gateway-cap"), hop(path, "session-logon")
    assert path.first_broken is cap
    assert cap.finding == "TSGateway not running on the gateway (rdg.service-stopped on gw.corp.example)"
    assert cap.evidence[0].label == "rdg.service-stopped: TSGateway"
    # The current state wins over older successes: the host now refuses Everyone.
    assert logon.status is Status.FAIL and logon.host == SH
    assert logon.finding.startswith("Everyone denied log on through Remote Desktop Services")


def test_tls_inspection_breaks_the_tls_hop_with_the_agent_as_evidence() -> None:
    inspected = LabView(
        addresses={GW: ["10.0.0.5"], SH: ["10.0.0.6"]},
        open_ports=frozenset({(GW, 443), (SH, 3389)}),
        certificates=CERTS,
        gateway_chain=INSPECTED,
        trusted_roots=(),
        now=lambda: NOW,
    )
    agent = {"process": "stAgentSvc", "process_id": 77, "path": None, "company": "Netskope", "product": None}
    client = collect(CLIENT, (Role.CLIENT,), overrides={"client": {"agents": [agent]}}, view=inspected)
    path = paths_of(client, collect(GW, (Role.GATEWAY,)), collect(SH, (Role.SESSION_HOST,)))
    broken = path.first_broken
    assert (broken.key, broken.host) == ("client-tls", CLIENT)
    assert broken.finding == (
        "The client receives a certificate re-signed by CN=Middlebox CA,O=rdp-collector lab: TLS inspection on the "
        "path (rdg.ssl-inspection on c1.corp.example)"
    )
    assert broken.evidence[-1].value == "Netskope Client (stAgentSvc, PID 77)"


def test_a_gateway_the_client_cannot_resolve_stops_at_dns() -> None:
    unresolved = LabView(
        addresses={SH: ["10.0.0.6"]},
        open_ports=frozenset(),
        certificates=CERTS,
        gateway_chain=None,
        trusted_roots=(),
        now=lambda: NOW,
    )
    path = paths_of(
        collect(CLIENT, (Role.CLIENT,), view=unresolved),
        collect(GW, (Role.GATEWAY,)),
        collect(SH, (Role.SESSION_HOST,)),
    )
    assert [(h.key, h.status) for h in path.hops[:4]] == [
        ("client-dns", Status.FAIL),
        ("client-tcp", Status.FAIL),
        ("client-udp", Status.PASS),
        ("client-tls", Status.FAIL),
    ]
    assert path.first_broken.finding == "gw.corp.example does not resolve from c1.corp.example: No such host is known"


def test_hosts_missing_from_the_run_leave_their_hops_unknown_with_the_reason() -> None:
    path = paths_of(collect(CLIENT, (Role.CLIENT,), events=REFUSED_CLIENT))
    assert hop(path, "gateway-cap").status is Status.UNKNOWN
    assert hop(path, "gateway-cap").finding == "gw.corp.example is not in this run"
    assert hop(path, "client-udp").finding == "gw.corp.example is not in this run"
    assert {c.host: c.skew_s for c in path.clocks} == {CLIENT: 0.0, GW: None, SH: None}
    assert [e.event_id for e in path.timeline] == [1024, 1026]


def test_only_clients_with_a_gateway_get_paths_one_per_session_host() -> None:
    direct = HostFacts(target=HostTarget(name="d1", address="d1", roles=(Role.CLIENT,), session_hosts=(SH,)))
    two = HostFacts(
        target=HostTarget(name="c2", address="c2", roles=(Role.CLIENT,), gateway=GW, session_hosts=("a", "b"))
    )
    paths = incident_paths(judged(direct, two), since_hours=24, now=NOW_ISO)
    assert [(p.client, p.gateway, p.session_host) for p in paths] == [("c2", GW, "a"), ("c2", GW, "b")]
    assert {h.status for p in paths for h in p.hops} == {Status.UNKNOWN}  # c2 was never collected here


def test_paths_round_trip_through_results_json_and_validate_against_the_schema() -> None:
    hosts = judged(*trio(REFUSED_CLIENT, REFUSED_GATEWAY, client_skew=-200))
    run = RunReport(
        "20260301T080000Z",
        "2026-03-01T07:59:00Z",
        NOW_ISO,
        "0.1.0",
        "ws",
        "inv.yaml",
        tuple(hosts),
        paths=incident_paths(hosts, since_hours=24, now=NOW_ISO),
    )
    data = json.loads(report.results_json(run))
    assert data["paths"][0]["hops"][4]["status"] == "fail"
    assert run_from_dict(data) == run
    assert list(jsonschema.Draft202012Validator(schema.load()).iter_errors(data)) == []


def test_the_gateways_own_test_of_the_rdp_port_decides_when_events_do_not_or_when_it_fails() -> None:
    """A gateway with the session host listed under it in the inventory tests its RDP port itself."""
    closed = LabView(
        addresses={SH: ["10.0.0.6"]},
        open_ports=frozenset(),
        certificates=CERTS,
        gateway_chain=None,
        trusted_roots=(),
        now=lambda: NOW,
    )
    old_success = [ev(GATEWAY, 302, 600, Username="CORP\\c1-user", Resource=SH)]
    gateway = collect(GW, (Role.GATEWAY,), events=old_success, session_hosts=(SH,), view=closed)
    path = paths_of(collect(CLIENT, (Role.CLIENT,)), gateway, collect(SH, (Role.SESSION_HOST,)))
    resource = hop(path, "gateway-resource")
    assert (resource.status, resource.host) == (Status.FAIL, GW)
    assert resource.finding == "no TCP connection from gw.corp.example to sh.corp.example:3389: timed out after 3000 ms"
    reachable = collect(GW, (Role.GATEWAY,), session_hosts=(SH,))
    path = paths_of(collect(CLIENT, (Role.CLIENT,)), reachable, collect(SH, (Role.SESSION_HOST,)))
    assert hop(path, "gateway-resource").finding == "gw.corp.example connects to sh.corp.example:3389 in 2 ms"
