"""Connection paths: who reaches whom through which gateway, with each hop's worst status."""

from __future__ import annotations

from collector import path
from collector.model import CheckResult, HostFacts, HostReport, HostTarget, Role, Severity, Status


def host(name: str, roles: tuple[Role, ...], status: Status, gateway: str = "", sessions: tuple[str, ...] = ()):
    target = HostTarget(name=name, address=name, roles=roles, gateway=gateway, session_hosts=sessions)
    check = CheckResult("x.y", status, Severity.CRITICAL, "t", name)
    return HostReport(facts=HostFacts(target=target), checks=(check,))


C, G, S = (Role.CLIENT,), (Role.GATEWAY,), (Role.SESSION_HOST,)
FLEET = (
    host("c1.corp.example", C, Status.PASS, "gw.corp.example", ("s1.corp.example",)),
    host("c2.corp.example", C, Status.WARN, "gw.corp.example", ("s1.corp.example", "s2.corp.example")),
    host("c3.corp.example", C, Status.PASS, "", ("s2.corp.example",)),
    host("gw.corp.example", G, Status.PASS, sessions=("s1.corp.example", "s3.corp.example")),
    host("s1.corp.example", S, Status.PASS),
    host("s2.corp.example", S, Status.FAIL),
)


def shape(route: path.Route) -> list[tuple[str, list[tuple[str, str | None]]]]:
    return [
        (stage.role.value, [(hop.name, hop.status.value if hop.status else None) for hop in stage.hops])
        for stage in route.stages
    ]


def target(name: str) -> HostTarget:
    return next(h.facts.target for h in FLEET if h.name == name)


def test_a_client_sees_its_gateway_and_session_hosts_and_where_it_breaks() -> None:
    [route] = path.routes_for(target("c2.corp.example"), FLEET)
    assert shape(route) == [
        ("client", [("c2.corp.example", "warn")]),
        ("gateway", [("gw.corp.example", "pass")]),
        ("session_host", [("s1.corp.example", "pass"), ("s2.corp.example", "fail")]),
    ]
    stage, hop = route.first_broken
    assert (stage.role, hop.name) == (Role.SESSION_HOST, "s2.corp.example")


def test_a_client_without_gateway_connects_directly() -> None:
    [route] = path.routes_for(target("c3.corp.example"), FLEET)
    assert shape(route) == [("client", [("c3.corp.example", "pass")]), ("session_host", [("s2.corp.example", "fail")])]


def test_a_gateway_sees_its_clients_and_every_session_host_behind_it() -> None:
    [route] = path.routes_for(target("gw.corp.example"), FLEET)
    assert shape(route) == [
        ("client", [("c1.corp.example", "pass"), ("c2.corp.example", "warn")]),
        ("gateway", [("gw.corp.example", "pass")]),
        # s3 is in the gateway's inventory entry but not in this run: shown, with no status.
        ("session_host", [("s1.corp.example", "pass"), ("s3.corp.example", None), ("s2.corp.example", "fail")]),
    ]
    assert route.stages[2].hops[1].collected is False


def test_a_session_host_sees_the_clients_that_reach_it_per_gateway() -> None:
    routes = path.routes_for(target("s2.corp.example"), FLEET)
    assert [shape(r) for r in routes] == [
        [("client", [("c3.corp.example", "pass")]), ("session_host", [("s2.corp.example", "fail")])],
        [
            ("client", [("c2.corp.example", "warn")]),
            ("gateway", [("gw.corp.example", "pass")]),
            ("session_host", [("s2.corp.example", "fail")]),
        ],
    ]
    assert routes[0].first_broken[1].name == "s2.corp.example"


def test_a_session_host_listed_only_by_a_gateway_still_has_that_path() -> None:
    gateway = host("gw.corp.example", G, Status.FAIL, sessions=("s9.corp.example",))
    fleet = (gateway, host("s9.corp.example", S, Status.PASS))
    [route] = path.routes_for(fleet[1].facts.target, fleet)
    assert shape(route) == [("gateway", [("gw.corp.example", "fail")]), ("session_host", [("s9.corp.example", "pass")])]


def test_a_host_on_no_path_has_none() -> None:
    lone = host("s7.corp.example", S, Status.PASS)
    assert path.routes_for(lone.facts.target, (*FLEET, lone)) == ()


def test_names_match_case_insensitively() -> None:
    fleet = (
        host("c1.corp.example", C, Status.PASS, "GW.corp.example", ("S1.CORP.EXAMPLE",)),
        host("gw.corp.example", G, Status.FAIL),
        host("s1.corp.example", S, Status.PASS),
    )
    [route] = path.routes_for(fleet[0].facts.target, fleet)
    assert route.names() == ("c1.corp.example", "gw.corp.example", "s1.corp.example")
    assert route.first_broken[1].name == "gw.corp.example"


def test_fleet_routes_one_per_gateway_then_direct_clients() -> None:
    routes = path.fleet_routes(FLEET)
    assert [r.names() for r in routes] == [
        (
            "c1.corp.example",
            "c2.corp.example",
            "gw.corp.example",
            "s1.corp.example",
            "s3.corp.example",
            "s2.corp.example",
        ),
        ("c3.corp.example", "s2.corp.example"),
    ]
