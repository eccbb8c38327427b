"""The RD Gateway's own configuration: the certificate it is set to use against what HTTP.sys
serves, its private key, UDP transport, its authorization policies and the trust level of its
IIS applications; and what its event log recorded: users and resources its policies refused
(201/301) and resources it could not reach (304)."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from typing import Any

from collector.certs import thumbprint
from collector.checks import Verdict, events, failed_steps, judges, not_read
from collector.model import WHY_UNKNOWN, Evidence, HostFacts, Status

SETTINGS_NOT_READ = "the probe did not report Win32_TSGatewayServerSettings"


def _v(facts: HostFacts, probe: str) -> str:
    return f"{facts.target.name} (WinRM probe {probe})"


def _served_thumbprints(facts: HostFacts) -> list[tuple[str, str]]:
    """The leaf the workstation received on each of the host's TLS endpoints, as a thumbprint."""
    return [
        (endpoint, thumbprint(base64.b64decode(view["chain_der"][0])))
        for endpoint, view in facts.endpoints.items()
        if view.get("probe") == "check-tls" and view.get("chain_der")
    ]


@judges("rdg.cert-binding-mismatch")
def cert_binding_mismatch(facts: HostFacts) -> Verdict:
    data = facts.probes["gateway"].data
    v = _v(facts, "gateway")
    why = failed_steps(facts, "gateway", "Win32_TSGatewayServerSettings", "HTTP.sys bindings")
    if why or data["settings"] is None:
        return not_read("The gateway's certificate settings could not be read", why or SETTINGS_NOT_READ, v)
    configured = data["settings"].get("cert_hash")
    bindings = data["http_bindings"]
    evidence = [Evidence("configured certificate (CertHash)", configured or "(none)", v)]
    evidence += [Evidence(f"HTTP.sys binding {b['endpoint']}", b["cert_hash"] or "(none)", v) for b in bindings]
    if not configured:
        return Verdict(Status.FAIL, "RD Gateway has no SSL certificate configured", tuple(evidence))
    ipv4 = [b for b in bindings if b["endpoint"] == "0.0.0.0:443"]
    if not ipv4:
        return Verdict(Status.FAIL, "HTTP.sys has no certificate bound to 0.0.0.0:443", tuple(evidence))
    wrong = [b for b in bindings if (b["cert_hash"] or "").upper() != configured.upper()]
    if wrong:
        where = ", ".join(b["endpoint"] for b in wrong)
        return Verdict(
            Status.FAIL,
            f"HTTP.sys serves a different certificate on {where} than RD Gateway is set to use",
            tuple(evidence),
        )
    served = _served_thumbprints(facts)
    evidence += [Evidence(f"served on {endpoint}", thumbprint, "workstation") for endpoint, thumbprint in served]
    different = [endpoint for endpoint, thumbprint in served if thumbprint != configured.upper()]
    if different:
        return Verdict(
            Status.FAIL,
            f"{', '.join(different)} serves another certificate than RD Gateway is configured with "
            "(another binding, a load balancer or a proxy in front of it)",
            tuple(evidence),
        )
    return Verdict(Status.PASS, "HTTP.sys serves the certificate RD Gateway is configured with", tuple(evidence))


@judges("rdg.cert-no-private-key")
def cert_no_private_key(facts: HostFacts) -> Verdict:
    data = facts.probes["gateway"].data
    cert = data["certificate"]
    v = _v(facts, "gateway")
    why = failed_steps(facts, "gateway", "Win32_TSGatewayServerSettings", "gateway certificate")
    if cert is None and (why or data["settings"] is None):
        return not_read("The gateway certificate could not be read", why or SETTINGS_NOT_READ, v)
    if cert is None:
        return Verdict(
            Status.FAIL,
            "The configured gateway certificate is not in the machine store",
            (Evidence("certificate", "not found in LocalMachine\\My", v),),
        )
    evidence = (
        Evidence(
            "certificate",
            f"{cert['subject']} (thumbprint {cert['thumbprint']}, expires {cert['not_after']})",
            v,
        ),
        Evidence("private key", "present" if cert["has_private_key"] else "MISSING", v),
        Evidence("private key readable", str(cert["private_key_readable"]), v),
    )
    if not cert["has_private_key"]:
        return Verdict(Status.FAIL, "The gateway certificate has no private key", evidence)
    if cert["private_key_readable"] is False:
        return Verdict(Status.FAIL, "The gateway certificate's private key cannot be read", evidence)
    return Verdict(Status.PASS, "The gateway certificate has a usable private key", evidence)


