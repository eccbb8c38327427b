"""What each lab chain variant must produce: the cert.* checks that are not 'pass', and their status.

Shared by the unit tests (pure analysis), the lab tests (through a real TLS server and the probe)
and the openssl oracle test, so all three hold the same expectation.
"""

from __future__ import annotations

EXPECTED_PROBLEMS: dict[str, dict[str, str]] = {
    "good": {},
    "expires-soon": {"cert.expires-soon": "warn"},
    "expired": {"cert.expired": "fail"},
    "not-yet-valid": {"cert.not-yet-valid": "fail"},
    "wrong-name": {"cert.name-mismatch": "fail"},
    "self-signed": {"cert.untrusted": "fail", "cert.self-signed": "warn"},
    "sha1": {"cert.weak-signature": "fail"},
    "rsa1024": {"cert.weak-key": "fail"},
    "missing-intermediate": {"cert.chain-incomplete": "fail", "cert.untrusted": "unknown"},
    "wrong-order": {"cert.chain-order": "warn"},
    "no-server-auth": {"cert.no-server-auth-eku": "fail"},
    "inspection": {"cert.untrusted": "fail"},
}

CERT_CHECK_IDS = (
    "cert.expired",
    "cert.not-yet-valid",
    "cert.expires-soon",
    "cert.name-mismatch",
    "cert.untrusted",
    "cert.chain-incomplete",
    "cert.self-signed",
    "cert.weak-signature",
    "cert.weak-key",
    "cert.no-server-auth-eku",
    "cert.chain-order",
)
