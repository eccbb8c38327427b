"""Turn credential references into passwords at the last moment, and keep them out of output.

A password lives in a ``Secret`` whose repr and str are masked, so a stray log line, an
f-string or a traceback's locals cannot print it.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterable

from collector.inventory import CredentialRef


class Secret:
    """A password that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


class CredentialError(Exception):
    """A password could not be obtained; the message names the source, never a value."""


def resolve(
    refs: Iterable[CredentialRef],
    *,
    environ: dict[str, str] | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
    interactive: bool = True,
) -> dict[CredentialRef, Secret | None]:
    """Resolve each distinct reference once (one prompt per account, not per host)."""
    env = os.environ if environ is None else environ
    resolved: dict[CredentialRef, Secret | None] = {}
    for ref in refs:
        if ref in resolved:
            continue
        if ref.source == "none":
            resolved[ref] = None
        elif ref.source == "env":
            value = env.get(ref.name)
            if not value:
                raise CredentialError(
                    f"environment variable {ref.name} (password for {ref.username}) is not set or empty"
                )
            resolved[ref] = Secret(value)
        elif ref.source == "keyring":
            resolved[ref] = Secret(_from_keyring(ref))
        else:
            if not interactive:
                raise CredentialError(
                    f"the password for {ref.username} is to be prompted for, but there is no terminal "
                    "(for unattended runs: password_env or password_keyring in the inventory, "
                    "or --password-env VAR with --host)"
                )
            value = prompt(f"Password for {ref.username}: ")
            if not value:
                raise CredentialError(f"no password entered for {ref.username}")
            resolved[ref] = Secret(value)
    return resolved


def _from_keyring(ref: CredentialRef) -> str:
    import keyring
    import keyring.errors

    try:
        value = keyring.get_password(ref.name, ref.username)
    except keyring.errors.KeyringError as exc:
        raise CredentialError(
            f"the OS keyring could not be read for service {ref.name!r}: {type(exc).__name__}"
        ) from None
    if not value:
        raise CredentialError(
            f"no password for {ref.username} in the OS keyring under service {ref.name!r} "
            f"(store one with: keyring set {ref.name} {ref.username})"
        )
    return value
