"""One Kerberos environment for the whole test session, so no test touches the machine's own.

Once ``gssapi`` is installed, every Negotiate client tries Kerberos before NTLM. Under the
machine's ``/etc/krb5.conf`` that means DNS lookups of a real realm's KDCs, the user's default
ticket cache and a replay cache outside the test directories. The session therefore runs under a
``krb5.conf`` of its own whose realm has no KDC (Kerberos fails at once, locally, and Negotiate
falls back to NTLM), with DNS, reverse DNS and replay caches off and the ticket cache and keytabs
inside a temporary directory. Subprocesses (``collect demo``) inherit it. Tests with a lab realm
point ``KRB5_CONFIG`` and ``KRB5CCNAME`` at that realm for their own duration.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.kdc import DEFAULT_REALM, krb5_conf_text

# The suite is a specification, so its property tests draw the same examples on every machine
# and every run: a red CI is then a change in the code, reproducible from the log, not a new
# draw. Searching for new failures is a separate, longer run:
# HYPOTHESIS_PROFILE=explore pytest tests/unit -k fuzz
settings.register_profile("suite", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", max_examples=5000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


@pytest.fixture(scope="session", autouse=True)
def kerberos_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    directory = tmp_path_factory.mktemp("krb5-session")
    conf = directory / "krb5.conf"
    conf.write_text(krb5_conf_text(DEFAULT_REALM, None, domains=("lab.test",)))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KRB5_CONFIG", str(conf))
        env.setenv("KRB5CCNAME", f"FILE:{directory / 'ccache'}")
        env.setenv("KRB5_KTNAME", f"FILE:{directory / 'no-such.keytab'}")
        env.setenv("KRB5_CLIENT_KTNAME", f"FILE:{directory / 'no-such-client.keytab'}")
        env.setenv("KRB5RCACHETYPE", "none")
        env.delenv("KRB5_TRACE", raising=False)
        yield
