"""PSRP, the server side (psrpcore): a runspace pool is a WS-Man shell, a pipeline a command the
responder answers; what clients send becomes plain Python values, and the answer becomes output
and error records."""

from __future__ import annotations

import datetime
import decimal
import functools
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import psrpcore
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSChar,
    PSInvocationState,
    PSObject,
    PSQueue,
    PSSecureString,
    PSVersion,
)

from collector.lab.wsman.envelope import (
    _E_INVALID_XML,
    _NS,
    _STATE_DONE,
    _b64,
    _b64decode,
    _command_not_found,
    _Fault,
    _Shell,
    _shell_not_found,
)
from collector.lab.wsman.interface import Invocation, InvocationResult

if TYPE_CHECKING:
    from collector.lab.wsman.envelope import _Request

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Value conversion


def _plain(value: Any, _depth: int = 0) -> Any:
    """A psrpcore-deserialized value as a plain Python value (what a responder may rely on)."""
    if _depth > 32:
        return str(value)
    nxt = _depth + 1
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, PSChar):
        return chr(int(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        return datetime.datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, value.tzinfo,
        )  # fmt: skip
    if isinstance(value, datetime.timedelta):
        return datetime.timedelta(days=value.days, seconds=value.seconds, microseconds=value.microseconds)
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int)
    if isinstance(value, dict):
        return {_plain(k, nxt): _plain(v, nxt) for k, v in value.items()}
    if isinstance(value, PSQueue):
        return [_plain(v, nxt) for v in list(value.queue)]
    if isinstance(value, list | tuple):
        return [_plain(v, nxt) for v in value]
    if isinstance(value, PSSecureString):
        try:
            return value.decrypt()
        except Exception:  # no session key exchanged: keep it opaque, as PowerShell would
            return None
    if isinstance(value, PSVersion):
        return str(value)
    if isinstance(value, PSObject):
        meta = value.PSObject
        names = [p.name for p in meta.adapted_properties] + [p.name for p in meta.extended_properties]
        return {name: _plain(value[name], nxt) for name in dict.fromkeys(names)}
    return value


def _text_lines(item: Any) -> list[str]:
    """What ``Out-String -Stream`` (and powershell.exe's console output) makes of one object."""
    if item is None:
        return []
    if isinstance(item, list | tuple):
        return [line for sub in item for line in _text_lines(sub)]
    text = item if isinstance(item, str) else str(item)
    return text.splitlines() or [""]


def _error_record(message: str, terminating: bool) -> ErrorRecord:
    """An ErrorRecord as Windows PowerShell makes it for ``throw`` (terminating) or ``Write-Error``."""
    exception_type = (
        "System.Management.Automation.RuntimeException"
        if terminating
        else "Microsoft.PowerShell.Commands.WriteErrorException"
    )
    exc = NETException(Message=message, HResult=-2146233087)
    exc.PSObject.type_names = [exception_type, "System.SystemException", "System.Exception", "System.Object"]
    if terminating:
        category = ErrorCategoryInfo(Category=ErrorCategory.OperationStopped, Reason="RuntimeException")
        fqid = "RuntimeException"
    else:
        category = ErrorCategoryInfo(
            Category=ErrorCategory.NotSpecified, Activity="Write-Error", Reason="WriteErrorException"
        )
        fqid = "Microsoft.PowerShell.Commands.WriteErrorException"
    record = ErrorRecord(Exception=exc, CategoryInfo=category, FullyQualifiedErrorId=fqid)
    record.PSObject.to_string = message  # what str(record) shows on the client
    return record


