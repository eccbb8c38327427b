"""The PowerShell probes, loaded as the text sent to hosts.

Each probe file starts with an identity marker (``# collector-probe: NAME vN``), then its
``param()`` block, then the line ``# collector: common`` where the shared output helper is
inserted: PowerShell requires ``param()`` to come first, and a remote host has no file to
dot-source, so the helper travels inside every script.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

MARKER = re.compile(r"^# collector-probe: (?P<name>[a-z_]+) v(?P<version>\d+)$", re.MULTILINE)
COMMON_LINE = "# collector: common"


@dataclass(frozen=True)
class ProbeScript:
    name: str
    version: int
    text: str  # the full script sent to the host, helper included


def _read(filename: str) -> str:
    return resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")


def names() -> list[str]:
    """Every probe shipped with the package."""
    return sorted(
        p.name.removesuffix(".ps1")
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".ps1") and not p.name.startswith("_")
    )


@functools.cache
def load(name: str) -> ProbeScript:
    """The probe ``name`` with the common helper inserted; ValueError if it is malformed."""
    source = _read(f"{name}.ps1")
    match = MARKER.match(source)
    if not match or match["name"] != name:
        raise ValueError(f"{name}.ps1 must start with '# collector-probe: {name} vN'")
    if source.count(COMMON_LINE) != 1:
        raise ValueError(f"{name}.ps1 must contain the line '{COMMON_LINE}' exactly once")
    text = source.replace(COMMON_LINE, _read("_common.ps1").rstrip("\n"))
    return ProbeScript(name=name, version=int(match["version"]), text=text)


def identify(script: str) -> tuple[str, int] | None:
    """The probe name and version a script announces (the lab answers by this)."""
    match = MARKER.match(script)
    return (match["name"], int(match["version"])) if match else None
