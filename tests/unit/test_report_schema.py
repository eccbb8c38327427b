"""results.json has a versioned JSON Schema, generated from the model and shipped in the package."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collector import cli, report, schema
from collector.model import SCHEMA_VERSION, to_dict
from tests.builders import host_probe
from tests.unit.test_cli_logic import sample_run

VALIDATOR = jsonschema.Draft202012Validator


def errors(document: Any) -> list[str]:
    return sorted(e.message for e in VALIDATOR(schema.load()).iter_errors(document))


def test_shipped_schema_is_what_the_model_generates() -> None:
    shipped = resources.files("collector.schema").joinpath(schema.FILENAME).read_text("utf-8")
    assert shipped == schema.dumps(schema.generate()), (
        "collector/schema/results.schema.json is out of date with collector/model.py: "
        "regenerate it with `python -m collector.schema` and review the diff"
    )


def test_schema_is_valid_draft_2020_12_and_names_its_version() -> None:
    document = schema.load()
    VALIDATOR.check_schema(document)
    assert document["$id"] == f"urn:rdp-collector:results:v{SCHEMA_VERSION}"
    assert document["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert set(document["required"]) >= {"run_id", "started", "finished", "hosts"}
    # Descriptions come from the dataclass docstrings.
    assert document["$defs"]["Evidence"]["description"].startswith("One fact that decided a check")
    # Each probe's data is tied to its contract model.
    rules = {r["if"]["properties"]["probe"]["const"]: r for r in document["$defs"]["ProbeResult"]["allOf"]}
    assert rules["host"]["then"]["properties"]["data"] == {"$ref": "#/$defs/HostData"}
    assert "Certificate" in document["$defs"]


def test_results_json_of_a_run_validates() -> None:
    data = json.loads(report.results_json(sample_run()))
    data["hosts"][0]["facts"]["probes"]["host"] = to_dict(host_probe())
    assert errors(data) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["hosts"][0]["checks"][0].update(status="broken"), "'broken' is not one of"),
        (lambda d: d.update(schema_version=99), f"{SCHEMA_VERSION} was expected"),
        (lambda d: d["hosts"][0]["facts"]["probes"]["host"]["data"].update(colour="blue"), "('colour' was unexpected)"),
        (lambda d: d["hosts"][0]["facts"]["probes"]["host"]["data"].update(utc_now=5), "5 is not of type 'string'"),
        (lambda d: d["hosts"][0]["facts"].pop("target"), "'target' is a required property"),
    ],
)
def test_schema_refuses_what_a_reader_could_not_use(change: Any, message: str) -> None:
    data = to_dict(sample_run())
    data["hosts"][0]["facts"]["probes"]["host"] = to_dict(host_probe())
    broken = copy.deepcopy(data)
    change(broken)
    assert errors(data) == []
    assert any(message in e for e in errors(broken)), errors(broken)


@pytest.mark.lab
def test_the_demo_results_json_validates(tmp_path: Path) -> None:
    assert cli.main(["demo", "--output", str(tmp_path), "--quiet"]) == 1  # the demo fleet has broken hosts
    data = json.loads((tmp_path / "latest" / "results.json").read_text("utf-8"))
    assert len(data["hosts"]) == 11
    assert {p for h in data["hosts"] for p in h["facts"]["probes"]} >= {"host", "gateway", "rdp_config", "client"}
    assert errors(data) == []
