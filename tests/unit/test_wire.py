"""Replies from a host are untrusted: the checks under pypsrp (collector.wire), the NTLM policy
(HostTarget.ntlm_allowed, inventory allow_ntlm) and the contract's handling of hostile values."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import pypsrp.serializer
import pypsrp.wsman
import pytest
import requests
import urllib3

from collector import contract, inventory, winrm, wire
from collector.lab import hostile
from collector.model import CollectionFailure, HostTarget, Role


def exchange(
    status: int = 200,
    headers: dict[str, str] | None = None,
    body: bytes = b"<ok/>",
    request_type: str = "application/soap+xml;charset=UTF-8",
) -> tuple[requests.PreparedRequest, requests.Response]:
    """A request and the response a host gave it, the body still unread on a urllib3 response."""
    request = requests.Request(
        "POST", "http://10.0.0.9:5985/wsman", data=b"x", headers={"Content-Type": request_type}
    ).prepare()
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response.raw = urllib3.HTTPResponse(io.BytesIO(body), preload_content=False, status=status)
    response.request = request
    return request, response


SEALED = 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'


def test_an_honest_reply_passes_and_is_read_whole() -> None:
    request, response = exchange(headers={"Content-Type": SEALED, "Content-Length": "5"}, request_type=SEALED)
    wire.check_headers(request, response, 100)
    assert wire.read_bounded(request, response, 100) == b"<ok/>"


@pytest.mark.parametrize(
    ("status", "headers", "request_type", "words"),
    [
        (
            307,
            {"Location": "http://evil.example/wsman"},
            "",
            "answered HTTP 307, a redirect to http://evil.example/wsman",
        ),
        (302, {}, "", "answered HTTP 302, a redirect: WinRM never redirects"),
        (200, {"Content-Encoding": "gzip"}, "", "compressed with Content-Encoding 'gzip'"),
        (200, {"Content-Length": "101"}, "", "announced a reply of 101 bytes; a WS-Management reply is at most 100"),
        (200, {"Content-Type": "application/soap+xml"}, SEALED, "answered an encrypted (sealed) request in clear"),
    ],
)
def test_refused_by_status_and_headers_before_the_body(
    status: int, headers: dict[str, str], request_type: str, words: str
) -> None:
    request, response = exchange(status, headers, request_type=request_type or "application/soap+xml")
    with pytest.raises(wire.RefusedReply) as refused:
        wire.check_headers(request, response, 100)
    assert refused.value.reason.startswith("10.0.0.9:5985 ")
    assert words in refused.value.reason
    assert response.raw.tell() == 0  # not one byte of the body was read


def test_a_header_value_is_quoted_as_one_printable_line() -> None:
    request, response = exchange(307, {"Location": "http://x/\x1b[2J\ncollect: summary"})
    with pytest.raises(wire.RefusedReply) as refused:
        wire.check_headers(request, response, 100)
    assert "http://x/\\x1b[2J\\x0acollect: summary" in refused.value.reason


def test_identity_encoding_a_sealed_reply_and_an_unsealed_401_pass() -> None:
    for status, headers, request_type in [
        (200, {"Content-Encoding": "identity"}, "application/soap+xml"),
        (401, {"WWW-Authenticate": "Negotiate"}, SEALED),  # an expired context is refused, not forged
        (200, {"Content-Length": "0"}, SEALED),  # nothing to forge
    ]:
        request, response = exchange(status, headers, request_type=request_type)
        wire.check_headers(request, response, 100)


def test_a_body_without_length_is_abandoned_past_the_limit() -> None:
    request, response = exchange(body=b"y" * 300_000)
    with pytest.raises(wire.RefusedReply, match=r"larger than the 100,000 bytes .*reading stopped there"):
        wire.read_bounded(request, response, 100_000)
    assert response.raw.tell() <= 100_000 + 64 * 1024  # stopped within a chunk of the limit


def test_a_cut_connection_is_what_requests_would_raise() -> None:
    """The session renews its HTTP session (and NTLM context) only for requests' own errors."""
    request, response = exchange()

    def broken(*args: object, **kwargs: object) -> object:
        raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(5 bytes read, 7 more expected)")
        yield  # pragma: no cover

    response.raw.stream = broken  # type: ignore[method-assign]
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        wire.read_bounded(request, response, 100)


