"""The packet tracer: netfilter's semantics over the dump model.

>>> from iptables_lens import parse_file
>>> from iptables_lens.scenario import load_scenario, node_context
>>> scenario = load_scenario("dumps/kind-nodeport")
>>> node = node_context(scenario, "blog-worker")
>>> dump = scenario.dump_for("blog-worker", "after")
>>> result = trace(dump, Packet(IPv4("172.20.0.100"), IPv4("172.20.0.2"), dport=30080), node)
>>> sorted((str(o.probability), o.endpoint, o.masquerade) for o in result.outcomes)
[('1/2', '10.244.1.2:80', True), ('1/2', '10.244.2.2:80', True)]
"""

from iptables_lens.trace.context import Interface, NodeContext, Route
from iptables_lens.trace.packet import HOOKS, TABLES_AT_HOOK, ConntrackEntry, IPv4, Outcome, Packet, Step, Trace
from iptables_lens.trace.walk import BaseChain, Priority, State, Tracer, trace

__all__ = [
    "HOOKS", "TABLES_AT_HOOK", "BaseChain", "ConntrackEntry", "IPv4", "Interface", "NodeContext", "Outcome", "Packet",
    "Priority", "Route", "State", "Step", "Trace", "Tracer", "trace",
]

