"""Every check in the catalogue, over recorded facts, when the facts it needs are missing: the result
is ``unknown`` with the reason (the probe failed, a step of it failed on the host, the opt-in probe
was not run, the host or the endpoint could not be reached, the other host was not collected),
never pass. Where the suite had no pass or no problem case for an id, it is added here too.

One table per way facts go missing, parametrized by check id; the meta-tests derive the ids from
the catalogue (what ``collect rules`` lists), so a check added without an unknown case fails here.
Host facts are the lab's healthy baselines (``facts_for``, validated against the probe schemas);
the workstation's probes are recorded results fed to the same functions a collection runs.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from collector import certs, workstation
from collector.checks import catalogue, evaluate, fleet, rules
from collector.checks import certs as cert_checks
from collector.checks import endpoints as ep
from collector.checks.events import GATEWAY_LOG, RDPCLIENT_LOG
from collector.contract import OPT_IN_PROBES
from collector.lab.pki import LabPKI
from collector.model import (
    CheckResult,
    CollectionFailure,
    CollectionProblem,
    HostFacts,
    HostReport,
    HostTarget,
    ProbeError,
    Role,
    Status,
)
from collector.probes import Failure
from collector.probes.rdg_http import HttpAnswer, RdgHttpResult
from collector.probes.rdp import PROTOCOL_HYBRID, PROTOCOL_SSL, Negotiation, RdpResult
from collector.probes.tcp import TcpResult
from collector.probes.tls import TlsHandshake, TlsResult
from tests.cert_variants import CERT_CHECK_IDS, EXPECTED_PROBLEMS
from tests.unit.test_checks_catalogue import CASES as CATALOGUE_CASES
from tests.unit.test_checks_catalogue import ROLES, facts_for, verdict
from tests.unit.test_checks_diagnosis import CASES as DIAGNOSIS_CASES
from tests.unit.test_checks_fleet import GOOD, b64, client, gateway, resolved_by_workstation, thumb, with_network

COLLECTION_IDS = {f"collect.{kind.value}" for kind in CollectionFailure}
PROBLEM = (Status.FAIL, Status.WARN)


def why_unknown(result: CheckResult) -> str:
    """The title and every "why unknown" line: where an unknown result says its cause."""
    return " | ".join([result.title, *(e.value for e in result.evidence if e.label == "why unknown")])


def failed_probe(facts: HostFacts, probe: str, problem: CollectionProblem) -> HostFacts:
    return dataclasses.replace(
        facts, probes={k: v for k, v in facts.probes.items() if k != probe}, problems=(*facts.problems, problem)
    )


def with_step_error(facts: HostFacts, probe: str, step: str, message: str) -> HostFacts:
    recorded = dataclasses.replace(facts.probes[probe], errors=(ProbeError(step, message),))
    return dataclasses.replace(facts, probes={**facts.probes, probe: recorded})


# --- the probe a host check needs failed -------------------------------------------------------

# (check id, a role it applies to, the probe it needs): every check judged over WinRM facts.
PROBE_FAILED: list[tuple[str, str, str]] = [
    ("host.time-skew", "client", "host"),
    ("host.secure-channel", "gateway", "host"),
    ("host.tls-protocols", "session_host", "host"),
    ("host.credssp-oracle", "client", "host"),
    ("host.pending-reboot", "gateway", "host"),
    ("net.dns-unresolved", "client", "network"),
    ("net.tcp-blocked", "gateway", "network"),
    ("net.proxy", "client", "network"),
    ("rdp.service-stopped", "session_host", "services"),
    ("rdg.service-stopped", "gateway", "services"),
    ("rdp.disabled", "session_host", "rdp_config"),
    ("rdp.not-listening", "session_host", "listeners"),
    ("rdp.firewall-closed", "session_host", "rdp_config"),
    ("rdp.nla-disabled", "session_host", "rdp_config"),
    ("rdp.security-layer", "session_host", "rdp_config"),
    ("rdp.port-nondefault", "session_host", "rdp_config"),
    ("rdp.user-rights", "session_host", "rdp_config"),
    ("rdp.licensing", "session_host", "rdp_config"),
    ("rdg.cert-binding-mismatch", "gateway", "gateway"),
    ("rdg.cert-no-private-key", "gateway", "gateway"),
    ("net.udp-3391", "gateway", "listeners"),
    ("rdg.policy-config", "gateway", "gateway"),
    ("rdg.iis-trust", "gateway", "gateway"),
    ("rdg.policy-denied", "gateway", "events"),
    ("rdg.resource-unreachable", "gateway", "events"),
    ("client.udp-disabled", "client", "client"),
    ("client.rdg-trace", "client", "client"),
    ("client.recent-disconnects", "client", "events"),
    ("client.unlisted-server", "client", "events"),
    ("client.cached-credentials", "client", "user_credentials"),
    ("client.tls-intercepting-agent", "client", "client"),
]


@pytest.mark.parametrize(("check_id", "role", "probe"), PROBE_FAILED, ids=[row[0] for row in PROBE_FAILED])
def test_unknown_when_the_probe_it_needs_failed(check_id: str, role: str, probe: str) -> None:
    problem = CollectionProblem(CollectionFailure.BAD_OUTPUT, "data.x: Field required", probe)
    result = verdict(failed_probe(facts_for(role), probe, problem), check_id)
    assert result.status is Status.UNKNOWN, result
    assert result.evidence[0].label == "why unknown"
    assert result.evidence[0].value.startswith(f"probe {probe} failed (bad-output): data.x: Field required")
    assert result.remediation  # still says what the check is about and how to fix it


@pytest.mark.parametrize(("check_id", "role", "probe"), PROBE_FAILED, ids=[row[0] for row in PROBE_FAILED])
def test_unknown_when_the_host_was_not_collected(check_id: str, role: str, probe: str) -> None:
    problem = CollectionProblem(CollectionFailure.AUTH_FAILED, "the server rejected the credentials (401)")
    facts = dataclasses.replace(facts_for(role), probes={}, problems=(problem,))
    result = verdict(facts, check_id)
    assert result.status is Status.UNKNOWN, result
    assert result.evidence[0].value == "host not collected (auth-failed): the server rejected the credentials (401)"


# --- the opt-in probe was not run --------------------------------------------------------------

# (check id, role, the opt-in probe it needs, the flag that runs it)
OPT_IN: list[tuple[str, str, str, str]] = [
    ("client.cached-credentials", "client", "user_credentials", "--user-context"),
]


@pytest.mark.parametrize(("check_id", "role", "probe", "flag"), OPT_IN, ids=[row[0] for row in OPT_IN])
def test_unknown_when_the_opt_in_probe_was_not_run_says_which_flag(
    check_id: str, role: str, probe: str, flag: str
) -> None:
    everything = facts_for(role)
    without = dataclasses.replace(everything, probes={k: v for k, v in everything.probes.items() if k != probe})
    assert probe not in without.planned  # the runner plans it only with the flag
    result = verdict(without, check_id)
    assert result.status is Status.UNKNOWN
    assert result.evidence[0].value.startswith(f"probe {probe} was not collected; ")
    assert flag in result.evidence[0].value


# --- a step of the probe failed on the host: the fields it reads are empty, not facts ------------

MESSAGE = "Access is denied. (0x80070005)"

# (check id, role, probe, the step that failed, what the step left empty, words of the reason; by default
# "probe P step S failed: MESSAGE"). Older checks say it in their own words, which name the step or its error.
STEP_FAILED: list[tuple[str, str, str, str, dict[str, Any], str]] = [
    ("host.secure-channel", "client", "host", "Win32_ComputerSystem", {"host": {"part_of_domain": None}}, ""),
    ("host.secure-channel", "client", "host", "Test-ComputerSecureChannel", {"host": {"secure_channel": None}}, ""),
    ("host.tls-protocols", "client", "host", "SCHANNEL", {"host": {"schannel": []}}, ""),
    ("host.credssp-oracle", "client", "host", "crypto policy", {"host": {"credssp_oracle": None}}, ""),
    ("host.pending-reboot", "client", "host", "pending reboot", {"host": {"pending_reboot": []}}, ""),
    ("net.proxy", "client", "network", "WinHTTP proxy", {"network": {"winhttp": None}}, ""),
    ("rdp.service-stopped", "session_host", "services", "Win32_Service", {"services": {"services": []}}, MESSAGE),
    ("rdg.service-stopped", "gateway", "services", "Win32_Service", {"services": {"services": []}}, MESSAGE),
    (
        "rdp.disabled",
        "session_host",
        "rdp_config",
        "registry",
        {"rdp_config": {"deny_ts_connections": None, "deny_ts_connections_policy": None}},
        "fDenyTSConnections could not be read",
    ),
    ("rdp.not-listening", "session_host", "listeners", "Get-NetTCPConnection", {"listeners": {"tcp": []}}, ""),
    (
        "rdp.firewall-closed",
        "session_host",
        "rdp_config",
        "Get-NetFirewallRule",
        {"rdp_config": {"firewall_rules": []}},
        "",
    ),
    (
        "rdp.nla-disabled",
        "session_host",
        "rdp_config",
        "registry",
        {"rdp_config": {"user_authentication": None, "user_authentication_policy": None, "general_setting": None}},
        "The NLA setting could not be read",
    ),
    (
        "rdp.security-layer",
        "session_host",
        "rdp_config",
        "registry",
        {"rdp_config": {"security_layer": None, "security_layer_policy": None, "general_setting": None}},
        "The security layer could not be read",
    ),
    ("rdp.port-nondefault", "session_host", "rdp_config", "registry", {"rdp_config": {"port_number": None}}, ""),
    (
        "rdp.user-rights",
        "session_host",
        "rdp_config",
        "user rights (secedit /export)",
        {"rdp_config": {"user_rights": None}},
        MESSAGE,
    ),
    (
        "rdp.licensing",
        "session_host",
        "rdp_config",
        "Win32_TerminalServiceSetting",
        {"rdp_config": {"licensing": {"terminal_server_mode": None}}},
        "Win32_TerminalServiceSetting could not be read",
    ),
    (
        "rdg.cert-binding-mismatch",
        "gateway",
        "gateway",
        "Win32_TSGatewayServerSettings",
        {"gateway": {"settings": None, "certificate": None}},
        "",
    ),
    ("rdg.cert-binding-mismatch", "gateway", "gateway", "HTTP.sys bindings", {"gateway": {"http_bindings": []}}, ""),
    ("rdg.cert-no-private-key", "gateway", "gateway", "gateway certificate", {"gateway": {"certificate": None}}, ""),
    (
        "rdg.cert-no-private-key",
        "gateway",
        "gateway",
        "Win32_TSGatewayServerSettings",
        {"gateway": {"settings": None, "certificate": None}},
        "",
    ),
    ("net.udp-3391", "gateway", "listeners", "Get-NetUDPEndpoint", {"listeners": {"udp": []}}, ""),
    ("rdg.policy-config", "gateway", "gateway", "CAP", {"gateway": {"caps": []}}, ""),
    (
        "rdg.policy-config",
        "gateway",
        "gateway",
        "Win32_TSGatewayServerSettings",
        {"gateway": {"settings": None, "caps": []}},
        "",
    ),
    (
        "rdg.iis-trust",
        "gateway",
        "gateway",
        "IIS trust levels",
        {"gateway": {"iis_applications": None}},
        "IIS's configuration could not be read",
    ),
    ("rdg.policy-denied", "gateway", "events", f"Get-WinEvent {GATEWAY_LOG}", {}, ""),
    ("rdg.resource-unreachable", "gateway", "events", f"Get-WinEvent {GATEWAY_LOG}", {}, ""),
    (
        "client.udp-disabled",
        "client",
        "client",
        "client registry",
        {"client": {"disable_udp_policy": None, "disable_udp_transport": None, "rdg_client_transport": None}},
        "",
    ),
    ("client.rdg-trace", "client", "client", "user hives", {"client": {"users": []}}, ""),
    ("client.recent-disconnects", "client", "events", f"Get-WinEvent {RDPCLIENT_LOG}", {}, ""),
    ("client.unlisted-server", "client", "events", f"Get-WinEvent {RDPCLIENT_LOG}", {}, ""),
    (
        "client.cached-credentials",
        "client",
        "user_credentials",
        "logged-on users",
        {"user_credentials": {"users": []}},
        "",
    ),
    (
        "client.cached-credentials",
        "client",
        "user_credentials",
        "cmdkey as LAB\\jdoe",
        {"user_credentials": {"users": [{"account": "LAB\\jdoe", "targets": [], "error": None}]}},
        "",
    ),
    ("client.tls-intercepting-agent", "client", "client", "TLS-intercepting agents", {"client": {"agents": []}}, ""),
]


@pytest.mark.parametrize(
    ("check_id", "role", "probe", "step", "emptied", "words"), STEP_FAILED, ids=[row[0] for row in STEP_FAILED]
)
def test_unknown_when_the_probe_step_that_reads_its_facts_failed(
    check_id: str, role: str, probe: str, step: str, emptied: dict[str, Any], words: str
) -> None:
    facts = with_step_error(facts_for(role, emptied), probe, step, MESSAGE)
    result = verdict(facts, check_id)
    assert result.status is Status.UNKNOWN, result
    said = " | ".join([result.title, *(e.value for e in result.evidence)])
    assert (words or f"probe {probe} step {step} failed: {MESSAGE}") in said


@pytest.mark.parametrize(
    ("log", "check_id", "words"),
    [
        ("RDPClient not read", "client.recent-disconnects", f"{RDPCLIENT_LOG} was not read by the events probe"),
        ("RDPClient missing", "client.recent-disconnects", f"{RDPCLIENT_LOG} does not exist on this host"),
        ("RDPClient not read", "client.unlisted-server", f"{RDPCLIENT_LOG} was not read by the events probe"),
        ("RDPClient missing", "client.unlisted-server", f"{RDPCLIENT_LOG} does not exist on this host"),
    ],
    ids=["client.recent-disconnects"] * 2 + ["client.unlisted-server"] * 2,
)
def test_unknown_when_the_clients_event_log_was_not_read(log: str, check_id: str, words: str) -> None:
    facts = facts_for("client")
    data = dict(facts.probes["events"].data)
    if log.endswith("not read"):
        data["logs"] = [entry for entry in data["logs"] if entry["log"] != RDPCLIENT_LOG]
    else:
        data["logs"] = [
            dict(entry, available=False, events=[]) if entry["log"] == RDPCLIENT_LOG else entry
            for entry in data["logs"]
        ]
    events = dataclasses.replace(facts.probes["events"], data=data)
    result = verdict(dataclasses.replace(facts, probes={**facts.probes, "events": events}), check_id)
    assert result.status is Status.UNKNOWN
    assert words in why_unknown(result)


def test_a_user_whose_vault_could_not_be_read_is_unknown_but_a_stale_credential_still_warns() -> None:
    unread = {"account": "LAB\\a", "targets": [], "error": "cmdkey did not finish within 30 s"}
    stale = {"account": "LAB\\b", "targets": ["TERMSRV/sh.corp.example"], "error": None}
    result = verdict(facts_for("client", {"user_credentials": {"users": [unread]}}), "client.cached-credentials")
    assert result.status is Status.UNKNOWN
    assert "LAB\\a: cmdkey did not finish within 30 s" in why_unknown(result)
    both = verdict(facts_for("client", {"user_credentials": {"users": [unread, stale]}}), "client.cached-credentials")
    assert both.status is Status.WARN


@pytest.mark.parametrize(
    ("failed", "emptied", "status", "words"),
    [
        ("CAP", {"raps": []}, Status.FAIL, "every resource is refused (event 301)"),
        ("RAP", {"caps": []}, Status.FAIL, "every user is refused (event 201)"),
        ("CAP and RAP", {}, Status.UNKNOWN, f"step CAP failed: {MESSAGE}; probe gateway step RAP failed"),
    ],
    ids=["CAP not read, no RAP", "RAP not read, no CAP", "neither read"],
)
def test_the_policy_side_that_was_read_decides_when_the_other_was_not(
    failed: str, emptied: dict[str, Any], status: Status, words: str
) -> None:
    """A gateway with no enabled RAP refuses every resource whatever its CAPs say, so a CAP list
    that could not be read must not hide it (and the other way round)."""
    steps = failed.split(" and ")
    facts = facts_for("gateway", {"gateway": {**emptied, **{s.lower() + "s": [] for s in steps}}})
    recorded = dataclasses.replace(facts.probes["gateway"], errors=tuple(ProbeError(s, MESSAGE) for s in steps))
    result = verdict(dataclasses.replace(facts, probes={**facts.probes, "gateway": recorded}), "rdg.policy-config")
    assert result.status is status
    said = " | ".join([result.title, *(e.value for e in result.evidence)])
    assert words in said
    if status is Status.FAIL:
        assert f"not read (probe gateway step {failed} failed: {MESSAGE})" in said


# --- the workstation could not reach the endpoint ----------------------------------------------

GW, SH = "gw.corp.example", "sh.corp.example"
NOW = datetime.datetime.now(datetime.UTC)
PKI = LabPKI.create()
CHAIN = {name: tuple(c.public_bytes(Encoding.DER) for c in PKI.chain("good", name).certificates) for name in (GW, SH)}
REFUSED = "connection refused (nothing listens on that port, or a firewall rejects it)"


def recorded_tcp(name: str, port: int, scenario: str) -> TcpResult:
    """What the TCP step recorded: resolved and connected, or how it failed."""
    if scenario == "dns":
        return TcpResult(name, port, False, "", 0.2, Failure.DNS, "name does not resolve (Name or service not known)")
    if scenario == "resolver-error":
        return TcpResult(name, port, False, "", 0.2, Failure.ERROR, "Invalid argument while resolving the name")
    if scenario == "refused":
        return TcpResult(name, port, False, "10.0.0.5", 0.01, Failure.REFUSED, REFUSED)
    return TcpResult(name, port, True, "10.0.0.5", 0.01)


def handshake(name: str) -> TlsHandshake:
    return TlsHandshake(True, "TLSv1.3", "TLS_AES_256_GCM_SHA384", CHAIN[name], 0.02)


def recorded_tls(name: str, address: str | None, port: int, scenario: str) -> TlsResult:
    tcp = recorded_tcp(address or name, port, scenario)
    if not tcp.connected:
        return TlsResult(name, tcp, None)
    if scenario == "tls-alert":
        alert = TlsHandshake(False, failure=Failure.TLS_ERROR, reason="TLS failed: sslv3 alert handshake failure")
        return TlsResult(name, tcp, alert)
    return TlsResult(name, tcp, handshake(name))


def recorded_http(name: str, address: str | None, port: int, scenario: str) -> RdgHttpResult:
    tcp = recorded_tcp(address or name, port, "ok")
    statuses = {"ok": (401, 401), "503": (503, 503), "rpc-404": (401, 404)}[scenario]
    out, rpc = (
        HttpAnswer(
            method,
            path,
            tcp,
            "TLSv1.3",
            status,
            {401: "Unauthorized", 404: "Not Found", 503: "Service Unavailable"}[status],
            ("Negotiate", "NTLM") if status == 401 else (),
            "Microsoft-HTTPAPI/2.0",
        )
        for (method, path), status in zip(
            (("RDG_OUT_DATA", "/remoteDesktopGateway/"), ("GET", "/rpc")), statuses, strict=True
        )
    )
    return RdgHttpResult(name, out, rpc)


def recorded_rdp(name: str, address: str | None, port: int, scenario: str, requested: int) -> RdpResult:
    """The listener's answers: to SSL|HYBRID first, then (when it selected NLA) to TLS only."""
    tcp = recorded_tcp(address or name, port, scenario)
    if not tcp.connected:
        return RdpResult(name, requested, tcp)
    if scenario == "garbage":
        return RdpResult(
            name, requested, tcp, failure=Failure.GARBAGE, reason="not an RDP answer: starts with 48 54 54 50"
        )
    if scenario == "no-certificate":
        return RdpResult(name, requested, tcp, Negotiation("failure", failure_code=3))
    if scenario == "classic":
        return RdpResult(name, requested, tcp, Negotiation("none", selected_protocol=0))
    if scenario == "tls-only":
        return RdpResult(name, requested, tcp, Negotiation("response", selected_protocol=PROTOCOL_SSL), handshake(name))
    if requested == PROTOCOL_SSL:  # the second negotiation, offering TLS only
        if scenario == "nla-silent":
            return RdpResult(name, requested, tcp, failure=Failure.TIMEOUT, reason="no answer within 5 s while waiting")
        return RdpResult(name, requested, tcp, Negotiation("failure", failure_code=5))
    return RdpResult(name, requested, tcp, Negotiation("response", selected_protocol=PROTOCOL_HYBRID), handshake(name))


