"""The lab's domain for the Kerberos tests: a real MIT realm (LAB.TEST) and the demo fleet joined to it.

The realm is the lab's domain controller: the user ``collector@LAB.TEST`` (the lab's
``LAB\\collector``) and an ``HTTP/<name>`` service principal per lab host, whose keys the hosts'
acceptors read from one keytab. Missing KDC programs or Python Kerberos bindings are an error,
never a skip: ``dev/test`` installs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collector import inventory
from collector.credentials import Secret, resolve
from collector.lab.fleet import PASSWORD_ENV, LabFleet, load_scenario
from collector.lab.wsman import KerberosService, WSManServer
from tests.support.kdc import LabRealm

PASSWORD = "lab-Kerb3ros-Pa55"  # one account, one password: NTLM and Kerberos alike
USER = "collector@LAB.TEST"  # the user principal name of the lab's LAB\\collector
HOSTS = tuple(h.name for h in load_scenario())


def start_realm(directory: Path) -> LabRealm:
    """The realm with its KDC running, the lab user and an HTTP/<name> principal per lab host."""
    realm = LabRealm(directory).start()
    try:
        realm.add_user("collector", PASSWORD)
        for name in HOSTS:
            realm.add_service(f"HTTP/{name}")
    except BaseException:
        realm.stop()
        raise
    return realm


def join_domain(fleet: LabFleet, realm: LabRealm) -> None:
    """Serve every running lab host again, now also accepting Kerberos for HTTP/<its name>.

    A domain's WinRM hosts offer Negotiate (Kerberos, then NTLM), so Basic-only hosts of the demo
    become Negotiate hosts; transport, port, certificate and answers stay the same.
    """
    for name, old in list(fleet.servers.items()):
        old.stop()
        server = WSManServer(
            old._responder,
            users=old._users,
            auth="negotiate",
            tls=old._tls,
            port=old.port,
            fault=old._fault,
            kerberos=KerberosService(str(realm.keytab), name),
        )
        server.start()
        fleet.servers[name] = server


def domain_inventory(fleet: LabFleet, *, auth: str = "kerberos", username: str | None = USER) -> dict[str, Any]:
    """The fleet's inventory as a domain admin writes it: one auth for all, a UPN or a ticket cache."""
    document = fleet.inventory_document()
    for host in document["hosts"]:
        host["auth"] = auth
        host.pop("allow_unencrypted", None)
    defaults = document["defaults"]
    if username is None:  # the ticket cache: no username, no password source
        defaults.pop("username", None)
        defaults.pop("password_env", None)
    else:
        defaults["username"] = username
    return document


def passwords(inv: inventory.Inventory, password: str = PASSWORD) -> dict[str, Secret | None]:
    """Resolve the inventory's password references as the CLI does (source none: no password)."""
    refs = resolve(inv.credentials.values(), environ={PASSWORD_ENV: password}, interactive=False)
    return {name: refs[ref] for name, ref in inv.credentials.items()}
