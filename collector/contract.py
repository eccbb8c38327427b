"""The probe output contract: one envelope, one data schema per probe.

The same schemas check what a real host returned, the lab's scenario data and the tests, so
the lab cannot drift from what the scripts produce. A violation names the probe and the field.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from collector.model import ProbeError, ProbeResult


class ContractError(ValueError):
    """Probe output that breaks the contract; the message names probe and field."""

    def __init__(self, probe: str, field: str, message: str) -> None:
        self.probe = probe
        self.field = field
        super().__init__(f"probe {probe}: {field}: {message}" if field else f"probe {probe}: {message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _ErrorEntry(_Strict):
    step: str
    message: str


class _Envelope(_Strict):
    probe: str
    version: int
    data: dict[str, Any]
    errors: list[_ErrorEntry]


# --- one model per probe ---------------------------------------------------------------------


class ServiceInfo(_Strict):
    name: str
    present: bool
    display_name: str | None
    state: str | None  # Win32_Service.State: Running, Stopped, Start Pending, ...
    start_mode: str | None  # Auto, Manual, Disabled, Boot, System
    account: str | None
    process_id: int | None


class ServicesData(_Strict):
    services: list[ServiceInfo]


class HostData(_Strict):
    computer_name: str
    domain: str | None
    part_of_domain: bool | None
    os_caption: str | None
    os_version: str | None
    os_build: str | None
    ps_version: str
    last_boot_utc: str | None  # ISO 8601 UTC
    utc_now: str  # the host's clock when the probe ran, ISO 8601 UTC


SCHEMAS: dict[str, tuple[int, type[_Strict]]] = {
    "host": (1, HostData),
    "services": (1, ServicesData),
}


def _field(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validate_data(probe: str, data: Any) -> dict[str, Any]:
    """Check one probe's ``data`` against its schema; returns it as plain data."""
    if probe not in SCHEMAS:
        raise ContractError(probe, "", "no such probe")
    _, model = SCHEMAS[probe]
    try:
        return model.model_validate(data).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ContractError(probe, _field(("data", *err["loc"])), f"{err['msg']}{more}") from None


def parse_output(
    probe: str, output: list[Any], duration_s: float = 0.0, received_utc: str = ""
) -> ProbeResult:
    """Parse what a probe printed: exactly one JSON envelope for the probe that was run."""
    texts = [o for o in output if isinstance(o, str) and o.strip()]
    if len(texts) != 1 or len(texts) != len([o for o in output if o is not None]):
        raise ContractError(probe, "", f"expected one JSON document, got {len(output)} output object(s)")
    try:
        document = json.loads(texts[0])
    except json.JSONDecodeError as exc:
        raise ContractError(probe, "", f"output is not JSON ({exc.msg} at char {exc.pos})") from None
    try:
        envelope = _Envelope.model_validate(document)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ContractError(probe, _field(err["loc"]), err["msg"]) from None
    if envelope.probe != probe:
        raise ContractError(probe, "probe", f"the output is for probe {envelope.probe!r}")
    expected_version = SCHEMAS.get(probe, (None,))[0]
    if envelope.version != expected_version:
        raise ContractError(probe, "version", f"version {envelope.version} is not {expected_version}")
    data = validate_data(probe, envelope.data)
    return ProbeResult(
        probe=probe,
        version=envelope.version,
        data=data,
        errors=tuple(ProbeError(step=e.step, message=e.message) for e in envelope.errors),
        duration_s=duration_s,
        received_utc=received_utc,
    )
