"""The collector authenticating the way a domain does: Kerberos against a real MIT KDC on loopback.

Every test drives the collector's own path (inventory -> HostSession -> pypsrp -> pyspnego/gssapi)
against the lab's WinRM hosts, whose acceptors hold only their own HTTP/<name> keys, and a real
``krb5kdc``. Failures are asserted by the words an administrator reads.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import gssapi  # noqa: F401 - without the Kerberos bindings these tests must fail, not skip
import pytest

from collector import inventory, runner
from collector.credentials import Secret
from collector.lab.fleet import LAB_USER, LabFleet
from collector.lab.wsman import InvocationResult, KerberosService, Logon, WSManServer
from collector.model import CollectionFailure, HostReport, HostTarget, Status
from collector.winrm import HostSession
from tests.kerberos.domain import PASSWORD, USER, domain_inventory, passwords
from tests.support.kdc import LabRealm

pytestmark = [pytest.mark.lab, pytest.mark.peer, pytest.mark.timeout(60)]

DOWN = "rdsh03.lab.test"  # powered off in the demo scenario


def verdicts(reports: list[HostReport]) -> dict[str, dict[str, Status]]:
    return {r.name: {c.id: c.status for c in r.checks} for r in reports}


def logons(fleet: LabFleet) -> set[Logon]:
    return {logon for server in fleet.servers.values() for logon in server.logons}


def clear_logons(fleet: LabFleet) -> None:
    for server in fleet.servers.values():
        server._logons.clear()


def target(fleet: LabFleet, host: str, **changes: object) -> HostTarget:
    """The host's target from the domain inventory (auth kerberos, the UPN), with changes."""
    inv = inventory.from_document(domain_inventory(fleet), "kerberos-inventory")
    found = next(t for t in inv.targets if t.name == host)
    return dataclasses.replace(found, **changes)


def only_problem(t: HostTarget, password: str | None) -> str:
    """The single collection problem of one host, asserted to be auth-failed; its reason."""
    facts = runner.collect_host(t, Secret(password) if password is not None else None)
    [problem] = facts.problems
    assert problem.kind is CollectionFailure.AUTH_FAILED, problem.reason
    assert "Traceback" not in problem.reason and PASSWORD not in problem.reason
    return problem.reason


# --- the demo fleet, collected as a domain admin would --------------------------------------


def test_demo_fleet_with_kerberos_and_a_password_matches_ntlm(domain_fleet: LabFleet, kerberos_env: str) -> None:
    kerberos_inv = inventory.from_document(domain_inventory(domain_fleet), "kerberos")
    ntlm_inv = inventory.from_document(domain_inventory(domain_fleet, auth="ntlm", username=LAB_USER), "ntlm")

    clear_logons(domain_fleet)
    by_kerberos = runner.run_hosts(kerberos_inv.targets, passwords(kerberos_inv))
    assert logons(domain_fleet) == {Logon(LAB_USER, "Kerberos")}
    clear_logons(domain_fleet)
    by_ntlm = runner.run_hosts(ntlm_inv.targets, passwords(ntlm_inv))
    assert logons(domain_fleet) == {Logon(LAB_USER, "NTLM")}

    assert verdicts(by_kerberos) == verdicts(by_ntlm)
    for report in by_kerberos:
        kinds = [p.kind for p in report.facts.problems]
        assert kinds == ([CollectionFailure.UNREACHABLE] if report.name == DOWN else []), report.name
    assert {r.facts.target.transport for r in by_kerberos} == {"http", "https"}  # encryption and CBT


@pytest.mark.parametrize("kinit_from", ["password", "keytab"])
def test_ticket_cache_without_any_password(
    domain_fleet: LabFleet, realm: LabRealm, kerberos_env: str, tmp_path: Path, kinit_from: str
) -> None:
    """kinit once (or from a keytab, nightly); the inventory names no user and no password."""
    if kinit_from == "password":
        realm.kinit("collector", kerberos_env, password=PASSWORD)
    else:
        keytab = tmp_path / "collector.keytab"
        realm.add_user_keytab("collector", keytab)
        realm.kinit("collector", kerberos_env, keytab=keytab)
    inv = inventory.from_document(domain_inventory(domain_fleet, username=None), "ccache")
    assert {ref.source for ref in inv.credentials.values()} == {"none"}
    assert {t.username for t in inv.targets} == {""}
    names = ("gw01.lab.test", "client01.lab.test")  # https with channel binding, http with encryption
    targets = [t for t in inv.targets if t.name in names]

    clear_logons(domain_fleet)
    reports = runner.run_hosts(targets, passwords(inv))
    assert all(pw is None for pw in passwords(inv).values())
    assert [r.facts.problems for r in reports] == [(), ()]
    assert logons(domain_fleet) == {Logon(LAB_USER, "Kerberos")}


