"""Scenarios: a folder under `dumps/` with a `scenario.yaml` of facts about a cluster and its dumps; how to load
one, check it, scrub it, and the node each of its dumps comes from.

>>> scenario = load_scenario("dumps/kind-nodeport")
>>> scenario.meta.services[0].ports[0].node_port
30080
"""

from iptables_lens.scenario.load import Scenario, find_scenarios, load_scenario
from iptables_lens.scenario.model import Flow, metadata_json_schema
from iptables_lens.scenario.node import node_context
from iptables_lens.scenario.scrub import scrub_scenario
from iptables_lens.scenario.validate import validate_scenario

__all__ = [
    "Flow", "Scenario", "find_scenarios", "load_scenario", "metadata_json_schema", "node_context", "scrub_scenario",
    "validate_scenario",
]
