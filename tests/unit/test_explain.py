"""collect explain: documented codes decoded with their likely causes; unknown codes said so."""

from __future__ import annotations

import json
import re

import pytest

from collector import cli, codes, contract
from collector.checks import events as ev
from collector.model import HostFacts, HostTarget, ProbeResult, Role, Status


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["explain", *args])
    return code, capsys.readouterr().out


def listed_checks(out: str) -> list[list[str]]:
    """The check ids of each likely cause, in the order explain lists them."""
    return [line.split(", ") for line in re.findall(r"^ {5}checks: (.*)$", out, re.M)]


@pytest.mark.parametrize("args", [("0x904", "0x7"), ("2308", "7"), ("0X904", "7")])
def test_0x904_0x7_in_hex_or_decimal(capsys: pytest.CaptureFixture[str], args: tuple[str, str]) -> None:
    code, out = run(capsys, *args)
    assert code == 0
    assert "0x904 (2308): socket closed" in out
    assert "0x7 (7): the server denied the connection" in out
    assert "1. Remote Desktop is off or limited by policy" in out and "rdg.ssl-inspection" in out
    assert listed_checks(out)[:2] == [
        ["rdp.disabled", "rdp.service-stopped", "rdp.user-rights"],
        ["rdg.policy-denied", "rdg.policy-config", "rdg.resource-unreachable", "rdg.service-stopped"],
    ]
    assert "RD Gateway code" not in out  # 0x904 is the client's own reason, whatever path it took


@pytest.mark.parametrize(
    ("value", "line", "checks"),
    [
        (
            "2055",
            "disconnect reason 0x807 (2055): login failed (SSL_ERR_LOGON_FAILURE)",
            [["client.cached-credentials", "host.time-skew", "host.secure-channel"]],
        ),
        (
            "3847",
            "disconnect reason 0xF07 (3847): the password has expired (SSL_ERR_PASSWORD_EXPIRED)",
            [["rdp.nla-disabled"]],
        ),
        (
            "516",
            "disconnect reason 0x204 (516): WinSock socket connect failure",
            [["net.tcp-blocked", "rdp.not-listening", "rdp.firewall-closed", "rdp.port-nondefault"]],
        ),
        ("264", "disconnect reason 0x108 (264): connection timed out", [["net.tcp-blocked", "rdp.firewall-closed"]]),
        ("0x108", "disconnect reason 0x108 (264): connection timed out", [["net.tcp-blocked", "rdp.firewall-closed"]]),
    ],
)
def test_documented_codes(capsys: pytest.CaptureFixture[str], value: str, line: str, checks: list[list[str]]) -> None:
    code, out = run(capsys, value)
    assert code == 0
    assert out.splitlines()[0] == line
    assert listed_checks(out) == checks


@pytest.mark.parametrize("value", ["0x3000007", "50331655", "0x03000007"])
def test_rd_gateway_code_is_decoded_with_its_causes_in_order(capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, out = run(capsys, value)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "disconnect reason 0x3000007 (50331655): RD Gateway: the gateway's certificate has expired or has been revoked"
    )
    assert lines[1].strip() == "an RD Gateway code (0x0300xxxx): look at the gateway and the path to it first"
    assert "1. the gateway's certificate has expired" in out
    assert "2. the certificate was renewed, but HTTP.sys still serves the old one on 443" in out
    assert listed_checks(out) == [
        ["cert.expired", "cert.expires-soon"],
        ["rdg.cert-binding-mismatch"],
        ["host.time-skew", "cert.not-yet-valid"],
        ["rdg.ssl-inspection", "client.tls-intercepting-agent", "net.proxy"],
    ]
    assert "collect check-tls GATEWAY" in out and "not guessed" not in out


