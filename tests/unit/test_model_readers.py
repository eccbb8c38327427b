"""results.json read back into the model (``run_from_dict``, ``host_from_dict``): pydantic's
reader of the same dataclasses the schema is generated from, so a run is re-rendered from its
file exactly as it was written."""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from collector import checks, history, model, runner
from collector.checks import fleet
from collector.incident import incident_paths
from collector.lab import emulate
from collector.lab.fleet import FleetCertificates, ScenarioHost, lab_view, load_scenario
from collector.model import (
    CheckResult,
    CollectionFailure,
    CollectionProblem,
    Evidence,
    HostFacts,
    HostReport,
    HostTarget,
    ProbeError,
    ProbeResult,
    Role,
    RunReport,
    Severity,
    Status,
    host_from_dict,
    run_from_dict,
    to_dict,
)
from collector.runner import RunOptions
from tests.builders import host_probe

NOW = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def target_of(host: ScenarioHost, index: int) -> HostTarget:
    """The inventory's view of a demo host, every setting the inventory can give varied across the fleet."""
    odd = index % 2 == 1
    return HostTarget(
        name=host.name,
        address=f"10.20.1.{index + 10}",
        roles=tuple(Role(r) for r in host.roles),
        transport=host.transport,
        port=5985 if odd else 5986,
        auth=host.auth if odd else "kerberos",
        username="LAB\\collector" if odd else "",
        cert_validation=not odd,
        ca_file="lab-ca.pem" if odd else "",
        allow_unencrypted=odd,
        allow_ntlm=[None, True, False][index % 3],
        connect_timeout_s=5.0 if odd else 10.0,
        operation_timeout_s=30.0 if odd else 60.0,
        host_deadline_s=90.0 if odd else 120.0,
        spn_service="WSMAN" if odd else "HTTP",
        delegate=odd,
        rdp_port=3390 if odd else 3389,
        gateway_port=8443 if odd else 443,
        gateway=host.gateway,
        session_hosts=host.session_hosts,
        group="site-a" if odd else "",
    )


def endpoint_view(target: HostTarget) -> tuple[dict[str, dict[str, Any]], tuple[CheckResult, ...]]:
    """What the workstation's own probes of the host's endpoints would record (their summary's shape)."""
    endpoints: dict[str, dict[str, Any]] = {}
    results = []
    for role, port, check_id in (
        (Role.GATEWAY, target.gateway_port, "tls.handshake"),
        (Role.SESSION_HOST, target.rdp_port, "rdp.negotiation"),
    ):
        if role not in target.roles:
            continue
        endpoint = f"{target.name}:{port}"
        endpoints[endpoint] = {
            "probe": "check-tls" if role is Role.GATEWAY else "check-rdp",
            "endpoint": endpoint,
            "address": target.address,
            "protocol": "TLSv1.3",
            "cipher": "TLS_AES_256_GCM_SHA384",
            "chain_der": ["MIIB", "MIIC"],
            "trust": "system roots and lab-ca.pem",
            "problem": "",
            "chain_problem": None,
            "trust_problem": "",
        }
        evidence = (Evidence("negotiated", "TLSv1.3", "workstation"),)
        results.append(
            CheckResult(
                check_id,
                Status.PASS,
                Severity.CRITICAL,
                "Handshake",
                target.name,
                evidence,
                "",
                ("https://example.test/ref",),
                endpoint,
            )
        )
    return endpoints, tuple(results)


