"""A simulated Windows WinRM endpoint on loopback that unmodified WinRM clients talk to.

The lab (product demo, protocol-path tests) needs the real wire protocol, not a mock of our own
client: pypsrp and pywinrm connect to this server exactly as they connect to Windows. It speaks
HTTP/1.1 with keep-alive, Basic, Negotiate (NTLM, and Kerberos when given a
:class:`KerberosService`) or Kerberos-only auth (pyspnego acceptors) with MS-WSMV message
encryption over HTTP or channel binding over HTTPS, WS-Management (Create, Command, Send,
Receive, Signal, Delete, Get, Enumerate, Identify) and, for PowerShell shells, PSRP (psrpcore's
server side). WinRS cmd shells run ``powershell -EncodedCommand`` the way ``winrm.Session.run_ps``
sends it.

Nothing is executed: every pipeline or command becomes an :class:`Invocation` that a *responder*
answers with an :class:`InvocationResult`; the server turns that into PSRP output/error records
or WinRS stdout/stderr and an exit code. Not simulated: CredSSP and certificate auth, and the
disconnected-session actions (Connect, Disconnect, Reconnect), which get the WS-Man fault for an
unsupported action.

Faults: ``fault=`` makes the server fail the way real hosts do, each at the protocol stage where
that failure happens (see ``FAULTS``), so the collector's handling is tested against the wire
protocol; :class:`Blackhole` is a port where connects time out instead.

The layers, one module each: ``http`` (HTTP/1.1, TLS, keep-alive connections), ``auth`` (Basic,
the NTLM/Negotiate and Kerberos acceptors, the process-wide NTLM user file and keytab),
``encryption`` (MS-WSMV message sealing), ``envelope`` and ``operations`` (WS-Management: the
messages, then Create/Command/Send/Receive/Signal/Delete/Get/Enumerate/Identify and their
faults), ``psrp`` (runspace pools and pipelines, psrpcore's server side) and ``winrs`` (cmd
shells); ``server`` puts them together as :class:`WSManServer`, and ``interface`` holds what a
caller gives and gets. The names below are the public ones.
"""

from collector.lab.wsman.interface import (
    FAULTS,
    OVERSIZE_BYTES,
    SLOW_SECONDS,
    Invocation,
    InvocationResult,
    KerberosService,
    Logon,
    Responder,
)
from collector.lab.wsman.server import Blackhole, WSManServer

__all__ = [
    "FAULTS",
    "OVERSIZE_BYTES",
    "SLOW_SECONDS",
    "Blackhole",
    "Invocation",
    "InvocationResult",
    "KerberosService",
    "Logon",
    "Responder",
    "WSManServer",
]
