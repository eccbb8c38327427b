"""Fixtures for the Kerberos tests: the lab realm, a per-test Kerberos environment, the domain fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.lab.fleet import LabFleet, load_scenario
from tests.kerberos.domain import PASSWORD, join_domain, start_realm
from tests.support.kdc import LabRealm


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRealm]:
    realm = start_realm(tmp_path_factory.mktemp("realm"))
    try:
        yield realm
    finally:
        realm.stop()


@pytest.fixture
def kerberos_env(realm: LabRealm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point this test's Kerberos library at the realm, with a ticket cache of its own (returned)."""
    monkeypatch.setenv("KRB5_CONFIG", str(realm.krb5_conf))
    ccache = f"FILE:{tmp_path / 'krb5cc'}"
    monkeypatch.setenv("KRB5CCNAME", ccache)
    return ccache


@pytest.fixture(scope="module")
def domain_fleet(realm: LabRealm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    with LabFleet(load_scenario(), PASSWORD, tmp_path_factory.mktemp("fleet")) as fleet:
        join_domain(fleet, realm)
        yield fleet