def _describe_pipeline(ps: psrpcore.PowerShell) -> tuple[str, dict[str, Any], bool]:
    """(script, parameters, ends with Out-String) of a PSRP pipeline.

    ``execute_ps`` wraps the script as ``Invoke-Expression -Command <script> | Out-String
    -Stream``: the script is that value. Otherwise it is the first command's text (the script of
    ``add_script``, the name of ``add_cmdlet``) with its named parameters; positional arguments,
    if any, arrive under ``"$args"`` (PowerShell's name for unbound positional arguments).
    """
    commands = list(ps.commands)
    out_string = bool(commands) and commands[-1].command_text.strip().lower() == "out-string"
    for cmd in commands:
        if not cmd.is_script and cmd.command_text.strip().lower() in ("invoke-expression", "iex"):
            named = {str(n).lower(): v for n, v in cmd.parameters if n is not None}
            positional = [v for n, v in cmd.parameters if n is None]
            script = named.get("command", positional[0] if positional else None)
            if script is not None:
                return str(script), {}, out_string
    if not commands:
        return "", {}, out_string
    first = commands[0]
    params: dict[str, Any] = {}
    positional_args = []
    for name, value in first.parameters:
        if name is None:
            positional_args.append(_plain(value))
        else:
            params[str(name)] = _plain(value)
    if positional_args:
        params["$args"] = positional_args
    return first.command_text, params, out_string


# --------------------------------------------------------------------------------------------
# Runspace pools and pipelines


@dataclass(eq=False)
class _PsrpCommand:
    id: str
    pipeline: psrpcore.ServerPipeline
    removed: bool = False

    @property
    def finished(self) -> bool:
        return self.pipeline.state in (
            PSInvocationState.Completed,
            PSInvocationState.Failed,
            PSInvocationState.Stopped,
        )


# Messages the lab deserializes once per distinct content: every host of a fleet receives the same
# pool settings and the same probe scripts, and psrpcore's CLIXML reader costs about a millisecond a
# CreatePipeline, which on a 200-host benchmark is CPU taken from the collector it measures.
# Only messages psrpcore reads and never changes, and never one with a SecureString (those need
# the pool's own session key).
_READ_ONLY_MESSAGES = frozenset(
    {psrpcore.types.PSRPMessageType.CreatePipeline, psrpcore.types.PSRPMessageType.InitRunspacePool}
)


@functools.lru_cache(maxsize=256)
def _deserialized(data: bytes) -> Any:
    return psrpcore.types.deserialize(ET.fromstring(data), cipher=None)  # type: ignore[arg-type]  # noqa: S314 - as above


@functools.lru_cache(maxsize=256)
def _pipeline(data: bytes) -> psrpcore.PowerShell:
    """A CreatePipeline message's pipeline description (psrpcore rebuilds it on every access)."""
    return psrpcore.PowerShell.FromPSObjectForRemoting(_deserialized(data))


class _LabRunspacePool(psrpcore.ServerRunspacePool):
    """psrpcore's server runspace pool, reading repeated read-only messages from a shared cache."""

    def _process_message(self, message: Any) -> psrpcore.PSRPEvent:  # psrpcore._payload.PSRPMessage
        if message.message_type not in _READ_ONLY_MESSAGES or b"<SS" in message.data:
            return super()._process_message(message)
        event = psrpcore.PSRPEvent.create(
            message.message_type, _deserialized(message.data), message.runspace_pool_id, message.pipeline_id
        )
        if isinstance(event, psrpcore.CreatePipelineEvent) and event.pipeline_id in self.pipeline_table:
            self.pipeline_table[event.pipeline_id].metadata = _pipeline(message.data)  # what psrpcore does
        else:
            getattr(self, f"_process_{message.message_type.name}")(event)
        return event