def test_address_is_dialled_but_the_spn_comes_from_the_name(
    domain_fleet: LabFleet, realm: LabRealm, kerberos_env: str
) -> None:
    gw = target(domain_fleet, "gw01.lab.test")
    assert gw.address == "127.0.0.1" and gw.spn_service == "HTTP"
    kdc_log = realm.directory / "kdc.log"
    before = kdc_log.read_text()
    facts = runner.collect_host(gw, Secret(PASSWORD))
    assert facts.problems == ()
    asked = re.findall(r"TGS_REQ .* for (\S+)@LAB\.TEST", kdc_log.read_text()[len(before) :])
    assert set(asked) == {"HTTP/gw01.lab.test"}


def test_negotiate_uses_kerberos_for_a_upn_and_falls_back_to_ntlm_without_a_kdc(
    domain_fleet: LabFleet, realm: LabRealm, kerberos_env: str
) -> None:
    try:
        client = target(domain_fleet, "client01.lab.test", auth="negotiate")
        server = domain_fleet.servers[client.name]
        server._logons.clear()
        assert runner.collect_host(client, Secret(PASSWORD)).problems == ()
        assert server.logons[-1] == Logon(LAB_USER, "Kerberos")

        realm.stop()
        fallback = dataclasses.replace(client, username=LAB_USER)
        assert runner.collect_host(fallback, Secret(PASSWORD)).problems == ()
        assert server.logons[-1] == Logon(LAB_USER, "NTLM")
    finally:
        realm.start()


def test_delegation_is_an_explicit_opt_in(domain_fleet: LabFleet, kerberos_env: str) -> None:
    gw = target(domain_fleet, "gw01.lab.test")
    server = domain_fleet.servers[gw.name]
    server._logons.clear()
    assert runner.collect_host(gw, Secret(PASSWORD)).problems == ()
    assert runner.collect_host(dataclasses.replace(gw, delegate=True), Secret(PASSWORD)).problems == ()
    # One Kerberos logon a session: its probes share the one connection.
    assert server.logons == [Logon(LAB_USER, "Kerberos", delegated=False), Logon(LAB_USER, "Kerberos", delegated=True)]


# --- failures, in words an administrator can act on -----------------------------------------


def test_wrong_password(domain_fleet: LabFleet, kerberos_env: str) -> None:
    reason = only_problem(target(domain_fleet, "gw01.lab.test"), "not-the-Pa55word")
    assert reason.startswith("Kerberos: the KDC refused the password of collector@LAB.TEST")
    assert "pre-authentication failed" in reason and "not-the-Pa55word" not in reason


def test_wrong_password_with_negotiate_names_both_refusals(domain_fleet: LabFleet, kerberos_env: str) -> None:
    client = target(domain_fleet, "client01.lab.test", auth="negotiate", username=LAB_USER)
    reason = only_problem(client, "not-the-Pa55word")
    assert reason.startswith("the host refused the credentials of LAB\\collector with negotiate auth (HTTP 401)")
    assert "Kerberos, tried first, failed: the KDC does not know the account LAB\\collector" in reason
    assert "user@REALM" in reason and "not-the-Pa55word" not in reason


def test_unknown_account(domain_fleet: LabFleet, kerberos_env: str) -> None:
    reason = only_problem(target(domain_fleet, "gw01.lab.test", username="ghost@LAB.TEST"), PASSWORD)
    assert reason.startswith("Kerberos: the KDC does not know the account ghost@LAB.TEST")


def test_stopped_kdc_then_started_again(domain_fleet: LabFleet, realm: LabRealm, kerberos_env: str) -> None:
    gw = target(domain_fleet, "gw01.lab.test")
    try:
        realm.stop()
        reason = only_problem(gw, PASSWORD)
        assert reason.startswith("Kerberos: no KDC of realm LAB.TEST answered (KDC unreachable)")
        assert "port 88" in reason and "kinit collector@LAB.TEST" in reason
    finally:
        realm.start()
    assert runner.collect_host(gw, Secret(PASSWORD)).problems == ()


