"""Every client-stack failure becomes a collect.* kind with a reason an administrator can act on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import requests
from pypsrp.exceptions import AuthenticationError, InvalidPSRPOperation, WinRMTransportError, WSManFaultError

from collector.credentials import Secret
from collector.model import CollectionFailure, HostTarget, Role
from collector.winrm import CollectionError, HostSession, classify

T = HostTarget(
    name="sh1.corp.example",
    address="10.0.0.9",
    roles=(Role.SESSION_HOST,),
    port=5986,
    username="CORP\\svc",
    auth="ntlm",
)


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (
            AuthenticationError("Failed"),
            CollectionFailure.AUTH_FAILED,
            "refused the credentials of CORP\\svc",
        ),
        (
            requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"),
            CollectionFailure.UNREACHABLE,
            "TLS to 10.0.0.9:5986 failed",
        ),
        (
            requests.exceptions.ConnectTimeout("x"),
            CollectionFailure.UNREACHABLE,
            "no answer from 10.0.0.9:5986",
        ),
        (requests.exceptions.ReadTimeout("x"), CollectionFailure.TIMEOUT, "did not answer in time"),
        (
            requests.exceptions.ConnectionError("[Errno 111] Connection refused"),
            CollectionFailure.UNREACHABLE,
            "connection refused by 10.0.0.9:5986",
        ),
        (
            requests.exceptions.ConnectionError("NameResolutionError: Name or service not known"),
            CollectionFailure.UNREACHABLE,
            "does not resolve",
        ),
        (
            WSManFaultError(5, "m", "Access is denied.", None, None, None),
            CollectionFailure.AUTH_FAILED,
            "access denied",
        ),
        (
            WSManFaultError(2150859174, "m", "quota", None, None, None),
            CollectionFailure.UNREACHABLE,
            "MaxShellsPerUser",
        ),
        (WinRMTransportError("http", 500, "<html>oops</html>"), CollectionFailure.BAD_OUTPUT, "HTTP 500"),
        (ET.ParseError("syntax error"), CollectionFailure.BAD_OUTPUT, "not XML"),
        (InvalidPSRPOperation("pool broken"), CollectionFailure.BAD_OUTPUT, "runspace on the host is broken"),
        (RuntimeError("weird"), CollectionFailure.BAD_OUTPUT, "RuntimeError: weird"),
    ],
)
def test_classify(exc: BaseException, kind: CollectionFailure, words: str) -> None:
    error = classify(exc, T)
    assert error.kind is kind
    assert words in error.reason


def test_reason_never_carries_the_password() -> None:
    session = HostSession(T, Secret("Pa55-w0rd!"))
    scrubbed = session._scrub(CollectionError(CollectionFailure.BAD_OUTPUT, "echoed Pa55-w0rd! back"))
    assert scrubbed.reason == "echoed ******** back"
