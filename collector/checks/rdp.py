"""The session host's listener: enabled, listening, reachable through its firewall, and how it
authenticates (DESIGN §4 'session host'; the article's netstat and NLA causes); who may log on
through Remote Desktop Services, and RD Licensing (MSRD-Diag parity, DESIGN §12)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.checks import Verdict, failed_steps, judges, not_read
from collector.contract import PROFILE_OF_NETWORK
from collector.model import WHY_UNKNOWN, Evidence, HostFacts, Status

SECURITY_LAYERS = {0: "RDP Security Layer (classic, no TLS)", 1: "Negotiate", 2: "SSL (TLS)"}


def _effective(data: Mapping[str, Any], name: str) -> tuple[Any, str]:
    """A setting's value where a Group Policy value wins over the local one, and which it was."""
    policy = data.get(f"{name}_policy")
    if policy is not None:
        return policy, "Group Policy (HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services)"
    return data.get(name), "local setting (HKLM\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server)"


def _vantage(facts: HostFacts, probe: str) -> str:
    return f"{facts.target.name} (WinRM probe {probe})"


@judges("rdp.disabled")
def rdp_disabled(facts: HostFacts) -> Verdict:
    data = facts.probes["rdp_config"].data
    value, source = _effective(data, "deny_ts_connections")
    v = _vantage(facts, "rdp_config")
    evidence = (
        Evidence("fDenyTSConnections (local)", str(data["deny_ts_connections"]), v),
        Evidence("fDenyTSConnections (policy)", str(data["deny_ts_connections_policy"]), v),
    )
    if value == 1:
        by = "Group Policy" if source.startswith("Group Policy") else "the local setting"
        return Verdict(Status.FAIL, f"Remote Desktop is turned off by {by}", evidence)
    if value is None:
        return Verdict(Status.UNKNOWN, "fDenyTSConnections could not be read", evidence)
    return Verdict(Status.PASS, "Remote Desktop connections are allowed", evidence)


def _rdp_port(facts: HostFacts) -> int:
    listeners = facts.probes.get("listeners")
    port = listeners.data.get("rdp_port") if listeners else None
    if port is None and "rdp_config" in facts.probes:
        port = facts.probes["rdp_config"].data.get("port_number")
    return int(port or 3389)


def _listing_step(data: Mapping[str, Any], cmdlet: str) -> str:
    """The listeners probe step that listed the sockets: the cmdlet, or netstat where it is missing."""
    return "netstat" if data.get("source") == "netstat" else cmdlet


@judges("rdp.not-listening")
def rdp_not_listening(facts: HostFacts) -> Verdict:
    data = facts.probes["listeners"].data
    port = _rdp_port(facts)
    v = _vantage(facts, "listeners")
    tcp = [entry for entry in data["tcp"] if entry["port"] == port]
    evidence = [
        Evidence(
            f"TCP {e['local_address']}:{e['port']}",
            f"{e['process_name']} (PID {e['process_id']}, services {', '.join(e['services']) or 'none'})",
            v,
        )
        for e in tcp
    ]
    evidence.append(Evidence("netstat -ano | findstr " + str(port), "; ".join(data["netstat_rdp"]) or "(no lines)", v))
    if not tcp and (why := failed_steps(facts, "listeners", _listing_step(data, "Get-NetTCPConnection"))):
        return not_read(f"What listens on TCP {port} could not be read", why, v)
    if not tcp:
        return Verdict(Status.FAIL, f"Nothing listens on TCP {port}", tuple(evidence))
    owners = {s for e in tcp for s in e["services"]}
    if "TermService" not in owners:
        return Verdict(Status.WARN, f"TCP {port} is held by something other than TermService", tuple(evidence))
    return Verdict(Status.PASS, f"TermService listens on TCP {port}", tuple(evidence))


def _names(profiles: list[Mapping[str, Any]]) -> str:
    return " and ".join(p["name"] for p in profiles)


def _profile_text(profile: Mapping[str, Any]) -> str:
    state = "off" if profile["enabled"] == "False" else "on"
    rules = "BLOCKS ALL INCOMING (no rule applies)" if profile["allow_inbound_rules"] == "False" else "rules apply"
    local = "; the host's own rules ignored (Group Policy)" if profile["allow_local_firewall_rules"] == "False" else ""
    return f"firewall {state}, inbound default {profile['default_inbound_action']}, {rules}{local}"