@dataclass(eq=False)
class _PsrpShell(_Shell):
    """A runspace pool: psrpcore's server pool plus one outgoing queue per target.

    psrpcore's ``data_to_send`` serves whichever target (pool or a pipeline) is first in its
    buffer, while WS-Man Receives ask for one target; payloads are routed to per-target queues.
    """

    pool: psrpcore.ServerRunspacePool = field(default_factory=_LabRunspacePool)
    commands: dict[str, _PsrpCommand] = field(default_factory=dict)
    queues: dict[uuid.UUID | None, deque[bytes]] = field(default_factory=dict)

    def feed(self, data: bytes, stream: str, pipeline_id: uuid.UUID | None) -> list[psrpcore.PSRPEvent]:
        stream_type = psrpcore.StreamType.prompt_response if stream == "pr" else psrpcore.StreamType.default
        self.pool.receive_data(psrpcore.PSRPPayload(data, stream_type, pipeline_id))
        events = []
        while (event := self.pool.next_event()) is not None:
            events.append(event)
        return events

    def pull(self, amount: int) -> None:
        while (payload := self.pool.data_to_send(amount)) is not None:
            self.queues.setdefault(payload.pipeline_id, deque()).append(payload.data)


def _take(queue: deque[bytes] | None, budget: int) -> bytes:
    """Queued payloads up to ``budget`` bytes (at least one, so a Receive always progresses)."""
    out = b""
    while queue and (not out or len(out) + len(queue[0]) <= budget):
        out += queue.popleft()
    return out


def _peek_pipeline_id(data: bytes) -> uuid.UUID:
    """The pipeline id of the PSRP message in a first fragment (21-byte fragment header, then
    destination, message type and runspace pool id before it)."""
    if len(data) < 21 + 40:
        raise _Fault(_E_INVALID_XML, "The command carries no PSRP CreatePipeline fragment.", "w:InvalidXml", True)
    return uuid.UUID(bytes_le=bytes(data[21 + 24 : 21 + 40]))


def _mark_running(pipeline: psrpcore.ServerPipeline) -> None:
    """Start a pipeline without telling the client: Windows' ServerPowerShellDriver sends
    PIPELINE_STATE only for Completed, Failed and Stopped (psrpcore's start() also sends Running,
    which would answer a Receive of a still-running pipeline before its OperationTimeout)."""
    pipeline._change_state(PSInvocationState.Running, emit=False)


def _command_for(shell: _PsrpShell, pipeline_id: uuid.UUID | None) -> _PsrpCommand | None:
    return next((c for c in shell.commands.values() if c.pipeline.pipeline_id == pipeline_id), None)


