"""Kerberos settings in the inventory, and Kerberos failures named from MIT's error codes (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gssapi.raw.misc import GSSError
from pypsrp.exceptions import AuthenticationError

from collector import inventory
from collector.model import CollectionFailure, HostTarget, Role
from collector.winrm import (
    KRB5_REALM_UNKNOWN,
    KRB5KDC_ERR_CLIENT_REVOKED,
    KRB5KDC_ERR_ETYPE_NOSUPP,
    KRB5KDC_ERR_KEY_EXP,
    CollectionError,
    after_ntlm_fallback,
    classify,
    kerberos_failure,
    spn_of,
)
from tests.support import kdc

DOMAIN = """\
defaults:
  auth: kerberos
groups:
  - name: gateways
    spn_service: WSMAN
    hosts:
      - name: gw01.corp.example
        address: 10.0.0.4
        roles: [gateway]
hosts:
  - name: sh01.corp.example
    roles: [session_host]
  - name: sh02.corp.example
    roles: [session_host]
    username: svc-rdpdiag@CORP.EXAMPLE
    password_env: PW
    delegate: true
"""


def problems(text: str) -> list[inventory.Problem]:
    with pytest.raises(inventory.InventoryError) as info:
        inventory.parse(text, "inv.yaml")
    return list(info.value.problems)


def test_spn_service_and_delegate_with_their_defaults_and_the_ticket_cache() -> None:
    inv = inventory.parse(DOMAIN, "inv.yaml")
    by_name = {t.name: t for t in inv.targets}
    gw, sh1, sh2 = by_name["gw01.corp.example"], by_name["sh01.corp.example"], by_name["sh02.corp.example"]
    assert (gw.spn_service, gw.delegate, spn_of(gw)) == ("WSMAN", False, "WSMAN/gw01.corp.example")
    assert (sh1.spn_service, sh1.delegate, sh1.username) == ("HTTP", False, "")
    assert inv.credentials["sh01.corp.example"] == inventory.CredentialRef("", "none")
    assert (sh2.delegate, sh2.username) == (True, "svc-rdpdiag@CORP.EXAMPLE")


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (
            "hosts:\n  - name: a.example\n    roles: [client]\n    spn_service: HTTP/a.example\n",
            4,
            "hosts[0].spn_service",
            "must be a Kerberos service class such as HTTP, WSMAN or host",
        ),
        (
            "defaults:\n  auth: ntlm\n  username: CORP\\u\n  password_env: PW\n  delegate: true\n"
            "hosts:\n  - name: a.example\n    roles: [client]\n",
            5,
            "defaults.delegate",
            "delegate forwards a Kerberos ticket and needs auth kerberos or negotiate, not ntlm",
        ),
        (
            "groups:\n  - name: g\n    auth: kerberos\n    username: CORP\\svc\n    password_env: PW\n"
            "    hosts:\n      - name: a.example\n        roles: [client]\n",
            4,
            "groups[0].username",
            "Kerberos names an account user@REALM (e.g. svc@CORP.EXAMPLE",
        ),
    ],
)
def test_kerberos_setting_mistakes_name_line_and_field(text: str, line: int, field: str, words: str) -> None:
    [p] = problems(text)
    assert (p.line, p.field) == (line, field)
    assert words in p.message


def test_negotiate_accepts_a_domain_user_name() -> None:
    """DOMAIN\\user stays valid for negotiate: it is what NTLM wants (Kerberos then falls back)."""
    inv = inventory.parse(
        "defaults:\n  username: CORP\\svc\n  password_env: PW\nhosts:\n  - {name: a.example, roles: [client]}\n"
    )
    assert inv.targets[0].auth == "negotiate" and inv.targets[0].username == "CORP\\svc"


T = HostTarget(
    name="sh1.corp.example",
    address="10.0.0.9",
    roles=(Role.SESSION_HOST,),
    auth="kerberos",
    username="svc@CORP.EXAMPLE",
)


def gss(minor: int) -> GSSError:
    """A GSSAPI failure as gssapi raises it: GSS_S_FAILURE with MIT's code as the unsigned minor."""
    return GSSError(0xD0000, minor & 0xFFFFFFFF)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (KRB5_REALM_UNKNOWN, "no KDC is known for the account's realm: add the realm under [realms]"),
        (KRB5KDC_ERR_KEY_EXP, "the password of svc@CORP.EXAMPLE has expired"),
        (KRB5KDC_ERR_CLIENT_REVOKED, "the account svc@CORP.EXAMPLE is disabled, locked out or expired"),
        (KRB5KDC_ERR_ETYPE_NOSUPP, "share no encryption type for svc@CORP.EXAMPLE or HTTP/sh1.corp.example"),
    ],
)
def test_kerberos_codes_the_lab_cannot_provoke(code: int, words: str) -> None:
    error = classify(gss(code), T)
    assert error.kind is CollectionFailure.AUTH_FAILED
    assert error.reason.startswith("Kerberos: ") and words in error.reason


def test_not_kerberos_is_left_to_the_other_rules() -> None:
    assert kerberos_failure(AuthenticationError("401"), T) is None
    assert kerberos_failure(ValueError("x"), T) is None


def test_negotiate_refusal_keeps_both_reasons() -> None:
    refused = CollectionError(CollectionFailure.AUTH_FAILED, "the host refused the credentials of CORP\\svc")
    kerberos = CollectionError(CollectionFailure.AUTH_FAILED, "Kerberos: no KDC of realm CORP.EXAMPLE answered")
    combined = after_ntlm_fallback(refused, kerberos)
    assert combined.kind is CollectionFailure.AUTH_FAILED
    assert combined.reason == (
        "the host refused the credentials of CORP\\svc. Kerberos, tried first, failed: "
        "no KDC of realm CORP.EXAMPLE answered"
    )


def test_missing_kdc_programs_fail_loudly_naming_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(kdc, "_SBIN", ())
    with pytest.raises(kdc.KdcError) as info:
        kdc.LabRealm(tmp_path).create()
    assert str(info.value) == (
        "krb5kdc is not installed (Debian package krb5-kdc); the Kerberos lab needs MIT Kerberos: "
        "apt-get install krb5-kdc krb5-admin-server krb5-user (dev/test installs them)"
    )
