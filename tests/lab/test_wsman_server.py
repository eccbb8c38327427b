"""The lab WinRM server against unmodified clients: pypsrp (PSRP) and pywinrm (WinRS).

Every test drives a real client library over loopback HTTP(S), so what passes here is the
protocol path the collector and the demo use, not a mock of our own client.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import winrm
from pypsrp.client import Client
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool
from pypsrp.wsman import WSMan
from winrm.exceptions import InvalidCredentialsError

from collector.lab.pki import LabCA
from collector.lab.wsman import Invocation, InvocationResult, WSManServer

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

USER, PASSWORD = "labadmin", "Pa55:w0rd é"  # a colon and non-ASCII survive Basic auth
NTLM_PASSWORD = "Pa55w0rd é!"  # NTLM lab users cannot contain ':' (pyspnego's user file format)


def echo(invocation: Invocation) -> InvocationResult:
    """Answers with the script's first line and the parameters as JSON; 'FAIL' in it fails."""
    first = invocation.script.splitlines()[0] if invocation.script else ""
    if "FAIL" in invocation.script:
        return InvocationResult(output=["partial"], errors=["first problem", f"it broke: {first}"])
    return InvocationResult(output=[f"echo:{first}", json.dumps(dict(invocation.parameters), sort_keys=True)])


def expected(script: str, parameters: dict | None = None) -> list[str]:
    return [f"echo:{script.splitlines()[0]}", json.dumps(parameters or {}, sort_keys=True)]


def lab_threads(server: WSManServer) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"wsman-lab-{server.port}-")]


@pytest.fixture
def server_factory() -> Iterator:
    """Start servers on demand; stops them all and checks no lab thread outlives them."""
    servers: list[WSManServer] = []

    def make(**kwargs: object) -> WSManServer:
        kwargs.setdefault("users", {USER: NTLM_PASSWORD if kwargs.get("auth") != "basic" else PASSWORD})
        server = WSManServer(kwargs.pop("responder", echo), **kwargs)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        assert lab_threads(server) == []


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[bytes, bytes], Path]:
    ca = LabCA.create("wsman test CA")
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    return ca.issue_server(["lab-host.example"], ["127.0.0.1"]), ca_file


def psrp_client(server: WSManServer, auth: str, password: str, **kwargs: object) -> Client:
    https = server.url.startswith("https")
    kwargs.setdefault("encryption", "never" if auth == "basic" else "auto")
    kwargs.setdefault("connection_timeout", 5)
    kwargs.setdefault("read_timeout", 30)
    return Client("127.0.0.1", port=server.port, ssl=https, auth=auth, username=USER, password=password, **kwargs)


def winrm_session(server: WSManServer, password: str, transport: str, ca_file: str | None = None) -> winrm.Session:
    # An explicit ca_trust_path (None for HTTP) keeps pywinrm from warning about REQUESTS_CA_BUNDLE.
    return winrm.Session(server.url, auth=(USER, password), transport=transport, ca_trust_path=ca_file)


def content_types(client: Client) -> list[str]:
    """Record the Content-Type of every HTTP response the client gets from now on."""
    seen: list[str] = []
    client.wsman.transport.session = client.wsman.transport._build_session()
    client.wsman.transport.session.hooks["response"].append(
        lambda r, **_: seen.append(f"{r.status_code} {r.headers.get('Content-Type', '')}")
    )
    return seen


# -- 1. Client.execute_ps over every transport


def test_execute_ps_basic_over_http(server_factory) -> None:
    server = server_factory(auth="basic")
    with psrp_client(server, "basic", PASSWORD) as client:
        output, streams, had_errors = client.execute_ps("Get-Service -Name TermService\n'second line'")
    assert output == "\n".join(expected("Get-Service -Name TermService"))
    assert streams.error == []
    assert had_errors is False
    assert server.invocations == [
        Invocation(script="Get-Service -Name TermService\n'second line'", parameters={}, transport="psrp")
    ]
    assert server.open_shells == 0