def test_xml_with_a_dtd_is_refused_unparsed() -> None:
    with pytest.raises(wire.RefusedXML, match=r"^sent XML with a document type declaration \(<!DOCTYPE s:Envelope>\)"):
        wire.fromstring(hostile.dtd_bomb(levels=30))  # 10**30 copies, were it expanded
    with pytest.raises(wire.RefusedXML):  # as text, the way pypsrp's serializer hands CLIXML over
        wire.fromstring('<!DOCTYPE x [<!ENTITY a "b">]><Obj>&a;</Obj>')
    with pytest.raises(wire.RefusedXML):  # in another encoding, as libexpat reads it
        wire.fromstring('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode("utf-16"))
    assert wire.fromstring(b"<a><b c='1'/></a>").find("b").get("c") == "1"  # type: ignore[union-attr]
    with pytest.raises(ET.ParseError):  # malformed XML is the real parser's to name
        wire.fromstring(b"<a>")


def test_pypsrp_parses_through_the_guard() -> None:
    winrm.HostSession  # noqa: B018 - importing collector.winrm installs the guard
    assert pypsrp.wsman.ET.fromstring is wire.fromstring
    assert pypsrp.serializer.ET.fromstring is wire.fromstring
    assert pypsrp.wsman.ET.Element is ET.Element  # everything else is ElementTree's own


def test_refusals_become_bad_output_naming_the_host() -> None:
    target = HostTarget(name="sh1.corp.example", address="10.0.0.9", roles=(Role.SESSION_HOST,), port=5985)
    refused = winrm.classify(wire.RefusedReply("10.0.0.9:5985 answered HTTP 307, ..."), target)
    assert (refused.kind, refused.reason) == (CollectionFailure.BAD_OUTPUT, "10.0.0.9:5985 answered HTTP 307, ...")
    dtd = winrm.classify(wire.RefusedXML("sent XML with a document type declaration"), target)
    assert dtd.reason == "10.0.0.9:5985 sent XML with a document type declaration"


# --- NTLM only where the server is authenticated first -------------------------------------------


@pytest.mark.parametrize(
    ("transport", "validation", "explicit", "allowed"),
    [
        ("https", True, None, True),  # TLS proved the server, and NTLM is bound to the channel
        ("https", False, None, False),
        ("http", True, None, False),  # anyone on the path may answer
        ("http", True, True, True),  # a workgroup host: the inventory says so
        ("https", True, False, False),
    ],
)
def test_ntlm_is_allowed_by_default_only_to_an_authenticated_server(
    transport: str, validation: bool, explicit: bool | None, allowed: bool
) -> None:
    target = HostTarget(
        name="a",
        address="a",
        roles=(Role.CLIENT,),
        transport=transport,
        cert_validation=validation,
        allow_ntlm=explicit,
    )
    assert target.ntlm_allowed is allowed


def test_negotiate_without_ntlm_names_the_rogue_offer_and_the_way_out() -> None:
    target = HostTarget(
        name="sh1.corp.example", address="10.0.0.9", roles=(Role.SESSION_HOST,), transport="http", port=5985
    )
    offer = ValueError(
        "Server responded with the auth protocol 'NTLM' which is incompatible with the specified auth_provider "
        "'kerberos'"
    )
    error = winrm.classify(offer, target)
    assert error.kind is CollectionFailure.AUTH_FAILED
    assert error.reason.startswith("the WinRM service at 10.0.0.9:5985 offers only NTLM, and NTLM is off for")
    assert "set allow_ntlm: true for a host outside the domain" in error.reason
    refused = winrm.classify(requests.exceptions.HTTPError("x"), target)  # not an auth failure: no hint
    assert winrm.NTLM_OFF not in refused.reason


def test_kerberos_failures_under_negotiate_say_that_ntlm_was_not_tried() -> None:
    target = HostTarget(name="sh1.corp.example", address="10.0.0.9", roles=(Role.SESSION_HOST,), transport="http")
    from pypsrp.exceptions import AuthenticationError

    error = winrm.classify(AuthenticationError("401"), target)
    assert error.reason.endswith(winrm.NTLM_OFF)


def test_credssp_without_an_authenticated_server_is_refused_before_any_traffic() -> None:
    target = HostTarget(
        name="sh1.corp.example",
        address="127.0.0.1",
        roles=(Role.SESSION_HOST,),
        transport="http",
        port=9,
        auth="credssp",
    )
    with pytest.raises(winrm.CollectionError, match="only over https with certificate validation on"):
        winrm.HostSession(target, None).__enter__()


def inventory_problems(settings: str) -> list[str]:
    host = "  - {name: a.corp.example, roles: [client]}\n"
    text = f"defaults:\n  username: CORP\\\\svc\n  password_env: P\n{settings}hosts:\n{host}"
    with pytest.raises(inventory.InventoryError) as error:
        inventory.parse(text, "inv.yaml")
    return [str(p) for p in error.value.problems]


def test_inventory_refuses_credssp_to_an_unauthenticated_server() -> None:
    for settings in ("  auth: credssp\n  transport: http\n", "  auth: credssp\n  cert_validation: false\n"):
        [problem] = inventory_problems(settings)
        assert problem.startswith("inv.yaml:")
        assert "defaults.auth: credssp hands the password itself to the host" in problem


def test_inventory_allow_ntlm_reaches_the_target() -> None:
    text = "defaults:\n  transport: http\n  allow_ntlm: true\nhosts:\n  - {name: a.corp.example, roles: [client]}\n"
    [target] = inventory.parse(text).targets
    assert target.allow_ntlm is True and target.ntlm_allowed
    [default] = inventory.parse("hosts:\n  - {name: a.corp.example, roles: [client], transport: http}\n").targets
    assert default.allow_ntlm is None and not default.ntlm_allowed
    [problem] = inventory_problems("  auth: ntlm\n  allow_ntlm: false\n")
    assert "auth ntlm contradicts allow_ntlm: false" in problem


# --- the contract: values no probe prints ---------------------------------------------------------


def envelope(data_text: str, probe: str = "services") -> str:
    return f'{{"probe":"{probe}","version":1,"data":{data_text},"errors":[]}}'


def test_a_huge_number_is_this_probe_s_bad_output() -> None:
    with pytest.raises(contract.ContractError, match=r"^probe services: output is not a probe's JSON \(Exceeds"):
        contract.parse_output("services", [envelope('{"services":[],"n":' + "9" * 5000 + "}")])


def test_deep_json_is_this_probe_s_bad_output() -> None:
    with pytest.raises(contract.ContractError, match="nests too deeply"):
        contract.parse_output("services", [envelope("[" * 100_000 + "]" * 100_000)])


def test_lone_surrogates_become_replacement_characters_and_pairs_stay() -> None:
    service = {
        "name": "TermService",
        "present": True,
        "display_name": "Remote\ud800 Desktop \\ud83d\\ude00",
        "state": "Running",
        "start_mode": "Auto",
        "account": "NT Authority\\NetworkService",
        "process_id": 1,
    }
    raw = json.dumps(service, ensure_ascii=False).replace("\\\\ud83d\\\\ude00", "\\ud83d\\ude00")
    result = contract.parse_output("services", [envelope('{"services":[' + raw + "]}")])
    [parsed] = result.data["services"]
    assert parsed["display_name"] == "Remote\ufffd Desktop \U0001f600"
    json.dumps(result.data).encode("utf-8")  # every string is Unicode now
    escaped = envelope('{"services":[' + raw.replace("\ud800", "\\udc00") + "]}")
    [again] = contract.parse_output("services", [escaped]).data["services"]
    assert again["display_name"] == "Remote\ufffd Desktop \U0001f600"


def test_an_old_libexpat_is_named_and_a_current_one_is_not() -> None:
    assert wire.expat_problem("expat_2.7.0") is None and wire.expat_problem("expat_2.10.1") is None
    warning = wire.expat_problem("expat_2.5.0")
    assert warning is not None and warning.startswith("this Python's libexpat 2.5.0 predates 2.7.0 (CVE-2024-8176)")
    assert wire.expat_problem("something else") is None  # a version it cannot read: no false alarm


class _Captured(Exception):
    pass


@pytest.mark.parametrize(
    ("auth", "transport", "allow_ntlm", "expected"),
    [
        ("negotiate", "http", None, {"auth": "kerberos"}),  # Negotiate without its NTLM fallback
        ("negotiate", "http", True, {"auth": "negotiate"}),
        ("negotiate", "https", None, {"auth": "negotiate"}),
        ("credssp", "https", None, {"auth": "credssp", "credssp_auth_mechanism": "auto"}),
        ("credssp", "https", False, {"auth": "credssp", "credssp_auth_mechanism": "kerberos"}),
    ],
)
def test_what_the_session_asks_pypsrp_for(
    monkeypatch: pytest.MonkeyPatch, auth: str, transport: str, allow_ntlm: bool | None, expected: dict[str, str]
) -> None:
    seen: dict[str, object] = {}

    def capture(**kwargs: object) -> None:
        seen.update(kwargs)
        raise _Captured

    monkeypatch.setattr(winrm, "WSMan", capture)
    target = HostTarget(
        name="sh1.corp.example",
        address="10.0.0.9",
        roles=(Role.SESSION_HOST,),
        transport=transport,
        auth=auth,
        username="svc@CORP.EXAMPLE",
        allow_ntlm=allow_ntlm,
    )
    with pytest.raises(winrm.CollectionError):
        winrm.HostSession(target, None).__enter__()
    assert {key: seen.get(key) for key in expected} == expected