def workstation_results(
    monkeypatch: pytest.MonkeyPatch, role: Role, scenario: str, http: str = "ok", *, address: str = ""
) -> dict[str, CheckResult]:
    """The workstation's results for one host, as a collection takes them, over recorded probes."""
    monkeypatch.setattr(workstation, "trust_for", lambda target: certs.TrustStore("test roots", (PKI.root.cert,)))
    monkeypatch.setattr(
        workstation, "probe_tls", lambda name, address, port, timeout: recorded_tls(name, address, port, scenario)
    )
    monkeypatch.setattr(
        workstation, "probe_rdg_http", lambda name, address, port, timeout: recorded_http(name, address, port, http)
    )
    monkeypatch.setattr(
        workstation,
        "probe_rdp",
        lambda name, address, port, timeout, requested=PROTOCOL_SSL | PROTOCOL_HYBRID: recorded_rdp(
            name, address, port, scenario, requested
        ),
    )
    name = GW if role is Role.GATEWAY else SH
    target = HostTarget(name=name, address=address or name, roles=(role,))
    _, results = workstation.probe_endpoints(target, now=NOW)
    return {r.id: r for r in results}


# (check id, the endpoint's role, what the workstation's probe recorded, words of the reason)
WORKSTATION_UNKNOWN: list[tuple[str, Role, str, str]] = [
    ("net.dns-unresolved", Role.GATEWAY, "resolver-error", "gw.corp.example was not resolved: Invalid argument"),
    ("net.tcp-blocked", Role.GATEWAY, "dns", "gw.corp.example does not resolve"),
    ("net.tcp-blocked", Role.SESSION_HOST, "resolver-error", "sh.corp.example was not resolved: Invalid argument"),
    ("net.tls-handshake", Role.GATEWAY, "refused", "no TCP connection"),
    ("net.tls-handshake", Role.SESSION_HOST, "no-certificate", "the listener refused with SSL_CERT_NOT_ON_SERVER"),
    ("rdg.http-transport", Role.GATEWAY, "refused", "no TLS connection"),
    ("rdg.http-transport", Role.GATEWAY, "tls-alert", "no TLS connection"),
    ("rdp.negotiation", Role.SESSION_HOST, "refused", "no TCP connection"),
    ("rdp.negotiation", Role.SESSION_HOST, "dns", "no TCP connection"),
    ("rdp.security-layer", Role.SESSION_HOST, "refused", "no TCP connection"),
    ("rdp.security-layer", Role.SESSION_HOST, "garbage", "no negotiation answer (garbage)"),
    ("rdp.nla-disabled", Role.SESSION_HOST, "refused", "no TCP connection"),
    ("rdp.nla-disabled", Role.SESSION_HOST, "nla-silent", "the negotiation offering TLS only got no answer"),
    *((cid, Role.GATEWAY, "refused", "no TCP connection") for cid in CERT_CHECK_IDS),
    *((cid, Role.GATEWAY, "tls-alert", "no TLS handshake (see net.tls-handshake)") for cid in CERT_CHECK_IDS),
    *((cid, Role.SESSION_HOST, "garbage", "no negotiation answer") for cid in CERT_CHECK_IDS),
]


