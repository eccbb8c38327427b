"""What a compromised host, or someone on its network path, can send the collector.

The lab's faults (``wsman.FAULTS``) are Windows failing; these are Windows lying. Each mode is
one attack seen against the collector (docs/security.md), served by the lab so that the real
client stack meets it on the wire:

Wire modes (``WIRE``), played by the WS-Management server:
  "dtd-bomb"         a reply whose DTD nests entities ten deep (a "billion laughs")
  "attribute-flood"  a 3 MB reply with one element of 200,000 attributes
  "chunked-flood"    a reply with no Content-Length that streams 8 MiB of XML
  "gzip-bomb"        a reply sent with Content-Encoding: gzip (64 MiB of XML once inflated)
  "redirect"         every request answered 307 to another server (a credential trap)
  "ntlm-only"        a rogue acceptor offering only NTLM, recording each NTLM message it gets
  "unsealed"         replies to encrypted (sealed) requests in clear text, as a forger would

Data modes (``DATA``), played by the host's probe answers (valid WinRM, hostile content):
  "control-chars"    terminal escapes and a forged summary line in probe strings
  "lone-surrogate"   a string holding an unpaired UTF-16 surrogate
  "huge-integer"     a 5,000-digit number in the host probe's JSON
  "deep-json"        the services probe's data nested 100,000 lists deep
  "bad-certificate"  an RDP listener certificate that claims X.509 version 5, served on the
                     session host's RDP port and reported in its rdp_config probe
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

WIRE = frozenset({"dtd-bomb", "attribute-flood", "chunked-flood", "gzip-bomb", "redirect", "ntlm-only", "unsealed"})
DATA = frozenset({"control-chars", "lone-surrogate", "huge-integer", "deep-json", "bad-certificate"})
BAD_CERTIFICATE = "bad-version"  # a collector.lab.pki malformed variant a TLS server can send as its leaf
HOSTILE = WIRE | DATA

# What "control-chars" writes into probe strings: clear screen, a window title (OSC), cursor up
# and erase line, then a line that reads like the collector's own last line.
TERMINAL_ATTACK = "\x1b[2J\x1b]0;pwned\x07\x1b[1A\x1b[2K\ncollect: summary hosts=0 failing_hosts=0 exit=0\r\x9b31m"
HTML_ATTACK = "<img src=x onerror=alert(1)>"  # and markup, for the pages
LONE_SURROGATE = "\ud800"
HUGE_INTEGER_DIGITS = 5000
DEEP_JSON_LEVELS = 100_000
CHUNKED_FLOOD_BYTES = 8 * 1024 * 1024
_ENVELOPE_OPEN = b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
_ENVELOPE_CLOSE = b"</s:Body></s:Envelope>"


def dtd_bomb(levels: int = 10) -> bytes:
    """Entities each ten times the one before: 10**levels copies of "lol" if anyone expanded them."""
    entities = ['<!ENTITY e0 "lol">'] + [f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, levels)]
    doctype = f"<!DOCTYPE s:Envelope [{''.join(entities)}]>".encode()
    return b'<?xml version="1.0"?>' + doctype + _ENVELOPE_OPEN + f"&e{levels - 1};".encode() + _ENVELOPE_CLOSE


def attribute_flood(attributes: int = 200_000) -> bytes:
    names = b" ".join(b'a%d="x"' % i for i in range(attributes))
    return _ENVELOPE_OPEN + b"<flood " + names + b"/>" + _ENVELOPE_CLOSE


def gzip_bomb(inflated: int = 64 * 1024 * 1024) -> bytes:
    """A small gzip body that inflates to ``inflated`` bytes of XML whitespace."""
    return gzip.compress(_ENVELOPE_OPEN + b" " * inflated + _ENVELOPE_CLOSE, compresslevel=9, mtime=0)


def flood_chunks(total: int = CHUNKED_FLOOD_BYTES, size: int = 64 * 1024) -> list[bytes]:
    """The pieces of a streamed reply that never stays within any sane bound."""
    filler = b"<x>" + b"y" * (size - 7) + b"</x>"
    return [_ENVELOPE_OPEN] + [filler] * (total // size)


def probe_output(mode: str, probe: str, envelope: dict[str, Any], bad_certificate: bytes = b"") -> str:
    """The JSON text a hostile host prints for ``probe`` (the honest ``envelope`` when the mode
    does not touch this probe); ``bad_certificate`` is the DER that "bad-certificate" reports."""
    data = envelope["data"]
    if mode == "control-chars" and probe == "host":
        data["os_caption"] = f"Windows Server{HTML_ATTACK}{TERMINAL_ATTACK}"
        data["computer_name"] = f"{data['computer_name']}{TERMINAL_ATTACK}"
    elif mode == "control-chars" and probe == "services":
        for service in data["services"]:
            service["display_name"] = f"{service.get('display_name') or ''}{TERMINAL_ATTACK}"
    elif mode == "bad-certificate" and probe == "rdp_config" and data.get("listener_certificate"):
        data["listener_certificate"]["chain_der"][0] = base64.b64encode(bad_certificate).decode()
    elif mode == "lone-surrogate" and probe == "host":
        data["os_caption"] = f"Windows {LONE_SURROGATE} Server"
    elif mode == "deep-json" and probe == "services":
        text = json.dumps({**envelope, "data": "DEEP"}, separators=(",", ":"))
        return text.replace('"DEEP"', "[" * DEEP_JSON_LEVELS + "]" * DEEP_JSON_LEVELS, 1)
    text = json.dumps(envelope, separators=(",", ":"), ensure_ascii=True)
    if mode == "huge-integer" and probe == "host":
        return text.replace('"data":{', '"data":{"boot_count":' + "9" * HUGE_INTEGER_DIGITS + ",", 1)
    return text


def ntlm_message_type(token: bytes) -> int | None:
    """1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE (MS-NLMP 2.2.1), found raw or inside SPNEGO."""
    at = token.find(b"NTLMSSP\x00")
    if at < 0 or len(token) < at + 12:
        return None
    return int.from_bytes(token[at + 8 : at + 12], "little")
