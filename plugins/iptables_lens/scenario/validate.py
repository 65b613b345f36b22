"""Check a scenario folder the way a reviewer would, and list every problem, not only the first: what loading
it finds (`scenario.load`: the schema, the files, the dumps), then what the checks over the loaded scenario
find (`scenario.checks`: the Services, addresses and chain names in the dumps, and the kernel's word).

Each problem is a DumpError with the file, line and column to look at.

>>> validate_scenario("dumps/kind-nodeport")
[]
"""

from __future__ import annotations

from pathlib import Path

from iptables_lens.errors import DumpError, DumpErrors
from iptables_lens.gcpause import paused_gc
from iptables_lens.scenario.checks import check_scenario
from iptables_lens.scenario.load import Scenario, read_scenario


def validate_scenario(folder: str | Path, kernel: bool = False) -> list[DumpError]:
    """Every problem of the scenario in `folder` (an empty list when it is sound); with `kernel` (root),
    iptables-restore is asked too."""
    with paused_gc():
        scenario, problems = read_scenario(folder)
        if scenario is None:
            return problems
        return problems + check_scenario(scenario, kernel)


def load_checked(folder: str | Path) -> Scenario:
    """The scenario in `folder` if it passes the checks of `validate_scenario` but the kernel's; DumpErrors
    listing every problem otherwise. The site is built from scenarios loaded this way."""
    with paused_gc():
        scenario, problems = read_scenario(folder)
        if scenario is not None:
            problems += check_scenario(scenario)
    if problems:
        raise DumpErrors(problems)
    assert scenario is not None
    return scenario
