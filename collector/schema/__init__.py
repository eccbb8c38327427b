"""The JSON Schema of ``results.json``, generated from the model and shipped in the package.

``results.json`` is written by ``model.to_dict`` from the frozen dataclasses, so its schema is
derived from the same types (pydantic reads dataclasses), never written by hand, through the
same pydantic reader that reads a results.json back (``model.reader``): the dataclass
docstrings become descriptions, and each probe's ``data`` is tied to that probe's contract model
(``collector.contract``). The shipped file is regenerated with ``python -m collector.schema``; a
test fails when it differs from what the model generates, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from collector.contract import SCHEMAS, ContractError, validate_data
from collector.model import SCHEMA_VERSION, RunReport, json_kind, reader, run_from_dict

FILENAME = "results.schema.json"
SCHEMA_ID = f"urn:rdp-collector:results:v{SCHEMA_VERSION}"  # a name, not a place: nothing is fetched


def _probe_data_rules(defs: dict[str, Any]) -> list[dict[str, Any]]:
    """One if/then per probe and version: a ``ProbeResult``'s ``data`` follows that probe's contract."""
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (model, "validation") for _, model in SCHEMAS.values()
    ]
    refs, extra = models_json_schema(models, ref_template="#/$defs/{model}")
    clash = set(extra.get("$defs", {})) & set(defs)
    if clash:
        raise ValueError(f"probe contract models clash with model names in the schema: {sorted(clash)}")
    defs.update(extra.get("$defs", {}))
    rules = []
    for probe, (version, model) in sorted(SCHEMAS.items()):
        rules.append(
            {
                "if": {"properties": {"probe": {"const": probe}, "version": {"const": version}}},
                "then": {"properties": {"data": refs[(model, "validation")]}},
            }
        )
    return rules


def generate() -> dict[str, Any]:
    """The schema as the current model defines it."""
    body = reader(RunReport).json_schema(mode="serialization", ref_template="#/$defs/{model}")
    defs = body.setdefault("$defs", {})
    defs["ProbeResult"]["allOf"] = _probe_data_rules(defs)
    body["properties"]["schema_version"] = {
        "const": SCHEMA_VERSION,
        "description": "Bumped on any incompatible change; readers refuse versions they do not know.",
    }
    header = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "rdp-collector results.json",
        "description": (
            "One collection run: every host's collected facts (probe outputs and collection problems) and "
            "check results. Generated from collector/model.py; `collect render RESULTS.json` re-renders "
            "the HTML reports from it."
        ),
    }
    body.pop("title", None)
    return {**header, **body}


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def load() -> dict[str, Any]:
    """The schema shipped with this installation."""
    return json.loads(resources.files(__name__).joinpath(FILENAME).read_text("utf-8"))


def problem_in(document: Any) -> str:
    """Why ``document`` is not a results.json this version can read ("" when it is): the run's
    shape, read as ``run_from_dict`` reads it (the reader this schema is generated from), then
    every probe's ``data`` against that probe's contract, so that a file of unknown origin cannot
    break the rendering."""
    if not isinstance(document, dict):
        return f"it holds a JSON {json_kind(document)}, not an object"
    try:
        run = run_from_dict(document)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}{more}"
    except ValueError as exc:  # a schema version this one does not know
        return str(exc)
    for index, host in enumerate(run.hosts):
        for name, probe in host.facts.probes.items():
            try:
                validate_data(name, probe.data)
            except ContractError as exc:
                return f"hosts.{index}.facts.probes.{name}: {exc}"
    return ""
