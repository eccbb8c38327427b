"""What the Remote Desktop event logs record, decoded: the events probe's entries read back by log
and id, the accounts, addresses and resources they name, and their error codes in words.

Pure helpers shared by the gateway's event checks (``rdg.policy-denied``, ``rdg.resource-unreachable``)
and the incident path, which joins the client's, the gateway's and the session host's events. The
field names are those of each event's EventData / UserData (the events probe keeps them by name),
never the localized message. A code not in these tables is said to be unknown, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from collector.codes import describe_disconnect
from collector.model import HostFacts

RDPCLIENT_LOG = "Microsoft-Windows-TerminalServices-RDPClient/Operational"
GATEWAY_LOG = "Microsoft-Windows-TerminalServices-Gateway/Operational"
RCM_LOG = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
LSM_LOG = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"
RDPCORE_LOG = "Microsoft-Windows-RemoteDesktopServices-RdpCoreTS/Operational"
SECURITY_LOG = "Security"

Event = Mapping[str, Any]

# RD Gateway's ErrorCode in 201 (CAP) and 301 (RAP). 304 carries a Win32 / Winsock error instead.
GATEWAY_ERRORS: dict[int, str] = {
    23002: "the resource is not in a computer group of any RAP that allows this user",
    23003: "the user (or the client computer) is not in a user group of any CAP, or NPS refused the request",
}
# Win32 / Winsock errors the gateway reports when it cannot reach a resource (event 304).
WIN32_ERRORS: dict[int, str] = {
    5: "access denied",
    1326: "the user name or password is incorrect",
    10051: "the network of the resource is unreachable from the gateway",
    10060: "connection timed out: nothing answered on the RDP port (host down, or a firewall drops it)",
    10061: "connection refused: nothing listens on the RDP port",
    10065: "no route from the gateway to the resource",
    11001: "the gateway cannot resolve the resource's name",
    11004: "the resource's name has no address record",
}
# NTSTATUS in Security 4625 (Status / SubStatus).
LOGON_STATUS: dict[int, str] = {
    0xC000006D: "bad user name or password",
    0xC000006A: "wrong password",
    0xC0000064: "no such user",
    0xC000006E: "account restriction",
    0xC000006F: "outside the allowed logon hours",
    0xC0000070: "not allowed from this workstation",
    0xC0000071: "password expired",
    0xC0000072: "account disabled",
    0xC0000133: "clocks of the host and the domain controller too far apart (Kerberos)",
    0xC000015B: "the logon type is not granted (no 'Allow log on through Remote Desktop Services' right)",
    0xC0000193: "account expired",
    0xC0000224: "the password must be changed at next logon",
    0xC0000234: "account locked out",
    0xC0000413: "authentication firewall: not allowed to authenticate to this machine",
}


def log_entry(facts: HostFacts, log: str) -> Mapping[str, Any] | None:
    """The events probe's record of one log (available, truncated, events), or None when not read."""
    probe = facts.probes.get("events")
    if probe is None:
        return None
    return next((entry for entry in probe.data["logs"] if entry["log"] == log), None)


def events_of(facts: HostFacts, log: str, ids: Sequence[int] | None = None) -> list[Event]:
    entry = log_entry(facts, log)
    if entry is None:
        return []
    return [e for e in entry["events"] if ids is None or e["id"] in ids]


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_int(text: str | None) -> int | None:
    """A code as events write it: decimal, or hex with 0x (HRESULTs, NTSTATUS)."""
    value = (text or "").strip().strip('"').lower()
    try:
        return int(value, 16) if value.startswith("0x") else int(value, 10)
    except ValueError:
        return None


def field(event: Event, *names: str) -> str:
    """The first of ``names`` the event carries, as text ('' when none)."""
    data = event.get("data") or {}
    return next((str(data[n]).strip() for n in names if str(data.get(n) or "").strip()), "")


def sam_name(account: str) -> str:
    """The account without its domain, lower case: 'LAB\\jdoe', 'jdoe@lab.test' and 'jdoe' are one user.
    Event logs name the domain differently (NetBIOS, DNS, none), so users are matched by this."""
    name = account.strip().rsplit("\\", 1)[-1].split("@", 1)[0]
    return name.lower()


def same_host(a: str, b: str) -> bool:
    """Host names that denote one host: equal, or one is the other's first label (NetBIOS vs FQDN)."""
    a, b = a.strip().lower().rstrip("."), b.strip().lower().rstrip(".")
    if not a or not b:
        return False
    return a == b or a.split(".", 1)[0] == b or b.split(".", 1)[0] == a


def describe_gateway_error(text: str) -> str:
    """ErrorCode of a gateway event in words: the CAP/RAP codes, or a Win32/Winsock error (also as HRESULT)."""
    code = parse_int(text)
    if code is None:
        return f"{text or 'no code'}"
    if code in GATEWAY_ERRORS:
        return f"{code}: {GATEWAY_ERRORS[code]}"
    win32 = code & 0xFFFF if (code & 0xFFFF0000) == 0x80070000 else code
    if win32 in WIN32_ERRORS:
        return f"{text}: {WIN32_ERRORS[win32]}"
    return f"{text}: not a documented code"


