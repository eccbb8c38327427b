"""Text from a host, made safe for the administrator's terminal.

Everything ``collect`` prints may hold text it did not write: certificate subjects and issuers, an
HTTP reason phrase, error reasons built from a host's answers, evidence, names from an inventory
or a results.json. The hosts may be compromised. Printed raw, such text drives the terminal: CSI
sequences move the cursor, erase lines or recolour the screen, OSC sequences set the window title
(or, on some terminals, the clipboard), a carriage return overwrites what the line said, and a
line feed starts a line of the attacker's choosing, such as a forged ``collect: summary ... exit=0``
that a scheduler or a script reading the last line of stderr would believe. Bidi overrides and
Unicode line separators reorder or split what the eye reads; a lone surrogate cannot be encoded
and ends the print with an exception.

``printable`` turns each of those characters into a visible escape, so a line stays one line
and nothing in it is interpreted. Everything else is left as it is, ordinary non-ASCII letters
included, and text without such characters (everything the tool itself writes) comes back
unchanged. Backslashes are not doubled: ``CORP\\admin`` must stay readable. A host can therefore
write the four characters ``\\x1b`` and look like an escaped ESC, which is harmless: the escapes
are for reading, not for decoding back.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

# C0 controls and DEL, C1 controls, the Arabic letter mark, LRM and RLM, the line and paragraph
# separators, the bidi embeddings and overrides (LRE, RLE, PDF, LRO, RLO), the bidi isolates
# (LRI, RLI, FSI, PDI) and lone surrogates (a well-formed str holds none other).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` as one inert terminal line: controls, separators, bidi controls and lone
    surrogates become visible escapes (``\\x1b``, ``\\n``, ``\\u202e``, ``\\ud800``)."""
    return _UNSAFE.sub(_escape, text)
