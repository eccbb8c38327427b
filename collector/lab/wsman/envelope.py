"""WS-Management messages as WinRM writes them: namespaces, action URIs and wsmerror codes, the
SOAP faults the server answers with, a request envelope parsed into what the server acts on,
answer envelopes, and the shell resource that every operation acts on."""

from __future__ import annotations

import base64
import binascii
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

# --------------------------------------------------------------------------------------------
# WS-Management constants

_NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "n": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "wsmid": "http://schemas.dmtf.org/wbem/wsman/identify/1/wsmanidentity.xsd",
    "pwsh": "http://schemas.microsoft.com/powershell",
}
_ROOT_NS = " ".join(f"xmlns:{k}={quoteattr(v)}" for k, v in _NS.items() if k not in ("f", "wsmid"))

_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_ENUM = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/"
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
_FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
_CMD_URI = _SHELL + "/cmd"
_PS_URI_PREFIX = "http://schemas.microsoft.com/powershell/"
_CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
_STATE_DONE = _SHELL + "/CommandState/Done"
_STATE_RUNNING = _SHELL + "/CommandState/Running"
_SIGNAL_TERMINATE = _SHELL + "/signal/terminate"
_SIGNAL_CTRL_C = _SHELL + "/signal/ctrl_c"
# Windows spells the PowerShell stop signal "crtl_c"; pypsrp sends "ctrl_c". Accept both.
_SIGNAL_PS_STOP = {"powershell/signal/crtl_c", "powershell/signal/ctrl_c"}

# wsmerror.h codes this server answers with.
_E_RESOURCE_NOT_FOUND = 2150858752
_E_INVALID_ACTIONURI = 2150858753
_E_OPERATION_TIMEDOUT = 2150858793
_E_UNSUPPORTED_FEATURE = 2150858818
_E_INVALID_XML = 2150858819
_E_MAX_ENVELOPE_SIZE_EXCEEDED = 2150858824
_E_UNEXPECTED_SELECTORS = 2150858843
_E_PROVIDER_FAILURE = 2150858755

_SERVER_MAX_ENVELOPE = 512_000  # MaxEnvelopeSizekb=500, the default since Server 2012


class _Fault(Exception):
    """A WS-Management fault to answer with (HTTP 500 and s:Fault, as WinRM does)."""

    def __init__(self, code: int, reason: str, subcode: str = "w:InternalError", sender: bool = False):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.subcode = subcode
        self.sender = sender


