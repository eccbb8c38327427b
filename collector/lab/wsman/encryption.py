"""MS-WSMV message encryption: the multipart framing of sealed messages, and how a connection
unseals a request it reads (SPNEGO or Kerberos framing, answered in kind)."""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from email.message import Message

# --------------------------------------------------------------------------------------------
# MS-WSMV 2.2.9.1 message encryption framing

_BOUNDARY = b"--Encrypted Boundary"
_SPNEGO_ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
# What a client that authenticated with the "Kerberos" scheme (not "Negotiate") frames its messages as.
_KERBEROS_ENCRYPTED = "application/HTTP-Kerberos-session-encrypted"


def _unwrap_body(context: Any, body: bytes) -> bytes:
    parts = [p for p in re.split(re.escape(_BOUNDARY) + rb"\r\n", body) if p]
    message = b""
    for header, payload in zip(parts[0::2], parts[1::2], strict=False):
        length = re.search(rb"Length=(\d+)", header)
        if length is None:
            raise ValueError("encrypted part without OriginalContent length")
        payload = re.sub(re.escape(_BOUNDARY) + rb"--\r\n$", b"", payload)
        payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        (header_len,) = struct.unpack("<I", payload[:4])
        plain = context.unwrap_winrm(payload[4 : 4 + header_len], payload[4 + header_len :])
        if len(plain) != int(length.group(1)):
            raise ValueError("decrypted length does not match OriginalContent length")
        message += plain
    return message


def _wrap_body(context: Any, message: bytes, protocol: str = _SPNEGO_ENCRYPTED) -> bytes:
    header, data, padding = context.wrap_winrm(message)
    return (
        _BOUNDARY + b"\r\n"
        b"\tContent-Type: " + protocol.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(message) + padding).encode()
        + b"\r\n" + _BOUNDARY + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<I", len(header)) + header + data
        + _BOUNDARY + b"--\r\n"
    )  # fmt: skip


class _SealedConnection:
    """The message encryption of one connection (mixed into the HTTP handler, which holds the
    security context that auth established)."""

    if TYPE_CHECKING:  # what the HTTP handler provides
        headers: Message
        _context: Any
        _encrypted: bool
        _protocol: str

    def _decrypt(self, body: bytes) -> bytes:
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith(("multipart/encrypted", "multipart/x-multi-encrypted")):
            self._encrypted = False
            return body
        match = re.search(r'protocol="([^"]*)"', content_type)
        protocol = next(
            (p for p in (_SPNEGO_ENCRYPTED, _KERBEROS_ENCRYPTED) if match and match.group(1).lower() == p.lower()),
            None,
        )
        if protocol is None:
            raise ValueError(f"unsupported encryption protocol in {content_type!r}")
        if self._context is None or not self._context.complete:
            raise ValueError("encrypted request on a connection without a security context")
        if protocol == _KERBEROS_ENCRYPTED and self._context.negotiated_protocol != "kerberos":
            raise ValueError("Kerberos message framing on a connection that did not use Kerberos")
        self._encrypted = True
        self._protocol = protocol
        return _unwrap_body(self._context, body)