@pytest.mark.parametrize(
    ("value", "words", "first_checks"),
    [
        ("50331651", "its subject name does not match the gateway address", ["cert.name-mismatch"]),
        ("50331653", "the client cannot verify the identity of the RD Gateway", ["cert.untrusted"]),
        ("50331659", "an alternate logon method is required", ["rdg.policy-denied", "rdg.policy-config"]),
        ("50331660", "the RD Gateway address is unreachable or incorrect", ["net.dns-unresolved", "net.dns-mismatch"]),
        ("50331672", "the RD Gateway ended the connection", ["rdg.service-stopped", "rdg.http-transport"]),
        ("0x300001B", "not in the RD Gateway's permission list", ["rdg.policy-denied", "rdg.policy-config"]),
        ("0x300001C", "not authorized to use the RD Gateway", ["rdg.policy-denied", "rdg.policy-config"]),
    ],
)
def test_other_rd_gateway_codes(
    capsys: pytest.CaptureFixture[str], value: str, words: str, first_checks: list[str]
) -> None:
    code, out = run(capsys, value)
    assert code == 0
    assert words in out.splitlines()[0] and ": RD Gateway: " in out.splitlines()[0]
    assert listed_checks(out)[0][: len(first_checks)] == first_checks


def test_documented_gateway_code_without_a_check_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "50331673")  # an administrator ended the connection: nothing to check
    assert code == 0
    assert "the RD Gateway's administrator ended the connection" in out
    assert "No specific checks are mapped to this code" in out and "Likely causes" not in out


def test_the_rest_of_the_0300_table_is_decoded_but_not_called_a_gateway_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run(capsys, "50331718")
    assert code == 0
    assert out.splitlines()[0] == "disconnect reason 0x3000046 (50331718): no resources are available to connect to"
    assert "RD Gateway" not in out and "No specific checks are mapped to this code" in out


def test_ssl_err_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "0xD07")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "disconnect reason 0xD07 (3335): the account is locked out (SSL_ERR_ACCOUNT_LOCKED_OUT)"
    assert lines[1].strip() == "an SSL_ERR code (Wincred.h): an error met while the client authenticated (NLA)"
    assert listed_checks(out) == [["client.cached-credentials"]]
    assert "collect check-tls" not in out


def test_ssl_err_code_without_a_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "2823")
    assert code == 0
    assert "the account is disabled (SSL_ERR_ACCOUNT_DISABLED)" in out
    assert "No specific checks are mapped to this code" in out


@pytest.mark.parametrize("value", ["0x3000FFF", "50331670", "0x300002E"])
def test_unknown_code_is_said_not_guessed(capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, out = run(capsys, value)
    assert code == 1
    assert re.match(r"disconnect reason 0x[0-9A-F]+ \(\d+\): not a documented disconnect reason$", out.splitlines()[0])
    assert "not guessed" in out and "Likely causes" not in out and "RD Gateway code" not in out


def test_unknown_extended_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "0x904", "0x999")
    assert code == 1 and "0x999 (2457): not a documented extended reason" in out


def test_logoff_by_user_is_12() -> None:
    assert codes.EXTENDED_REASONS[12] == "the user logged off"


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "0x904", "0x7", "--json")
    data = json.loads(out)
    assert code == 0 and data["code"] == 2308 and data["extended"] == 7 and data["documented"] is True
    assert data["rd_gateway"] is False and data["ssl_err"] is False
    assert data["likely_causes"][0]["checks"] == ["rdp.disabled", "rdp.service-stopped", "rdp.user-rights"]


def test_json_for_a_gateway_code_and_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "0x3000007", "--json")
    data = json.loads(out)
    assert code == 0 and data["code"] == 50331655 and data["documented"] is True and data["rd_gateway"] is True
    assert data["meaning"] == "RD Gateway: the gateway's certificate has expired or has been revoked"
    assert [c["checks"] for c in data["likely_causes"]][:2] == [
        ["cert.expired", "cert.expires-soon"],
        ["rdg.cert-binding-mismatch"],
    ]
    code, out = run(capsys, "0x3000FFF", "--json")
    data = json.loads(out)
    assert code == 1 and data["documented"] is False and data["meaning"] is None and data["likely_causes"] == []


def test_garbage_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", "zz"]) == 2
    assert "'zz' is not a code" in capsys.readouterr().err


def test_every_mapped_check_exists() -> None:
    """The registry refuses to build otherwise; every cause names at least one check."""
    from collector import checks

    assert codes.check_ids() <= set(checks.registry().ids())
    for causes in (*codes.LIKELY_CAUSES.values(), *codes.CAUSES_BY_EXTENDED.values()):
        for _, check_ids in causes:
            assert check_ids and set(check_ids) <= codes.check_ids(), check_ids


