"""Every check over recorded facts: pass on a healthy host's data, fail or warn on the broken
variant, unknown when the probe is missing. Facts come from the lab's role baselines (validated
against the probe schemas) with one field changed per case."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from collector import checks
from collector.contract import OPT_IN_PROBES
from collector.lab import emulate
from collector.lab.emulate import LabCertificate, LabView
from collector.lab.pki import LabCA
from collector.model import HostFacts, HostTarget, ProbeResult, Role, Status
from collector.runner import EVENT_QUERIES

CA = LabCA.create("test CA")
CERTS = {
    kind: LabCertificate.from_pem(CA.issue_server(["h1.corp.example"])[0]) for kind in ("server", "other", "listener")
}
VIEW = LabView(
    addresses={"gw.corp.example": ["10.0.0.5"], "sh.corp.example": ["10.0.0.6"]},
    open_ports=frozenset({("gw.corp.example", 443), ("sh.corp.example", 3389)}),
    certificates=CERTS,
    gateway_chain=CERTS["server"],
    trusted_roots=(),
)
ROLES = {"client": (Role.CLIENT,), "gateway": (Role.GATEWAY,), "session_host": (Role.SESSION_HOST,)}
PARAMS = {
    "network": {"Targets": ["gw.corp.example:443", "sh.corp.example:3389"]},
    "client": {"GatewayName": "gw.corp.example"},
    "events": {"Queries": [query for queries in EVENT_QUERIES.values() for query in queries]},  # what a run asks
    "services": {"Names": ["TermService", "UmRdpService", "SessionEnv", "TSGateway", "W3SVC", "IAS"]},
}
RUNNING = [
    {
        "name": n,
        "present": True,
        "display_name": n,
        "state": "Running",
        "start_mode": "Manual",
        "account": "LocalSystem",
        "process_id": 10,
    }
    for n in ("TermService", "UmRdpService", "SessionEnv", "TSGateway", "W3SVC", "IAS")
]


def facts_for(
    role: str,
    overrides: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    probes: tuple[str, ...] | None = None,
) -> HostFacts:
    roles = ROLES[role]
    wanted = probes or (
        "host",
        "services",
        "listeners",
        "rdp_config",
        "gateway",
        "client",
        "network",
        "events",
        "user_credentials",
    )
    collected = {}
    for probe in wanted:
        data = emulate.answer(
            probe,
            name="h1.corp.example",
            roles=[r.value for r in roles],
            services=RUNNING,
            os={"caption": "Windows", "version": "10.0", "build": "20348"},
            clock_skew_seconds=0,
            facts=overrides or {},
            events=events or [],
            parameters=PARAMS.get(probe, {}),
            view=VIEW,
        )
        collected[probe] = ProbeResult(probe, 1, data, received_utc=data.get("utc_now", "") if probe == "host" else "")
    # A client names the session host it reaches, as an inventory does (client.unlisted-server compares).
    listed = ("rdsh01.corp.example",) if Role.CLIENT in roles else ()
    target = HostTarget(name="h1.corp.example", address="h1.corp.example", roles=roles, session_hosts=listed)
    return HostFacts(target=target, probes=collected, planned=tuple(p for p in wanted if p not in OPT_IN_PROBES))


def verdict(facts: HostFacts, check_id: str):
    return next(r for r in checks.evaluate(facts) if r.id == check_id)


@pytest.mark.parametrize("role", ["client", "gateway", "session_host"])
def test_healthy_baseline_passes_every_check(role: str) -> None:
    results = checks.evaluate(facts_for(role))
    assert results, role
    assert {r.id: r.status for r in results if r.status is not Status.PASS} == {}


CASES = [
    # (role, check, overrides, expected status, words in title)
    ("session_host", "rdp.disabled", {"rdp_config": {"deny_ts_connections_policy": 1}}, Status.FAIL, "Group Policy"),
    ("session_host", "rdp.disabled", {"rdp_config": {"deny_ts_connections": 1}}, Status.FAIL, "local setting"),
    ("session_host", "rdp.not-listening", {"listeners": {"tcp": []}}, Status.FAIL, "Nothing listens on TCP 3389"),
    (
        "session_host",
        "rdp.not-listening",
        {
            "listeners": {
                "tcp": [
                    {
                        "protocol": "TCP",
                        "local_address": "0.0.0.0",
                        "port": 3389,
                        "process_id": 9,
                        "process_name": "nginx",
                        "services": [],
                    }
                ]
            }
        },
        Status.WARN,
        "other than TermService",
    ),
    (
        "session_host",
        "rdp.firewall-closed",
        {
            "rdp_config": {
                "firewall_rules": [
                    {
                        "name": "r",
                        "display_name": "RD (TCP-In)",
                        "enabled": False,
                        "direction": "Inbound",
                        "action": "Allow",
                        "profiles": "Any",
                        "protocol": "TCP",
                        "local_ports": ["3389"],
                    }
                ]
            }
        },
        Status.FAIL,
        "does not allow",
    ),
    ("session_host", "rdp.firewall-closed", {"rdp_config": {"firewall_rules": []}}, Status.WARN, "No Remote Desktop"),
    (
        "session_host",
        "rdp.nla-disabled",
        {"rdp_config": {"general_setting": {"user_authentication_required": 0}}},
        Status.WARN,
        "Network Level Authentication is off",
    ),
    ("session_host", "rdp.nla-disabled", {"rdp_config": {"user_authentication_policy": 0}}, Status.WARN, "off"),
    (
        "session_host",
        "rdp.security-layer",
        {"rdp_config": {"general_setting": {"security_layer": 0}}},
        Status.FAIL,
        "Classic RDP security",
    ),
    ("session_host", "rdp.port-nondefault", {"rdp_config": {"port_number": 3390}}, Status.WARN, "port 3390"),
    (
        "gateway",
        "rdg.cert-binding-mismatch",
        {
            "gateway": {
                "http_bindings": [{"endpoint": "0.0.0.0:443", "cert_hash": "@thumbprint:other", "cert_store": "MY"}]
            }
        },
        Status.FAIL,
        "different certificate on 0.0.0.0:443",
    ),
    ("gateway", "rdg.cert-binding-mismatch", {"gateway": {"http_bindings": []}}, Status.FAIL, "no certificate bound"),
    (
        "gateway",
        "rdg.cert-no-private-key",
        {"gateway": {"certificate": {"has_private_key": False}}},
        Status.FAIL,
        "no private key",
    ),
    ("gateway", "rdg.cert-no-private-key", {"gateway": {"certificate": None}}, Status.FAIL, "not in the machine store"),
    ("gateway", "net.udp-3391", {"listeners": {"udp": []}}, Status.WARN, "TCP only"),
    ("gateway", "rdg.policy-config", {"gateway": {"caps": []}}, Status.FAIL, "(event 201)"),
    ("gateway", "rdg.policy-config", {"gateway": {"raps": []}}, Status.FAIL, "(event 301)"),
    ("client", "client.udp-disabled", {"client": {"disable_udp_policy": 1}}, Status.WARN, "TCP only"),
    (
        "client",
        "client.cached-credentials",
        {"user_credentials": {"users": [{"account": "C\\u", "targets": ["TERMSRV/sh", "git:x"], "error": None}]}},
        Status.WARN,
        "1 saved Remote Desktop credential",
    ),
    ("client", "net.proxy", {"network": {"winhttp": {"proxy": "p:8080", "bypass": None}}}, Status.WARN, "p:8080"),
    (
        "client",
        "host.tls-protocols",
        {"host": {"schannel": [{"protocol": "TLS 1.2", "side": "Client", "enabled": 0, "disabled_by_default": None}]}},
        Status.FAIL,
        "TLS 1.2 is disabled (TLS 1.2 Client)",
    ),
    ("client", "host.secure-channel", {"host": {"secure_channel": False}}, Status.FAIL, "broken"),
    ("client", "host.credssp-oracle", {"host": {"credssp_oracle": 0}}, Status.WARN, "Force Updated Clients"),
    ("client", "host.pending-reboot", {"host": {"pending_reboot": ["Windows Update"]}}, Status.WARN, "pending"),
]


@pytest.mark.parametrize(("role", "check_id", "overrides", "status", "words"), CASES)
def test_broken_variant(role: str, check_id: str, overrides: dict[str, Any], status: Status, words: str) -> None:
    result = verdict(facts_for(role, overrides), check_id)
    assert result.status is status, result
    assert words in result.title
    assert result.evidence and result.remediation


def test_network_failures_from_the_host() -> None:
    view_blocked = LabView(
        addresses={"gw.corp.example": ["10.0.0.5"]},
        open_ports=frozenset(),
        certificates=CERTS,
        gateway_chain=None,
        trusted_roots=(),
    )
    data = emulate.answer(
        "network",
        name="c",
        roles=["client"],
        services=[],
        os={},
        clock_skew_seconds=0,
        facts={},
        events=[],
        parameters=PARAMS["network"],
        view=view_blocked,
    )
    f = HostFacts(
        target=HostTarget(name="c", address="c", roles=(Role.CLIENT,)),
        probes={"network": ProbeResult("network", 1, data)},
        planned=("network",),
    )
    assert verdict(f, "net.dns-unresolved").title == "sh.corp.example does not resolve from this host"
    blocked = verdict(f, "net.tcp-blocked")
    assert blocked.status is Status.FAIL
    assert blocked.title == "No TCP connection to gw.corp.example:443, sh.corp.example:3389 from this host"


def test_recent_disconnects_decode_reasons() -> None:
    log = "Microsoft-Windows-TerminalServices-RDPClient/Operational"
    events = [
        {"log": log, "id": 1026, "provider": "p", "minutes_ago": m, "data": {"Value": v}}
        for m, v in ((5, "2308"), (9, "2308"), (20, "264"), (30, "1"))
    ]
    result = verdict(facts_for("client", events=events), "client.recent-disconnects")
    assert result.status is Status.WARN
    assert result.title == "3 failed connection(s) recorded, most often 0x904 (2308)"
    assert [e.value for e in result.evidence] == [
        "2 x 0x904 (2308): socket closed (0x904): the connection was lost or refused after it started",
        "1 x 0x108 (264): connection timed out",
        "1 x 0x1 (1): local disconnection (the user closed the client)",
    ]


def test_a_failed_connection_to_a_server_the_inventory_does_not_list_is_named() -> None:
    """The article's "wrong server name": the client lists rdsh01.corp.example; mstsc was given
    rdhs01 (a typo, DNS failure), an address (not comparable), RDSH01:3390 (the listed host on
    another port) and old-rdsh (which worked: no finding). The log comes newest first."""
    log = "Microsoft-Windows-TerminalServices-RDPClient/Operational"
    story = [
        (50, 1024, "rdhs01.corp.example"),
        (49, 1026, "260"),
        (40, 1024, "10.0.0.7"),
        (39, 1026, "516"),
        (30, 1024, "RDSH01:3390"),
        (29, 1026, "2308"),
        (20, 1024, "old-rdsh.corp.example"),
        (5, 1026, "1"),
        (4, 1024, "rdhs01.corp.example"),
        (3, 1026, "260"),
    ]
    events = [
        {"log": log, "id": eid, "provider": "p", "minutes_ago": m, "data": {"Value": v}}
        for m, eid, v in reversed(story)
    ]
    result = verdict(facts_for("client", events=events), "client.unlisted-server")
    assert (result.status, result.title) == (
        Status.WARN,
        "mstsc failed to connect to rdhs01.corp.example, which the inventory does not list for this client: "
        "a wrong server name?",
    )
    assert [(e.label, e.value) for e in result.evidence] == [
        ("session hosts in the inventory", "rdsh01.corp.example"),
        (
            "mstsc to rdhs01.corp.example in 24 h",
            "2 started, 2 failed; last failure: 0x104 (260): DNS name lookup failure",
        ),
        (
            "mstsc to 10.0.0.7 in 24 h",
            "1 started, 1 failed; last failure: 0x204 (516): WinSock socket connect failure",
        ),
        (
            "mstsc to rdsh01 in 24 h",
            "1 started, 1 failed; last failure: 0x904 (2308): socket closed (0x904): "
            "the connection was lost or refused after it started",
        ),
        ("mstsc to old-rdsh.corp.example in 24 h", "1 started, 0 failed"),
    ]


def test_a_workstation_that_tried_many_servers_shows_the_unlisted_failure_first_and_counts_the_rest() -> None:
    log = "Microsoft-Windows-TerminalServices-RDPClient/Operational"
    events = [
        {"log": log, "id": 1024, "provider": "p", "minutes_ago": 100 - i, "data": {"Value": f"srv{i:02d}.corp.example"}}
        for i in range(25)
    ]
    events += [
        {"log": log, "id": 1024, "provider": "p", "minutes_ago": 10, "data": {"Value": "rdhs01.corp.example"}},
        {"log": log, "id": 1026, "provider": "p", "minutes_ago": 9, "data": {"Value": "260"}},
    ]
    result = verdict(facts_for("client", events=events), "client.unlisted-server")
    labels = [e.label for e in result.evidence]
    assert result.status is Status.WARN
    assert labels[:2] == ["session hosts in the inventory", "mstsc to rdhs01.corp.example in 24 h"]
    assert len(labels) == 1 + 20 + 1
    assert (result.evidence[-1].label, result.evidence[-1].value) == ("other servers mstsc tried", "6 more")


def test_the_server_comparison_needs_session_hosts_in_the_inventory() -> None:
    facts = facts_for("client")
    alone = dataclasses.replace(facts, target=dataclasses.replace(facts.target, session_hosts=()))
    assert "client.unlisted-server" not in {r.id for r in checks.evaluate(alone)}
    assert "client.unlisted-server" in {r.id for r in checks.evaluate(facts)}


def test_checks_whose_probe_was_not_planned_are_left_out_but_opt_in_ones_say_how() -> None:
    f = facts_for("client", probes=("host", "client", "events"))
    ids = {r.id: r for r in checks.evaluate(f)}
    assert "net.tcp-blocked" not in ids  # no targets: not applicable
    creds = ids["client.cached-credentials"]
    assert creds.status is Status.UNKNOWN and "--user-context" in creds.evidence[0].value


def test_catalogue_ids_are_unique_and_documented() -> None:
    catalogue = checks.catalogue()
    ids = [c.id for c in catalogue]
    assert len(ids) == len(set(ids))
    for check in catalogue:
        spec = check.spec
        assert spec.remediation and spec.references and spec.roles and spec.needs, check.id


def test_rules_list_every_id_once_with_its_vantage_points() -> None:
    entries = {e.id: e for e in checks.rules()}
    assert len(entries) == len(checks.rules())
    assert entries["collect.unreachable"].vantage == ("collector",)
    assert entries["net.tcp-blocked"].vantage == ("WinRM (client, gateway)", "workstation")
    assert entries["cert.untrusted"].vantage == ("workstation",)
    assert {c.id for c in checks.catalogue()} <= set(entries)
    assert all(e.remediation for e in entries.values())


def test_binding_mismatch_compares_what_the_workstation_was_served() -> None:
    import dataclasses

    other = base64.b64encode(CERTS["other"].chain_der[0]).decode()
    facts = facts_for("gateway")
    served = dataclasses.replace(facts, endpoints={"h1.corp.example:443": {"probe": "check-tls", "chain_der": [other]}})
    result = verdict(served, "rdg.cert-binding-mismatch")
    assert result.status is Status.FAIL
    assert result.title.startswith("h1.corp.example:443 serves another certificate than RD Gateway is configured")
    assert result.evidence[-1].vantage == "workstation"
    same = base64.b64encode(CERTS["server"].chain_der[0]).decode()
    matching = dataclasses.replace(
        facts, endpoints={"h1.corp.example:443": {"probe": "check-tls", "chain_der": [same]}}
    )
    assert verdict(matching, "rdg.cert-binding-mismatch").status is Status.PASS