def describe_logon_status(text: str) -> str:
    code = parse_int(text)
    if code is None:
        return text or "no status"
    meaning = LOGON_STATUS.get(code)
    return f"0x{code:08X} ({meaning})" if meaning else f"0x{code:08X}"


def event_user(log: str, event: Event) -> str:
    """The account an event is about, as the event names it ('' when it names none)."""
    if log == GATEWAY_LOG:
        return field(event, "Username", "UserName")
    if log == RCM_LOG:
        user, domain = field(event, "Param1"), field(event, "Param2")
        return f"{domain}\\{user}" if user and domain else user
    if log == LSM_LOG:
        return field(event, "User")
    if log == SECURITY_LOG:
        user, domain = field(event, "TargetUserName"), field(event, "TargetDomainName")
        return f"{domain}\\{user}" if user and domain else user
    return ""


def event_address(log: str, event: Event) -> str:
    """The remote address an event names (the client's, or the gateway's for a session host), without port."""
    if log == GATEWAY_LOG:
        value = field(event, "IpAddress", "ClientIP")
    elif log == RCM_LOG:
        value = field(event, "Param3")
    elif log == LSM_LOG:
        value = field(event, "Address")
    elif log == RDPCORE_LOG:
        value = field(event, "ClientIP", "IPAddress", "IpAddress")
    elif log == SECURITY_LOG:
        value = field(event, "IpAddress")
    else:
        value = ""
    if value.count(":") == 1:  # 10.0.0.5:51234 (IPv4 with port)
        value = value.split(":", 1)[0]
    return value.strip("[]")


def disconnect_reason(event: Event) -> int | None:
    """RDPClient 1026's disconnect reason."""
    return parse_int(field(event, "Value", "Reason"))


def summary(log: str, event: Event) -> str:
    """One line saying what the event records, decoded."""
    eid = event["id"]
    user, address = event_user(log, event), event_address(log, event)
    who = f"{user or 'an unnamed user'}" + (f" from {address}" if address else "")
    if log == RDPCLIENT_LOG:
        if eid == 1024:
            return f"mstsc starts connecting to {field(event, 'Value') or 'a server'}"
        if eid == 1026:
            reason = disconnect_reason(event)
            return "mstsc disconnected: " + (describe_disconnect(reason) if reason is not None else "no reason given")
        if eid == 1027:
            return "mstsc connected to the domain"
        if eid == 1102:
            return "mstsc starts the UDP transport"
        if eid == 1103:
            return "mstsc established the UDP transport"
        if eid == 1105:
            return "the UDP transport was disconnected"
        return f"RDPClient event {eid}"
    if log == GATEWAY_LOG:
        resource = field(event, "Resource") or "a resource"
        error = describe_gateway_error(field(event, "ErrorCode"))
        gateway_events = {
            200: f"CAP met: {who} ({field(event, 'AuthType') or 'authentication method not recorded'})",
            201: f"CAP denied: {who} (error {error})",
            300: f"RAP met: {who} to {resource}",
            301: f"RAP denied: {who} to {resource} (error {error})",
            302: f"{who} connected to {resource} ({field(event, 'ConnectionProtocol') or 'protocol not recorded'})",
            303: f"{who} disconnected from {resource} after {field(event, 'SessionDuration') or '?'} s",
            304: f"could not reach {resource} for {who} (error {error})",
        }
        return gateway_events.get(eid, f"RD Gateway event {eid}")
    if log == RCM_LOG:
        if eid == 1149:
            return f"user authentication succeeded: {who}"
        return f"RemoteConnectionManager event {eid}"
    if log == LSM_LOG:
        session = field(event, "SessionID")
        lsm = {
            21: f"session logon succeeded: {who} (session {session})",
            22: f"shell start: {who} (session {session})",
            23: f"session logoff: {user} (session {session})",
            24: f"session disconnected: {who} (session {session})",
            25: f"session reconnected: {who} (session {session})",
            39: f"session {field(event, 'TargetSession')} disconnected by session {field(event, 'Source')}",
            40: f"session {session} disconnected, reason code {field(event, 'Reason')}",
        }
        return lsm.get(eid, f"LocalSessionManager event {eid}")
    if log == RDPCORE_LOG:
        if eid == 131:
            return f"accepted a TCP connection from {address or 'an unrecorded address'}"
        if eid == 140:
            return f"a connection from {address or 'an unrecorded address'} failed: wrong user name or password"
        return f"RdpCoreTS event {eid}"
    if log == SECURITY_LOG and eid == 4625:
        status = field(event, "SubStatus")
        if parse_int(status) in (None, 0):
            status = field(event, "Status")
        return f"logon failed for {who}: {describe_logon_status(status)}, logon type {field(event, 'LogonType') or '?'}"
    return f"{log} event {eid}"