def test_execute_ps_ntlm_over_http_encrypts_every_message(server_factory) -> None:
    server = server_factory(auth="negotiate")
    with psrp_client(server, "ntlm", NTLM_PASSWORD) as client:
        seen = content_types(client)
        output, streams, had_errors = client.execute_ps("hostname")
    assert output == "\n".join(expected("hostname"))
    assert (streams.error, had_errors) == ([], False)
    answers = [s for s in seen if s.startswith("200")]
    assert len(answers) >= 4  # security context setup, Create, Command, Receive(s), Delete
    assert all('multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted"' in s for s in answers[1:])
    assert answers[0] == "200 "  # the empty POST that completed the NTLM handshake
    assert server.open_shells == 0


def test_execute_ps_spnego_negotiate_with_domain_user(server_factory) -> None:
    server = server_factory(auth="negotiate", users={"CORP\\svc-collect": NTLM_PASSWORD})
    client = Client(
        "127.0.0.1",
        port=server.port,
        ssl=False,
        auth="negotiate",
        username="corp\\SVC-collect",
        password=NTLM_PASSWORD,
    )
    with client:
        assert client.execute_ps("whoami")[0] == "\n".join(expected("whoami"))


def test_execute_ps_ntlm_over_https_with_cert_validation(server_factory, pki) -> None:
    (chain, key), ca_file = pki
    server = server_factory(auth="negotiate", tls=(chain, key))
    assert server.url == f"https://127.0.0.1:{server.port}/wsman"
    with psrp_client(server, "ntlm", NTLM_PASSWORD, cert_validation=str(ca_file)) as client:
        seen = content_types(client)
        output, streams, had_errors = client.execute_ps("Get-Date")
    assert output == "\n".join(expected("Get-Date"))
    assert (streams.error, had_errors) == ([], False)
    # Over TLS nothing is wrapped; auth is bound to the channel (CBT) instead.
    assert "200 application/soap+xml;charset=UTF-8" in seen
    assert [s for s in seen if "multipart" in s] == []


def test_https_rejects_ntlm_without_channel_binding(server_factory, pki) -> None:
    (chain, key), ca_file = pki
    server = server_factory(auth="negotiate", tls=(chain, key))
    client = psrp_client(server, "ntlm", NTLM_PASSWORD, cert_validation=str(ca_file), negotiate_send_cbt=False)
    with client, pytest.raises(AuthenticationError):
        client.execute_ps("Get-Date")


def test_https_client_without_the_lab_ca_fails_validation(server_factory, pki) -> None:
    (chain, key), _ = pki
    server = server_factory(auth="basic", tls=(chain, key))
    with psrp_client(server, "basic", PASSWORD) as client, pytest.raises(requests.exceptions.SSLError):
        client.execute_ps("Get-Date")


def test_error_responder_fails_the_pipeline(server_factory) -> None:
    server = server_factory(auth="basic")
    with psrp_client(server, "basic", PASSWORD) as client:
        output, streams, had_errors = client.execute_ps("FAIL here")
    assert output == "partial"
    assert had_errors is True
    assert [str(e) for e in streams.error] == ["first problem", "it broke: FAIL here"]
    assert server.open_shells == 0


def test_raising_responder_becomes_a_pipeline_error(server_factory) -> None:
    def broken(invocation: Invocation) -> InvocationResult:
        raise RuntimeError("responder bug")

    server = server_factory(auth="basic", responder=broken)
    with psrp_client(server, "basic", PASSWORD) as client:
        output, streams, had_errors = client.execute_ps("anything")
    assert (output, had_errors) == ("", True)
    assert [str(e) for e in streams.error] == ["RuntimeError: responder bug"]


# -- 2. parameters are data


def test_parameters_arrive_as_data_and_script_unchanged(server_factory) -> None:
    server = server_factory(auth="negotiate")
    script = "param($Name, $Items, $Count)\n# comment with 'quotes' and $(subexpr)\nWrite-Output $Name"
    hostile = "x'; Write-Output pwned; '"
    wsman = WSMan("127.0.0.1", port=server.port, ssl=False, auth="ntlm", username=USER, password=NTLM_PASSWORD)
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script(script)
        ps.add_parameter("Name", hostile).add_parameter("Items", ["a", 2, {"k": [True, None]}])
        ps.add_parameter("Count", 42)
        output = ps.invoke()
    assert ps.had_errors is False
    params = {"Count": 42, "Items": ["a", 2, {"k": [True, None]}], "Name": hostile}
    assert output == expected(script, params)
    last = server.invocations[-1]
    assert last.script == script
    assert last.parameters == params
    assert type(last.parameters["Count"]) is int and type(last.parameters["Name"]) is str
    assert last.transport == "psrp"
    assert server.open_shells == 0