@judges("net.udp-3391")
def udp_3391(facts: HostFacts) -> Verdict:
    data = facts.probes["listeners"].data
    udp = data["udp"]
    v = _v(facts, "listeners")
    on_3391 = [u for u in udp if u["port"] == 3391]
    step = "netstat" if data.get("source") == "netstat" else "Get-NetUDPEndpoint"
    if not on_3391 and (why := failed_steps(facts, "listeners", step)):
        return not_read("What listens on UDP 3391 could not be read", why, v)
    evidence = tuple(
        Evidence(f"UDP {u['local_address']}:3391", f"{u['process_name']} ({', '.join(u['services']) or '?'})", v)
        for u in on_3391
    ) or (Evidence("UDP 3391", "nothing listens", v),)
    if not on_3391:
        return Verdict(Status.WARN, "RD Gateway UDP transport (3391) is not listening: clients use TCP only", evidence)
    return Verdict(Status.PASS, "RD Gateway listens on UDP 3391", evidence)


@judges("rdg.policy-config")
def policies(facts: HostFacts) -> Verdict:
    """Both kinds of policy must have one enabled. A side that was read and has none refuses every
    connection whatever the other side holds, so it fails even when the other could not be read."""
    data = facts.probes["gateway"].data
    v = _v(facts, "gateway")
    cap_error = failed_steps(facts, "gateway", "CAP")
    rap_error = failed_steps(facts, "gateway", "RAP")
    settings = data["settings"]
    settings_error = "" if settings is not None else failed_steps(facts, "gateway", "Win32_TSGatewayServerSettings")
    caps = [c for c in data["caps"] if c["enabled"]]
    raps = [r for r in data["raps"] if r["enabled"]]
    central = bool((settings or {}).get("central_cap_enabled"))

    def listed(policies: list[Mapping[str, Any]], error: str) -> str:
        return f"not read ({error})" if error else ", ".join(p["name"] for p in policies) or "none"

    evidence = (
        Evidence("connection authorization policies (CAP)", listed(data["caps"], cap_error), v),
        Evidence("resource authorization policies (RAP)", listed(data["raps"], rap_error), v),
        Evidence("central CAP (NPS)", str(central) if settings is not None else f"not read ({settings_error})", v),
    )
    if not cap_error and not caps and settings is not None and not central:
        return Verdict(
            Status.FAIL,
            "No enabled connection authorization policy: every user is refused (event 201)",
            evidence,
        )
    if not rap_error and not raps:
        return Verdict(
            Status.FAIL,
            "No enabled resource authorization policy: every resource is refused (event 301)",
            evidence,
        )
    title = "The gateway's authorization policies could not be read"
    if why := "; ".join(e for e in (cap_error, rap_error) if e):
        return not_read(title, why, v)
    if not caps and settings is None:  # whether a central CAP (NPS) stands in is not known
        return not_read(title, settings_error or SETTINGS_NOT_READ, v)
    return Verdict(Status.PASS, f"{len(caps)} CAP(s) and {len(raps)} RAP(s) enabled", evidence)


@judges("rdg.iis-trust")
def iis_trust(facts: HostFacts) -> Verdict:
    apps = facts.probes["gateway"].data["iis_applications"]
    v = _v(facts, "gateway")
    if apps is None:
        return Verdict(
            Status.UNKNOWN,
            "The IIS trust level of /Rpc and /RpcWithCert could not be read",
            (
                Evidence(
                    WHY_UNKNOWN, "IIS's configuration could not be read (WebAdministration); see the probe errors", v
                ),
            ),
        )
    evidence = tuple(
        Evidence(
            a["path"],
            f"trust level {a['trust_level'] or 'not readable'}, {a['physical_path'] or 'no physical path'}"
            if a["present"]
            else "not present",
            v,
        )
        for a in apps
    )
    lowered = [a for a in apps if a["present"] and a["trust_level"] and a["trust_level"].lower() != "full"]
    if lowered:
        levels = ", ".join(f"/{a['path'].rsplit('/', 1)[-1]} at {a['trust_level']}" for a in lowered)
        return Verdict(
            Status.FAIL,
            f"RD Gateway's RPC-over-HTTP applications need Full trust: {levels}",
            evidence,
        )
    missing = [a["path"].rsplit("/", 1)[-1] for a in apps if not a["present"]]
    if missing:
        return Verdict(
            Status.WARN,
            f"/{', /'.join(missing)} missing from the Default Web Site: the RPC-over-HTTP transport is unavailable",
            evidence,
        )
    if any(a["trust_level"] is None for a in apps):
        return Verdict(Status.UNKNOWN, "The trust level of /Rpc or /RpcWithCert could not be read", evidence)
    return Verdict(Status.PASS, "/Rpc and /RpcWithCert run at Full trust", evidence)


def _gateway_log(facts: HostFacts) -> Mapping[str, Any] | Verdict:
    """The gateway's event log as read, or the unknown verdict that says why it cannot be judged."""
    v = _v(facts, "events")
    entry = events.log_entry(facts, events.GATEWAY_LOG)
    if entry is None:
        why = f"{events.GATEWAY_LOG} was not read by the events probe"
    elif not entry["available"]:
        why = f"{events.GATEWAY_LOG} does not exist on this host (is the RD Gateway role installed?)"
    elif failed := failed_steps(facts, "events", f"Get-WinEvent {events.GATEWAY_LOG}"):
        why = failed
    else:
        return entry
    return Verdict(Status.UNKNOWN, "The gateway's event log could not be read", (Evidence(WHY_UNKNOWN, why, v),))


