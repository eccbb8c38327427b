"""WinRS: cmd shells whose commands the responder answers, ``powershell -EncodedCommand`` read
the way ``winrm.Session.run_ps`` sends it, and the answer written as stdout, stderr and an exit
code."""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import psrpcore
from psrpcore.types import ClixmlStream, serialize_clixml

from collector.lab.wsman.envelope import (
    _NS,
    _STATE_DONE,
    _STATE_RUNNING,
    _b64,
    _command_not_found,
    _Shell,
    _shell_not_found,
)
from collector.lab.wsman.interface import Invocation, InvocationResult
from collector.lab.wsman.psrp import _text_lines

if TYPE_CHECKING:
    from collector.lab.wsman.envelope import _Request

_STATUS_CONTROL_C_EXIT = -1073741510  # 0xC000013A as a signed exit code


def _decode_powershell(command_line: str) -> str | None:
    """The script of ``powershell[.exe] ... -EncodedCommand <base64 UTF-16LE>``, else None."""
    tokens = command_line.split()
    exe = os.path.basename(tokens[0].strip('"').replace("\\", "/")).lower() if tokens else ""
    if exe not in ("powershell", "powershell.exe", "pwsh", "pwsh.exe"):
        return None
    for i, token in enumerate(tokens[1:-1], start=1):
        name = token.lstrip("-/").lower()
        if token[:1] in "-/" and (name == "ec" or (name and "encodedcommand".startswith(name))):
            try:
                return base64.b64decode(tokens[i + 1], validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def _codec(codepage: int) -> str:
    if codepage == 65001:
        return "utf-8"
    try:
        "".encode(f"cp{codepage}")
    except LookupError:
        return "utf-8"
    return f"cp{codepage}"


@dataclass(eq=False)
class _WinrsCommand:
    id: str
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    removed: bool = False


@dataclass(eq=False)
class _WinrsShell(_Shell):
    codepage: int = 437
    commands: dict[str, _WinrsCommand] = field(default_factory=dict)


class _Winrs:
    """The WinRS half of the server: commands started, answered and received (mixed into
    :class:`WSManServer`)."""

    if TYPE_CHECKING:  # what the server and its WS-Management layer provide

        def _spawn(self, target: Callable[..., Any], *args: Any, name: str) -> None: ...
        def _record(self, invocation: Invocation) -> None: ...
        def _call(self, invocation: Invocation) -> InvocationResult: ...
        def _receive_budget(self, req: _Request, skeleton: str) -> int: ...

    # -- WinRS

    def _winrs_command(self, shell: _WinrsShell, line: ET.Element) -> str:
        executable = (line.findtext("rsp:Command", "", _NS) or "").strip()
        arguments = [(a.text or "").strip() for a in line.findall("rsp:Arguments", _NS)]
        command_line = " ".join(p for p in (executable, *arguments) if p)
        script = _decode_powershell(command_line)
        invocation = Invocation(script=command_line if script is None else script, parameters={}, transport="winrs")
        command = _WinrsCommand(id=(line.get("CommandId") or str(uuid.uuid4())).upper())
        with shell.cond:
            if shell.closed:
                raise _shell_not_found(shell.id)
            shell.commands[command.id] = command
        self._record(invocation)
        self._spawn(self._run_winrs, shell, command, invocation, script is not None, name="command")
        return command.id

    def _run_winrs(self, shell: _WinrsShell, command: _WinrsCommand, invocation: Invocation, ps: bool) -> None:
        result = self._call(invocation)
        codec = _codec(shell.codepage)
        stdout = "".join(f"{line}\r\n" for item in result.output for line in _text_lines(item))
        errors = [str(e) for e in result.errors]
        stderr = ""
        if errors and ps:  # powershell.exe with redirected streams writes its errors as CLIXML
            clixml = serialize_clixml([(f"{m}\r\n", ClixmlStream.ERROR) for m in errors], psrpcore.PSRemotingCrypto())
            stderr = "#< CLIXML\r\n" + clixml.replace(' S="error"', ' S="Error"')
        elif errors:
            stderr = "".join(f"{m}\r\n" for m in errors)
        with shell.cond:
            if shell.closed or command.removed or command.exit_code is not None:
                return
            command.stdout += stdout.encode(codec, "replace")
            command.stderr += stderr.encode(codec, "replace")
            command.exit_code = 1 if errors else 0
            shell.cond.notify_all()

    def _receive_winrs(self, shell: _WinrsShell, req: _Request, command_id: str) -> str | None:
        command = shell.commands.get(command_id)
        if command is None:
            raise _command_not_found(command_id)
        attr = f'CommandId="{command.id}"'
        skeleton = (
            f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" {attr}></rsp:Stream>'
            f'<rsp:Stream Name="stderr" {attr}></rsp:Stream>'
            f'<rsp:Stream Name="stdout" {attr} End="true"></rsp:Stream>'
            f'<rsp:Stream Name="stderr" {attr} End="true"></rsp:Stream>'
            f'<rsp:CommandState {attr} State="{_STATE_DONE}"><rsp:ExitCode>-2147483648</rsp:ExitCode>'
            "</rsp:CommandState></rsp:ReceiveResponse>"
        )
        budget = self._receive_budget(req, skeleton)
        out = bytes(command.stdout[:budget])
        del command.stdout[: len(out)]
        err = bytes(command.stderr[: budget - len(out)])
        del command.stderr[: len(err)]
        finished = command.exit_code is not None and not command.stdout and not command.stderr
        if not out and not err and not finished:
            return None
        parts = []
        if out:
            parts.append(f'<rsp:Stream Name="stdout" {attr}>{_b64(out)}</rsp:Stream>')
        if err:
            parts.append(f'<rsp:Stream Name="stderr" {attr}>{_b64(err)}</rsp:Stream>')
        if finished:
            parts.append(f'<rsp:Stream Name="stdout" {attr} End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" {attr} End="true"></rsp:Stream>')
            parts.append(
                f'<rsp:CommandState {attr} State="{_STATE_DONE}">'
                f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(f'<rsp:CommandState {attr} State="{_STATE_RUNNING}"/>')
        return "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"