# -- 3. several pipelines and pools


def test_two_pipelines_one_pool_sync_and_async(server_factory) -> None:
    server = server_factory(auth="basic")
    wsman = WSMan(
        "127.0.0.1",
        port=server.port,
        ssl=False,
        auth="basic",
        username=USER,
        password=PASSWORD,
        encryption="never",
    )
    with wsman, RunspacePool(wsman) as pool:
        first, second = PowerShell(pool), PowerShell(pool)
        first.add_script("first").add_parameter("n", 1)
        second.add_script("second").add_parameter("n", 2)
        first.begin_invoke()
        second.begin_invoke()
        while second.state == PSInvocationState.RUNNING:
            second.poll_invoke()
        assert second.output == expected("second", {"n": 2})
        assert first.end_invoke() == expected("first", {"n": 1})
        first.close()
        second.close()
        assert server.open_shells == 1
        again = PowerShell(pool).add_script("third")
        assert again.invoke() == expected("third")
        assert pool.is_alive() is True
    assert server.open_shells == 0
    assert sorted(i.script for i in server.invocations) == ["first", "second", "third"]


def test_two_pools_concurrently_from_threads(server_factory) -> None:
    def slow_echo(invocation: Invocation) -> InvocationResult:
        time.sleep(0.05)
        return echo(invocation)

    server = server_factory(auth="negotiate", responder=slow_echo)
    results: dict[str, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run(name: str) -> None:
        try:
            wsman = WSMan("127.0.0.1", port=server.port, ssl=False, auth="ntlm", username=USER, password=NTLM_PASSWORD)
            with wsman, RunspacePool(wsman) as pool:
                barrier.wait(timeout=10)
                results[name] = [PowerShell(pool).add_script(f"{name}-{i}").invoke() for i in range(3)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    for name in ("a", "b", "c"):
        assert results[name] == [expected(f"{name}-{i}") for i in range(3)]
    assert len(server.invocations) == 9
    assert server.open_shells == 0


# -- 4. pywinrm over the WinRS cmd shell


@pytest.mark.peer
@pytest.mark.parametrize(("auth", "https"), [("basic", False), ("ntlm", False), ("ntlm", True)])
def test_pywinrm_run_ps(server_factory, pki, auth: str, https: bool) -> None:
    (chain, key), ca_file = pki
    server = server_factory(auth="basic" if auth == "basic" else "negotiate", tls=(chain, key) if https else None)
    password = PASSWORD if auth == "basic" else NTLM_PASSWORD
    session = winrm_session(server, password, auth, ca_file=str(ca_file) if https else None)
    script = "Get-CimInstance Win32_OperatingSystem | Select-Object Caption\n'ünïcode'"
    response = session.run_ps(script)
    assert response.std_out == ("\r\n".join(expected(script)) + "\r\n").encode()
    assert (response.std_err, response.status_code) == (b"", 0)
    assert server.invocations[-1] == Invocation(script=script, parameters={}, transport="winrs")

    failed = session.run_ps("FAIL in winrs")
    assert failed.std_out == b"partial\r\n"
    assert failed.std_err == b"first problem\nit broke: FAIL in winrs"
    assert failed.status_code == 1
    assert server.open_shells == 0


@pytest.mark.peer
def test_winrs_cp437_output_and_plain_commands(server_factory) -> None:
    def answer(invocation: Invocation) -> InvocationResult:
        return InvocationResult(output=["naïve ☃", {"a": 1}])

    server = server_factory(auth="basic", responder=answer)
    session = winrm_session(server, PASSWORD, "basic")
    response = session.run_cmd("ipconfig", ["/all"])
    # The shell's code page (pywinrm asks for 437) decides the bytes, as on a console.
    assert response.std_out == "naïve ?\r\n{'a': 1}\r\n".encode("cp437")
    assert server.invocations[-1] == Invocation(script="ipconfig /all", parameters={}, transport="winrs")


# -- 5. credentials


@pytest.mark.peer
@pytest.mark.parametrize(("server_auth", "client_auth"), [("basic", "basic"), ("negotiate", "ntlm")])
def test_wrong_password_is_http_401(server_factory, server_auth: str, client_auth: str) -> None:
    server = server_factory(auth=server_auth)
    with psrp_client(server, client_auth, "wrong") as client, pytest.raises(AuthenticationError):
        client.execute_ps("Get-Date")
    session = winrm_session(server, "wrong", client_auth)
    with pytest.raises(InvalidCredentialsError):
        session.run_ps("Get-Date")
    assert server.invocations == []
    assert server.open_shells == 0


def test_ntlm_users_stay_per_server(server_factory) -> None:
    alice = server_factory(auth="negotiate", users={"alice": "secret-a"})
    server_factory(auth="negotiate", users={"bob": "secret-b"})
    client = Client("127.0.0.1", port=alice.port, ssl=False, auth="ntlm", username="bob", password="secret-b")
    with client, pytest.raises(AuthenticationError):
        client.execute_ps("whoami")
    with pytest.raises(ValueError, match="different password"):
        server_factory(auth="negotiate", users={"alice": "other"})


# -- 6. leaked shells are visible


@pytest.mark.peer
def test_open_shells_counts_until_the_client_closes(server_factory) -> None:
    server = server_factory(auth="basic")
    wsman = WSMan(
        "127.0.0.1",
        port=server.port,
        ssl=False,
        auth="basic",
        username=USER,
        password=PASSWORD,
        encryption="never",
    )
    with wsman:
        pools = [RunspacePool(wsman), RunspacePool(wsman)]
        for pool in pools:
            pool.open()
        session = winrm_session(server, PASSWORD, "basic")
        shell_id = session.protocol.open_shell()
        assert server.open_shells == 3
        session.protocol.close_shell(shell_id)
        for pool in pools:
            pool.close()
    assert server.open_shells == 0


# -- 7. faults


def test_hang_fault_times_out_and_stops_promptly(server_factory) -> None:
    server = server_factory(auth="basic", fault="hang")
    client = psrp_client(
        server,
        "basic",
        PASSWORD,
        read_timeout=2,
        operation_timeout=1,
        connection_timeout=2,
        reconnection_retries=0,
    )
    started = time.monotonic()
    with client, pytest.raises(requests.exceptions.ReadTimeout):
        client.execute_ps("Get-Date")
    assert 1.5 < time.monotonic() - started < 6
    stop_started = time.monotonic()
    server.stop()
    assert time.monotonic() - stop_started < 2


@pytest.mark.peer
def test_http500_fault_is_a_wsman_fault(server_factory) -> None:
    server = server_factory(auth="negotiate", fault="http500")
    with psrp_client(server, "ntlm", NTLM_PASSWORD) as client, pytest.raises(WSManFaultError) as caught:
        client.execute_ps("Get-Date")
    assert caught.value.code == 2150858843
    assert "invalid selectors" in (caught.value.reason or "")
    session = winrm_session(server, NTLM_PASSWORD, "ntlm")
    with pytest.raises(winrm.exceptions.WSManFaultError) as winrm_caught:
        session.run_ps("Get-Date")
    assert winrm_caught.value.wsman_fault_code == 2150858843
    assert server.invocations == []


def test_unknown_action_and_shell_are_faults(server_factory) -> None:
    server = server_factory(auth="basic")
    wsman = WSMan(
        "127.0.0.1",
        port=server.port,
        ssl=False,
        auth="basic",
        username=USER,
        password=PASSWORD,
        encryption="never",
    )
    with wsman:
        with pytest.raises(WSManFaultError) as bad_action:
            wsman.invoke(
                "http://example.invalid/NoSuchAction",
                "http://schemas.microsoft.com/wbem/wsman/1/config",
                None,
            )
        assert bad_action.value.code == 2150858753
        pool = RunspacePool(wsman)
        pool.open()
        pool.shell.close()  # delete behind the pool's back: the shell is gone on the "host"
        assert pool.is_alive() is False  # pypsrp reads fault 2150858843 as "closed"
        wsman.update_max_payload_size()
        assert wsman.max_envelope_size == 512_000


# -- protocol edges: envelope size, fragmentation, operation timeout, stop


def test_large_script_and_output_respect_max_envelope_size(server_factory) -> None:
    def big(invocation: Invocation) -> InvocationResult:
        return InvocationResult(output=[f"{i:04d}" + "x" * 2000 for i in range(60)])

    server = server_factory(auth="basic", responder=big)
    wsman = WSMan(
        "127.0.0.1",
        port=server.port,
        ssl=False,
        auth="basic",
        username=USER,
        password=PASSWORD,
        encryption="never",
        max_envelope_size=16384,
    )
    sizes: list[int] = []
    wsman.transport.session = wsman.transport._build_session()
    wsman.transport.session.hooks["response"].append(lambda r, **_: sizes.append(len(r.content)))
    script = "# big script\n" + "\n".join(f"$v{i} = '{'y' * 90}'" for i in range(400))  # ~40 KB
    with wsman, RunspacePool(wsman) as pool:
        output = PowerShell(pool).add_script(script).invoke()
    assert output == [f"{i:04d}" + "x" * 2000 for i in range(60)]
    assert server.invocations[-1].script == script  # arrived in Command + Send fragments
    assert max(sizes) <= 16384
    assert len(sizes) > 10  # the output really was split across Receives


def test_receive_times_out_like_windows_and_client_retries(server_factory) -> None:
    release = threading.Event()

    def slow(invocation: Invocation) -> InvocationResult:
        release.wait(5)
        return InvocationResult(output=["late"])

    server = server_factory(auth="basic", responder=slow)
    wsman = WSMan(
        "127.0.0.1",
        port=server.port,
        ssl=False,
        auth="basic",
        username=USER,
        password=PASSWORD,
        encryption="never",
        operation_timeout=1,
    )
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool).add_script("slow")
        ps.begin_invoke()
        started = time.monotonic()
        ps.poll_invoke(timeout=1)  # w:TimedOut fault (2150858793), swallowed by pypsrp
        assert 0.9 < time.monotonic() - started < 3
        assert ps.state == PSInvocationState.RUNNING
        release.set()
        assert ps.end_invoke() == ["late"]


def test_stop_signal_stops_a_running_pipeline(server_factory) -> None:
    release = threading.Event()

    def blocking(invocation: Invocation) -> InvocationResult:
        if invocation.script.startswith("Start-Sleep"):
            release.wait(5)
            return InvocationResult(output=["too late"])
        return echo(invocation)

    server = server_factory(auth="basic", responder=blocking)
    wsman = WSMan(
        "127.0.0.1",
        port=server.port,
        ssl=False,
        auth="basic",
        username=USER,
        password=PASSWORD,
        encryption="never",
    )
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool).add_script("Start-Sleep 60")
        ps.begin_invoke()
        ps.stop()
        assert ps.state == PSInvocationState.STOPPED
        release.set()
        assert PowerShell(pool).add_script("after").invoke() == expected("after")
    assert server.open_shells == 0


def test_latency_delays_every_answer(server_factory) -> None:
    server = server_factory(auth="basic", latency=0.05)
    with psrp_client(server, "basic", PASSWORD) as client:
        started = time.monotonic()
        client.execute_ps("Get-Date")
    assert time.monotonic() - started >= 0.05 * 4  # Create, Receive, Command, Receive, Delete


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        WSManServer(echo, users={USER: PASSWORD}, fault="explode")
    with pytest.raises(ValueError, match="auth"):
        WSManServer(echo, users={USER: PASSWORD}, auth="kerberos")
    with pytest.raises(ValueError, match="':'"):
        WSManServer(echo, users={USER: "a:b"}, auth="negotiate")