def _window(facts: HostFacts) -> str:
    return f"{facts.probes['events'].data['since_hours']} h"


def _truncated(facts: HostFacts, entry: Mapping[str, Any]) -> tuple[Evidence, ...]:
    if not entry["truncated"]:
        return ()
    limit = facts.probes["events"].data["max_events"]
    note = f"only the newest {limit} events were read; older ones in the window are not counted"
    return (Evidence("event log read", note, _v(facts, "events")),)


@judges("rdg.policy-denied")
def policy_denied(facts: HostFacts) -> Verdict:
    """Events 201 (CAP) and 301 (RAP) in the window: who was refused, from where, to what, and why."""
    entry = _gateway_log(facts)
    if isinstance(entry, Verdict):
        return entry
    v = _v(facts, "events")
    window = _window(facts)
    found = entry["events"]
    denied = [e for e in found if e["id"] in (201, 301)]
    if not denied:
        met = Counter(e["id"] for e in found if e["id"] in (200, 300))
        return Verdict(
            Status.PASS,
            f"No connection refused by a CAP or RAP in {window}",
            (
                Evidence(f"authorizations in {window}", f"{met[200]} CAP met (200), {met[300]} RAP met (300)", v),
                *_truncated(facts, entry),
            ),
        )
    groups: dict[tuple[int, str, str, str, str], list[str]] = {}
    for e in denied:
        key = (
            e["id"],
            events.event_user(events.GATEWAY_LOG, e) or "an unnamed user",
            events.event_address(events.GATEWAY_LOG, e) or "an unrecorded address",
            events.field(e, "Resource"),
            events.field(e, "ErrorCode"),
        )
        groups.setdefault(key, []).append(e["time_utc"] or "")
    evidence = []
    for (eid, user, address, resource, error), times in sorted(groups.items(), key=lambda g: -len(g[1])):
        kind = "CAP" if eid == 201 else "RAP"
        to = f" to {resource or 'an unnamed resource'}" if eid == 301 else ""
        value = (
            f"{user} from {address}{to}: {len(times)} time(s), error {events.describe_gateway_error(error)}; "
            f"last at {max(times) or 'an unrecorded time'}"
        )
        evidence.append(Evidence(f"{kind} denied (event {eid})", value, v))
    users = list(dict.fromkeys(user for (_, user, *_rest) in groups))
    kinds = " and ".join(k for k, i in (("CAP", 201), ("RAP", 301)) if any(e["id"] == i for e in denied))
    more = f" and {len(users) - 3} more" if len(users) > 3 else ""
    return Verdict(
        Status.WARN,
        f"{len(denied)} connection(s) refused by {kinds} in {window}: {', '.join(users[:3])}{more}",
        (*evidence, *_truncated(facts, entry)),
    )


@judges("rdg.resource-unreachable")
def resource_unreachable(facts: HostFacts) -> Verdict:
    """Event 304: the policies allowed the connection, but the gateway could not reach the resource."""
    entry = _gateway_log(facts)
    if isinstance(entry, Verdict):
        return entry
    v = _v(facts, "events")
    window = _window(facts)
    failed = [e for e in entry["events"] if e["id"] == 304]
    if not failed:
        reached = sum(1 for e in entry["events"] if e["id"] == 302)
        return Verdict(
            Status.PASS,
            f"The gateway reached every resource it was asked for in {window}",
            (Evidence(f"connections to resources in {window}", f"{reached} (event 302), none failed (304)", v),),
        )
    by_resource: dict[str, list[Mapping[str, Any]]] = {}
    for e in failed:
        by_resource.setdefault(events.field(e, "Resource") or "an unnamed resource", []).append(e)
    evidence = []
    for resource, found in sorted(by_resource.items(), key=lambda item: -len(item[1])):
        errors = Counter(events.describe_gateway_error(events.field(e, "ErrorCode")) for e in found)
        users = sorted({events.event_user(events.GATEWAY_LOG, e) or "an unnamed user" for e in found})
        last = max((e["time_utc"] or "") for e in found) or "an unrecorded time"
        value = (
            f"{len(found)} time(s), for {', '.join(users)}; "
            + "; ".join(f"{n} x error {error}" for error, n in errors.most_common())
            + f"; last at {last}"
        )
        evidence.append(Evidence(f"could not reach {resource} (event 304)", value, v))
    return Verdict(
        Status.WARN,
        f"The gateway could not reach {', '.join(by_resource)} ({len(failed)} time(s) in {window})",
        (*evidence, *_truncated(facts, entry)),
    )
