"""rdp.firewall-closed as Windows enforces it: the profile of each connected network decides, a
profile that blocks all incoming connections overrides every rule (the article's "Block all
incoming connections"), and without the networks the rules alone decide."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from collector.model import ProbeError, Status
from tests.unit.test_checks_catalogue import facts_for, verdict

RDP_TCP = {
    "name": "RemoteDesktop-UserMode-In-TCP",
    "display_name": "Remote Desktop - User Mode (TCP-In)",
    "enabled": True,
    "direction": "Inbound",
    "action": "Allow",
    "profiles": "Any",
    "protocol": "TCP",
    "local_ports": ["3389"],
    "source": "GroupPolicy",
}


def profile(name: str, enabled: str = "True", inbound: str = "Block", rules: str = "True", local: str = "True") -> dict:
    return {
        "name": name,
        "enabled": enabled,
        "default_inbound_action": inbound,
        "allow_inbound_rules": rules,
        "allow_local_firewall_rules": local,
    }


DEFAULT_PROFILES = [profile("Domain"), profile("Private"), profile("Public")]


def judged(networks: list[str], profiles: list[dict], rules: list[dict[str, Any]] | None = None):
    overrides = {
        "rdp_config": {
            "network_categories": networks,
            "firewall_profiles": profiles,
            "firewall_rules": [RDP_TCP] if rules is None else rules,
        }
    }
    return verdict(facts_for("session_host", overrides), "rdp.firewall-closed")


def test_an_open_rule_on_the_profile_in_force_passes_and_shows_what_was_judged() -> None:
    result = judged(["DomainAuthenticated"], DEFAULT_PROFILES)
    assert (result.status, result.title) == (Status.PASS, "Windows Firewall allows TCP 3389 in on the Domain profile")
    # The rules decided, so they come first (a page's headline quotes the first line).
    assert [(e.label, e.value) for e in result.evidence] == [
        (
            "Remote Desktop - User Mode (TCP-In)",
            "enabled, Inbound, Allow, TCP 3389, profiles Any, from GroupPolicy",
        ),
        ("Domain profile (in force)", "firewall on, inbound default Block, rules apply"),
        ("connected networks", "DomainAuthenticated"),
        ("Private profile", "firewall on, inbound default Block, rules apply"),
        ("Public profile", "firewall on, inbound default Block, rules apply"),
    ]


def test_block_all_incoming_on_the_profile_in_force_fails_whatever_the_rules_allow() -> None:
    profiles = [profile("Domain"), profile("Private"), profile("Public", rules="False")]
    result = judged(["Public"], profiles)
    assert result.status is Status.FAIL
    assert result.title == (
        "Windows Firewall blocks all incoming connections on the Public profile, whatever its rules allow"
    )
    # The profiles decided, so they come first (a page's headline quotes the first line).
    assert [(e.label, e.value) for e in result.evidence][:2] == [
        ("Public profile (in force)", "firewall on, inbound default Block, BLOCKS ALL INCOMING (no rule applies)"),
        ("connected networks", "Public"),
    ]


def test_block_all_on_a_profile_not_in_force_changes_nothing() -> None:
    profiles = [profile("Domain"), profile("Private"), profile("Public", rules="False")]
    assert judged(["DomainAuthenticated"], profiles).status is Status.PASS


def test_a_domain_only_rule_on_a_network_taken_for_public_fails() -> None:
    rule = {**RDP_TCP, "profiles": "Domain"}
    result = judged(["Public"], DEFAULT_PROFILES, [rule])
    assert (result.status, result.title) == (
        Status.FAIL,
        "The rule that allows TCP 3389 in does not apply to the Public profile this host's network is under",
    )
    # The same rule is right for a domain server on its domain network; "Domain, Private" covers Private.
    assert judged(["DomainAuthenticated"], DEFAULT_PROFILES, [rule]).status is Status.PASS
    assert judged(["Private"], DEFAULT_PROFILES, [{**RDP_TCP, "profiles": "Domain, Private"}]).status is Status.PASS


def test_every_network_must_be_admitted() -> None:
    rule = {**RDP_TCP, "profiles": "Domain"}
    result = judged(["DomainAuthenticated", "Public"], DEFAULT_PROFILES, [rule])
    assert result.status is Status.FAIL and "the Public profile" in result.title


@pytest.mark.parametrize(
    ("profiles", "title"),
    [
        (
            [profile("Domain", enabled="False"), profile("Private"), profile("Public")],
            "Windows Firewall is off on the Domain profile in force",
        ),
        (
            [profile("Domain", inbound="Allow"), profile("Private"), profile("Public")],
            "Windows Firewall lets every incoming connection in (Domain)",
        ),
    ],
)
def test_a_profile_that_lets_everything_in_passes_whatever_the_rules(profiles: list[dict], title: str) -> None:
    disabled = {**RDP_TCP, "enabled": False}
    result = judged(["DomainAuthenticated"], profiles, [disabled])
    assert (result.status, result.title) == (Status.PASS, title)


def test_without_the_networks_the_rules_alone_decide() -> None:
    """Results written before profiles were collected, or Get-NetConnectionProfile failing: a Public
    profile that blocks everything, or a Domain-only rule, is no finding without the network."""
    profiles = [profile("Domain"), profile("Private"), profile("Public", rules="False")]
    assert judged([], profiles, [{**RDP_TCP, "profiles": "Domain"}]).status is Status.PASS
    assert judged([], [], [{**RDP_TCP, "enabled": False}]).status is Status.FAIL


def test_a_failed_profile_step_is_named_in_the_evidence() -> None:
    facts = facts_for("session_host", {"rdp_config": {"network_categories": [], "firewall_profiles": []}})
    rdp = facts.probes["rdp_config"]
    errors = (
        ProbeError("Get-NetConnectionProfile", "Access denied"),
        ProbeError("Get-NetFirewallProfile", "The service cannot be started"),
    )
    facts = dataclasses.replace(facts, probes={**facts.probes, "rdp_config": dataclasses.replace(rdp, errors=errors)})
    result = verdict(facts, "rdp.firewall-closed")
    assert result.status is Status.PASS  # the rules allow 3389; the profiles could not say otherwise
    said = [(e.label, e.value) for e in result.evidence]
    first = [label for label, _ in said].index("connected networks")  # after the rules, which decided
    assert said[first : first + 2] == [
        ("connected networks", "not read: probe rdp_config step Get-NetConnectionProfile failed: Access denied"),
        (
            "firewall profiles",
            "not read: probe rdp_config step Get-NetFirewallProfile failed: The service cannot be started",
        ),
    ]


def test_an_enforced_rule_outside_the_remote_desktop_group_admits_too() -> None:
    """The probe adds every enforced TCP rule that names the listener's port: a GPO's own rule
    admits RDP while the predefined group stays disabled."""
    own = {**RDP_TCP, "name": "{6B1B...}", "display_name": "Allow RDP (corp GPO)", "profiles": "Domain"}
    result = judged(["DomainAuthenticated"], DEFAULT_PROFILES, [{**RDP_TCP, "enabled": False, "source": "Local"}, own])
    assert (result.status, result.title) == (Status.PASS, "Windows Firewall allows TCP 3389 in on the Domain profile")
    assert ("Allow RDP (corp GPO)", "enabled, Inbound, Allow, TCP 3389, profiles Domain, from GroupPolicy") in [
        (e.label, e.value) for e in result.evidence
    ]