@pytest.mark.parametrize(
    ("name", "spn_service", "spn"),
    [
        ("client01.lab.test", "host", "host/client01.lab.test"),  # pypsrp's default service
        ("alias.lab.test", "HTTP", "HTTP/alias.lab.test"),  # a DNS alias nobody registered
    ],
)
def test_unknown_spn(domain_fleet: LabFleet, kerberos_env: str, name: str, spn_service: str, spn: str) -> None:
    client = target(domain_fleet, "client01.lab.test", name=name, spn_service=spn_service)
    reason = only_problem(client, PASSWORD)
    assert reason.startswith(f"Kerberos: the KDC knows no service principal {spn} (principal unknown)")
    assert f"setspn -Q {spn}" in reason and f"the inventory name {name}, not from the address 127.0.0.1" in reason


def test_ticket_for_another_host_is_refused_by_the_host(domain_fleet: LabFleet, kerberos_env: str) -> None:
    """The name's SPN exists, but the host at that address holds another key (a stale DNS record)."""
    client = target(domain_fleet, "client01.lab.test")
    elsewhere = dataclasses.replace(client, port=domain_fleet.ports["rdsh01.lab.test"])
    reason = only_problem(elsewhere, PASSWORD)
    assert reason.startswith("client01.lab.test refused the Kerberos ticket of collector@LAB.TEST for HTTP/")
    assert "setspn -Q HTTP/client01.lab.test" in reason


@pytest.mark.parametrize("offset", [420, -420])
def test_five_minute_clock_skew(domain_fleet: LabFleet, realm: LabRealm, kerberos_env: str, offset: int) -> None:
    gw = target(domain_fleet, "gw01.lab.test", username="")
    realm.ticket_cache("collector", PASSWORD, kerberos_env, clock_offset=offset)
    reason = only_problem(gw, None)
    assert reason.startswith("Kerberos: clock skew too great")
    assert "more than the 5 minutes Kerberos allows" in reason and "w32tm /resync" in reason


def test_clock_within_five_minutes_still_works(domain_fleet: LabFleet, realm: LabRealm, kerberos_env: str) -> None:
    gw = target(domain_fleet, "gw01.lab.test", username="")
    realm.ticket_cache("collector", PASSWORD, kerberos_env, clock_offset=240)
    assert runner.collect_host(gw, None).problems == ()


def test_expired_ticket(domain_fleet: LabFleet, realm: LabRealm, kerberos_env: str) -> None:
    gw = target(domain_fleet, "gw01.lab.test", username="")
    realm.ticket_cache("collector", PASSWORD, kerberos_env, clock_offset=11 * 3600)  # lifetime is 10 h
    reason = only_problem(gw, None)
    assert reason.startswith("Kerberos: the ticket in the ticket cache has expired: run 'kinit USER@REALM' again")
    assert "'kinit -k -t KEYTAB USER@REALM' before each run" in reason


def test_no_ticket_cache(domain_fleet: LabFleet, kerberos_env: str) -> None:
    gw = target(domain_fleet, "gw01.lab.test", username="")
    reason = only_problem(gw, None)
    assert reason.startswith(f"Kerberos: no ticket in the ticket cache ({kerberos_env}) and no password source")
    assert "run 'kinit USER@REALM' first" in reason and "password_env" in reason


def test_negotiate_with_neither_ticket_nor_password(domain_fleet: LabFleet, kerberos_env: str) -> None:
    client = target(domain_fleet, "client01.lab.test", auth="negotiate")
    reason = only_problem(client, None)
    assert reason.startswith("negotiate could start neither Kerberos nor NTLM for collector@LAB.TEST")
    assert "Kerberos, tried first, failed: no ticket of collector@LAB.TEST in the ticket cache" in reason


def test_kerberos_only_host_uses_kerberos_message_framing(realm: LabRealm, kerberos_env: str) -> None:
    """A WinRM service with Negotiate off offers only 'Kerberos': clients switch to its own framing."""
    server = WSManServer(
        lambda invocation: InvocationResult(output=['{"probe":"x"}']),
        users={LAB_USER: PASSWORD},
        auth="kerberos",
        kerberos=KerberosService(str(realm.keytab), "rdsh01.lab.test"),
    )
    with server:
        base = HostTarget(name="rdsh01.lab.test", address="127.0.0.1", roles=(), transport="http", port=server.port)
        with HostSession(dataclasses.replace(base, auth="kerberos", username=USER), Secret(PASSWORD)) as session:
            assert session.run("Write-Output 1").output == ['{"probe":"x"}']
        assert server.logons == [Logon(LAB_USER, "Kerberos")]
        ntlm = dataclasses.replace(base, auth="ntlm", username=LAB_USER)
        reason = only_problem(ntlm, PASSWORD)
        assert "offers only Kerberos auth, not ntlm" in reason
        assert server.open_shells == 0
