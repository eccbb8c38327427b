"""Command line: argument parsing, what a run prints, and exit codes; the run itself is collector.pipeline.

Exit codes: 0 collection complete and nothing at or above --fail-on; 1 something at or above
--fail-on was found (collection failures included); 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from cryptography.utils import CryptographyDeprecationWarning

from collector import credentials, inventory, pipeline, report, wire
from collector.endpoint_cli import cmd_check_rdp, cmd_check_tls
from collector.exits import EXIT_OK, EXIT_USAGE, UsageError, exit_code
from collector.lab import missing_lab_dependency
from collector.model import HostReport, RunReport, Severity, Status
from collector.reference_cli import cmd_explain, cmd_rules
from collector.runner import DEFAULT_CONCURRENCY, RunOptions
from collector.terminal import printable


def tool_version() -> str:
    try:
        return metadata.version("rdp-collector")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _err(message: str) -> None:
    """One line on stderr. Messages quote hosts, inventories and results files: ``printable``
    keeps each one a single inert line, so the summary printed last is the last line."""
    print(f"collect: {printable(message)}", file=sys.stderr, flush=True)


def _out(message: str, *, flush: bool = False) -> None:
    """One line on stdout, made inert as ``_err`` does."""
    print(printable(message), flush=flush)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Python warnings raised while collecting (a library's, quoting what a host sent) as one
    inert ``collect: warning:`` line instead of the default multi-line, unescaped format."""
    target = sys.stderr if file is None else file
    with contextlib.suppress(OSError, AttributeError):  # no stderr, or a closed one: as Python's own
        target.write(f"collect: {printable(f'warning: {category.__name__}: {message}')}\n")
        target.flush()


class _OneLineHandler(logging.Handler):
    """What the logging module prints when nothing is configured (a library's warnings, with
    tracebacks), as inert ``collect:`` lines like every other message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _err(f"{record.levelname.lower()}: {record.name}: {self.format(record)}")
        except Exception:
            self.handleError(record)


# --- the run -------------------------------------------------------------------------------------


class _Display:
    """Progress on a terminal (rich), one line per host in a log, nothing with --quiet."""

    def __init__(self, total: int, quiet: bool, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.live = None
        self.task = None
        if not quiet and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.live = Progress(
                TextColumn("[bold]collect[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}", markup=False),
                transient=True,
                console=Console(file=self.stream),
            )
            self.task = self.live.add_task("", total=total)
            self.live.start()

    def host_done(self, host: HostReport, *, revised: bool = False) -> None:
        """One line per host; ``revised`` when cross-host checks changed a host already shown."""
        problems = sorted({c.id for c in host.checks if c.is_problem})
        line = f"{host.name}: {host.worst.value}" + (f" ({', '.join(problems)})" if problems else "")
        if revised:
            line += " [after cross-host checks]"
        line = printable(line)  # the name is a host's, or an inventory's: one inert line
        if self.live is not None and self.task is not None:
            self.live.update(self.task, advance=0 if revised else 1, description=printable(host.name))
            self.live.console.print(line, highlight=False, markup=False, emoji=False)
        elif not self.quiet:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        live, self.live = self.live, None
        if live is not None:
            live.stop()


class _CliObserver:
    """What a run tells the administrator: the display for hosts, one line per warning or note."""

    def __init__(self, display: _Display, quiet: bool) -> None:
        self.display = display
        self.quiet = quiet

    def host_done(self, host: HostReport, *, revised: bool = False) -> None:
        self.display.host_done(host, revised=revised)

    def warn(self, message: str) -> None:
        _err(f"warning: {message}")

    def note(self, message: str) -> None:
        if not self.quiet:
            _err(message)


def summary_line(run: RunReport, code: int, folder: Path) -> str:
    """The machine-readable last line of every run (pure)."""
    failing = sum(1 for h in run.hosts if h.worst is Status.FAIL)
    not_collected = sum(1 for h in run.hosts if not h.collected)
    totals = run.changes.totals() if run.changes else {}
    return (
        f"summary hosts={len(run.hosts)} failing_hosts={failing} not_collected={not_collected} "
        + " ".join(f"{k}={v}" for k, v in run.counts().items())
        + "".join(f" {k}={v}" for k, v in totals.items())
        + f" exit={code} run={folder}"
    )


def run_collection(
    inv: inventory.Inventory,
    *,
    output: Path,
    concurrency: int,
    fail_on: Severity,
    quiet: bool,
    environ: dict[str, str] | None = None,
    inventory_label: str | None = None,
    options: RunOptions = RunOptions(),  # noqa: B008 - frozen
    keep: int | None = None,
    metrics_file: Path | None = None,
) -> int:
    """The run command's body: passwords, the run (``collector.pipeline``), what it printed and
    the exit code."""
    if keep is not None and keep < 1:
        raise UsageError("--keep must be at least 1")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    try:
        secrets_by_ref = credentials.resolve(inv.credentials.values(), environ=environ, interactive=sys.stdin.isatty())
    except credentials.CredentialError as exc:
        raise UsageError(str(exc)) from None
    passwords = {name: secrets_by_ref[ref] for name, ref in inv.credentials.items()}
    if not quiet and (old_expat := wire.expat_problem()):
        _err(f"warning: {old_expat}")
    settings = pipeline.RunSettings(
        output=output,
        concurrency=concurrency,
        options=options,
        inventory_label=inventory_label or "",
        keep=keep,
        metrics_file=metrics_file,
        tool_version=tool_version(),
    )
    display = _Display(len(inv.targets), quiet)
    try:
        outcome = pipeline.run(inv, passwords, settings, _CliObserver(display, quiet))
    except pipeline.RunInterrupted as stop:
        display.close()
        _err(
            f"interrupted: 'latest' still points at the previous complete run; "
            f"host pages finished so far are in {stop.partial}"
        )
        return 130
    except pipeline.OutputError as exc:
        raise UsageError(str(exc)) from None
    finally:
        display.close()
    code = exit_code((c for h in outcome.run.hosts for c in h.checks), fail_on)
    if not quiet:
        _out(f"Report: {(outcome.folder / 'index.html').resolve()}")
    _err(summary_line(outcome.run, code, outcome.folder))
    return code


# --- subcommands ---------------------------------------------------------------------------------


def _hours(text: str) -> int:
    """A time window as hours for the event probes: 90m, 24h, 7d (at least 1 h, at most 31 d)."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhd]?)\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window like 90m, 24h or 7d")
    value, unit = int(match[1]), match[2] or "h"
    hours = math.ceil(value / 60) if unit == "m" else value * (24 if unit == "d" else 1)
    if not 1 <= hours <= 31 * 24:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 1h..31d")
    return hours