class _Abort(Exception):
    """Drop the connection without an answer (server stopping)."""


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer to a WS-Man request; ``cut`` sends only half of it, then hangs up."""

    status: int
    body: bytes
    cut: bool = False


def _shell_not_found(shell_id: str) -> _Fault:
    return _Fault(
        _E_UNEXPECTED_SELECTORS,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was "
        "not found on the server. Possible causes are: the specified ShellId is incorrect or the shell no "
        "longer exists on the server. Provide the correct ShellId or create a new shell and retry the "
        "operation.",
        "w:InvalidSelectors",
        sender=True,
    )


def _command_not_found(command_id: str) -> _Fault:
    return _Fault(
        _E_UNEXPECTED_SELECTORS,
        f"The Windows Remote Shell received a request to perform an operation on command identifier "
        f"{command_id or '(none)'}, which does not exist. Either the command has completed execution or "
        "the client specified an invalid command identifier.",
        "w:InvalidSelectors",
        sender=True,
    )


# --------------------------------------------------------------------------------------------
# Envelopes


def _envelope(action: str | None, relates_to: str | None, body: str) -> bytes:
    header = ""
    if action is not None:
        header = (
            f"<a:Action>{escape(action)}</a:Action>"
            f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
            f"<a:To>{_ANONYMOUS}</a:To>"
        )
        if relates_to:
            header += f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
    return (
        f'<s:Envelope xml:lang="en-US" {_ROOT_NS}><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


def _fault_envelope(fault: _Fault, relates_to: str | None) -> bytes:
    machine = socket.gethostname()
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>{'s:Sender' if fault.sender else 's:Receiver'}</s:Value>"
        f"<s:Subcode><s:Value>{escape(fault.subcode)}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault xmlns:f="{_NS["f"]}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault></s:Detail>"
        "</s:Fault>"
    )
    return _envelope(_FAULT_ACTION, relates_to, body)


def _duration_seconds(text: str | None, default: float) -> float:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?", (text or "").strip())
    if not match or not any(match.groups()):
        return default
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _q(prefix: str, name: str) -> str:
    return f"{{{_NS[prefix]}}}{name}"


@dataclass
class _Request:
    """The parts of a WS-Man request envelope the server acts on."""

    action: str
    message_id: str
    resource_uri: str
    selectors: dict[str, str]
    options: dict[str, str]
    operation_timeout: float
    max_envelope: int
    body: ET.Element
    user: str
    client_ip: str

    @classmethod
    def parse(cls, envelope: bytes, user: str, client_ip: str) -> _Request:
        try:
            root = ET.fromstring(envelope)  # noqa: S314 - loopback lab; expat resolves no entities
        except ET.ParseError as exc:
            raise _Fault(_E_INVALID_XML, f"The request is not well-formed XML: {exc}", "w:InvalidXml", True) from None
        header = root.find("s:Header", _NS)
        body = root.find("s:Body", _NS)
        if root.tag != _q("s", "Envelope") or header is None or body is None:
            raise _Fault(_E_INVALID_XML, "The request is not a SOAP 1.2 envelope.", "w:InvalidXml", True)

        def text(path: str) -> str:
            node = header.find(path, _NS)
            return (node.text or "").strip() if node is not None else ""

        selectors = {s.get("Name", ""): (s.text or "").strip() for s in header.findall("w:SelectorSet/w:Selector", _NS)}
        options = {o.get("Name", ""): (o.text or "").strip() for o in header.findall("w:OptionSet/w:Option", _NS)}
        try:
            max_envelope = int(text("w:MaxEnvelopeSize") or 153600)
        except ValueError:
            max_envelope = 153600
        return cls(
            action=text("a:Action"),
            message_id=text("a:MessageID"),
            resource_uri=text("w:ResourceURI"),
            selectors=selectors,
            options=options,
            operation_timeout=_duration_seconds(text("w:OperationTimeout"), 60.0),
            max_envelope=max_envelope,
            body=body,
            user=user,
            client_ip=client_ip,
        )


# --------------------------------------------------------------------------------------------
# Shells


@dataclass(eq=False)
class _Shell:
    id: str
    resource_uri: str
    owner: str
    client_ip: str
    input_streams: str
    output_streams: str
    created: float = field(default_factory=time.monotonic)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def xml(self) -> str:
        run = int(time.monotonic() - self.created)
        return (
            f'<rsp:Shell xmlns:rsp="{_SHELL}">'
            f"<rsp:ShellId>{self.id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{escape(self.resource_uri)}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(self.owner)}</rsp:Owner>"
            f"<rsp:ClientIP>{escape(self.client_ip)}</rsp:ClientIP>"
            "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{escape(self.input_streams)}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(self.output_streams)}</rsp:OutputStreams>"
            "<rsp:MaxIdleTimeOut>PT2147483.647S</rsp:MaxIdleTimeOut>"
            "<rsp:Locale>en-US</rsp:Locale><rsp:DataLocale>en-US</rsp:DataLocale>"
            "<rsp:ProfileLoaded>Yes</rsp:ProfileLoaded><rsp:Encoding>UTF8</rsp:Encoding>"
            "<rsp:BufferMode>Block</rsp:BufferMode><rsp:State>Connected</rsp:State>"
            f"<rsp:ShellRunTime>P0DT0H0M{run}S</rsp:ShellRunTime>"
            "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
            "</rsp:Shell>"
        )


def _b64decode(text: str | None) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except binascii.Error:
        raise _Fault(_E_INVALID_XML, "A stream is not valid base64.", "w:InvalidXml", True) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
