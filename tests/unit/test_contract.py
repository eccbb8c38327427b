"""The probe output contract: one envelope, one schema per probe, errors that name the field."""

from __future__ import annotations

import json

import pytest

from collector import contract

SERVICE = {
    "name": "TermService",
    "present": True,
    "display_name": "Remote Desktop Services",
    "state": "Running",
    "start_mode": "Manual",
    "account": "NT Authority\\NetworkService",
    "process_id": 1204,
}


def envelope(**overrides: object) -> str:
    doc = {"probe": "services", "version": 1, "data": {"services": [SERVICE]}, "errors": []}
    doc.update(overrides)
    return json.dumps(doc)


def test_valid_output_becomes_a_probe_result() -> None:
    result = contract.parse_output("services", [envelope(errors=[{"step": "x", "message": "y"}])], 0.5)
    assert result.probe == "services" and result.version == 1 and result.duration_s == 0.5
    assert result.data["services"][0]["state"] == "Running"
    assert result.errors[0].step == "x"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ([], "expected one JSON document, got 0"),
        (["a", "b"], "expected one JSON document, got 2"),
        (["{not json"], "output is not JSON"),
        ([envelope(probe="listeners")], "probe: the output is for probe 'listeners'"),
        ([envelope(version=2)], "version: version 2 is not 1"),
        ([envelope(errors="boom")], "errors:"),
        ([envelope(data={"services": [{**SERVICE, "state": 4}]})], "data.services[0].state:"),
        ([envelope(data={"services": [{**SERVICE, "extra": 1}]})], "data.services[0].extra:"),
        ([envelope(data={})], "data.services:"),
    ],
)
def test_contract_violations_name_probe_and_field(output: list[object], expected: str) -> None:
    with pytest.raises(contract.ContractError) as info:
        contract.parse_output("services", output)
    assert str(info.value).startswith("probe services: ")
    assert expected in str(info.value)


def test_unknown_probe() -> None:
    with pytest.raises(contract.ContractError, match="no such probe"):
        contract.validate_data("nope", {})


def test_output_nested_without_end_is_refused_not_a_recursion_error() -> None:
    """A host that prints a document nested thousands deep gets bad-output like any garbage; the
    parser's own recursion limit must not escape (the host's worker would die with it)."""
    deep = "[" * 100_000 + "]" * 100_000
    envelope = '{"probe": "host", "version": 1, "errors": [], "data": ' + deep + "}"
    for output in (deep, envelope):
        with pytest.raises(contract.ContractError, match="output nests too deeply to be a probe's JSON"):
            contract.parse_output("host", [output])


BAD_TIME = "Tuesday, 3 PM"


def _host_time(data: dict, field: str) -> None:
    data[field] = BAD_TIME


def _event_time(data: dict, field: str) -> None:
    event = {"id": 1026, "provider": "p", "level": "Information", "record_id": 1, "data": {}, "message": None}
    data["logs"][0]["events"] = [{**event, field: BAD_TIME}]


@pytest.mark.parametrize(
    ("probe", "field", "spoil"),
    [("host", "utc_now", _host_time), ("host", "last_boot_utc", _host_time), ("events", "time_utc", _event_time)],
)
def test_times_must_be_iso_8601(probe: str, field: str, spoil) -> None:
    """Checks and reports compute with these times: one a host wrote otherwise is bad output of
    that probe, not an exception in a check."""
    from tests.unit.test_checks_catalogue import facts_for

    data = json.loads(json.dumps(facts_for("client").probes[probe].data))
    spoil(data, field)
    envelope = json.dumps({"probe": probe, "version": 1, "errors": [], "data": data})
    with pytest.raises(contract.ContractError, match=f"{field}: Value error, '{BAD_TIME}' is not an ISO 8601 time"):
        contract.parse_output(probe, [envelope])