def test_the_families_are_where_their_sources_put_them() -> None:
    # RD Gateway codes are 0x0300xxxx; every SSL_ERR reason of the OnDisconnected page ends in 0x07.
    assert all(0x03000000 <= c <= 0x0300FFFF for c in codes.GATEWAY_REASONS)
    assert sorted(codes.SSL_ERR_REASONS) == [
        2055,
        2567,
        2823,
        3079,
        3335,
        3591,
        3847,
        4615,
        5639,
        5895,
        6151,
        6919,
        7175,
        8455,
        8711,
    ]
    assert all(c & 0xFF == 0x07 for c in codes.SSL_ERR_REASONS)
    assert set(codes.GATEWAY_CAUSES) <= set(codes.GATEWAY_REASONS)
    assert set(codes.SSL_ERR_CAUSES) <= set(codes.SSL_ERR_REASONS)
    # One table serves explain and every place that decodes collected events.
    assert set(codes.GATEWAY_REASONS) | set(codes.SSL_ERR_REASONS) <= set(codes.DISCONNECT_REASONS)
    assert not set(codes.OTHER_0300_REASONS) & set(codes.GATEWAY_REASONS)


@pytest.mark.parametrize(("args", "check"), [(("3", "9"), "rdp.user-rights"), (("0x904", "0x102"), "rdp.licensing")])
def test_extended_reasons_point_at_their_checks(
    capsys: pytest.CaptureFixture[str], args: tuple[str, str], check: str
) -> None:
    code, out = run(capsys, *args)
    assert code == 0 and check in out


# --- the same tables decode the reasons of collected events ---------------------------------------


def client_with_disconnects(*reasons: str) -> HostFacts:
    """A client whose events probe read RDPClient 1026 events with these reasons (newest first)."""
    data = contract.validate_data(
        "events",
        {
            "since_hours": 24,
            "max_events": 200,
            "logs": [
                {
                    "log": ev.RDPCLIENT_LOG,
                    "ids": [1026],
                    "available": True,
                    "truncated": False,
                    "events": [
                        {
                            "id": 1026,
                            "provider": "Microsoft-Windows-TerminalServices-ClientActiveXCore",
                            "time_utc": f"2026-03-01T07:{50 - i:02d}:00Z",
                            "level": "Information",
                            "record_id": 10_000 - i,
                            "data": {"Name": "Disconnect Reason", "Value": reason},
                            "message": None,
                        }
                        for i, reason in enumerate(reasons)
                    ],
                }
            ],
        },
    )
    target = HostTarget(name="c1.corp.example", address="c1.corp.example", roles=(Role.CLIENT,))
    return HostFacts(target=target, probes={"events": ProbeResult("events", 1, data)}, planned=("events",))


def test_a_gateway_code_in_a_1026_event_decodes_to_the_gateway_meaning() -> None:
    facts = client_with_disconnects("50331655")
    (event,) = ev.events_of(facts, ev.RDPCLIENT_LOG, [1026])
    assert ev.summary(ev.RDPCLIENT_LOG, event) == (
        "mstsc disconnected: 0x3000007 (50331655): RD Gateway: the gateway's certificate has expired or has been "
        "revoked"
    )


def test_client_recent_disconnects_decode_gateway_and_ssl_err_codes() -> None:
    from collector import checks

    facts = client_with_disconnects("50331655", "50331655", "3335", "1")
    result = next(r for r in checks.evaluate(facts) if r.id == "client.recent-disconnects")
    assert result.status is Status.WARN
    assert result.title == "3 failed connection(s) recorded, most often 0x3000007 (50331655)"
    assert [e.value for e in result.evidence] == [
        "2 x 0x3000007 (50331655): RD Gateway: the gateway's certificate has expired or has been revoked",
        "1 x 0xD07 (3335): the account is locked out (SSL_ERR_ACCOUNT_LOCKED_OUT)",
        "1 x 0x1 (1): local disconnection (the user closed the client)",
    ]
