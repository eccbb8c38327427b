"""WS-Management operations: Create, Delete, Get, Enumerate, Command, Send, Receive and Signal
on shells, and Identify, dispatched from a request envelope; every failure answered with the
fault WinRM sends."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import psrpcore
from psrpcore.types import PSInvocationState

from collector.lab.wsman.envelope import (
    _CMD_URI,
    _CONFIG_URI,
    _E_INVALID_ACTIONURI,
    _E_INVALID_XML,
    _E_MAX_ENVELOPE_SIZE_EXCEEDED,
    _E_OPERATION_TIMEDOUT,
    _E_PROVIDER_FAILURE,
    _E_RESOURCE_NOT_FOUND,
    _E_UNEXPECTED_SELECTORS,
    _E_UNSUPPORTED_FEATURE,
    _ENUM,
    _NS,
    _PS_URI_PREFIX,
    _SERVER_MAX_ENVELOPE,
    _SHELL,
    _SIGNAL_CTRL_C,
    _SIGNAL_PS_STOP,
    _SIGNAL_TERMINATE,
    _TRANSFER,
    _Abort,
    _Answer,
    _b64decode,
    _command_not_found,
    _envelope,
    _Fault,
    _fault_envelope,
    _Request,
    _Shell,
    _shell_not_found,
)
from collector.lab.wsman.psrp import _error_record, _PsrpCommand, _PsrpShell
from collector.lab.wsman.winrs import _STATUS_CONTROL_C_EXIT, _WinrsCommand, _WinrsShell

log = logging.getLogger(__name__)

# What fault "malformed-xml" answers with: a middlebox's HTML page, which no XML parser accepts.
_NOT_XML = b"<html><body><h1>Request blocked</h1>Policy&nbsp;violation<br></body></html>"
# Windows' words when the host process of a session (wsmprovhost.exe) dies or exceeds its quota.
_BROKEN_POOL_MESSAGE = (
    "The WSMan provider host process did not return a proper response.  A provider in the host process "
    "may have behaved improperly."
)


class _Operations:
    """The WS-Management half of the server: one request envelope in, one answer out (mixed into
    :class:`WSManServer`)."""

    if TYPE_CHECKING:  # what the server and its PSRP and WinRS layers provide
        _auth: str
        _fault: str | None
        _lock: threading.Lock
        _shells: dict[str, _Shell]
        _stopping: threading.Event

        @property
        def url(self) -> str: ...
        def _psrp_command(self, shell: _PsrpShell, line: ET.Element) -> str: ...
        def _psrp_events(self, shell: _PsrpShell, events: list[psrpcore.PSRPEvent]) -> None: ...
        def _receive_psrp(self, shell: _PsrpShell, req: _Request, command_id: str, stream: str) -> str | None: ...
        def _winrs_command(self, shell: _WinrsShell, line: ET.Element) -> str: ...
        def _receive_winrs(self, shell: _WinrsShell, req: _Request, command_id: str) -> str | None: ...

    def _handle_envelope(self, envelope: bytes, user: str, client_ip: str) -> _Answer:
        relates_to = None
        try:
            request = _Request.parse(envelope, user, client_ip)
            relates_to = request.message_id or None
            if self._fault == "http500":  # envelope stage: a service that faults every request
                raise _Fault(
                    _E_UNEXPECTED_SELECTORS,
                    "The WS-Management service cannot process the request because the request contained "
                    "invalid selectors for the resource.",
                    "w:InvalidSelectors",
                    sender=True,
                )
            if self._fault == "malformed-xml":  # envelope stage: a 200 whose body no parser accepts
                return _Answer(200, _NOT_XML)
            if len(envelope) > _SERVER_MAX_ENVELOPE:
                raise _Fault(
                    _E_MAX_ENVELOPE_SIZE_EXCEEDED,
                    f"The WS-Management service cannot process the request because the envelope size "
                    f"({len(envelope)} bytes) exceeds MaxEnvelopeSizekb (500).",
                    "w:EncodingLimit",
                    sender=True,
                )
            reply = self._dispatch(request)
            # Receive stage: a response that carries a command's output is cut off mid-body.
            return _Answer(200, reply, cut=self._fault == "truncated" and _receives_command_output(request))
        except _Fault as fault:
            return _Answer(500, _fault_envelope(fault, relates_to))
        except _Abort:
            raise
        except Exception as exc:
            log.exception("lab WS-Man server failed on a request")
            failure = _Fault(_E_PROVIDER_FAILURE, f"The lab WinRM provider failed: {type(exc).__name__}: {exc}")
            return _Answer(500, _fault_envelope(failure, relates_to))

    # -- WS-Management operations

    def _dispatch(self, req: _Request) -> bytes:
        if not req.action and req.body.find("wsmid:Identify", _NS) is not None:
            return _envelope(None, None, _IDENTIFY_RESPONSE)
        operations: dict[str, Callable[[_Request], str]] = {
            _TRANSFER + "Create": self._op_create,
            _TRANSFER + "Delete": self._op_delete,
            _TRANSFER + "Get": self._op_get,
            _ENUM + "Enumerate": self._op_enumerate,
            _SHELL + "/Command": self._op_command,
            _SHELL + "/Send": self._op_send,
            _SHELL + "/Receive": self._op_receive,
            _SHELL + "/Signal": self._op_signal,
        }
        operation = operations.get(req.action)
        if operation is None:
            raise _Fault(
                _E_INVALID_ACTIONURI,
                f"The WS-Management service cannot process the request. The WS-Addressing action URI "
                f"{req.action or '(none)'} is invalid or not supported by this service.",
                "a:ActionNotSupported",
                sender=True,
            )
        return _envelope(req.action + "Response", req.message_id, operation(req))

    def _find_shell(self, req: _Request, check_uri: bool = True) -> _Shell:
        shell_id = req.selectors.get("ShellId", "")
        with self._lock:
            shell = self._shells.get(shell_id.upper())
        if (
            shell is None
            or shell.owner != req.user
            or (check_uri and shell.resource_uri.lower() != req.resource_uri.lower())
        ):
            raise _shell_not_found(shell_id)
        return shell

    def _op_create(self, req: _Request) -> str:
        spec = req.body.find("rsp:Shell", _NS)
        if spec is None:
            raise _Fault(_E_INVALID_XML, "The Create request has no rsp:Shell.", "w:InvalidXml", True)
        common: dict[str, Any] = {
            "resource_uri": req.resource_uri,
            "owner": req.user,
            "client_ip": req.client_ip,
            "input_streams": (spec.findtext("rsp:InputStreams", "", _NS) or "stdin").strip(),
            "output_streams": (spec.findtext("rsp:OutputStreams", "", _NS) or "stdout stderr").strip(),
        }
        uri = req.resource_uri.lower()
        shell: _Shell
        if uri == _CMD_URI.lower():
            try:
                codepage = int(req.options.get("WINRS_CODEPAGE") or 437)
            except ValueError:
                codepage = 437
            shell = _WinrsShell(id=str(uuid.uuid4()).upper(), codepage=codepage, **common)
        elif uri.startswith(_PS_URI_PREFIX.lower()) and len(uri) > len(_PS_URI_PREFIX):
            creation = spec.find("pwsh:creationXml", _NS)
            if creation is None or not (creation.text or "").strip():
                raise _Fault(_E_INVALID_XML, "The PowerShell shell has no creationXml.", "w:InvalidXml", True)
            psrp = _PsrpShell(id=(spec.get("ShellId") or str(uuid.uuid4())).upper(), **common)
            with psrp.cond:
                self._psrp_events(psrp, psrp.feed(_b64decode(creation.text), "stdin", None))
            if psrp.pool.state != psrpcore.types.RunspacePoolState.Opened:
                raise _Fault(_E_PROVIDER_FAILURE, "The runspace pool did not open (incomplete negotiation).")
            if self._fault == "broken-pool":  # pool stage: its host process dies right after the open
                with psrp.cond:
                    psrp.pool.set_broken(_error_record(_BROKEN_POOL_MESSAGE, terminating=True))
            shell = psrp
        else:
            raise _Fault(
                _E_RESOURCE_NOT_FOUND,
                f"The WS-Management service cannot process the request. The resource URI "
                f"({req.resource_uri}) was not found in the WS-Management catalog.",
                "w:DestinationUnreachable",
                sender=True,
            )
        with self._lock:
            if shell.id in self._shells:
                raise _Fault(2150858851, f"A shell with ShellId {shell.id} already exists.", "w:AlreadyExists", True)
            self._shells[shell.id] = shell
        return (
            "<x:ResourceCreated>"
            f"<a:Address>{escape(self.url)}</a:Address>"
            "<a:ReferenceParameters>"
            f"<w:ResourceURI>{escape(req.resource_uri)}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell.id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters>"
            "</x:ResourceCreated>" + shell.xml()
        )

    def _op_delete(self, req: _Request) -> str:
        shell = self._find_shell(req)
        with self._lock:
            self._shells.pop(shell.id, None)
        with shell.cond:
            shell.closed = True
            for command in getattr(shell, "commands", {}).values():
                command.removed = True
            shell.cond.notify_all()
        return ""

    def _op_get(self, req: _Request) -> str:
        uri = req.resource_uri.rstrip("/").lower()
        if uri == _SHELL.lower():
            return self._find_shell(req, check_uri=False).xml()
        if uri == _CONFIG_URI.lower():
            basic = str(self._auth == "basic").lower()
            negotiate = str(self._auth == "negotiate").lower()
            return (
                f'<cfg:Config xmlns:cfg="{_NS["cfg"]}">'
                f"<cfg:MaxEnvelopeSizekb>{_SERVER_MAX_ENVELOPE // 1024}</cfg:MaxEnvelopeSizekb>"
                "<cfg:MaxTimeoutms>60000</cfg:MaxTimeoutms><cfg:MaxBatchItems>32000</cfg:MaxBatchItems>"
                "<cfg:Service><cfg:AllowUnencrypted>true</cfg:AllowUnencrypted><cfg:Auth>"
                f"<cfg:Basic>{basic}</cfg:Basic><cfg:Kerberos>false</cfg:Kerberos>"
                f"<cfg:Negotiate>{negotiate}</cfg:Negotiate><cfg:Certificate>false</cfg:Certificate>"
                "<cfg:CredSSP>false</cfg:CredSSP></cfg:Auth></cfg:Service></cfg:Config>"
            )
        raise _Fault(
            _E_RESOURCE_NOT_FOUND,
            f"The WS-Management service cannot process the request. The resource URI ({req.resource_uri}) "
            "was not found in the WS-Management catalog.",
            "w:DestinationUnreachable",
            sender=True,
        )

    def _op_enumerate(self, req: _Request) -> str:
        uri = req.resource_uri.rstrip("/").lower()
        with self._lock:
            shells = [s for s in self._shells.values() if s.owner == req.user]
        if uri == _SHELL.lower():
            items = "".join(s.xml() for s in shells)
        elif uri == (_SHELL + "/Command").lower():
            wanted = req.body.findtext("n:Enumerate/w:Filter/w:SelectorSet/w:Selector[@Name='ShellId']", "", _NS)
            items = ""
            for shell in (s for s in shells if s.id == wanted.strip().upper()):
                with shell.cond:
                    command_ids = list(getattr(shell, "commands", {}))
                items += "".join(
                    f'<rsp:Command xmlns:rsp="{_SHELL}"><rsp:ShellId>{shell.id}</rsp:ShellId>'
                    f"<rsp:CommandId>{cid}</rsp:CommandId></rsp:Command>"
                    for cid in command_ids
                )
        else:
            raise _Fault(
                _E_RESOURCE_NOT_FOUND,
                f"The resource URI ({req.resource_uri}) cannot be enumerated.",
                "w:DestinationUnreachable",
                sender=True,
            )
        return (
            "<n:EnumerateResponse><n:EnumerationContext/>"
            f"<w:Items>{items}</w:Items><w:EndOfSequence/></n:EnumerateResponse>"
        )

    def _op_command(self, req: _Request) -> str:
        shell = self._find_shell(req)
        line = req.body.find("rsp:CommandLine", _NS)
        if line is None:
            raise _Fault(_E_INVALID_XML, "The Command request has no rsp:CommandLine.", "w:InvalidXml", True)
        if isinstance(shell, _PsrpShell):
            command_id = self._psrp_command(shell, line)
        else:
            command_id = self._winrs_command(shell, line)  # type: ignore[arg-type]
        return f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"

    def _op_send(self, req: _Request) -> str:
        shell = self._find_shell(req)
        send = req.body.find("rsp:Send", _NS)
        if send is None:
            raise _Fault(_E_INVALID_XML, "The Send request has no rsp:Send.", "w:InvalidXml", True)
        with shell.cond:
            if shell.closed:
                raise _shell_not_found(shell.id)
            for stream in send.findall("rsp:Stream", _NS):
                data = _b64decode(stream.text)
                if not isinstance(shell, _PsrpShell):
                    continue  # lab commands read no stdin; accept and drop it
                pipeline_id = None
                command_id = (stream.get("CommandId") or "").upper()
                if command_id:
                    command = shell.commands.get(command_id)
                    if command is None:
                        raise _command_not_found(command_id)
                    pipeline_id = command.pipeline.pipeline_id
                self._psrp_events(shell, shell.feed(data, stream.get("Name", "stdin"), pipeline_id))
            shell.cond.notify_all()
        return "<rsp:SendResponse/>"

    def _op_receive(self, req: _Request) -> str:
        shell = self._find_shell(req)
        desired = req.body.find("rsp:Receive/rsp:DesiredStream", _NS)
        command_id = ((desired.get("CommandId") if desired is not None else None) or "").upper()
        streams = ((desired.text if desired is not None else None) or "stdout").split()
        deadline = time.monotonic() + req.operation_timeout
        with shell.cond:
            while True:
                if self._stopping.is_set():
                    raise _Abort()
                if shell.closed:
                    raise _shell_not_found(shell.id)
                if isinstance(shell, _PsrpShell):
                    body = self._receive_psrp(shell, req, command_id, streams[0])
                else:
                    body = self._receive_winrs(shell, req, command_id)  # type: ignore[arg-type]
                if body is not None:
                    return body
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Fault(
                        _E_OPERATION_TIMEDOUT,
                        "The WS-Management service cannot complete the operation within the time specified "
                        "in OperationTimeout.",
                        "w:TimedOut",
                    )
                shell.cond.wait(min(remaining, 0.5))

    def _op_signal(self, req: _Request) -> str:
        shell = self._find_shell(req)
        signal = req.body.find("rsp:Signal", _NS)
        if signal is None:
            raise _Fault(_E_INVALID_XML, "The Signal request has no rsp:Signal.", "w:InvalidXml", True)
        command_id = (signal.get("CommandId") or "").upper()
        code = (signal.findtext("rsp:Code", "", _NS) or "").strip().lower()
        with shell.cond:
            command = shell.commands.get(command_id) if isinstance(shell, _PsrpShell | _WinrsShell) else None
            if command is None:
                raise _command_not_found(command_id)
            if code == _SIGNAL_TERMINATE.lower():
                command.removed = True
                shell.commands.pop(command_id, None)  # type: ignore[attr-defined]
                if isinstance(shell, _PsrpShell) and isinstance(command, _PsrpCommand):
                    shell.pull(_SERVER_MAX_ENVELOPE)  # drop what the client will never receive
                    shell.queues.pop(command.pipeline.pipeline_id, None)
                    shell.pool.pipeline_table.pop(command.pipeline.pipeline_id, None)
            elif code in _SIGNAL_PS_STOP or code in (_SIGNAL_CTRL_C, _SHELL + "/signal/ctrl_break"):
                if isinstance(command, _PsrpCommand):
                    if command.pipeline.state == PSInvocationState.Running:
                        command.pipeline.stop()
                elif isinstance(command, _WinrsCommand) and command.exit_code is None:
                    command.exit_code = _STATUS_CONTROL_C_EXIT
            else:
                raise _Fault(
                    _E_UNSUPPORTED_FEATURE,
                    f"The signal code {code} is not supported.",
                    "w:UnsupportedFeature",
                    True,
                )
            shell.cond.notify_all()
        return "<rsp:SignalResponse/>"

    def _receive_budget(self, req: _Request, skeleton: str) -> int:
        """Raw bytes that fit the client's MaxEnvelopeSize once base64-encoded into ``skeleton``."""
        overhead = len(_envelope(req.action + "Response", req.message_id, skeleton)) + 64
        return max((req.max_envelope - overhead) // 4 * 3, 22)


_IDENTIFY_RESPONSE = (
    f'<wsmid:IdentifyResponse xmlns:wsmid="{_NS["wsmid"]}">'
    "<wsmid:ProtocolVersion>http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd</wsmid:ProtocolVersion>"
    "<wsmid:ProductVendor>Microsoft Corporation</wsmid:ProductVendor>"
    "<wsmid:ProductVersion>OS: 10.0.17763 SP: 0.0 Stack: 3.0</wsmid:ProductVersion>"
    "</wsmid:IdentifyResponse>"
)


def _receives_command_output(req: _Request) -> bool:
    """Whether a request is a Receive for a command (not for the pool itself)."""
    desired = req.body.find("rsp:Receive/rsp:DesiredStream", _NS)
    return req.action == _SHELL + "/Receive" and desired is not None and bool(desired.get("CommandId"))