@pytest.mark.parametrize(
    ("check_id", "role", "scenario", "words"), WORKSTATION_UNKNOWN, ids=[row[0] for row in WORKSTATION_UNKNOWN]
)
def test_workstation_check_is_unknown_when_the_endpoint_was_not_reached(
    monkeypatch: pytest.MonkeyPatch, check_id: str, role: Role, scenario: str, words: str
) -> None:
    result = workstation_results(monkeypatch, role, scenario)[check_id]
    assert result.status is Status.UNKNOWN, result
    assert words in why_unknown(result)
    assert result.endpoint and result.evidence[0].label == "endpoint"


def test_an_unreachable_host_and_endpoint_leave_nothing_passed_but_what_was_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WinRM refused and the listener refused: collect.unreachable and net.tcp-blocked fail, the
    name resolved (a fact), and every other check is unknown with its reason."""
    endpoint = tuple(workstation_results(monkeypatch, Role.SESSION_HOST, "refused").values())
    problem = CollectionProblem(CollectionFailure.UNREACHABLE, "connection refused by 10.0.0.6:5986")
    facts = dataclasses.replace(facts_for("session_host"), probes={}, problems=(problem,), endpoint_results=endpoint)
    results = evaluate(facts)
    statuses = {(r.id, r.status) for r in results}
    assert ("collect.unreachable", Status.FAIL) in statuses and ("net.tcp-blocked", Status.FAIL) in statuses
    assert [r.id for r in results if r.status is Status.PASS] == ["net.dns-unresolved"]
    unknown = [r for r in results if r.status is Status.UNKNOWN]
    assert {r.id for r in unknown} >= {"rdp.service-stopped", "rdp.negotiation", *CERT_CHECK_IDS}
    assert all(why_unknown(r) != r.title for r in unknown), [r.id for r in unknown if why_unknown(r) == r.title]


# --- cross-host checks: the other host's facts, or this host's probe, are missing --------------


def ssl_inspection_of(reports: list[HostReport]) -> CheckResult:
    return next(c for c in fleet.evaluate_fleet(reports)[0].checks if c.id == "rdg.ssl-inspection")


def dns_mismatch_of(reports: list[HostReport]) -> CheckResult:
    return next(c for c in fleet.evaluate_fleet(reports)[0].checks if c.id == "net.dns-mismatch")


def client_whose(probe: str, problem: CollectionProblem) -> HostReport:
    report = with_network(client(b64(GOOD)), [(GW, ["10.0.0.5"])])
    facts = dataclasses.replace(report.facts, planned=("host", "client", "network", "events"))
    if not problem.probe:  # the host was not collected at all
        facts = dataclasses.replace(facts, probes={})
    return dataclasses.replace(report, facts=failed_probe(facts, probe, problem))


def gw_resolved() -> HostReport:
    return resolved_by_workstation(gateway(thumb(GOOD)), ["10.0.0.5"])


PROBE_TIMEOUT = CollectionProblem(CollectionFailure.TIMEOUT, "probe did not answer within 60 s", "")

# (check id, how the facts went missing, the result, words of the reason)
FLEET_UNKNOWN: list[tuple[str, str, Callable[[], CheckResult], str]] = [
    (
        "rdg.ssl-inspection",
        "the client could not reach its gateway",
        lambda: ssl_inspection_of([client(None, "timed out"), gw_resolved()]),
        "timed out",
    ),
    (
        "rdg.ssl-inspection",
        "the gateway (role) was not collected",
        lambda: ssl_inspection_of([client(b64(GOOD)), gateway(None)]),
        "the gateway's own certificate was not collected",
    ),
    (
        "rdg.ssl-inspection",
        "the client probe failed",
        lambda: ssl_inspection_of(
            [client_whose("client", dataclasses.replace(PROBE_TIMEOUT, probe="client")), gw_resolved()]
        ),
        "probe client failed (timeout): probe did not answer within 60 s",
    ),
    (
        "rdg.ssl-inspection",
        "the client host was not collected",
        lambda: ssl_inspection_of(
            [client_whose("client", CollectionProblem(CollectionFailure.UNREACHABLE, "no route")), gw_resolved()]
        ),
        "host not collected (unreachable): no route",
    ),
    (
        "net.dns-mismatch",
        "neither side resolved the name",
        lambda: dns_mismatch_of(
            [with_network(client(b64(GOOD)), [(GW, [])]), resolved_by_workstation(gateway(None), [])]
        ),
        "does not resolve",
    ),
    (
        "net.dns-mismatch",
        "the network probe failed",
        lambda: dns_mismatch_of(
            [client_whose("network", dataclasses.replace(PROBE_TIMEOUT, probe="network")), gw_resolved()]
        ),
        "probe network failed (timeout): probe did not answer within 60 s",
    ),
]


@pytest.mark.parametrize(("check_id", "how", "judge", "words"), FLEET_UNKNOWN, ids=[row[0] for row in FLEET_UNKNOWN])
def test_cross_host_check_is_unknown_when_facts_are_missing(
    check_id: str, how: str, judge: Callable[[], CheckResult], words: str
) -> None:
    result = judge()
    assert result.id == check_id
    assert result.status is Status.UNKNOWN, how
    assert words in " | ".join([result.title, *(e.value for e in result.evidence)]), how


# --- collect.*: a collection failure is the reason the others are unknown ------------------------


@pytest.mark.parametrize("kind", list(CollectionFailure), ids=[f"collect.{k.value}" for k in CollectionFailure])
def test_a_collection_failure_fails_its_own_check_and_is_every_other_checks_reason(kind: CollectionFailure) -> None:
    healthy = facts_for("client")
    assert not [r for r in evaluate(healthy) if r.id.startswith("collect.")]  # collected: no collect.* result
    problem = CollectionProblem(kind, "what the session said")
    results = evaluate(dataclasses.replace(healthy, probes={}, problems=(problem,)))
    first, *others = results
    assert (first.id, first.status, first.evidence[0].value) == (f"collect.{kind.value}", Status.FAIL, problem.reason)
    assert others and {r.status for r in others} == {Status.UNKNOWN}
    assert all(r.evidence[0].value.startswith(f"host not collected ({kind.value}): ") for r in others)


# --- pass and problem cases the suite lacked ----------------------------------------------------

TRACING = {
    "sid": "S-1-5-21-1-2-3-1001",
    "account": "LAB\\jdoe",
    "rdg_trace": 21,
    "rdg_trace_file": "C:\\temp\\rdp_trace.txt",
    "trace_exists": True,
}
CLIENT_LOG_1026 = [
    {"log": RDPCLIENT_LOG, "id": 1026, "provider": "p", "minutes_ago": 5, "data": {"Value": "2308"}},
    {"log": RDPCLIENT_LOG, "id": 1026, "provider": "p", "minutes_ago": 9, "data": {"Value": "1"}},
]


def mstsc_to(server: str, reason: str) -> list[dict[str, Any]]:
    """mstsc starting a connection to ``server`` (1024) and ending it with ``reason`` (1026)."""
    return [
        {"log": RDPCLIENT_LOG, "id": 1024, "provider": "p", "minutes_ago": 9, "data": {"Value": server}},
        {"log": RDPCLIENT_LOG, "id": 1026, "provider": "p", "minutes_ago": 8, "data": {"Value": reason}},
    ]


def ws(role: Role, scenario: str, check_id: str, http: str = "ok", address: str = "") -> Callable[..., CheckResult]:
    return lambda monkeypatch: workstation_results(monkeypatch, role, scenario, http, address=address)[check_id]


def host(role: str, check_id: str, overrides: dict[str, Any] | None = None, evts=None) -> Callable[..., CheckResult]:
    return lambda monkeypatch: verdict(facts_for(role, overrides, evts), check_id)


def skewed(seconds: int) -> dict[str, Any]:
    return {"host": {"utc_now": (NOW + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")}}


def received_now(role: str, check_id: str, overrides: dict[str, Any]) -> Callable[..., CheckResult]:
    def judge(monkeypatch: pytest.MonkeyPatch) -> CheckResult:
        facts = facts_for(role, overrides)
        probe = dataclasses.replace(facts.probes["host"], received_utc=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return verdict(dataclasses.replace(facts, probes={**facts.probes, "host": probe}), check_id)

    return judge


STOPPED = [{"name": "TSGateway", "present": True, "display_name": "TSGateway", "state": "Stopped",
            "start_mode": "Manual", "account": "NT AUTHORITY\\NetworkService", "process_id": 0}]  # fmt: skip

# (check id, the result over recorded facts, status, words in the title)
PASS_AND_PROBLEM: list[tuple[str, Callable[..., CheckResult], Status, str]] = [
    ("host.time-skew", received_now("client", "host.time-skew", skewed(0)), Status.PASS, "agrees"),
    ("host.time-skew", received_now("client", "host.time-skew", skewed(-420)), Status.FAIL, "Kerberos and NLA"),
    (
        "rdg.service-stopped",
        host("gateway", "rdg.service-stopped", {"services": {"services": STOPPED}}),
        Status.FAIL,
        "TSGateway not running on the gateway",
    ),
    (
        "rdp.service-stopped",
        host("session_host", "rdp.service-stopped", {"services": {"services": []}}),
        Status.FAIL,
        "TermService not running",
    ),
    (
        "client.rdg-trace",
        host("client", "client.rdg-trace", {"client": {"users": [dict(TRACING, trace_matches=["HTTP/1.1 401"])]}}),
        Status.PASS,
        "tracing is on and shows no 0x904",
    ),
    (
        "client.rdg-trace",
        host(
            "client",
            "client.rdg-trace",
            {"client": {"users": [dict(TRACING, trace_matches=["RDG: connection failed 0x904 (0x7)"])]}},
        ),
        Status.WARN,
        "records 0x904 failures",
    ),
    (
        "client.recent-disconnects",
        host("client", "client.recent-disconnects", evts=CLIENT_LOG_1026),
        Status.WARN,
        "1 failed connection(s) recorded",
    ),
    (
        "client.unlisted-server",
        host("client", "client.unlisted-server", evts=mstsc_to("rdsh1.corp.example", "260")),
        Status.WARN,
        "mstsc failed to connect to rdsh1.corp.example, which the inventory does not list for this client",
    ),
    (
        "client.unlisted-server",
        host("client", "client.unlisted-server", evts=mstsc_to("RDSH01", "2308")),
        Status.PASS,
        "No failed connection to a server the inventory does not list",
    ),
    ("net.dns-unresolved", ws(Role.GATEWAY, "ok", "net.dns-unresolved"), Status.PASS, "resolves to 10.0.0.5"),
    ("net.dns-unresolved", ws(Role.GATEWAY, "dns", "net.dns-unresolved"), Status.FAIL, "does not resolve"),
    ("net.tcp-blocked", ws(Role.SESSION_HOST, "nla-required", "net.tcp-blocked"), Status.PASS, "accepts TCP"),
    ("net.tcp-blocked", ws(Role.SESSION_HOST, "refused", "net.tcp-blocked"), Status.FAIL, "connection refused"),
    ("net.tls-handshake", ws(Role.GATEWAY, "ok", "net.tls-handshake"), Status.PASS, "TLS handshake completed"),
    ("net.tls-handshake", ws(Role.GATEWAY, "tls-alert", "net.tls-handshake"), Status.FAIL, "No TLS handshake"),
    ("rdg.http-transport", ws(Role.GATEWAY, "ok", "rdg.http-transport"), Status.PASS, "challenges with Negotiate"),
    ("rdg.http-transport", ws(Role.GATEWAY, "ok", "rdg.http-transport", "503"), Status.FAIL, "got 503"),
    ("rdg.http-transport", ws(Role.GATEWAY, "ok", "rdg.http-transport", "rpc-404"), Status.WARN, "/rpc"),
    ("rdp.negotiation", ws(Role.SESSION_HOST, "nla-required", "rdp.negotiation"), Status.PASS, "PROTOCOL_HYBRID"),
    ("rdp.negotiation", ws(Role.SESSION_HOST, "no-certificate", "rdp.negotiation"), Status.FAIL, "refused"),
    ("rdp.negotiation", ws(Role.SESSION_HOST, "garbage", "rdp.negotiation"), Status.FAIL, "did not negotiate"),
    ("rdp.security-layer", ws(Role.SESSION_HOST, "tls-only", "rdp.security-layer"), Status.PASS, "uses TLS"),
    ("rdp.security-layer", ws(Role.SESSION_HOST, "classic", "rdp.security-layer"), Status.FAIL, "classic RDP"),
    ("rdp.nla-disabled", ws(Role.SESSION_HOST, "nla-required", "rdp.nla-disabled"), Status.PASS, "NLA is required"),
    ("rdp.nla-disabled", ws(Role.SESSION_HOST, "tls-only", "rdp.nla-disabled"), Status.WARN, "NLA is disabled"),
    (
        "rdg.ssl-inspection",
        lambda monkeypatch: ssl_inspection_of([client(b64(GOOD)), gateway(thumb(GOOD))]),
        Status.PASS,
        "own certificate",
    ),
    (
        "rdg.ssl-inspection",
        lambda monkeypatch: ssl_inspection_of([client(b64(PKI.chain("inspection", GW))), gateway(thumb(GOOD))]),
        Status.FAIL,
        "TLS inspection on the path",
    ),
    (
        "net.dns-mismatch",
        lambda monkeypatch: dns_mismatch_of([with_network(client(b64(GOOD)), [(GW, ["10.0.0.5"])]), gw_resolved()]),
        Status.PASS,
        "as the workstation does",
    ),
    (
        "net.dns-mismatch",
        lambda monkeypatch: dns_mismatch_of([with_network(client(b64(GOOD)), [(GW, ["10.9.9.9"])]), gw_resolved()]),
        Status.FAIL,
        "other addresses",
    ),
]


@pytest.mark.parametrize(
    ("check_id", "judge", "status", "words"), PASS_AND_PROBLEM, ids=[row[0] for row in PASS_AND_PROBLEM]
)
def test_pass_and_problem_over_recorded_facts(
    monkeypatch: pytest.MonkeyPatch, check_id: str, judge: Callable[..., CheckResult], status: Status, words: str
) -> None:
    result = judge(monkeypatch)
    assert (result.id, result.status) == (check_id, status), result
    assert words in result.title
    assert result.evidence and result.remediation


def test_workstation_checks_of_an_ip_address_leave_name_resolution_out(monkeypatch: pytest.MonkeyPatch) -> None:
    results = workstation_results(monkeypatch, Role.GATEWAY, "refused", address="10.0.0.5")
    assert "net.dns-unresolved" not in results  # nothing to resolve: not judged, and not passed either
    assert results["net.tcp-blocked"].status is Status.FAIL
    assert results["net.tls-handshake"].status is Status.UNKNOWN


# --- meta: the tables above cover the whole catalogue -------------------------------------------


def unknown_ids() -> set[str]:
    return {
        row[0] for table in (PROBE_FAILED, OPT_IN, STEP_FAILED, WORKSTATION_UNKNOWN, FLEET_UNKNOWN) for row in table
    }


def test_every_catalogued_check_has_an_unknown_case() -> None:
    """``collect rules`` lists every id; each one but the collection failures themselves (which are the
    reasons, and are covered above as such) must have a case where its facts are missing."""
    ids = {entry.id for entry in rules()}
    assert ids >= COLLECTION_IDS
    assert ids - COLLECTION_IDS - unknown_ids() == set()
    assert unknown_ids() <= ids  # no stale rows


def test_every_host_check_has_its_probe_failure_case_and_every_opt_in_probe_its_flag() -> None:
    table = {check_id: (role, probe) for check_id, role, probe in PROBE_FAILED}
    assert set(table) == {check.id for check in catalogue()}
    for check in catalogue():
        role, probe = table[check.id]
        assert Role(role) in check.spec.roles and probe in check.spec.needs, check.id
    opt_in = {(check_id, probe, flag) for check_id, _, probe, flag in OPT_IN}
    assert opt_in == {
        (check.id, probe, OPT_IN_PROBES[probe])
        for check in catalogue()
        for probe in check.spec.needs
        if probe in OPT_IN_PROBES
    }


def test_every_workstation_and_cross_host_check_has_an_unknown_case() -> None:
    workstation_ids = {meta.id for meta in (*ep.CHECKS, *cert_checks.CHECKS)}
    assert workstation_ids == {row[0] for row in WORKSTATION_UNKNOWN}
    assert {fleet.SSL_INSPECTION.id, fleet.DNS_MISMATCH.id} == {row[0] for row in FLEET_UNKNOWN}


def test_every_catalogued_check_has_a_pass_and_a_problem_case() -> None:
    """Across this suite's tables: the healthy baselines (every check passes on them), the broken
    variants of test_checks_catalogue and test_checks_diagnosis, the certificate chain variants and
    the rows above. A collection failure has no pass result: its absence is the pass."""
    passed = {r.id for role in ROLES for r in evaluate(facts_for(role)) if r.status is Status.PASS}
    passed |= set(CERT_CHECK_IDS) if EXPECTED_PROBLEMS["good"] == {} else set()
    passed |= {row[0] for row in DIAGNOSIS_CASES if row[4] is Status.PASS}
    passed |= {row[0] for row in PASS_AND_PROBLEM if row[2] is Status.PASS}
    problems = {row[1] for row in CATALOGUE_CASES if row[3] in PROBLEM}
    problems |= {row[0] for row in DIAGNOSIS_CASES if row[4] in PROBLEM}
    problems |= {check_id for expected in EXPECTED_PROBLEMS.values() for check_id in expected}
    problems |= {row[0] for row in PASS_AND_PROBLEM if row[2] in PROBLEM}
    ids = {entry.id for entry in rules()} - COLLECTION_IDS
    assert ids - passed == set()
    assert ids - problems == set()


def test_a_check_that_cannot_judge_its_facts_is_unknown_and_the_others_stand() -> None:
    """A bulkhead: facts a check was not written for cost that check's verdict, named, and
    nothing else (not the host's other results, not the run)."""
    facts = facts_for("session_host")
    skew, stopped = (next(c for c in catalogue() if c.id == i) for i in ("host.time-skew", "rdp.service-stopped"))

    def unreadable(facts: HostFacts) -> object:
        raise ValueError("Invalid isoformat string: ' '")

    results = {r.id: r for r in evaluate(facts, [dataclasses.replace(skew, judge=unreadable), stopped])}
    assert results["host.time-skew"].status is Status.UNKNOWN
    assert why_unknown(results["host.time-skew"]) == (
        f"{skew.spec.title} | the check could not judge these facts (ValueError: Invalid isoformat string: ' ')"
    )
    assert results["rdp.service-stopped"].status is Status.PASS