def _rule_text(rule: Mapping[str, Any]) -> str:
    source = f", from {rule['source']}" if rule.get("source") else ""
    return (
        f"{'enabled' if rule['enabled'] else 'DISABLED'}, {rule['direction']}, {rule['action']}, "
        f"{rule['protocol']} {','.join(rule['local_ports'])}, profiles {rule['profiles']}{source}"
    )


def _applies(rule: Mapping[str, Any], profile: Mapping[str, Any]) -> bool:
    return rule["profiles"] == "Any" or profile["name"] in {p.strip() for p in rule["profiles"].split(",")}


def _firewall_evidence(
    facts: HostFacts, in_force: list[Mapping[str, Any]]
) -> tuple[tuple[Evidence, ...], tuple[Evidence, ...]]:
    """What rdp.firewall-closed shows: the profiles (those in force first, then the networks that
    put them in force, or why those were not read) and the rules."""
    data = facts.probes["rdp_config"].data
    v = _vantage(facts, "rdp_config")

    def profile_line(p: Mapping[str, Any]) -> Evidence:
        return Evidence(f"{p['name']} profile{' (in force)' if p in in_force else ''}", _profile_text(p), v)

    profiles = data.get("firewall_profiles") or []
    shown = tuple(profile_line(p) for p in in_force)
    for step, label, known in (
        ("Get-NetConnectionProfile", "connected networks", ", ".join(data.get("network_categories") or [])),
        ("Get-NetFirewallProfile", "firewall profiles", ""),
    ):
        if known:
            shown += (Evidence(label, known, v),)
        elif why := failed_steps(facts, "rdp_config", step):
            shown += (Evidence(label, f"not read: {why}", v),)
    shown += tuple(profile_line(p) for p in profiles if p not in in_force)
    return shown, tuple(Evidence(r["display_name"] or r["name"], _rule_text(r), v) for r in data["firewall_rules"])


@judges("rdp.firewall-closed")
def rdp_firewall_closed(facts: HostFacts) -> Verdict:
    """Whether Windows Firewall, as enforced, lets TCP in to the RDP port. The profile of each
    connected network decides (a server whose network is taken for Public loses a Domain-only
    rule), and a profile that blocks all incoming connections overrides every rule."""
    data = facts.probes["rdp_config"].data
    rules = data["firewall_rules"]
    profiles = data.get("firewall_profiles") or []
    port = str(_rdp_port(facts))
    v = _vantage(facts, "rdp_config")
    networks = {PROFILE_OF_NETWORK.get(c, c) for c in data.get("network_categories") or []}
    # Which profiles are in force is known only from the networks: without them, rules alone decide
    # (a Public profile that blocks everything says nothing about a server on its domain network).
    in_force = [p for p in profiles if p["name"] in networks]
    enforcing = [p for p in in_force if p["enabled"] != "False"]
    profile_evidence, rule_evidence = _firewall_evidence(facts, in_force)
    # What decided comes first (a page's headline quotes the first line): the profiles, or the rules.
    by_profile, evidence = profile_evidence + rule_evidence, rule_evidence + profile_evidence
    if in_force and not enforcing:
        return Verdict(Status.PASS, f"Windows Firewall is off on the {_names(in_force)} profile in force", by_profile)
    if blocking := [p for p in enforcing if p["allow_inbound_rules"] == "False"]:
        return Verdict(
            Status.FAIL,
            f"Windows Firewall blocks all incoming connections on the {_names(blocking)} profile, "
            "whatever its rules allow",
            by_profile,
        )
    if enforcing and all(p["default_inbound_action"] == "Allow" for p in enforcing):
        return Verdict(
            Status.PASS, f"Windows Firewall lets every incoming connection in ({_names(enforcing)})", by_profile
        )
    if not rules and (why := failed_steps(facts, "rdp_config", "Get-NetFirewallRule")):
        return not_read("The Remote Desktop firewall rules could not be read", why, v)
    if not rules:
        return Verdict(
            Status.WARN,
            "No Remote Desktop firewall rules found on the host",
            (
                *evidence,
                Evidence("Remote Desktop rule group", "not present (a third-party firewall or GPO may manage it)", v),
            ),
        )
    open_tcp = [
        r
        for r in rules
        if r["enabled"]
        and r["direction"] == "Inbound"
        and r["action"] == "Allow"
        and r["protocol"] == "TCP"
        and (port in r["local_ports"] or "Any" in r["local_ports"] or "RDP" in r["local_ports"])
    ]
    if not open_tcp:
        return Verdict(Status.FAIL, f"Windows Firewall does not allow TCP {port} in", evidence)
    uncovered = [
        p for p in enforcing if p["default_inbound_action"] != "Allow" and not any(_applies(r, p) for r in open_tcp)
    ]
    if uncovered:
        return Verdict(
            Status.FAIL,
            f"The rule that allows TCP {port} in does not apply to the {_names(uncovered)} profile "
            "this host's network is under",
            by_profile,
        )
    where = f" on the {_names(enforcing)} profile" if enforcing else ""
    return Verdict(Status.PASS, f"Windows Firewall allows TCP {port} in{where}", evidence)