class _Psrp:
    """The PSRP half of the server: pipelines started, answered and received (mixed into
    :class:`WSManServer`)."""

    if TYPE_CHECKING:  # what the server and its WS-Management layer provide

        def _spawn(self, target: Callable[..., Any], *args: Any, name: str) -> None: ...
        def _record(self, invocation: Invocation) -> None: ...
        def _call(self, invocation: Invocation) -> InvocationResult: ...
        def _receive_budget(self, req: _Request, skeleton: str) -> int: ...

    # -- PSRP

    def _psrp_command(self, shell: _PsrpShell, line: ET.Element) -> str:
        data = _b64decode("".join((a.text or "").strip() for a in line.findall("rsp:Arguments", _NS)))
        given = line.get("CommandId")
        try:
            pipeline_id = uuid.UUID(given) if given else _peek_pipeline_id(data)
        except ValueError:
            raise _Fault(_E_INVALID_XML, f"CommandId {given!r} is not a GUID.", "w:InvalidXml", True) from None
        with shell.cond:
            if shell.closed:
                raise _shell_not_found(shell.id)
            command = _PsrpCommand(
                id=(given or str(pipeline_id)).upper(),
                pipeline=psrpcore.ServerPipeline(shell.pool, pipeline_id),
            )
            shell.commands[command.id] = command
            self._psrp_events(shell, shell.feed(data, "stdin", pipeline_id))
            shell.cond.notify_all()
        return command.id

    def _psrp_events(self, shell: _PsrpShell, events: list[psrpcore.PSRPEvent]) -> None:
        """Act on client PSRP events; psrpcore answered capability, init and key exchange itself."""
        for event in events:
            if isinstance(event, psrpcore.CreatePipelineEvent):
                self._start_pipeline(shell, event)
            elif isinstance(event, psrpcore.GetCommandMetadataEvent):
                command = _command_for(shell, event.pipeline_id)
                if command is not None:  # the lab host exposes no command metadata
                    _mark_running(command.pipeline)
                    command.pipeline.complete()
            elif isinstance(
                event,
                psrpcore.SetMaxRunspacesEvent | psrpcore.SetMinRunspacesEvent | psrpcore.ResetRunspaceStateEvent,
            ):
                shell.pool.runspace_availability_response(event.ci, True)
            elif isinstance(event, psrpcore.GetAvailableRunspacesEvent):
                busy = sum(c.pipeline.state == PSInvocationState.Running for c in shell.commands.values())
                shell.pool.runspace_availability_response(event.ci, max(shell.pool.max_runspaces - busy, 0))

    def _start_pipeline(self, shell: _PsrpShell, event: psrpcore.CreatePipelineEvent) -> None:
        command = _command_for(shell, event.pipeline_id)
        if command is None:
            return
        # psrpcore built the pipeline's description when it processed the message; asking the
        # event again would rebuild it from the CLIXML object.
        script, parameters, out_string = _describe_pipeline(command.pipeline.metadata)  # type: ignore[arg-type]
        invocation = Invocation(script=script, parameters=parameters, transport="psrp")
        _mark_running(command.pipeline)
        self._record(invocation)
        self._spawn(self._run_psrp, shell, command, invocation, out_string, name="pipeline")

    def _run_psrp(self, shell: _PsrpShell, command: _PsrpCommand, invocation: Invocation, out_string: bool) -> None:
        result = self._call(invocation)
        with shell.cond:
            pipeline = command.pipeline
            if shell.closed or command.removed or pipeline.state != PSInvocationState.Running:
                return  # stopped, terminated or the pool went away meanwhile
            try:
                for item in result.output:
                    for value in _text_lines(item) if out_string else [item]:
                        pipeline.write_output(value)
                errors = [str(e) for e in result.errors]
                for message in errors[:-1]:
                    pipeline.prepare_message(
                        _error_record(message, terminating=False), psrpcore.types.PSRPMessageType.ErrorRecord
                    )
                if errors:
                    # psrpcore has no public "fail"; the PipelineState carries the last error as the
                    # terminating one, so pypsrp reports had_errors and lists every error once.
                    pipeline._change_state(PSInvocationState.Failed, _error_record(errors[-1], terminating=True))
                else:
                    pipeline.complete()
            except Exception as exc:
                log.exception("lab responder output could not be sent")
                pipeline._change_state(
                    PSInvocationState.Failed, _error_record(f"lab: cannot send the output: {exc}", True)
                )
            finally:
                shell.cond.notify_all()

    def _receive_psrp(self, shell: _PsrpShell, req: _Request, command_id: str, stream: str) -> str | None:
        command = None
        if command_id:
            command = shell.commands.get(command_id)
            if command is None:
                raise _command_not_found(command_id)
        attr = f' CommandId="{command_id}"' if command_id else ""
        done_xml = f'<rsp:CommandState{attr} State="{_STATE_DONE}"/>' if command else ""
        budget = self._receive_budget(
            req,
            f'<rsp:ReceiveResponse><rsp:Stream Name="{escape(stream)}"{attr}></rsp:Stream>{done_xml}'
            "</rsp:ReceiveResponse>",
        )
        target = command.pipeline.pipeline_id if command else None
        shell.pull(budget)
        data = _take(shell.queues.get(target), budget)
        done = command is not None and command.finished and not shell.queues.get(target)
        if not data and not done:
            return None
        parts = [f'<rsp:Stream Name="{escape(stream)}"{attr}>{_b64(data)}</rsp:Stream>'] if data else []
        if done:
            parts.append(done_xml)
        return "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"
