"""Credentials: resolved once per account, never printed."""

from __future__ import annotations

import pytest

from collector.credentials import CredentialError, Secret, resolve
from collector.inventory import CredentialRef


def test_secret_never_prints_itself() -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and "hunter2" not in f"{s} {s!r}"
    assert s.reveal() == "hunter2"


def test_env_reference() -> None:
    ref = CredentialRef("CORP\\svc", "env", "PW")
    assert resolve([ref], environ={"PW": "s3cret"})[ref] == Secret("s3cret")


def test_missing_env_names_variable_not_value() -> None:
    with pytest.raises(CredentialError, match=r"environment variable PW .* is not set"):
        resolve([CredentialRef("u", "env", "PW")], environ={})


def test_prompt_once_per_account() -> None:
    asked = []
    ref = CredentialRef("u", "prompt")
    result = resolve([ref, ref], prompt=lambda text: asked.append(text) or "pw", environ={})
    assert asked == ["Password for u: "] and result[ref] == Secret("pw")


def test_prompt_without_terminal_is_an_error() -> None:
    with pytest.raises(CredentialError, match="no terminal") as raised:
        resolve([CredentialRef("u", "prompt")], interactive=False, environ={})
    # Both ways out: the inventory's keys, and the option of a run without one.
    assert "password_env or password_keyring in the inventory" in str(raised.value)
    assert "--password-env VAR with --host" in str(raised.value)


def test_keyring_without_backend_is_a_clear_error() -> None:
    with pytest.raises(CredentialError, match="keyring"):
        resolve([CredentialRef("u", "keyring", "rdp-collector-test-service")], environ={})


def test_no_password_for_ticket_cache() -> None:
    ref = CredentialRef("", "none")
    assert resolve([ref], environ={})[ref] is None