@judges("rdp.nla-disabled")
def rdp_nla_disabled(facts: HostFacts) -> Verdict:
    data = facts.probes["rdp_config"].data
    value, source = _effective(data, "user_authentication")
    general = data.get("general_setting")
    if general is not None and data.get("user_authentication_policy") is None:
        value = general["user_authentication_required"]
    v = _vantage(facts, "rdp_config")
    evidence = (Evidence("UserAuthentication (NLA)", f"{value} from the {source}", v),)
    if value == 0:
        return Verdict(Status.WARN, "Network Level Authentication is off", evidence)
    if value is None:
        return Verdict(Status.UNKNOWN, "The NLA setting could not be read", evidence)
    return Verdict(Status.PASS, "Network Level Authentication is required", evidence)


@judges("rdp.security-layer")
def rdp_security_layer(facts: HostFacts) -> Verdict:
    data = facts.probes["rdp_config"].data
    value, source = _effective(data, "security_layer")
    general = data.get("general_setting")
    if general is not None and data.get("security_layer_policy") is None:
        value = general["security_layer"]
    v = _vantage(facts, "rdp_config")
    evidence = (Evidence("SecurityLayer", f"{value} = {SECURITY_LAYERS.get(value, 'unknown')} ({source})", v),)
    if value == 0:
        return Verdict(Status.FAIL, "Classic RDP security: no TLS, the server is not authenticated", evidence)
    if value == 1:
        return Verdict(
            Status.WARN,
            "Security layer is Negotiate: clients may fall back to classic RDP security",
            evidence,
        )
    if value is None:
        return Verdict(Status.UNKNOWN, "The security layer could not be read", evidence)
    return Verdict(Status.PASS, "The listener requires TLS", evidence)


@judges("rdp.port-nondefault")
def rdp_port_nondefault(facts: HostFacts) -> Verdict:
    port = facts.probes["rdp_config"].data.get("port_number")
    if port is None and (why := failed_steps(facts, "rdp_config", "registry")):
        return not_read("The RDP-Tcp PortNumber could not be read", why, _vantage(facts, "rdp_config"))
    evidence = (Evidence("RDP-Tcp PortNumber", str(port), _vantage(facts, "rdp_config")),)
    if port not in (None, 3389):
        return Verdict(Status.WARN, f"RDP listens on port {port}, not 3389", evidence)
    return Verdict(Status.PASS, "RDP uses the default port 3389", evidence)


ADMINISTRATORS = "S-1-5-32-544"
REMOTE_DESKTOP_USERS = "S-1-5-32-555"
# Groups whose denial shuts out ordinary Remote Desktop users; denying Guests or local accounts
# (S-1-5-113, S-1-5-114) is a common hardening baseline and keeps domain users working.
BROAD_GROUPS = {
    "S-1-1-0": "Everyone",
    "S-1-5-11": "Authenticated Users",
    "S-1-5-32-545": "Users",
    ADMINISTRATORS: "Administrators",
    REMOTE_DESKTOP_USERS: "Remote Desktop Users",
}


def _is_broad(sid: str | None) -> bool:
    return sid is not None and (sid in BROAD_GROUPS or (sid.startswith("S-1-5-21-") and sid.endswith("-513")))


def _principal(p: Mapping[str, Any]) -> str:
    if p["account"] and p["sid"]:
        return f"{p['account']} ({p['sid']})"
    return p["account"] or p["sid"] or "?"


