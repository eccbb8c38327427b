"""The simulated fleet on loopback (real WS-Management + PSRP) used by the demo and the tests.

The lab is an extra: its WinRM server stands on psrpcore's server side, which collecting from
real hosts never needs, so ``pip install 'rdp-collector[lab]'`` brings it. This module imports
none of it, so the commands that start the lab can first say what is missing.
"""

from __future__ import annotations

import importlib.util

# What the lab imports beyond the collector's own dependencies: pyproject's "lab" extra.
LAB_MODULES = ("psrpcore",)


def missing_lab_dependency() -> str | None:
    """What to install before the lab can run (``collect demo``, ``collect lab``), or None if nothing."""
    missing = [name for name in LAB_MODULES if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"the lab needs the 'lab' extra ({', '.join(missing)} is not installed): pip install 'rdp-collector[lab]'"
