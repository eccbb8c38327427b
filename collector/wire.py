"""What a WinRM host sends back, bounded and checked before the client library reads it.

Every reply is untrusted input: the host may be compromised, and over HTTP anyone on the path
may answer in its place. pypsrp hands reply bodies to ``xml.etree.ElementTree`` unchecked and lets
requests follow redirects with the session's credentials, so this module sits under it:

* **HTTP** (``guard_session``): every response of a session, the authentication legs included, is
  read here with ``stream=True`` and refused before its body is read whole when it redirects (3xx:
  WinRM never does, and PowerShell follows one only with ``-AllowRedirection``), announces a
  ``Content-Encoding`` other than identity (the collector asks for identity; a compressed body can
  expand a thousandfold), or is larger than ``MAX_REPLY_BYTES`` (by ``Content-Length``, or while it
  streams in). A reply to a sealed (NTLM/Kerberos-encrypted) request that is not sealed itself is
  refused too: anyone on the path could have written it.
* **XML** (``install``): pypsrp's parsing of WS-Management envelopes and of PSRP's CLIXML goes
  through ``fromstring``, which refuses any document with a document type declaration before it is
  parsed. WinRM never sends one, and only a DTD can define the entities of an expansion bomb
  (libexpat before 2.7.0 crashes on deeply nested ones: CVE-2024-8176).

The DTD check is a first pass of libexpat itself with only a doctype handler set, so it reads the
bytes exactly as the real parse will (encoding declarations included), at C speed; defusedxml
would do the same job through the pure-Python ElementTree parser, several times slower on the
megabytes of CLIXML an event probe returns.
"""

from __future__ import annotations

import functools
import types
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from xml.parsers import expat

import pypsrp.serializer
import pypsrp.wsman
import requests
import urllib3
from pypsrp.negotiate import HTTPNegotiateAuth

# The largest reply body accepted from a host. pypsrp asks for envelopes of at most 500 KB
# (512,000 bytes, WinRM's own default MaxEnvelopeSizekb) once the pool is open, and 150 KiB before;
# sealing adds a few hundred bytes. Twice that leaves room for a host configured otherwise.
MAX_REPLY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


class RefusedReply(requests.exceptions.RequestException):
    """A reply the collector would not read (the connection is closed with it); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RefusedXML(ValueError):
    """XML with a document type declaration: refused before it is parsed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _where(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def _printable(text: str, limit: int = 200) -> str:
    """A header value quoted in a reason: one line, no control characters, bounded."""
    cleaned = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def _sealed(content_type: str) -> bool:
    return content_type.lower().startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))


def check_headers(request: requests.PreparedRequest, response: requests.Response, limit: int) -> None:
    """Refuse a response by its status and headers alone, before any of its body is read (pure)."""
    where = _where(request.url or "")
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        target = f" to {_printable(location)}" if location else ""
        raise RefusedReply(
            f"{where} answered HTTP {status}, a redirect{target}: WinRM never redirects, and the collector "
            "follows no redirect with credentials (PowerShell does only with -AllowRedirection); refused"
        )
    encoding = response.headers.get("Content-Encoding", "").strip()
    if encoding and encoding.lower() != "identity":
        raise RefusedReply(
            f"{where} sent a reply compressed with Content-Encoding {_printable(encoding)!r} although the "
            "collector asks for none (Accept-Encoding: identity): refused unread, since a compressed body can "
            "expand without bound"
        )
    length = response.headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) > limit:
        raise RefusedReply(
            f"{where} announced a reply of {int(length):,} bytes; a WS-Management reply is at most "
            f"{limit:,} bytes here (the collector asks for envelopes of 500 KB): refused unread"
        )
    content_type = response.headers.get("Content-Type", "")
    if (
        _sealed(request.headers.get("Content-Type", ""))
        and status != 401
        and length != "0"
        and not _sealed(content_type)
    ):
        raise RefusedReply(
            f"{where} answered an encrypted (sealed) request in clear text (Content-Type "
            f"{_printable(content_type) or 'none'!r}): refused, since anyone on the network path could have "
            "written it"
        )


