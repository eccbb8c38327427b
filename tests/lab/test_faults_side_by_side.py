"""The same in-session faults when each probe has its own connection and thread (NTLM, Basic):
the right collect.* result for each, no shell left open, and a flood that stops the others."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import yaml

from collector import inventory
from collector.lab.fleet import LabFleet
from collector.model import HostTarget
from tests.lab.test_faults import (
    PROBES,
    assert_faulty,
    collect,
    faulty_host,
    lab_fleet,
    short_deadlines,
    small_output_limit,  # noqa: F401 - an autouse fixture: this module's probes get the same small limit
    wait_for_closed_shells,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

# The faults a session survives long enough to run probes, each over both side-by-side transports.
IN_SESSION = ("pipeline-error", "truncated", "oversize", "bad-json")
AUTHS = ("ntlm", "basic")


def host_name(fault: str, auth: str) -> str:
    return f"{fault.replace('-', '')}-{auth}.lab.test"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    hosts = [
        dataclasses.replace(faulty_host(fault), name=host_name(fault, auth), auth=auth)
        for fault in IN_SESSION
        for auth in AUTHS
    ]
    with lab_fleet(hosts, tmp_path_factory.mktemp("side-by-side")) as lab:
        yield lab


@pytest.fixture(scope="module")
def targets(fleet: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, HostTarget]:
    path = tmp_path_factory.mktemp("inv") / "inventory.yaml"
    path.write_text(yaml.safe_dump(short_deadlines(fleet.inventory_document()), sort_keys=False))
    return {t.name: t for t in inventory.load(path).targets}


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("fault", IN_SESSION)
def test_each_in_session_fault_is_the_right_result_over_a_connection_per_probe(
    fleet: LabFleet, targets: dict[str, HostTarget], fault: str, auth: str
) -> None:
    name = host_name(fault, auth)
    assert targets[name].auth == auth
    report = collect([targets[name]])[name]
    assert_faulty(report, fault)
    assert wait_for_closed_shells(fleet).get(name, 0) == 0
    invoked = [i for i in fleet.servers[name].invocations if i.script.startswith("# collector-probe: ")]
    if fault == "truncated":
        assert 1 <= len(invoked) <= PROBES  # the first broken answer ends the session
    else:
        assert len(invoked) == PROBES  # every probe ran side by side; each was refused on its own
    if fault == "oversize":
        # One probe passed the limit; the others stopped reading (or passed it at the same moment).
        reasons = [p.reason for p in report.facts.problems]
        assert any("sent more than" in r for r in reasons)
        assert all("sent more than" in r or "was not read: probe" in r for r in reasons)
