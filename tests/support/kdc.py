"""A throwaway MIT Kerberos realm on loopback: the lab's stand-in for a domain controller.

Administrators reach Windows hosts with Negotiate, which means Kerberos; a lab that only spoke
NTLM would leave the collector's most common auth path untested. This module creates a realm
(``LAB.TEST`` by default) under a private directory with Debian's MIT KDC (``krb5-kdc``,
``kadmin.local``, ``kdb5_util``), starts ``krb5kdc`` on a free loopback TCP port, and adds user
principals and ``HTTP/<host name>`` service principals (what a domain-joined WinRM host's
computer account answers for) to one keytab the lab's acceptors read.

Nothing here touches the machine's ``/etc/krb5.conf``, DNS or the default ticket cache: every
tool runs with ``KRB5_CONFIG`` / ``KRB5_KDC_PROFILE`` pointing into the realm's directory, and
the written ``krb5.conf`` turns off DNS lookups of KDCs, realms and host names. Creating the
realm and starting the KDC takes well under a tenth of a second.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import weakref
from collections.abc import Mapping
from pathlib import Path

DEFAULT_REALM = "LAB.TEST"
DEBIAN_PACKAGES = "krb5-kdc krb5-admin-server krb5-user"
_TOOLS = {"krb5kdc": "krb5-kdc", "kdb5_util": "krb5-kdc", "kadmin.local": "krb5-kdc", "kinit": "krb5-user"}
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class KdcError(RuntimeError):
    """The lab realm could not be created or started; the message says what to install or fix."""


def tool(name: str) -> str:
    """Absolute path of an MIT Kerberos program; raises KdcError naming the package when missing."""
    found = shutil.which(name) or next((str(Path(d) / name) for d in _SBIN if os.access(Path(d) / name, os.X_OK)), None)
    if found is None:
        raise KdcError(
            f"{name} is not installed (Debian package {_TOOLS.get(name, 'krb5-kdc')}); the Kerberos lab "
            f"needs MIT Kerberos: apt-get install {DEBIAN_PACKAGES} (dev/test installs them)"
        )
    return found


def krb5_conf_text(realm: str, kdc_port: int | None, *, domains: tuple[str, ...] = ()) -> str:
    """A client configuration that only ever talks to the loopback KDC, or to none (pure).

    With ``kdc_port`` None the realm has no KDC at all: Kerberos fails at once, locally (what the
    test session runs under while no lab realm is up, so Negotiate falls back to NTLM without a
    single packet). DNS is off for KDC and realm discovery and for host name canonicalisation, so
    an SPN is built from exactly the name the collector was given (as Windows does with the
    inventory name) and a test never reaches for a real DNS name. TCP only: a stopped KDC is
    refused at once instead of waiting out UDP retries. ``kdc_timesync`` stays on, as on every MIT
    client: the clock offset to the KDC is kept in the ticket cache and used for every later
    authenticator.
    """
    domain_lines = "".join(f"  .{d} = {realm}\n  {d} = {realm}\n" for d in domains)
    return (
        "[libdefaults]\n"
        f"  default_realm = {realm}\n"
        "  dns_lookup_kdc = false\n"
        "  dns_lookup_realm = false\n"
        "  dns_canonicalize_hostname = false\n"
        "  rdns = false\n"
        "  kdc_timesync = 1\n"
        "  clockskew = 300\n"
        "  udp_preference_limit = 1\n"
        "  forwardable = true\n"
        "\n[realms]\n"
        + (f"  {realm} = {{\n    kdc = 127.0.0.1:{kdc_port}\n  }}\n" if kdc_port is not None else "")
        + "\n[domain_realm]\n"
        f"{domain_lines}"
    )


def _kdc_conf_text(realm: str, directory: Path, port: int) -> str:
    return (
        "[kdcdefaults]\n"
        f"  kdc_listen = 127.0.0.1:{port}\n"
        f"  kdc_tcp_listen = 127.0.0.1:{port}\n"
        "\n[realms]\n"
        f"  {realm} = {{\n"
        f"    database_name = {directory / 'principal'}\n"
        f"    key_stash_file = {directory / 'stash'}\n"
        f"    acl_file = {directory / 'kadm5.acl'}\n"
        "    max_life = 10h 0m 0s\n"
        "    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n"
        "  }\n"
        "\n[logging]\n"
        f"  kdc = FILE:{directory / 'kdc.log'}\n"
    )


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LabRealm:
    """A realm, its database and its KDC process; use as a context manager (stops the KDC).

    ``start()`` may be called again after ``stop()`` (same port, same database): that is how a
    test shows what the collector says while the KDC is down and after it comes back.
    """

    def __init__(
        self,
        directory: Path,
        realm: str = DEFAULT_REALM,
        *,
        domains: tuple[str, ...] = ("lab.test",),
    ) -> None:
        self.realm = realm
        self.directory = Path(directory)
        self.domains = domains
        self.port = 0
        self.keytab = self.directory / "http.keytab"
        self.krb5_conf = self.directory / "krb5.conf"
        self._kdc_conf = self.directory / "kdc.conf"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopper: weakref.finalize | None = None  # also runs at interpreter exit: no orphan KDC
        self._created = False

    # -- lifecycle

    def create(self) -> LabRealm:
        """Write the configuration and create the database (idempotent)."""
        if self._created:
            return self
        for name in _TOOLS:
            tool(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.krb5_conf.write_text(krb5_conf_text(self.realm, self.port, domains=self.domains))
        self._kdc_conf.write_text(_kdc_conf_text(self.realm, self.directory, self.port))
        (self.directory / "kadm5.acl").write_text("")
        # -W: the master key's strength does not matter for a realm that lives for one test run.
        self._run("kdb5_util", "create", "-s", "-W", "-r", self.realm, "-P", "lab-master-key")
        self._created = True
        return self

    def start(self) -> LabRealm:
        """Start ``krb5kdc`` in the foreground of a child process; returns once it accepts TCP."""
        self.create()
        if self.running:
            return self
        log = open(self.directory / "krb5kdc.out", "ab")  # noqa: SIM115 (the child owns it)
        try:
            self._process = subprocess.Popen(
                [tool("krb5kdc"), "-n", "-r", self.realm],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        self._stopper = weakref.finalize(self, _terminate, self._process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = (self.directory / "krb5kdc.out").read_text(errors="replace").strip()
                self.stop()
                raise KdcError(f"krb5kdc exited at start: {output[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise KdcError(f"krb5kdc did not listen on 127.0.0.1:{self.port} within 10 s")

    def stop(self) -> None:
        """Stop the KDC (the database stays, so ``start()`` brings the same realm back)."""
        stopper, self._stopper, self._process = self._stopper, None, None
        if stopper is not None:
            stopper()  # a finalizer runs once, whoever calls it first

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> LabRealm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- principals

    def principal(self, name: str) -> str:
        """``name`` qualified with this realm (``collector`` -> ``collector@LAB.TEST``)."""
        return name if "@" in name else f"{name}@{self.realm}"

    def add_user(self, name: str, password: str) -> str:
        """Create a user principal with a password; returns its full name.

        Pre-authentication is required, as Active Directory requires it by default: a wrong password
        is then refused by the KDC itself ("Preauthentication failed").
        """
        if any(c in password for c in '"\\\r\n'):
            raise ValueError("lab Kerberos passwords cannot contain quotes, backslashes or line breaks")
        principal = self.principal(name)
        self._kadmin(
            f'addprinc -pw "{password}" +requires_preauth {principal}',
            expect=f'Principal "{principal}" created.',
            secret=password,
        )
        return principal

    def add_service(self, spn: str) -> str:
        """Create a service principal (``HTTP/gw01.lab.test``) with a random key, exported to the keytab."""
        principal = self.principal(spn)
        self._kadmin(f"addprinc -randkey {principal}", expect=f'Principal "{principal}" created.')
        self._kadmin(f"ktadd -k {self.keytab} {principal}", expect="added to keytab")
        return principal

    def add_user_keytab(self, name: str, keytab: Path) -> str:
        """Export a user's keys to a keytab of its own (the unattended ``kinit -k`` case).

        ``-norandkey`` keeps the password valid, as ``ktpass`` with the account's password does.
        """
        principal = self.principal(name)
        self._kadmin(f"ktadd -norandkey -k {keytab} {principal}", expect="added to keytab")
        return principal

    # -- client side

    def kinit(self, principal: str, ccache: str, *, password: str | None = None, keytab: Path | None = None) -> None:
        """Get a TGT into ``ccache`` with the real ``kinit`` (password on stdin, or from a keytab)."""
        args = [tool("kinit"), "-c", ccache]
        if keytab is not None:
            args += ["-k", "-t", str(keytab)]
        args.append(self.principal(principal))
        result = subprocess.run(
            args,
            input=(password or "") + "\n" if keytab is None else "",
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise KdcError(f"kinit {self.principal(principal)} failed: {result.stderr.strip()}")

    def ticket_cache(self, principal: str, password: str, ccache: str, *, clock_offset: int = 0) -> None:
        """Write a ticket cache whose recorded clock offset to the KDC is ``clock_offset`` seconds.

        MIT clients keep the offset between their clock and the KDC's in the cache (``kdc_timesync``)
        and stamp every later authenticator with it: a cache written with a 7-minute offset is what a
        workstation whose clock was 7 minutes off leaves behind, and the KDC refuses its requests
        for service tickets ("Clock skew too great"); an offset past the ticket's lifetime makes
        the ticket expired. Uses the ``krb5`` bindings that ``pyspnego[kerberos]`` installs.
        """
        import krb5

        now = int(time.time())
        context = krb5.init_context()
        client = krb5.parse_name_flags(context, self.principal(principal).encode())
        options = krb5.get_init_creds_opt_alloc(context)
        creds = krb5.get_init_creds_password(context, client, options, password=password.encode())
        skewed = krb5.init_context()
        if clock_offset:
            krb5.set_real_time(skewed, now + clock_offset, 0)
        cache = krb5.cc_resolve(skewed, ccache.encode())
        krb5.cc_initialize(skewed, cache, client)
        krb5.cc_store_cred(skewed, cache, creds)

    # -- plumbing

    def _env(self) -> Mapping[str, str]:
        return {
            **os.environ,
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5_KDC_PROFILE": str(self._kdc_conf),
            "KRB5RCACHETYPE": "none",
        }

    def _run(self, program: str, *args: str) -> str:
        result = subprocess.run(
            [tool(program), *args],
            capture_output=True,
            text=True,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise KdcError(f"{program} {args[0]} failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return result.stdout + result.stderr

    def _kadmin(self, query: str, *, expect: str, secret: str = "") -> None:
        # kadmin.local exits 0 even when its query fails, so the success line is checked instead.
        try:
            output = self._run("kadmin.local", "-r", self.realm, "-q", query)
        except KdcError as exc:
            raise KdcError(str(exc).replace(secret, "********") if secret else str(exc)) from None
        if expect not in output:
            detail = output.strip()[-500:]
            raise KdcError(
                f"kadmin.local {query.split()[0]} failed: {detail.replace(secret, '********') if secret else detail}"
            )