def read_bounded(request: requests.PreparedRequest, response: requests.Response, limit: int) -> bytes:
    """The whole body, read in chunks and abandoned past ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.raw.stream(_CHUNK, decode_content=False):
            total += len(chunk)
            if total > limit:
                raise RefusedReply(
                    f"{_where(request.url or '')} sent a reply larger than the {limit:,} bytes a WS-Management "
                    "reply may be here: refused, reading stopped there"
                )
            chunks.append(chunk)
    # What requests' Response.content raises for the same urllib3 errors, so that the session
    # knows its connection (and the NTLM context on it) is gone.
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
    return b"".join(chunks)


def _bounded(send: Callable[..., requests.Response], limit: int) -> Callable[..., requests.Response]:
    @functools.wraps(send)
    def bounded_send(request: requests.PreparedRequest, stream: bool = False, **kwargs: Any) -> requests.Response:
        response = send(request, stream=True, **kwargs)
        try:
            if response.status_code == 401:  # an authentication leg: its TLS channel is bound in (CBT)
                response._collector_peer_cert = _peer_certificate(response)  # type: ignore[attr-defined]
            check_headers(request, response, limit)
            body = read_bounded(request, response, limit)
        except BaseException:
            response.close()
            raise
        response._content = body  # what Response.content returns from now on
        response._content_consumed = True  # type: ignore[attr-defined]
        return response

    return bounded_send


def _peer_certificate(response: requests.Response) -> bytes:
    """The server's certificate (DER) on this response's connection, b"" over plain HTTP; read
    while the connection is still attached to the response, that is before its body is read."""
    try:
        sock = response.raw._fp.fp.raw._sock  # type: ignore[union-attr]
    except AttributeError:
        return b""
    getpeercert = getattr(sock, "getpeercert", None)
    return (getpeercert(True) or b"") if getpeercert is not None else b""


def _channel_binding(response: requests.Response) -> bytes | None:
    """pypsrp's channel binding data (RFC 5929 tls-server-end-point) from the certificate kept by
    ``bounded_send``: pypsrp would look for the socket after the body was read, when it is gone."""
    cert = getattr(response, "_collector_peer_cert", None)
    if cert is None:
        return _PYPSRP_CBT(response)
    return b"tls-server-end-point:" + HTTPNegotiateAuth._get_certificate_hash(cert) if cert else None


_PYPSRP_CBT = HTTPNegotiateAuth._get_cbt_data


def guard_session(session: requests.Session, limit: int = MAX_REPLY_BYTES) -> None:
    """Make every adapter of ``session`` read replies through the checks above (the 401 legs of
    NTLM and Kerberos go through the adapter too). Redirects are never followed: a 3xx is refused
    before requests could act on it."""
    session.max_redirects = 0
    for adapter in session.adapters.values():
        if not getattr(adapter, "_collector_bounded", False):
            adapter.send = _bounded(adapter.send, limit)  # type: ignore[method-assign]
            adapter._collector_bounded = True  # type: ignore[attr-defined]


def _refuse_doctype(name: str, *args: object) -> None:
    raise RefusedXML(
        f"sent XML with a document type declaration (<!DOCTYPE {_printable(str(name), 60)}>): WinRM never sends "
        "one, and the entities it can define expand without bound; refused unparsed"
    )


def refuse_dtd(data: str | bytes) -> None:
    """Raise ``RefusedXML`` if ``data`` has a document type declaration; malformed XML is left to
    the real parse, which names the error."""
    scanner = expat.ParserCreate()
    scanner.StartDoctypeDeclHandler = _refuse_doctype
    try:
        scanner.Parse(data, True)
    except expat.ExpatError:
        return


def fromstring(text: str | bytes, parser: ET.XMLParser | None = None) -> ET.Element:
    """``ElementTree.fromstring`` for text from a host: no DTD, so no entity can be defined."""
    refuse_dtd(text)
    return ET.fromstring(text, parser)  # noqa: S314 - refuse_dtd above: without a DTD no entity exists


_GUARDED_ET = types.SimpleNamespace(**{**vars(ET), "fromstring": fromstring, "XML": fromstring})


# libexpat 2.7.0 fixed CVE-2024-8176 (a crash on deeply nested entities). The DTD refusal above
# keeps any entity from a host away from the parser whatever the version; an older libexpat still
# deserves a word, for the other XML this Python parses.
EXPAT_FIXED = (2, 7, 0)


def expat_problem(version: str = expat.EXPAT_VERSION) -> str | None:
    """A warning when this Python's libexpat is older than 2.7.0, else None (pure)."""
    numbers = tuple(int(n) for n in version.rpartition("_")[2].split(".") if n.isdigit())
    if len(numbers) != 3 or numbers >= EXPAT_FIXED:
        return None
    return (
        f"this Python's libexpat {'.'.join(map(str, numbers))} predates 2.7.0 (CVE-2024-8176); no host reply "
        "reaches it (every DTD is refused unparsed), but update Python's libexpat where you can"
    )


def install() -> None:
    """Point pypsrp's XML parsing (WS-Management envelopes, faults, CLIXML) at ``fromstring``, and
    its channel binding at the certificate kept before a reply's body was read."""
    HTTPNegotiateAuth._get_cbt_data = staticmethod(_channel_binding)  # type: ignore[method-assign]
    pypsrp.wsman.ET = _GUARDED_ET  # type: ignore[assignment]
    pypsrp.serializer.ET = _GUARDED_ET  # type: ignore[assignment]