@judges("rdp.user-rights")
def user_rights(facts: HostFacts) -> Verdict:
    rights = facts.probes["rdp_config"].data["user_rights"]
    v = _vantage(facts, "rdp_config")
    if rights is None:
        errors = "; ".join(e.message for e in facts.probes["rdp_config"].errors if "secedit" in e.step)
        return Verdict(
            Status.UNKNOWN,
            "The Remote Desktop logon rights could not be read",
            (Evidence(WHY_UNKNOWN, errors or "secedit /export did not report the user rights", v),),
        )
    allow, deny = rights["remote_interactive"], rights["deny_remote_interactive"]
    evidence = (
        Evidence(
            "Allow log on through Remote Desktop Services (SeRemoteInteractiveLogonRight)",
            ", ".join(_principal(p) for p in allow) or "nobody",
            v,
        ),
        Evidence(
            "Deny log on through Remote Desktop Services (SeDenyRemoteInteractiveLogonRight)",
            ", ".join(_principal(p) for p in deny) or "nobody",
            v,
        ),
    )
    denied = [p for p in deny if _is_broad(p["sid"])]
    if denied:
        names = ", ".join(p["account"] or BROAD_GROUPS.get(p["sid"], p["sid"]) for p in denied)
        return Verdict(
            Status.FAIL,
            f"{names} denied log on through Remote Desktop Services: their members are refused (extended reason 9)",
            evidence,
        )
    if not allow:
        return Verdict(Status.FAIL, "Nobody may log on through Remote Desktop Services", evidence)
    sids = {p["sid"] for p in allow}
    defaults = ((ADMINISTRATORS, "Administrators"), (REMOTE_DESKTOP_USERS, "Remote Desktop Users"))
    missing = [name for sid, name in defaults if sid not in sids]
    if missing:
        return Verdict(
            Status.WARN,
            f"{' and '.join(missing)} may not log on through Remote Desktop Services",
            evidence,
        )
    return Verdict(
        Status.PASS, "Administrators and Remote Desktop Users may log on through Remote Desktop Services", evidence
    )


# Win32_TerminalServiceSetting.LicensingType and the LicensingMode policy (3 is unused).
LICENSING_TYPES = {
    0: "Personal Terminal Server",
    1: "Remote Desktop for Administration",
    2: "Per Device",
    4: "Per User",
    5: "Not configured",
}


@judges("rdp.licensing")
def licensing(facts: HostFacts) -> Verdict:
    lic = facts.probes["rdp_config"].data["licensing"]
    v = _vantage(facts, "rdp_config")
    server_mode = lic["terminal_server_mode"]
    if server_mode is None:
        return Verdict(
            Status.UNKNOWN,
            "RD Licensing could not be read",
            (Evidence(WHY_UNKNOWN, "Win32_TerminalServiceSetting could not be read; see the probe errors", v),),
        )
    policy_mode, wmi_type = lic["licensing_mode_policy"], lic["licensing_type"]
    mode = policy_mode if policy_mode is not None else wmi_type
    servers = lic["license_servers_policy"] or lic["license_servers_specified"]
    grace = lic["grace_period_days"]
    source = "Group Policy" if lic["policy_source_licensing_type"] == 1 else "server setting"
    policy_text = "not set" if policy_mode is None else f"{policy_mode} = {LICENSING_TYPES.get(policy_mode, '?')}"
    evidence = (
        Evidence("server mode", "RD Session Host" if server_mode == 1 else "Remote Desktop for Administration", v),
        Evidence("LicensingType", f"{wmi_type} = {LICENSING_TYPES.get(wmi_type, '?')} ({source})", v),
        Evidence("LicensingMode (policy)", policy_text, v),
        Evidence("license servers (policy LicenseServers)", ", ".join(lic["license_servers_policy"]) or "none", v),
        Evidence("license servers (SpecifiedLicenseServers)", ", ".join(lic["license_servers_specified"]) or "none", v),
        Evidence("grace period", "not read" if grace is None else f"{grace} day(s) left", v),
    )
    if server_mode == 0:
        return Verdict(
            Status.PASS,
            "Remote Desktop for Administration: no RDS licensing needed (two administrative sessions)",
            evidence,
        )
    gaps = ([] if mode in (2, 4) else ["no licensing mode is set"]) + ([] if servers else ["no license server is set"])
    if not gaps:
        return Verdict(Status.PASS, f"{LICENSING_TYPES[mode]} licensing from {', '.join(servers)}", evidence)
    what = " and ".join(gaps)
    if grace is not None and grace > 0:
        return Verdict(
            Status.WARN, f"RD Licensing is not configured ({what}): {grace} day(s) of grace period left", evidence
        )
    if grace == 0:
        return Verdict(
            Status.FAIL,
            f"RD Licensing is not configured ({what}) and the grace period is over: connections are refused",
            evidence,
        )
    return Verdict(
        Status.WARN, f"RD Licensing is not configured ({what}); the grace period could not be read", evidence
    )
