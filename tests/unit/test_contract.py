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
