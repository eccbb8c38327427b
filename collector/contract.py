"""The probe output contract: one envelope, one data schema per probe.

The same schemas check what a real host returned, the lab's scenario data and the tests, so
the lab cannot drift from what the scripts produce. A violation names the probe and the field.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from collector.model import ProbeError, ProbeResult


class ContractError(ValueError):
    """Probe output that breaks the contract; the message names probe and field."""

    def __init__(self, probe: str, field: str, message: str) -> None:
        self.probe = probe
        self.field = field
        super().__init__(f"probe {probe}: {field}: {message}" if field else f"probe {probe}: {message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _iso_8601(value: str) -> str:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not an ISO 8601 time") from None
    return value


# A time as the probes write it (yyyy-MM-ddTHH:mm:ssZ); checks and reports compute with it.
IsoTime = Annotated[str, AfterValidator(_iso_8601)]


class _ErrorEntry(_Strict):
    step: str
    message: str


class _Envelope(_Strict):
    probe: str
    version: int
    data: dict[str, Any]
    errors: list[_ErrorEntry]


# --- one model per probe ---------------------------------------------------------------------


class ServiceInfo(_Strict):
    name: str
    present: bool
    display_name: str | None
    state: str | None  # Win32_Service.State: Running, Stopped, Start Pending, ...
    start_mode: str | None  # Auto, Manual, Disabled, Boot, System
    account: str | None
    process_id: int | None


class ServicesData(_Strict):
    services: list[ServiceInfo]


class SchannelSetting(_Strict):
    protocol: str  # 'SSL 3.0' ... 'TLS 1.3'
    side: Literal["Client", "Server"]
    enabled: int | None  # registry value; None = not set (OS default applies)
    disabled_by_default: int | None


class HostData(_Strict):
    computer_name: str
    domain: str | None
    part_of_domain: bool | None
    os_caption: str | None
    os_version: str | None
    os_build: str | None
    ps_version: str
    last_boot_utc: IsoTime | None  # ISO 8601 UTC
    utc_now: IsoTime  # the host's clock when the probe ran, ISO 8601 UTC
    secure_channel: bool | None  # Test-ComputerSecureChannel; None when not domain-joined or failed
    schannel: list[SchannelSetting]  # only protocols with a registry override
    strong_crypto: int | None  # .NET SchUseStrongCrypto
    credssp_oracle: int | None  # AllowEncryptionOracle policy: 0 force patched, 1 mitigated, 2 vulnerable
    pending_reboot: list[str]  # reasons found


class Listener(_Strict):
    protocol: Literal["TCP", "UDP"]
    local_address: str
    port: int
    process_id: int
    process_name: str | None
    services: list[str]


class ListenersData(_Strict):
    rdp_port: int | None  # RDP-Tcp PortNumber
    source: Literal["Get-NetTCPConnection", "netstat"] | None
    tcp: list[Listener]
    udp: list[Listener]
    netstat_rdp: list[str]  # the article's `netstat -ano | findstr 3389`, raw lines


class Certificate(_Strict):
    """A certificate as a Windows host holds it, with the chain that host builds (leaf first)."""

    thumbprint: str
    subject: str
    issuer: str
    not_before: IsoTime | None
    not_after: IsoTime | None
    has_private_key: bool
    private_key_readable: bool | None
    chain_der: list[str]  # base64 DER
    chain_status: list[str]  # X509ChainStatusFlags names; empty when the host trusts it


class GeneralSetting(_Strict):
    ssl_certificate_sha1_hash: str
    ssl_certificate_sha1_hash_type: int
    security_layer: int  # 0 RDP, 1 Negotiate, 2 SSL
    user_authentication_required: int  # NLA
    min_encryption_level: int
    policy_source_security_layer: int
    policy_source_user_auth: int


class FirewallRule(_Strict):
    name: str
    display_name: str
    enabled: bool
    direction: str
    action: str
    profiles: str  # Any, or the profiles it applies to: "Domain, Private"
    protocol: str
    local_ports: list[str]
    source: str = ""  # PolicyStoreSourceType: Local, GroupPolicy...; absent from earlier results


# Get-NetConnectionProfile's NetworkCategory -> the firewall profile that network is under.
PROFILE_OF_NETWORK = {"DomainAuthenticated": "Domain", "Private": "Private", "Public": "Public"}


class FirewallProfile(_Strict):
    """One Windows Firewall profile as enforced (Group Policy merged with the host's own settings)."""

    name: str  # Domain, Private, Public
    enabled: str  # GpoBoolean: True, False, NotConfigured
    default_inbound_action: str  # Block, Allow, NotConfigured
    allow_inbound_rules: str  # False: "Block all incoming connections, including ... allowed apps"
    allow_local_firewall_rules: str  # False: Group Policy ignores the host's own rules


class Principal(_Strict):
    """An account or group a user right names, as secedit exports it (a SID, a name, or both)."""

    sid: str | None
    account: str | None


class UserRights(_Strict):
    """The two logon rights that decide who may log on through Remote Desktop Services."""

    remote_interactive: list[Principal]  # SeRemoteInteractiveLogonRight
    deny_remote_interactive: list[Principal]  # SeDenyRemoteInteractiveLogonRight


class Licensing(_Strict):
    """RD Licensing as the session host sees it: its mode, the license servers it was given, the grace period."""

    terminal_server_mode: int | None  # Win32_TerminalServiceSetting: 0 RD for Administration, 1 RD Session Host
    licensing_type: int | None  # 0 personal, 1 RD for Administration, 2 Per Device, 4 Per User, 5 not configured
    licensing_name: str | None
    policy_source_licensing_type: int | None  # 0 server, 1 Group Policy
    licensing_mode_policy: int | None  # Policies\...\Terminal Services LicensingMode (2 Per Device, 4 Per User)
    license_servers_policy: list[str]  # Policies\...\Terminal Services LicenseServers
    license_servers_specified: list[str]  # TermService\Parameters\LicenseServers SpecifiedLicenseServers
    grace_period_days: int | None  # Win32_TerminalServiceSetting.GetGracePeriodDays().DaysLeft


class RdpConfigData(_Strict):
    deny_ts_connections: int | None
    deny_ts_connections_policy: int | None
    port_number: int | None
    security_layer: int | None
    security_layer_policy: int | None
    user_authentication: int | None
    user_authentication_policy: int | None
    min_encryption_level: int | None
    min_encryption_level_policy: int | None
    certificate_hash_registry: str | None
    general_setting: GeneralSetting | None
    listener_certificate: Certificate | None
    firewall_rules: list[FirewallRule]
    # Absent from results written before they were collected: read as "not known".
    firewall_profiles: list[FirewallProfile] = []
    network_categories: list[str] = []  # DomainAuthenticated, Private, Public: one per connected network
    user_rights: UserRights | None  # None when secedit /export failed
    licensing: Licensing


class DnsAnswer(_Strict):
    name: str
    addresses: list[str]
    error: str | None


class TcpAttempt(_Strict):
    name: str
    port: int
    connected: bool
    elapsed_ms: int | None
    error: str | None


class WinHttpProxy(_Strict):
    proxy: str | None
    bypass: str | None


class NetworkData(_Strict):
    dns: list[DnsAnswer]
    tcp: list[TcpAttempt]
    winhttp: WinHttpProxy | None


class GatewaySettings(_Strict):
    cert_hash: str | None
    ssl_bridging: int
    enforce_channel_binding: bool
    max_connections: int
    unlimited_connections: bool
    central_cap_enabled: bool
    is_configured: bool


class HttpBinding(_Strict):
    endpoint: str
    cert_hash: str | None
    cert_store: str | None


class Cap(_Strict):
    name: str
    enabled: bool
    user_groups: str


class Rap(_Strict):
    name: str
    enabled: bool
    user_groups: str
    computer_group: str
    port_numbers: str


class IisApplication(_Strict):
    """One of the gateway's RPC-over-HTTP applications in IIS and the .NET trust level it runs at."""

    path: str  # 'Default Web Site/Rpc', 'Default Web Site/RpcWithCert'
    present: bool
    physical_path: str | None
    trust_level: str | None  # effective system.web/trust level: Full, High, Medium, Low, Minimal


class GatewayData(_Strict):
    settings: GatewaySettings | None
    certificate: Certificate | None
    http_bindings: list[HttpBinding]
    caps: list[Cap]
    raps: list[Rap]
    iis_applications: list[IisApplication] | None  # None when IIS's configuration could not be read


class ClientUser(_Strict):
    sid: str
    account: str | None
    rdg_trace: int | None
    rdg_trace_file: str | None
    trace_exists: bool
    trace_matches: list[str]


class GatewayTls(_Strict):
    """The gateway's TLS chain as the client received it, and what the client's trust decided."""

    name: str
    port: int
    connected: bool
    policy_errors: str | None  # SslPolicyErrors: None, RemoteCertificateNameMismatch, ...ChainErrors
    chain_der: list[str]
    chain_status: list[str]
    protocol: str | None
    error: str | None


class RunningAgent(_Strict):
    """A running process of an agent known to intercept TLS (Zscaler, Netskope, GlobalProtect, ...)."""

    process: str
    process_id: int
    path: str | None
    company: str | None
    product: str | None


class ClientData(_Strict):
    disable_udp_policy: int | None  # fClientDisableUDP (the article's Fix 1)
    disable_udp_transport: int | None
    rdg_client_transport: int | None
    users: list[ClientUser]
    gateway_tls: GatewayTls | None
    trusted_roots: list[str]
    agents_checked: list[str]  # the process names looked for
    agents: list[RunningAgent]  # those of them that run


class Event(_Strict):
    id: int
    provider: str
    time_utc: IsoTime | None
    level: str
    record_id: int
    data: dict[str, str]
    message: str | None


class EventLog(_Strict):
    log: str
    ids: list[int]
    available: bool
    truncated: bool
    events: list[Event]


class EventsData(_Strict):
    since_hours: int
    max_events: int
    logs: list[EventLog]


class UserCredentials(_Strict):
    account: str
    targets: list[str]  # cmdkey target names (TERMSRV/..., RDG...); never a secret
    error: str | None


class UserCredentialsData(_Strict):
    users: list[UserCredentials]


SCHEMAS: dict[str, tuple[int, type[_Strict]]] = {
    "client": (1, ClientData),
    "events": (1, EventsData),
    "gateway": (1, GatewayData),
    "host": (1, HostData),
    "listeners": (1, ListenersData),
    "network": (1, NetworkData),
    "rdp_config": (1, RdpConfigData),
    "services": (1, ServicesData),
    "user_credentials": (1, UserCredentialsData),
}

# Probes that change the host: run only on an explicit opt-in, and linted as such.
OPT_IN_PROBES = {"user_credentials": "--user-context"}


def _field(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validate_data(probe: str, data: Any) -> dict[str, Any]:
    """Check one probe's ``data`` against its schema; returns it as plain data."""
    if probe not in SCHEMAS:
        raise ContractError(probe, "", "no such probe")
    _, model = SCHEMAS[probe]
    try:
        return model.model_validate(data).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ContractError(probe, _field(("data", *err["loc"])), f"{err['msg']}{more}") from None


# The most characters one probe's JSON may hold: the session stops reading a probe at 16 MiB of
# PSRP bytes; this bounds what reaches the parser whatever the session's limit.
MAX_OUTPUT_CHARS = 32 * 1024 * 1024
# A UTF-16 surrogate, raw or as a JSON escape: rare (Windows strings are UTF-16 and may hold a lone
# one), so the document is walked for lone surrogates only when the text has one of these.
_SURROGATE = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


def _repaired(text: str) -> str:
    """``text`` with each lone surrogate (no Unicode character, so no UTF-8 page or JSON file could
    hold it) replaced by U+FFFD, as a UTF-16 decoder does; proper pairs were joined by json."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _without_lone_surrogates(document: Any) -> Any:
    """The same document with every string (keys included) ``_repaired``; iterative, so depth is
    the JSON parser's concern alone."""

    def fix(value: Any) -> Any:
        return _repaired(value) if isinstance(value, str) else value

    root: list[Any] = [document]
    todo: list[tuple[Any, Any]] = [(root, 0)]
    while todo:
        parent, key = todo.pop()
        value = parent[key]
        if isinstance(value, dict):
            value = parent[key] = {fix(k): v for k, v in value.items()}
            todo.extend((value, k) for k in value)
        elif isinstance(value, list):
            todo.extend((value, i) for i in range(len(value)))
        else:
            parent[key] = fix(value)
    return root[0]


def parse_output(probe: str, output: list[Any], duration_s: float = 0.0, received_utc: str = "") -> ProbeResult:
    """Parse what a probe printed: exactly one JSON envelope for the probe that was run."""
    texts = [o for o in output if isinstance(o, str) and o.strip()]
    if len(texts) != 1 or len(texts) != len([o for o in output if o is not None]):
        raise ContractError(probe, "", f"expected one JSON document, got {len(output)} output object(s)")
    text = texts[0]
    if len(text) > MAX_OUTPUT_CHARS:
        raise ContractError(probe, "", f"output of {len(text):,} characters is larger than any probe prints")
    try:
        document = json.loads(text)
        if _SURROGATE.search(text):
            document = _without_lone_surrogates(document)
        envelope = _Envelope.model_validate(document)
    except json.JSONDecodeError as exc:
        raise ContractError(probe, "", f"output is not JSON ({exc.msg} at char {exc.pos})") from None
    except RecursionError:  # a host's garbage, not a probe's envelope (ours nest a few levels)
        raise ContractError(probe, "", "output nests too deeply to be a probe's JSON") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ContractError(probe, _field(err["loc"]), err["msg"]) from None
    except ValueError as exc:  # json's own limits: a number of more than 4300 digits, say
        raise ContractError(probe, "", f"output is not a probe's JSON ({str(exc)[:200]})") from None
    if envelope.probe != probe:
        raise ContractError(probe, "probe", f"the output is for probe {envelope.probe!r}")
    expected_version = SCHEMAS.get(probe, (None,))[0]
    if envelope.version != expected_version:
        raise ContractError(probe, "version", f"version {envelope.version} is not {expected_version}")
    try:
        data = validate_data(probe, envelope.data)
    except RecursionError:
        raise ContractError(probe, "data", "nests too deeply to be a probe's data") from None
    return ProbeResult(
        probe=probe,
        version=envelope.version,
        data=data,
        errors=tuple(ProbeError(step=e.step, message=e.message) for e in envelope.errors),
        duration_s=duration_s,
        received_utc=received_utc,
    )
