"""The checks added for diagnosis (DESIGN §4, §12), one table per check: pass, fail or warn, and
unknown, each over recorded facts (the lab's healthy baselines, validated against the probe
schemas, with the fields of one case changed) and pinned to the title and evidence it reports."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from collector import checks
from collector.checks import events
from collector.model import CollectionFailure, CollectionProblem, HostFacts, ProbeError, Status
from tests.unit.test_checks_catalogue import facts_for, verdict

GATEWAY_LOG = "Microsoft-Windows-TerminalServices-Gateway/Operational"


def gw_event(eid: int, minutes_ago: float, **data: str) -> dict[str, Any]:
    return {"log": GATEWAY_LOG, "id": eid, "provider": "p", "minutes_ago": minutes_ago, "data": data}


def case(role: str, overrides: dict[str, Any] | None = None, evts: list[dict[str, Any]] | None = None) -> HostFacts:
    return facts_for(role, overrides, evts)


LOCAL_ACCOUNT_DENIED = {
    "deny_remote_interactive": [
        {"sid": "S-1-5-32-546", "account": "BUILTIN\\Guests"},
        {"sid": "S-1-5-113", "account": "NT AUTHORITY\\Local account"},
    ]
}
NOT_LICENSED = {
    "licensing_type": 5,
    "licensing_mode_policy": None,
    "license_servers_policy": [],
    "license_servers_specified": [],
}

# (check id, role, probe overrides, events, status, title)
CASES: list[tuple[str, str, dict[str, Any], list[dict[str, Any]], Status, str]] = [
    # rdp.user-rights
    (
        "rdp.user-rights",
        "session_host",
        {},
        [],
        Status.PASS,
        "Administrators and Remote Desktop Users may log on through Remote Desktop Services",
    ),
    (
        "rdp.user-rights",
        "session_host",
        {"rdp_config": {"user_rights": LOCAL_ACCOUNT_DENIED}},
        [],
        Status.PASS,
        "Administrators and Remote Desktop Users may log on through Remote Desktop Services",
    ),
    (
        "rdp.user-rights",
        "session_host",
        {
            "rdp_config": {
                "user_rights": {
                    "deny_remote_interactive": [{"sid": "S-1-5-21-11-22-33-513", "account": "LAB\\Domain Users"}]
                }
            }
        },
        [],
        Status.FAIL,
        "LAB\\Domain Users denied log on through Remote Desktop Services: their members are refused "
        "(extended reason 9)",
    ),
    (
        "rdp.user-rights",
        "session_host",
        {"rdp_config": {"user_rights": {"deny_remote_interactive": [{"sid": "S-1-5-32-555", "account": None}]}}},
        [],
        Status.FAIL,
        "Remote Desktop Users denied log on through Remote Desktop Services: their members are refused "
        "(extended reason 9)",
    ),
    (
        "rdp.user-rights",
        "session_host",
        {"rdp_config": {"user_rights": {"remote_interactive": []}}},
        [],
        Status.FAIL,
        "Nobody may log on through Remote Desktop Services",
    ),
    (
        "rdp.user-rights",
        "session_host",
        {
            "rdp_config": {
                "user_rights": {"remote_interactive": [{"sid": "S-1-5-32-544", "account": "BUILTIN\\Administrators"}]}
            }
        },
        [],
        Status.WARN,
        "Remote Desktop Users may not log on through Remote Desktop Services",
    ),
    (
        "rdp.user-rights",
        "session_host",
        {"rdp_config": {"user_rights": None}},
        [],
        Status.UNKNOWN,
        "The Remote Desktop logon rights could not be read",
    ),
    # rdp.licensing
    ("rdp.licensing", "session_host", {}, [], Status.PASS, "Per User licensing from rdls01.lab.test"),
    (
        "rdp.licensing",
        "session_host",
        {
            "rdp_config": {
                "licensing": {
                    "licensing_type": 2,
                    "licensing_mode_policy": None,
                    "license_servers_policy": [],
                    "license_servers_specified": ["ls1.corp.example", "ls2.corp.example"],
                }
            }
        },
        [],
        Status.PASS,
        "Per Device licensing from ls1.corp.example, ls2.corp.example",
    ),
    (
        "rdp.licensing",
        "session_host",
        {"rdp_config": {"licensing": {"terminal_server_mode": 0, "licensing_type": 1, **NOT_LICENSED}}},
        [],
        Status.PASS,
        "Remote Desktop for Administration: no RDS licensing needed (two administrative sessions)",
    ),
    (
        "rdp.licensing",
        "session_host",
        {"rdp_config": {"licensing": {**NOT_LICENSED, "grace_period_days": 37}}},
        [],
        Status.WARN,
        "RD Licensing is not configured (no licensing mode is set and no license server is set): "
        "37 day(s) of grace period left",
    ),
    (
        "rdp.licensing",
        "session_host",
        {"rdp_config": {"licensing": {**NOT_LICENSED, "grace_period_days": 0}}},
        [],
        Status.FAIL,
        "RD Licensing is not configured (no licensing mode is set and no license server is set) and the grace "
        "period is over: connections are refused",
    ),
    (
        "rdp.licensing",
        "session_host",
        {"rdp_config": {"licensing": {"license_servers_policy": [], "grace_period_days": None}}},
        [],
        Status.WARN,
        "RD Licensing is not configured (no license server is set); the grace period could not be read",
    ),
    (
        "rdp.licensing",
        "session_host",
        {"rdp_config": {"licensing": {"terminal_server_mode": None}}},
        [],
        Status.UNKNOWN,
        "RD Licensing could not be read",
    ),
    # rdg.iis-trust
    ("rdg.iis-trust", "gateway", {}, [], Status.PASS, "/Rpc and /RpcWithCert run at Full trust"),
    (
        "rdg.iis-trust",
        "gateway",
        {
            "gateway": {
                "iis_applications": [
                    {
                        "path": "Default Web Site/Rpc",
                        "present": True,
                        "physical_path": "C:\\p",
                        "trust_level": "Medium",
                    },
                    {
                        "path": "Default Web Site/RpcWithCert",
                        "present": True,
                        "physical_path": None,
                        "trust_level": "Full",
                    },
                ]
            }
        },
        [],
        Status.FAIL,
        "RD Gateway's RPC-over-HTTP applications need Full trust: /Rpc at Medium",
    ),
    (
        "rdg.iis-trust",
        "gateway",
        {
            "gateway": {
                "iis_applications": [
                    {"path": "Default Web Site/Rpc", "present": True, "physical_path": "C:\\p", "trust_level": "Full"},
                    {
                        "path": "Default Web Site/RpcWithCert",
                        "present": False,
                        "physical_path": None,
                        "trust_level": None,
                    },
                ]
            }
        },
        [],
        Status.WARN,
        "/RpcWithCert missing from the Default Web Site: the RPC-over-HTTP transport is unavailable",
    ),
    (
        "rdg.iis-trust",
        "gateway",
        {"gateway": {"iis_applications": None}},
        [],
        Status.UNKNOWN,
        "The IIS trust level of /Rpc and /RpcWithCert could not be read",
    ),
    # rdg.policy-denied
    (
        "rdg.policy-denied",
        "gateway",
        {},
        [gw_event(200, 5, Username="LAB\\a"), gw_event(300, 5, Username="LAB\\a", Resource="sh")],
        Status.PASS,
        "No connection refused by a CAP or RAP in 24 h",
    ),
    (
        "rdg.policy-denied",
        "gateway",
        {},
        [
            gw_event(201, 5, Username="LAB\\a", IpAddress="10.0.0.9", ErrorCode="23003"),
            gw_event(201, 9, Username="LAB\\a", IpAddress="10.0.0.9", ErrorCode="23003"),
            gw_event(301, 7, Username="LAB\\b", IpAddress="10.0.0.8", Resource="sh9", ErrorCode="23002"),
        ],
        Status.WARN,
        "3 connection(s) refused by CAP and RAP in 24 h: LAB\\a, LAB\\b",
    ),
    # rdg.resource-unreachable
    (
        "rdg.resource-unreachable",
        "gateway",
        {},
        [gw_event(302, 5, Username="LAB\\a", Resource="sh")],
        Status.PASS,
        "The gateway reached every resource it was asked for in 24 h",
    ),
    (
        "rdg.resource-unreachable",
        "gateway",
        {},
        [
            gw_event(304, 5, Username="LAB\\a", Resource="sh9.corp.example", ErrorCode="10060"),
            gw_event(304, 6, Username="LAB\\b", Resource="sh9.corp.example", ErrorCode="0x8007274D"),
            gw_event(304, 8, Username="LAB\\a", Resource="old.corp.example", ErrorCode="11001"),
        ],
        Status.WARN,
        "The gateway could not reach sh9.corp.example, old.corp.example (3 time(s) in 24 h)",
    ),
    # client.tls-intercepting-agent
    ("client.tls-intercepting-agent", "client", {}, [], Status.PASS, "No agent known to intercept TLS is running"),
    (
        "client.tls-intercepting-agent",
        "client",
        {
            "client": {
                "agents": [
                    {"process": "PanGPA", "process_id": 88, "path": None, "company": None, "product": None},
                    {
                        "process": "ZSATunnel",
                        "process_id": 4312,
                        "path": "C:\\Program Files\\Zscaler\\ZSATunnel\\ZSATunnel.exe",
                        "company": "Zscaler Inc.",
                        "product": "Zscaler Client Connector",
                    },
                ]
            }
        },
        [],
        Status.WARN,
        "Palo Alto Networks GlobalProtect, Zscaler Client Connector running: it may intercept TLS to the gateway "
        "(see rdg.ssl-inspection)",
    ),
]


@pytest.mark.parametrize(("check_id", "role", "overrides", "evts", "status", "title"), CASES)
def test_check_over_recorded_facts(
    check_id: str, role: str, overrides: dict[str, Any], evts: list[dict[str, Any]], status: Status, title: str
) -> None:
    result = verdict(case(role, overrides, evts), check_id)
    assert (result.status, result.title) == (status, title)
    assert result.evidence and result.remediation and result.references


def test_every_new_check_has_pass_problem_and_unknown_cases() -> None:
    new = {
        "rdp.user-rights",
        "rdp.licensing",
        "rdg.iis-trust",
        "rdg.policy-denied",
        "rdg.resource-unreachable",
        "client.tls-intercepting-agent",
    }
    covered = {(c[0], c[4]) for c in CASES} | {(i, Status.UNKNOWN) for i, _, _ in UNCOLLECTED}
    for check_id in new:
        assert (check_id, Status.PASS) in covered, check_id
        assert (check_id, Status.UNKNOWN) in covered, check_id
        assert {(check_id, Status.FAIL), (check_id, Status.WARN)} & covered, check_id


def test_user_rights_evidence_names_each_principal_and_says_why_unknown() -> None:
    result = verdict(case("session_host", {"rdp_config": {"user_rights": LOCAL_ACCOUNT_DENIED}}), "rdp.user-rights")
    assert [e.value for e in result.evidence] == [
        "BUILTIN\\Administrators (S-1-5-32-544), BUILTIN\\Remote Desktop Users (S-1-5-32-555)",
        "BUILTIN\\Guests (S-1-5-32-546), NT AUTHORITY\\Local account (S-1-5-113)",
    ]
    facts = case("session_host", {"rdp_config": {"user_rights": None}})
    probe = dataclasses.replace(
        facts.probes["rdp_config"],
        errors=(ProbeError("user rights (secedit /export)", "secedit /export exited with code 5"),),
    )
    facts = dataclasses.replace(facts, probes={**facts.probes, "rdp_config": probe})
    unknown = verdict(facts, "rdp.user-rights")
    assert unknown.evidence[0].value == "secedit /export exited with code 5"


def test_licensing_evidence_shows_mode_sources_servers_and_grace() -> None:
    result = verdict(case("session_host"), "rdp.licensing")
    assert {e.label: e.value for e in result.evidence} == {
        "server mode": "RD Session Host",
        "LicensingType": "4 = Per User (Group Policy)",
        "LicensingMode (policy)": "4 = Per User",
        "license servers (policy LicenseServers)": "rdls01.lab.test",
        "license servers (SpecifiedLicenseServers)": "none",
        "grace period": "0 day(s) left",
    }


def test_policy_denied_evidence_groups_and_decodes() -> None:
    result = verdict(
        case(
            "gateway",
            evts=[
                gw_event(201, 5, Username="LAB\\a", IpAddress="10.0.0.9", ErrorCode="23003"),
                gw_event(201, 9, Username="LAB\\a", IpAddress="10.0.0.9", ErrorCode="23003"),
                gw_event(301, 7, Username="LAB\\b", IpAddress="10.0.0.8", Resource="sh9", ErrorCode="23002"),
            ],
        ),
        "rdg.policy-denied",
    )
    first, second = result.evidence
    assert first.label == "CAP denied (event 201)"
    assert first.value.startswith(
        "LAB\\a from 10.0.0.9: 2 time(s), error 23003: the user (or the client computer) is not in a user group of "
        "any CAP, or NPS refused the request; last at 20"
    )
    assert second.label == "RAP denied (event 301)"
    assert second.value.startswith("LAB\\b from 10.0.0.8 to sh9: 1 time(s), error 23002: the resource is not in")


def test_resource_unreachable_decodes_winsock_and_hresult_errors() -> None:
    result = verdict(
        case(
            "gateway",
            evts=[
                gw_event(304, 5, Username="LAB\\a", Resource="sh9.corp.example", ErrorCode="10060"),
                gw_event(304, 6, Username="LAB\\b", Resource="sh9.corp.example", ErrorCode="0x8007274D"),
            ],
        ),
        "rdg.resource-unreachable",
    )
    [row] = result.evidence
    assert row.label == "could not reach sh9.corp.example (event 304)"
    assert row.value.startswith(
        "2 time(s), for LAB\\a, LAB\\b; 1 x error 10060: connection timed out: nothing answered on the RDP port "
        "(host down, or a firewall drops it); 1 x error 0x8007274D: connection refused: nothing listens on the RDP "
        "port; last at 20"
    )


def test_gateway_event_checks_are_unknown_when_the_log_was_not_read_or_is_missing() -> None:
    facts = facts_for("gateway", probes=("host", "events"))
    data = dict(facts.probes["events"].data)
    data["logs"] = [log for log in data["logs"] if log["log"] != GATEWAY_LOG]
    not_read = dataclasses.replace(
        facts, probes={**facts.probes, "events": dataclasses.replace(facts.probes["events"], data=data)}
    )
    for check_id in ("rdg.policy-denied", "rdg.resource-unreachable"):
        result = verdict(not_read, check_id)
        assert (result.status, result.evidence[0].value) == (
            Status.UNKNOWN,
            f"{GATEWAY_LOG} was not read by the events probe",
        )
    data["logs"] = [{"log": GATEWAY_LOG, "ids": [201], "available": False, "truncated": False, "events": []}]
    missing = dataclasses.replace(
        not_read, probes={**facts.probes, "events": dataclasses.replace(facts.probes["events"], data=data)}
    )
    result = verdict(missing, "rdg.policy-denied")
    assert result.status is Status.UNKNOWN and "is the RD Gateway role installed?" in result.evidence[0].value


def test_truncated_gateway_log_is_said() -> None:
    facts = case("gateway", evts=[gw_event(201, 1, Username="LAB\\a")])
    data = dict(facts.probes["events"].data)
    data["logs"] = [dict(log, truncated=True) if log["log"] == GATEWAY_LOG else log for log in data["logs"]]
    facts = dataclasses.replace(
        facts, probes={**facts.probes, "events": dataclasses.replace(facts.probes["events"], data=data)}
    )
    result = verdict(facts, "rdg.policy-denied")
    assert result.evidence[-1].value == "only the newest 200 events were read; older ones in the window are not counted"


# (check id, role, probe): the probe failed on the host, so the check cannot be judged.
UNCOLLECTED = [
    ("rdp.user-rights", "session_host", "rdp_config"),
    ("rdp.licensing", "session_host", "rdp_config"),
    ("rdg.iis-trust", "gateway", "gateway"),
    ("rdg.policy-denied", "gateway", "events"),
    ("rdg.resource-unreachable", "gateway", "events"),
    ("client.tls-intercepting-agent", "client", "client"),
]


@pytest.mark.parametrize(("check_id", "role", "probe"), UNCOLLECTED)
def test_check_is_unknown_with_the_reason_when_its_probe_failed(check_id: str, role: str, probe: str) -> None:
    facts = case(role)
    failed = dataclasses.replace(
        facts,
        probes={k: v for k, v in facts.probes.items() if k != probe},
        problems=(CollectionProblem(CollectionFailure.BAD_OUTPUT, "data.x: Field required", probe),),
    )
    [result] = [r for r in checks.evaluate(failed) if r.id == check_id]
    assert result.status is Status.UNKNOWN
    assert result.evidence[0].value == f"probe {probe} failed (bad-output): data.x: Field required"


def test_the_probe_default_agent_list_is_the_catalogue_list() -> None:
    """The client probe's AgentProcesses default and the check's table name the same processes."""
    import re

    from collector import scripts
    from collector.checks.client import TLS_AGENTS

    text = scripts.load("client").text
    default = re.search(r"\[string\[\]\]\$AgentProcesses = @\(([^)]*)\)", text)
    assert default is not None
    assert [n.strip().strip("'") for n in default.group(1).split(",")] == list(TLS_AGENTS)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("23003", "23003: the user (or the client computer) is not in a user group of any CAP"),
        ("10061", "10061: connection refused: nothing listens on the RDP port"),
        ("0x80072AF9", "0x80072AF9: the gateway cannot resolve the resource's name"),
        ("31337", "31337: not a documented code"),
        ("", "no code"),
    ],
)
def test_gateway_error_codes_are_decoded_or_said_unknown(text: str, words: str) -> None:
    assert events.describe_gateway_error(text).startswith(words)


def test_event_summaries_and_matching_helpers() -> None:
    e = {"id": 4625, "data": {"TargetUserName": "jdoe", "TargetDomainName": "LAB", "IpAddress": "10.0.0.5",
                              "Status": "0xC000015B", "SubStatus": "0x0", "LogonType": "10"}}  # fmt: skip
    assert events.summary("Security", e) == (
        "logon failed for LAB\\jdoe from 10.0.0.5: 0xC000015B (the logon type is not granted (no 'Allow log on "
        "through Remote Desktop Services' right)), logon type 10"
    )
    rcm = {"id": 1149, "data": {"Param1": "jdoe", "Param2": "LAB", "Param3": "10.0.0.11"}}
    assert events.summary(events.RCM_LOG, rcm) == "user authentication succeeded: LAB\\jdoe from 10.0.0.11"
    assert events.event_address(events.RDPCORE_LOG, {"id": 131, "data": {"ClientIP": "10.0.0.11:51234"}}) == "10.0.0.11"
    assert events.sam_name("LAB\\JDoe") == events.sam_name("jdoe@lab.test") == events.sam_name("jdoe") == "jdoe"
    assert events.same_host("RDSH01", "rdsh01.lab.test") and not events.same_host("rdsh01", "rdsh011.lab.test")
