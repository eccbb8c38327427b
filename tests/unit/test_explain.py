"""collect explain: documented codes decoded with their likely causes; unknown codes said so."""

from __future__ import annotations

import json

import pytest

from collector import cli, codes


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["explain", *args])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("args", [("0x904", "0x7"), ("2308", "7"), ("0X904", "7")])
def test_0x904_0x7_in_hex_or_decimal(capsys: pytest.CaptureFixture[str], args: tuple[str, str]) -> None:
    code, out = run(capsys, *args)
    assert code == 0
    assert "0x904 (2308): socket closed" in out
    assert "0x7 (7): the server denied the connection" in out
    assert "1. Remote Desktop is off or limited by policy" in out and "rdg.ssl-inspection" in out


@pytest.mark.parametrize(
    ("value", "words", "check"),
    [
        ("2055", "login failed", "host.time-skew"),
        ("3847", "the password has expired", "rdp.nla-disabled"),
        ("516", "WinSock socket connect failure", "rdp.firewall-closed"),
        ("264", "connection timed out", "net.tcp-blocked"),
        ("0x108", "connection timed out", "net.tcp-blocked"),
    ],
)
def test_documented_codes(capsys: pytest.CaptureFixture[str], value: str, words: str, check: str) -> None:
    code, out = run(capsys, value)
    assert code == 0 and words in out and check in out


def test_unknown_code_is_said_not_guessed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "0x3000007")
    assert code == 1
    assert "0x3000007 (50331655): not a documented disconnect reason" in out
    assert "not guessed" in out and "Likely causes" not in out


def test_unknown_extended_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "0x904", "0x999")
    assert code == 1 and "0x999 (2457): not a documented extended reason" in out


def test_logoff_by_user_is_12() -> None:
    assert codes.EXTENDED_REASONS[12] == "the user logged off"


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "0x904", "0x7", "--json")
    data = json.loads(out)
    assert code == 0 and data["code"] == 2308 and data["extended"] == 7 and data["documented"] is True
    assert data["likely_causes"][0]["checks"] == ["rdp.disabled", "rdp.service-stopped", "rdp.user-rights"]


def test_garbage_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", "zz"]) == 2
    assert "'zz' is not a code" in capsys.readouterr().err


def test_every_mapped_check_exists() -> None:
    from collector import checks

    ids = {e.id for e in checks.rules()}
    for causes in codes.LIKELY_CAUSES.values():
        for _, check_ids in causes:
            assert set(check_ids) <= ids, check_ids


@pytest.mark.parametrize(("args", "check"), [(("3", "9"), "rdp.user-rights"), (("0x904", "0x102"), "rdp.licensing")])
def test_extended_reasons_point_at_their_checks(
    capsys: pytest.CaptureFixture[str], args: tuple[str, str], check: str
) -> None:
    code, out = run(capsys, *args)
    assert code == 0 and check in out