def _common_run_options(parser: argparse.ArgumentParser, default_output: str) -> None:
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=Path(default_output),
        help=f"folder for run folders and 'latest' (default: {default_output})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"hosts collected at once (default: {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        default="critical",
        help="exit 1 when a problem at or above this severity is found (default: critical)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress; errors and summary only")
    parser.add_argument("--keep", type=int, metavar="N", help="keep the newest N run folders, delete older ones")
    parser.add_argument(
        "--since",
        type=_hours,
        default=24,
        metavar="WINDOW",
        help="how far back to read event logs: 90m, 24h (default), 7d",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        metavar="FILE",
        help="also write Prometheus textfile metrics here (atomically), for node_exporter",
    )


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collect",
        description="Diagnose Remote Desktop failures across Windows hosts over WinRM.",
        epilog="Other commands: collect demo | collect explain CODE [EXTENDED] | collect check-tls NAME | "
        "collect check-rdp NAME | collect rules [ID...] | collect render RESULTS.json | collect lab. "
        "Exit codes: 0 nothing at or above --fail-on, 1 problems found, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"collect {tool_version()}")
    target = parser.add_argument_group("what to collect")
    target.add_argument("--inventory", "-i", type=Path, help="inventory YAML file")
    target.add_argument("--host", help="one host's name (FQDN), without an inventory")
    target.add_argument(
        "--role",
        action="append",
        choices=["client", "gateway", "session_host"],
        help="role of --host (repeat for several)",
    )
    target.add_argument("--address", help="address to connect to (default: the name)")
    target.add_argument("--port", type=int, help="WinRM port (default: 5986 https, 5985 http)")
    target.add_argument("--transport", choices=["http", "https"], help="default: https")
    target.add_argument("--auth", choices=list(inventory.AUTH_METHODS), help="default: negotiate")
    target.add_argument("--username", help="account for --host (default: the Kerberos ticket cache)")
    target.add_argument(
        "--password-env",
        metavar="VAR",
        help="read --host's password from this environment variable (else prompt)",
    )
    target.add_argument(
        "--allow-ntlm",
        action="store_true",
        default=None,
        help="let negotiate fall back to NTLM over http too (a host outside the domain); by default it "
        "does only over https with certificate validation",
    )
    target.add_argument("--ca-file", help="CA bundle that issued the hosts' certificates (WinRM, gateway, RDP)")
    target.add_argument("--rdp-port", type=int, help="where --host's RDP listener is probed from here (default 3389)")
    target.add_argument("--gateway-port", type=int, help="where --host's gateway HTTPS is probed (default 443)")
    target.add_argument(
        "--gateway",
        metavar="NAME",
        help="with --role client: the RD Gateway it connects through, collected too (same account and transport)",
    )
    target.add_argument(
        "--session-host",
        metavar="NAME",
        action="append",
        help="with --role client: a session host it connects to, collected too (repeat for several); "
        "the client's connection is then joined across the hosts",
    )
    _common_run_options(parser, "collect-output")
    parser.add_argument(
        "--user-context",
        action="store_true",
        help="also list the desktop user's saved RDP credentials on clients; this CHANGES the client: "
        "a one-shot scheduled task runs cmdkey as the logged-on user and is removed afterwards",
    )
    return parser


def _single_host_inventory(args: argparse.Namespace) -> inventory.Inventory:
    """The inventory --host describes: the host, and for a client the gateway and session hosts
    named with it (reached with the same account, transport and CA; --address and --port are the
    host's own), so one connection can be collected and joined without an inventory file."""
    if not args.role:
        raise UsageError("--host needs at least one --role (client, gateway or session_host)")
    if (args.gateway or args.session_host) and "client" not in args.role:
        raise UsageError("--gateway and --session-host name a client's connection: use them with --role client")
    shared: dict[str, object] = {
        option: getattr(args, option)
        for option in (
            "transport",
            "auth",
            "username",
            "password_env",
            "ca_file",
            "rdp_port",
            "gateway_port",
            "allow_ntlm",
        )
        if getattr(args, option) is not None
    }
    if args.username and not args.password_env:
        shared["password_prompt"] = True
    host: dict[str, object] = {"name": args.host, "roles": args.role, **shared}
    host.update({o: getattr(args, o) for o in ("address", "port") if getattr(args, o) is not None})
    others: dict[str, dict[str, Any]] = {}  # by name: a gateway that is also a session host is one host

    def add(name: str, role: str) -> None:
        if name.lower() == args.host.lower():
            raise UsageError(f"{name} is --host itself; --gateway and --session-host name the other hosts")
        roles = others.setdefault(name.lower(), {"name": name, "roles": [], **shared})["roles"]
        roles += [role] if role not in roles else []

    if args.gateway:
        host["gateway"] = args.gateway
        add(args.gateway, "gateway")
    session_hosts = list(dict.fromkeys(args.session_host or []))
    if session_hosts:
        host["session_hosts"] = session_hosts
    for name in session_hosts:
        add(name, "session_host")
    hosts = [host, *others.values()]
    return inventory.from_document({"hosts": hosts}, "command line")


def cmd_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    if args.inventory and args.host:
        raise UsageError("use --inventory or --host, not both")
    if args.inventory:
        inv = inventory.load(args.inventory)
    elif args.host:
        inv = _single_host_inventory(args)
    else:
        raise UsageError("nothing to collect: give --inventory FILE or --host NAME --role ROLE (or try: collect demo)")
    return run_collection(
        inv,
        output=args.output,
        concurrency=args.concurrency,
        fail_on=Severity(args.fail_on),
        quiet=args.quiet,
        options=RunOptions(user_context=args.user_context, since_hours=args.since),
        keep=args.keep,
        metrics_file=args.metrics,
    )


def cmd_demo(argv: Sequence[str]) -> int:
    if missing := missing_lab_dependency():
        raise UsageError(missing)
    from collector.lab.fleet import PASSWORD_ENV, LabFleet, load_scenario

    parser = argparse.ArgumentParser(
        prog="collect demo",
        description="Start the built-in lab fleet on loopback, collect from it over real WinRM, "
        "write the reports and stop the lab.",
    )
    _common_run_options(parser, "collect-demo")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(18)
    with (
        tempfile.TemporaryDirectory(prefix="collect-lab-") as tmp,
        LabFleet(load_scenario(), password, Path(tmp)) as fleet,
    ):
        inv = inventory.load(fleet.write_inventory(Path(tmp) / "inventory.yaml"))
        return run_collection(
            inv,
            output=args.output,
            concurrency=args.concurrency,
            fail_on=Severity(args.fail_on),
            quiet=args.quiet,
            environ={PASSWORD_ENV: password},
            inventory_label="built-in lab fleet (collect demo)",
            # The lab's clients are simulated: show the opt-in probe too.
            options=RunOptions(user_context=True, since_hours=args.since),
            keep=args.keep,
            metrics_file=args.metrics,
        )


def cmd_lab(argv: Sequence[str]) -> int:
    if missing := missing_lab_dependency():
        raise UsageError(missing)
    from collector.lab.fleet import PASSWORD_ENV, LabFleet, ScenarioError, load_scenario

    parser = argparse.ArgumentParser(
        prog="collect lab",
        description=f"Serve the lab fleet on loopback until Ctrl-C. The lab accepts the password in "
        f"${PASSWORD_ENV}; the inventory it writes reads it from there.",
    )
    parser.add_argument(
        "--inventory-out",
        type=Path,
        default=Path("lab-inventory.yaml"),
        help="where to write the inventory that points at the lab (default: lab-inventory.yaml)",
    )
    parser.add_argument("--scenario", type=Path, help="scenario file (default: the built-in demo fleet)")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise UsageError(f"set {PASSWORD_ENV} to the password the lab should accept, then run collect lab again")
    try:
        hosts = load_scenario(args.scenario)
    except (OSError, ScenarioError) as exc:
        raise UsageError(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="collect-lab-") as tmp:
        try:
            fleet = LabFleet(hosts, password, Path(tmp)).start()
        except ScenarioError as exc:
            raise UsageError(f"scenario {args.scenario or 'demo.yaml'}: {exc}") from None
        with fleet:
            try:
                written = fleet.write_inventory(args.inventory_out)
            except OSError as exc:
                raise UsageError(f"cannot write {args.inventory_out}: {exc.strerror or exc}") from None
            _out(
                f"lab ready: {len(hosts)} hosts on 127.0.0.1; inventory {written}; "
                f"try, with ${PASSWORD_ENV} set as here: collect --inventory {written}",
                flush=True,
            )
            while not stop.wait(0.5):
                pass
    _out("lab stopped", flush=True)
    return EXIT_OK


def cmd_render(argv: Sequence[str]) -> int:
    import json

    from collector import schema
    from collector.model import run_from_dict

    parser = argparse.ArgumentParser(prog="collect render", description="Re-render a run from its results.json.")
    parser.add_argument("results", type=Path)
    parser.add_argument("--output", "-o", type=Path, help="destination folder (default: beside results.json)")
    args = parser.parse_args(argv)
    try:
        document = json.loads(args.results.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {args.results}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not UTF-8, or not JSON
        raise UsageError(f"{args.results} is not JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{args.results} is not a results.json: it nests too deeply") from None
    if problem := schema.problem_in(document):
        raise UsageError(f"{args.results} is not a results.json this version can read: {problem}")
    run = run_from_dict(document)
    destination = report.render_run(run, args.output or args.results.parent)
    _out(f"Report: {destination / 'index.html'}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "check-tls": cmd_check_tls,
    "check-rdp": cmd_check_rdp,
    "demo": cmd_demo,
    "explain": cmd_explain,
    "lab": cmd_lab,
    "render": cmd_render,
    "rules": cmd_rules,
}


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # cryptography warns about certificates it will refuse one day (a negative serial number in
    # a system root store, say); the certificate checks judge what matters, and a scheduled run's
    # output is no place for a library's deprecation notice.
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
    # Libraries warn and log with what a host sent in the message; printed by the default
    # machinery it would reach the terminal raw and over several lines.
    warnings.showwarning = _show_warning
    logging.lastResort = _OneLineHandler(logging.WARNING)
    if threading.current_thread() is threading.main_thread():
        # A scheduler's stop (SIGTERM) ends a run the way Ctrl-C does: 'latest' keeps the last
        # complete run and no half-written file is left behind.
        signal.signal(signal.SIGTERM, _terminate)
    command = COMMANDS.get(args[0]) if args else None
    try:
        if command is None and args and not args[0].startswith("-"):
            raise UsageError(
                f"no command is called {args[0]!r} (commands: {', '.join(sorted(COMMANDS))}; collect --help)"
            )
        return command(args[1:]) if command else cmd_run(args)
    except inventory.InventoryError as exc:
        for problem in exc.problems:
            _err(str(problem))
        return EXIT_USAGE
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted; the previous 'latest' run is unchanged")
        return 130
    except BrokenPipeError:
        # Whoever read the output stopped reading (`collect rules | head`): nothing is wrong and
        # nothing more is to be said. What is still buffered goes nowhere, not into a traceback
        # at exit; the status is what a POSIX shell reports for a writer ended by SIGPIPE (13).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