def collect(host: ScenarioHost, index: int, hosts: list[ScenarioHost], certs: FleetCertificates) -> HostFacts:
    """What the run would collect from one demo host: the probes its roles need, answered as the
    lab answers them, or the collection problem of a host that is down."""
    target = target_of(host, index)
    calls = runner.plan(target, RunOptions(user_context=True))
    started = NOW + timedelta(seconds=index)
    endpoints, endpoint_results = endpoint_view(target)
    common: dict[str, Any] = {
        "planned": tuple(c.probe for c in calls),
        "endpoints": endpoints,
        "endpoint_results": endpoint_results,
        "workstation_dns": {
            "name": target.name,
            "addresses": [target.address],
            "source": "inventory address",
            "error": None,
        },
        "started": iso(started),
        "finished": iso(started + timedelta(seconds=4)),
        "duration_s": 4.125,
    }
    if host.fault == "down":
        problem = CollectionProblem(CollectionFailure.UNREACHABLE, "connection refused on port 5986")
        return HostFacts(target=target, problems=(problem,), **common)
    view = dataclasses.replace(lab_view(host, hosts, certs), now=lambda: NOW)
    probes = {}
    for call in calls:
        data = emulate.answer(
            call.probe,
            name=host.name,
            roles=host.roles,
            services=host.services,
            os=host.os,
            clock_skew_seconds=host.clock_skew_seconds,
            facts=host.facts,
            events=host.events,
            parameters=call.parameters,
            view=view,
        )
        errors = (ProbeError("Get-WinEvent", "No events were found"),) if call.probe == "events" else ()
        received = iso(started + timedelta(seconds=1))
        probes[call.probe] = ProbeResult(call.probe, 1, data, errors, duration_s=0.25, received_utc=received)
    problems = ()
    if index == 1:  # one probe of one host could not be read
        problems = (CollectionProblem(CollectionFailure.BAD_OUTPUT, "not JSON", probe=calls[-1].probe),)
        del probes[calls[-1].probe]
    warnings = ("The WinRM client received an HTTP status code of 500",) if index == 2 else ()
    return HostFacts(target=target, probes=probes, problems=problems, session_warnings=warnings, **common)


@functools.cache
def demo_like_run() -> RunReport:
    """The demo fleet as a run reports it: every host collected (or not), judged, compared with a
    previous run and joined into connection paths; every field of the model holds a value of its own."""
    hosts = load_scenario()
    certs = FleetCertificates.create(hosts)
    facts = [collect(host, index, hosts, certs) for index, host in enumerate(hosts)]
    reports = fleet.evaluate_fleet([HostReport(f, tuple(checks.evaluate(f))) for f in facts])
    run = RunReport(
        "20260301T080000Z",
        iso(NOW),
        iso(NOW + timedelta(minutes=1)),
        "0.1.0",
        "ws01.lab.test",
        "inventory.yaml",
        tuple(reports),
        paths=incident_paths(reports, since_hours=24, now=iso(NOW + timedelta(minutes=1))),
    )
    # The previous run: the first host not yet in it, one that has gone since, a problem the
    # second host has since resolved and the third host's problems not yet there.
    _, second, third, *rest = reports
    gone = HostReport(
        dataclasses.replace(facts[0], target=dataclasses.replace(facts[0].target, name="old.lab.test")), ()
    )
    worse = CheckResult("rdp.nla-disabled", Status.FAIL, Severity.WARNING, "NLA", second.name)
    better = tuple(c for c in third.checks if not c.is_problem)
    earlier = (
        dataclasses.replace(second, checks=(*second.checks, worse)),
        dataclasses.replace(third, checks=better),
        *rest,
        gone,
    )
    previous = dataclasses.replace(run, run_id="20260228T080000Z", hosts=earlier, paths=())
    return dataclasses.replace(run, changes=history.compare(previous, run))


def model_types(kind: Any, seen: dict[type, None] | None = None) -> dict[type, None]:
    """The dataclasses ``kind`` is made of, ``kind`` first."""
    seen = {} if seen is None else seen
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if kind in seen:
            return seen
        seen[kind] = None
        for hint in typing.get_type_hints(kind).values():
            model_types(hint, seen)
    for arg in typing.get_args(kind):
        model_types(arg, seen)
    return seen


