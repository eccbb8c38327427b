"""The client -> gateway -> session host paths a host is part of, with each hop's worst status.

Pure (no I/O): built from the inventory relations each ``HostTarget`` carries (a client's
``gateway`` and ``session_hosts``; a gateway's ``session_hosts``) and the run's host reports. It
lets a report say *where* on the way to a session a connection breaks. Joining events across
hosts to explain *why* is a separate analysis; this module only places hosts and their statuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.model import HostReport, HostTarget, Role, Status


@dataclass(frozen=True)
class Hop:
    """One host on a path; ``status`` is its worst check, None when the host is not in this run."""

    name: str
    status: Status | None
    collected: bool = True

    @property
    def broken(self) -> bool:
        return self.status is Status.FAIL


@dataclass(frozen=True)
class Stage:
    """The hosts that play one role on a path (several clients share a gateway, say)."""

    role: Role
    hops: tuple[Hop, ...]


@dataclass(frozen=True)
class Route:
    """Stages in the order a connection crosses them: clients, gateway (if any), session hosts."""

    stages: tuple[Stage, ...]

    @property
    def first_broken(self) -> tuple[Stage, Hop] | None:
        """The first failing hop walking from the client side, with its stage."""
        for stage in self.stages:
            for hop in stage.hops:
                if hop.broken:
                    return stage, hop
        return None

    def names(self) -> tuple[str, ...]:
        return tuple(hop.name for stage in self.stages for hop in stage.hops)


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    """Names in first-seen order, without blanks or case-insensitive repeats."""
    seen: dict[str, str] = {}
    for name in names:
        if name and name.lower() not in seen:
            seen[name.lower()] = name
    return tuple(seen.values())


class _Fleet:
    """Lookups over one run's hosts (names compared case-insensitively, as DNS does)."""

    def __init__(self, hosts: Sequence[HostReport]) -> None:
        self.reports = {h.name.lower(): h for h in hosts}
        self.targets: list[HostTarget] = [h.facts.target for h in hosts]

    def hop(self, name: str) -> Hop:
        report = self.reports.get(name.lower())
        if report is None:
            return Hop(name=name, status=None, collected=False)
        return Hop(name=report.name, status=report.worst, collected=report.collected)

    def stage(self, role: Role, names: Iterable[str]) -> Stage | None:
        names = _unique(names)
        return Stage(role, tuple(self.hop(n) for n in names)) if names else None

    def clients(self) -> list[HostTarget]:
        return [t for t in self.targets if Role.CLIENT in t.roles]

    def route(self, clients: Iterable[str], gateway: str, session_hosts: Iterable[str]) -> Route | None:
        stages = [
            self.stage(Role.CLIENT, clients),
            self.stage(Role.GATEWAY, [gateway]),
            self.stage(Role.SESSION_HOST, session_hosts),
        ]
        present = tuple(s for s in stages if s is not None)
        return Route(present) if len(present) >= 2 else None


def _client_routes(fleet: _Fleet, client: HostTarget) -> list[Route | None]:
    return [fleet.route([client.name], client.gateway, client.session_hosts)]


def _gateway_routes(fleet: _Fleet, gateway: HostTarget) -> list[Route | None]:
    clients = [c for c in fleet.clients() if c.gateway.lower() == gateway.name.lower()]
    sessions = [*gateway.session_hosts, *(s for c in clients for s in c.session_hosts)]
    return [fleet.route([c.name for c in clients], gateway.name, sessions)]


def _session_host_routes(fleet: _Fleet, host: HostTarget) -> list[Route | None]:
    name = host.name.lower()
    reaching = [c for c in fleet.clients() if name in {s.lower() for s in c.session_hosts}]
    gateways = _unique(c.gateway for c in reaching)
    routes = [fleet.route([c.name for c in reaching if not c.gateway], "", [host.name])]
    for gw in gateways:
        routes.append(fleet.route([c.name for c in reaching if c.gateway.lower() == gw.lower()], gw, [host.name]))
    via = {g.lower() for g in gateways}
    for t in fleet.targets:  # gateways that list this host although no client in the run reaches it
        listed = name in {s.lower() for s in t.session_hosts}
        if Role.GATEWAY in t.roles and t.name.lower() not in via and listed:
            routes.append(fleet.route([], t.name, [host.name]))
    return routes


def joined_names(targets: Iterable[HostTarget]) -> frozenset[str]:
    """Hosts whose facts a judgement across hosts reads (lower case): every client, and the
    gateway and session hosts it names (the cross-host checks and the connection paths)."""
    names: set[str] = set()
    for t in targets:
        if Role.CLIENT in t.roles:
            names.update(n.lower() for n in (t.name, t.gateway, *t.session_hosts) if n)
    return frozenset(names)


def _dedupe(routes: Iterable[Route | None]) -> tuple[Route, ...]:
    out: list[Route] = []
    for route in routes:
        if route is not None and route not in out:
            out.append(route)
    return tuple(out)


def routes_for(target: HostTarget, hosts: Sequence[HostReport]) -> tuple[Route, ...]:
    """The paths ``target`` is on, seen from its roles: its own path as a client, the clients and
    session hosts behind it as a gateway, the clients (per gateway) that reach it as a session host."""
    fleet = _Fleet(hosts)
    routes: list[Route | None] = []
    if Role.CLIENT in target.roles:
        routes += _client_routes(fleet, target)
    if Role.GATEWAY in target.roles:
        routes += _gateway_routes(fleet, target)
    if Role.SESSION_HOST in target.roles:
        routes += _session_host_routes(fleet, target)
    return _dedupe(routes)


def fleet_routes(hosts: Sequence[HostReport]) -> tuple[Route, ...]:
    """Every path in the run: one per gateway (its clients and session hosts), then clients that
    connect without a gateway, grouped by the session hosts they reach."""
    fleet = _Fleet(hosts)
    gateways = _unique(
        [t.name for t in fleet.targets if Role.GATEWAY in t.roles] + [c.gateway for c in fleet.clients()]
    )
    routes: list[Route | None] = []
    for gw in gateways:
        report = fleet.reports.get(gw.lower())
        target = report.facts.target if report else HostTarget(name=gw, address=gw, roles=(Role.GATEWAY,))
        routes += _gateway_routes(fleet, target)
    direct: dict[tuple[str, ...], list[str]] = {}
    for client in fleet.clients():
        if not client.gateway and client.session_hosts:
            direct.setdefault(_unique(client.session_hosts), []).append(client.name)
    routes += [fleet.route(clients, "", sessions) for sessions, clients in direct.items()]
    return _dedupe(routes)
