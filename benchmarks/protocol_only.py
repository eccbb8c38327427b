"""`collect` with the workstation's own work left out: an experiment for ``fleet.py --protocol-only``.

What remains is what every host costs the collector on the wire and after it: WS-Management and
PSRP (the pool opened, each probe's Command and Receives, the pool closed), validating and
judging the output, the host's results record, the run's index and results.json. Left out: the
workstation's own TLS and RDP probes of the host's endpoints (with their chain analysis) and the
rendering of each host's page (written empty). It tells whether the benchmark's ratio is bound by
that work or by the protocol work of C hosts at once.
"""

from __future__ import annotations

import sys

from collector import cli, report, workstation


def main() -> int:
    workstation.probe_endpoints = lambda target, now=None: ({}, ())
    report.render_host = lambda host, run: ""
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