def has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def default_of(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def set_fields(obj: Any, found: set[tuple[type, str]]) -> set[tuple[type, str]]:
    """The (type, field) pairs holding something else than their default somewhere in ``obj``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if not has_default(f) or value != default_of(f):
                found.add((type(obj), f.name))
            set_fields(value, found)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            set_fields(value, found)
    elif isinstance(obj, list | tuple):
        for value in obj:
            set_fields(value, found)
    return found


def test_the_demo_like_run_sets_every_field_of_the_model() -> None:
    """So that the round trip below reads every field back (a field added later is caught here)."""
    every = {(kind, f.name) for kind in model_types(RunReport) for f in dataclasses.fields(kind)}
    unset = every - set_fields(demo_like_run(), set()) - {(RunReport, "schema_version")}
    assert sorted(f"{kind.__name__}.{name}" for kind, name in unset) == []


def test_a_demo_like_run_round_trips_through_results_json() -> None:
    run = demo_like_run()
    data = json.loads(json.dumps(to_dict(run)))
    back = run_from_dict(data)
    assert back == run
    assert to_dict(back) == data
    assert [host_from_dict(h) for h in data["hosts"]] == list(run.hosts)


def test_what_is_read_back_is_as_the_run_built_it() -> None:
    """Sequences are tuples (frozen and hashable, as the run builds them), enums are enums, and a
    probe's data is the plain JSON it was, lists and all."""
    back = run_from_dict(json.loads(json.dumps(to_dict(demo_like_run()))))
    host = next(h for h in back.hosts if "events" in h.facts.probes)
    assert type(back.hosts) is tuple and type(host.checks) is tuple and type(back.paths) is tuple
    assert type(host.facts.target.roles) is tuple and isinstance(host.facts.target.roles[0], Role)
    assert all(type(c.evidence) is tuple and type(c.status) is Status for c in host.checks)
    assert {hash(c) for c in host.checks}  # hashable, as frozen dataclasses of tuples are
    probe = host.facts.probes["events"]
    assert type(probe.data) is dict and type(probe.data["logs"]) is list
    assert type(probe.errors) is tuple and type(probe.errors[0]) is ProbeError
    assert back.changes is not None and type(back.changes.hosts[0].new) is tuple


def without_defaulted(obj: Any) -> Any:
    """``obj``'s results.json without any field that has a default: what a file written before
    those fields existed holds."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: without_defaulted(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not has_default(f) or f.name == "schema_version"
        }
    if isinstance(obj, Mapping):
        return {k: without_defaulted(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [without_defaulted(v) for v in obj]
    return to_dict(obj)


def defaulted(obj: Any) -> Any:
    """``obj`` with every field that has a default set to it."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        kept = {f.name: defaulted(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not has_default(f)}
        return type(obj)(**kept)
    if isinstance(obj, Mapping):
        return {k: defaulted(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(defaulted(v) for v in obj)
    return obj


def test_a_results_json_without_the_fields_that_have_defaults_is_read_with_the_defaults() -> None:
    run = demo_like_run()
    document = json.loads(json.dumps(without_defaulted(run)))
    assert "paths" not in document and "endpoint" not in document["hosts"][0]["checks"][0]
    assert run_from_dict(document) == defaulted(run)
    assert host_from_dict(document["hosts"][0]) == defaulted(run.hosts[0])


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda h: h["facts"]["target"].update(roles=["router"]), "facts.target.roles.0"),
        (lambda h: h["checks"][0].pop("status"), "checks.0.status"),
        (lambda h: h["checks"][0].update(evidence=[{"label": "x"}]), "checks.0.evidence.0.value"),
        (lambda h: h["facts"]["probes"]["host"].update(data=[]), "facts.probes.host.data"),
        (lambda h: h.update(checks=None), "checks"),
    ],
)
def test_a_damaged_host_record_is_refused_naming_the_field(change: Any, where: str) -> None:
    record = to_dict(
        HostReport(
            dataclasses.replace(demo_like_run().hosts[0].facts, probes={"host": host_probe()}),
            demo_like_run().hosts[0].checks,
        )
    )
    assert host_from_dict(record).name == demo_like_run().hosts[0].name
    change(record)
    with pytest.raises(ValidationError) as caught:
        host_from_dict(record)
    assert {".".join(str(part) for part in e["loc"]) for e in caught.value.errors()} >= {where}
    assert isinstance(caught.value, ValueError)  # what a caller of the old readers caught


def test_the_reader_is_built_once() -> None:
    assert model.reader(RunReport) is model.reader(RunReport)
    assert model.reader(HostReport) is not model.reader(RunReport)
