"""What the session sends: CreatePipeline messages written once per script and parameters are
byte for byte what pypsrp writes, and never shared between different parameters."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pypsrp.complex_objects import ApartmentState, HostInfo, Pipeline, RemoteStreamOptions
from pypsrp.messages import CreatePipeline
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan

from collector import scripts
from collector.winrm import _message_key, _ScriptSerializer

POOL = RunspacePool(WSMan("sh1.corp.example", username="u", password="p", auth="basic", encryption="never"))
POOL.protocol_version = "2.3"  # what a PowerShell 5.1 host announces


def create_pipeline(script: str, parameters: Mapping[str, Any], pool: RunspacePool = POOL) -> CreatePipeline:
    """The message PowerShell.begin_invoke builds, without sending it."""
    ps = PowerShell(pool)
    ps.add_script(script)
    for name, value in parameters.items():
        ps.add_parameter(name, value)
    pipeline = Pipeline(is_nested=False, cmds=ps.commands, history=None, redirect_err_to_out=False)
    options = RemoteStreamOptions(value=15)
    return CreatePipeline(True, ApartmentState(value=pool.apartment_state), options, False, HostInfo(), pipeline, False)


def pypsrp_writes(message: CreatePipeline) -> bytes:
    return ET.tostring(Serializer().serialize(message), encoding="utf-8", method="xml")


@pytest.fixture
def keyed() -> Iterator[_ScriptSerializer]:
    _ScriptSerializer._written.clear()
    yield _ScriptSerializer()
    _ScriptSerializer.pipeline_key.value = None
    _ScriptSerializer._written.clear()


def test_a_remembered_message_is_what_pypsrp_writes(keyed: _ScriptSerializer) -> None:
    script = scripts.load("listeners").text  # line breaks, quotes, _x sequences: all escaped
    parameters = {"TcpPorts": [3389, 443], "UdpPorts": [3389, 3391]}
    _ScriptSerializer.pipeline_key.value = _message_key(POOL, script, parameters)
    first = keyed.serialize(create_pipeline(script, parameters))
    again = keyed.serialize(create_pipeline(script, parameters))
    assert first == again == pypsrp_writes(create_pipeline(script, parameters))
    assert b"_x000A_" in first and b"TcpPorts" in first


def test_different_parameters_are_different_messages(keyed: _ScriptSerializer) -> None:
    script = scripts.load("client").text
    for gateway in ("gw1.corp.example", "gw2.corp.example"):
        parameters = {"GatewayName": gateway, "GatewayPort": 443}
        _ScriptSerializer.pipeline_key.value = _message_key(POOL, script, parameters)
        written = keyed.serialize(create_pipeline(script, parameters))
        assert gateway.encode() in written
        assert written == pypsrp_writes(create_pipeline(script, parameters))


def test_a_pool_of_another_protocol_version_is_another_message(keyed: _ScriptSerializer) -> None:
    older = RunspacePool(WSMan("sh1.corp.example", username="u", password="p", auth="basic", encryption="never"))
    older.protocol_version = "2.1"
    script, parameters = scripts.load("host").text, {}
    for pool in (POOL, older):
        _ScriptSerializer.pipeline_key.value = _message_key(pool, script, parameters)
        assert keyed.serialize(create_pipeline(script, parameters, pool)) == pypsrp_writes(
            create_pipeline(script, parameters, pool)
        )


def test_without_a_key_nothing_is_remembered(keyed: _ScriptSerializer) -> None:
    message = create_pipeline("Get-Date", {})
    assert isinstance(keyed.serialize(message), ET.Element)  # pypsrp's own path, untouched
