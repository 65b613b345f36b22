"""The tracer on nft rulesets: nft's semantics, statement by statement, and one walk with iptables-nft's tables.

Each test writes the smallest listing that shows one behaviour and traces one packet through it. The kernel
tests in tests/test_lab_nftables.py check the same behaviours against the kernel on kube-proxy's rulesets.
"""

from __future__ import annotations

import ipaddress
from fractions import Fraction

import pytest
from iptables_lens.nft import parse_ruleset
from iptables_lens.nft.evaluate import verdict_of_action
from iptables_lens.scenario import load_scenario, node_context
from iptables_lens.trace import IPv4, NodeContext, Packet, Route, Tracer, trace

NODE = NodeContext.simple("node", "172.20.0.2/16", (Route(ipaddress.ip_network("10.244.1.0/24"), "eth0"),))
CLIENT = IPv4("172.20.0.100")


def listing(body: str, family: str = "ip", name: str = "t") -> str:
    return f"table {family} {name} {{\n{body}\n}}\n"


def chain(name: str, *rules: str, hook: str | None = None, kind: str = "filter", priority: str = "filter",
          policy: str = "accept") -> str:
    head = f"\t\ttype {kind} hook {hook} priority {priority}; policy {policy};\n" if hook else ""
    return f"\tchain {name} {{\n{head}" + "".join(f"\t\t{r}\n" for r in rules) + "\t}\n"


def outcomes(text: str, packet: Packet | None = None, node: NodeContext = NODE, **kwargs):
    ruleset = parse_ruleset(text, "test.nft")
    packet = packet or Packet(CLIENT, IPv4("172.20.0.2"), dport=80)
    return trace(ruleset, packet, node, **kwargs).outcomes


def only(text: str, packet: Packet | None = None, **kwargs):
    found = outcomes(text, packet, **kwargs)
    assert len(found) == 1, found
    return found[0]


def actions(outcome) -> list[tuple[str | None, str | None, int | None, str]]:
    return [(s.table, s.chain, s.rule, s.action) for s in outcome.path if s.table]


# -- the walk: hooks, priorities, verdicts --------------------------------------------------------------------


def test_base_chains_run_in_priority_order_across_tables_and_families():
    text = (listing(chain("late", "counter", hook="prerouting", priority="dstnat"), name="a")
            + listing(chain("early", "counter", hook="prerouting", priority="dstnat - 10"), name="b")
            + listing(chain("raw", "counter", hook="prerouting", priority="raw"), family="inet", name="c")
            + listing(chain("six", "counter", hook="prerouting", priority="-400"), family="ip6", name="d"))
    path = list(dict.fromkeys((t, c) for t, c, _, _ in actions(only(text))))
    # ip6 d never sees an IPv4 packet; inet c does.
    assert path == [("inet c", "raw"), ("ip b", "early"), ("ip a", "late")]


def test_an_accept_ends_only_its_base_chain_and_a_drop_ends_the_packet():
    text = listing(chain("first", "accept", "drop", hook="input")
                   + chain("second", "tcp dport 80 drop", hook="input", priority="filter + 1"))
    o = only(text)
    assert o.verdict == "DROP"
    assert actions(o) == [("ip t", "first", 1, "accept"), ("ip t", "second", 1, "drop")]
    assert o.delivery == "dropped at ip t second rule 1"


def test_policy_drop_and_reject_with_its_type():
    assert only(listing(chain("in", "tcp dport 81 accept", hook="input", policy="drop"))).verdict == "DROP"
    o = only(listing(chain("in", "reject with tcp reset", hook="input")))
    assert (o.verdict, actions(o)[-1][3]) == ("REJECT", "reject with tcp reset")


def test_jump_returns_to_the_next_rule_and_goto_to_the_caller():
    text = listing(chain("in", "jump a", "goto b", "drop", hook="input")
                   + chain("a", "counter")
                   + chain("b", "return")
                   + chain("unused", "drop"))
    o = only(text)
    assert o.verdict == "ACCEPT"  # goto b then return: back to in's caller, the hook: the policy
    assert [a for *_, a in actions(o)] == ["jump a", "matched (goes on)", "goto b", "return", "policy ACCEPT"]


def test_continue_goes_on_to_the_next_rule():
    o = only(listing(chain("in", "continue", "tcp dport 80 drop", hook="input")))
    assert o.verdict == "DROP"


# -- matches ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "matches"), [
    ("ip daddr 172.20.0.2 drop", True),
    ("ip daddr != 172.20.0.2 drop", False),
    ("ip saddr 172.20.0.0/16 drop", True),
    ("ip saddr 172.20.0.0-172.20.0.99 drop", False),
    ("tcp dport { 22, 80 } drop", True),
    ("tcp dport 1-79 drop", False),
    ("udp dport 80 drop", False),  # a TCP packet has no UDP header
    ("th dport 80 drop", True),
    ("meta l4proto tcp drop", True),
    ("meta l4proto . th dport { tcp . 80 } drop", True),
    ("ip daddr . meta l4proto . th dport { 172.20.0.2 . tcp . 81 } drop", False),
    ("meta nfproto ipv6 drop", False),
    ("meta nfproto ipv4 drop", True),
    ("ct state new drop", True),
    ("ct state established,related drop", False),
    ("ct state != established drop", True),
    ("ct status dnat drop", False),
    ("fib daddr type local drop", True),
    ("fib saddr type local drop", False),
    ("fib daddr type != local drop", False),
    ("iifname \"eth0\" drop", True),
    ("iifname \"eth*\" drop", True),
    ("oifname \"eth0\" drop", False),  # INPUT: the packet leaves by no interface
    ("meta pkttype host drop", True),
    ("tcp flags syn drop", True),
    ("meta mark 0x00000000 drop", True),
    ("ct mark 0x00000001 drop", False),
    ("ct original ip daddr 172.20.0.2 drop", True),
    ("ct state untracked drop", False),
    ("fib saddr . iif oif missing drop", False),  # reverse path filtering: the client is reached by eth0
    # A local address: the kernel gives no device, unless the packet came in on the loopback (6.18).
    ("fib daddr oif missing drop", True),
    ("fib daddr oifname \"lo\" drop", False),
    ("meta iiftype ether drop", True),
    ("ip protocol tcp drop", True),
    ("icmp type echo-request drop", False),
])
def test_matches(rule: str, matches: bool):
    o = only(listing(chain("in", rule, hook="input")))
    assert (o.verdict == "DROP") == matches


def test_named_sets_and_maps_with_intervals_and_concatenations():
    text = listing("""\tset nets {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.0.0.0/8, 172.20.1.0/24 }
\t}

\tmap ports {
\t\ttype ipv4_addr . inet_service : verdict
\t\telements = { 172.20.0.2 . 80 : jump web }
\t}
""" + chain("in", "ip saddr @nets drop", "ip daddr . tcp dport vmap @ports", hook="input")
                   + chain("web", "reject"))
    o = only(text)
    assert o.verdict == "REJECT"
    assert [a for *_, a in actions(o)] == ["jump web", "reject with icmp port-unreachable"]


def test_a_verdict_map_without_the_key_goes_on_to_the_next_rule():
    o = only(listing(chain("in", "tcp dport vmap { 22 : drop }", "tcp dport 80 reject", hook="input")))
    assert o.verdict == "REJECT"


# -- numgen: exact probabilities ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["random", "inc"])
def test_numgen_gives_each_element_exactly_one_nth(mode: str):
    text = listing(chain("pre", f"numgen {mode} mod 3 vmap {{ 0 : goto a, 1 : goto b, 2 : goto c }}",
                         hook="prerouting", kind="nat", priority="dstnat")
                   + "".join(chain(n, f"dnat to 10.244.1.{i}") for i, n in enumerate("abc", start=1)))
    found = outcomes(text)
    assert sorted((o.endpoint, o.probability) for o in found) == [
        (f"10.244.1.{i}:80", Fraction(1, 3)) for i in (1, 2, 3)]
    assert sum(o.probability for o in found) == 1
    assert found[0].choices == (f"pre rule 1: numgen {mode} mod 3 = 0"
                                + (" (its turn once in every 3)" if mode == "inc" else ""),)


def test_numgen_offset_and_a_value_missing_from_the_map():
    text = listing(chain("pre", "numgen random mod 2 offset 5 vmap { 5 : goto a }", "dnat to 10.244.1.9",
                         hook="prerouting", kind="nat", priority="dstnat")
                   + chain("a", "dnat to 10.244.1.1"))
    assert sorted((o.endpoint, o.probability) for o in outcomes(text)) == [
        ("10.244.1.1:80", Fraction(1, 2)), ("10.244.1.9:80", Fraction(1, 2))]


def test_dnat_to_a_numgen_map_of_address_and_port():
    text = listing(chain("pre", "meta l4proto tcp dnat ip to numgen random mod 2 map "
                                "{ 0 : 10.244.1.1 . 8080, 1 : 10.244.1.2 . 8081 }",
                         hook="prerouting", kind="nat", priority="dstnat"))
    assert sorted((o.endpoint, o.probability) for o in outcomes(text)) == [
        ("10.244.1.1:8080", Fraction(1, 2)), ("10.244.1.2:8081", Fraction(1, 2))]


# -- marks and nat ----------------------------------------------------------------------------------------------


def test_mark_set_with_or_and_xor_then_masquerade_only_marked_packets():
    post = chain("post", "meta mark & 0x00004000 == 0x00000000 return",
                 "meta mark set meta mark ^ 0x00004000", "masquerade fully-random",
                 hook="postrouting", kind="nat", priority="srcnat")
    pre = chain("pre", "meta mark set meta mark | 0x00004001", "meta mark set meta mark & 0x0000ffff",
                "dnat to 10.244.1.5", hook="prerouting", kind="nat", priority="dstnat")
    o = only(listing(pre + post))
    assert o.masquerade and o.snat == (IPv4("172.20.0.2"), None)  # fully-random: the kernel picks the port
    assert [a for *_, a in actions(o) if "mark" in a] == [
        "mark 0x0 -> 0x4001", "mark 0x4001 -> 0x4001", "mark 0x4001 -> 0x1"]
    unmarked = only(listing(chain("pre", "dnat to 10.244.1.5", hook="prerouting", kind="nat",
                                  priority="dstnat") + post))
    assert not unmarked.masquerade and unmarked.snat is None


def test_snat_dnat_redirect_to_ports_and_ranges():
    o = only(listing(chain("pre", "meta l4proto tcp dnat to 10.244.1.5-10.244.1.9:8000-8010", hook="prerouting", kind="nat",
                           priority="dstnat")
                     + chain("post", "meta l4proto tcp snat to 172.20.0.9:1000", hook="postrouting", kind="nat", priority="srcnat")))
    assert (o.endpoint, o.snat) == ("10.244.1.5:8000", (IPv4("172.20.0.9"), 1000))
    r = only(listing(chain("pre", "tcp dport 80 redirect to :8080", hook="prerouting", kind="nat",
                           priority="dstnat")))
    assert r.endpoint == "172.20.0.2:8080" and "a local process" in r.delivery


def test_only_the_first_nat_chain_of_a_hook_that_translates_applies():
    first = listing(chain("PREROUTING", "tcp dport 80 dnat to 10.244.1.1", hook="prerouting", kind="nat",
                          priority="dstnat"), name="nat")
    second = listing(chain("pre", "dnat to 10.244.1.2", hook="prerouting", kind="nat", priority="dstnat"),
                     name="kube-proxy")
    o = only(second + first)  # at one priority the chain registered last, nat's, runs first
    assert o.endpoint == "10.244.1.1:80"
    assert ("ip kube-proxy", "pre") not in {(t, c) for t, c, *_ in actions(o)}


def test_notrack_keeps_the_packet_from_nat():
    o = only(listing(chain("raw", "notrack", hook="prerouting", priority="raw")
                     + chain("pre", "dnat to 10.244.1.2", hook="prerouting", kind="nat", priority="dstnat")))
    assert o.endpoint is None and o.conntrack is None


# -- what cannot be decided, and affinity -----------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "why"), [
    ("limit rate 10/second accept", "rate limit"),
    ("quota 10 mbytes accept", "quota"),
    ("jhash ip saddr mod 2 0 accept", "jhash"),
    ("meta skuid 0 accept", "meta skuid"),
])
def test_what_the_tracer_cannot_decide_is_an_undecided_outcome(rule: str, why: str):
    o = only(listing(chain("in", rule, hook="input")))
    assert o.verdict == "UNDECIDED" and why in o.reason and o.reason.startswith("ip t in rule 1:")


def test_queue_is_unsupported():
    o = only(listing(chain("in", "queue to 1", hook="input")))
    assert o.verdict == "UNSUPPORTED" and "queue" in o.reason


AFFINITY = listing("""\tset affinity-a {
\t\ttype ipv4_addr
\t\tflags dynamic,timeout
\t\ttimeout 3h
\t}
""" + chain("pre", "ip saddr @affinity-a goto a", "numgen random mod 2 vmap { 0 : goto a, 1 : goto b }",
            hook="prerouting", kind="nat", priority="dstnat")
    + chain("a", "update @affinity-a { ip saddr }", "dnat to 10.244.1.1")
    + chain("b", "dnat to 10.244.1.2"))


def test_session_affinity_first_request_and_returning_client():
    first = outcomes(AFFINITY)
    assert sorted((o.endpoint, o.probability) for o in first) == [
        ("10.244.1.1:80", Fraction(1, 2)), ("10.244.1.2:80", Fraction(1, 2))]
    to_a = next(o for o in first if o.endpoint == "10.244.1.1:80")
    assert ("ip t", "a", 1, "added to @affinity-a") in actions(to_a)
    returning = outcomes(AFFINITY, recent=frozenset({"affinity-a"}))
    assert [(o.endpoint, o.probability, o.choices) for o in returning] == [("10.244.1.1:80", 1, ())]


# -- the vocabulary the lab compares with the kernel ----------------------------------------------------------------


@pytest.mark.parametrize(("action", "verdict"), [
    ("jump services", "jump services"), ("mark 0x0 -> 0x4000; goto x", "goto x"),
    ("dnat to 10.0.0.1:80", "accept"), ("mark 0x4000 -> 0x0; masquerade to 1.2.3.4 (fully-random)", "accept"),
    ("reject with icmp port-unreachable", "drop"), ("matched (goes on)", "continue"), ("added to @s", "continue"),
])
def test_verdict_of_action(action: str, verdict: str):
    assert verdict_of_action(action) == verdict


# -- kube-proxy's rulesets --------------------------------------------------------------------------------------


def test_nftables_scenario_node_port_is_half_each_pod_masqueraded_through_forward():
    scenario = load_scenario("dumps/kind-nodeport-nftables")
    for node_name in ("blog-worker", "blog-worker2"):
        node = node_context(scenario, node_name)
        ruleset = scenario.dump_for(node_name, "after")
        own = node.main_address
        found = Tracer(ruleset, node).trace(Packet(CLIENT, own, dport=30080))
        assert sorted((o.endpoint, o.probability, o.verdict) for o in found.outcomes) == [
            ("10.244.1.2:80", Fraction(1, 2), "ACCEPT"), ("10.244.2.2:80", Fraction(1, 2), "ACCEPT")]
        for o in found.outcomes:
            assert o.masquerade
            hooks = [s.hook for s in o.path]
            assert "FORWARD" in hooks and "INPUT" not in hooks
            assert ("ip kube-proxy", "mark-for-masquerade", 1, "mark 0x0 -> 0x4000") in actions(o)


def test_nftables_scenario_pod_to_cluster_ip_is_masqueraded_only_when_it_reaches_itself():
    scenario = load_scenario("dumps/kind-nodeport-nftables")
    node = node_context(scenario, "blog-worker")
    found = trace(scenario.dump_for("blog-worker", "after"),
                  Packet(IPv4("10.244.1.2"), IPv4("10.96.118.136"), dport=80), node)
    assert sorted((o.endpoint, o.probability, o.masquerade) for o in found.outcomes) == [
        ("10.244.1.2:80", Fraction(1, 2), True), ("10.244.2.2:80", Fraction(1, 2), False)]


def test_kube_proxys_services_without_endpoints_are_dropped_or_rejected():
    ruleset = parse_ruleset(open("tests/data/kube-proxy-nftables/listings/TestOverallNFTablesRules.v1.34.nft").read(),
                            "overall.nft")
    node = NodeContext.with_addresses("node", (IPv4("192.168.0.2"),))
    tracer = Tracer(ruleset, node)
    # ns6/svc6 has no endpoints and kube-proxy rejects it; ns2/svc2's external IP has none local (eTP Local): drop.
    rejected = tracer.trace(Packet(IPv4("10.0.0.9"), IPv4("172.30.0.46"), dport=80), "external").outcomes
    assert [(o.verdict, o.delivery) for o in rejected] == [
        ("REJECT", "rejected at ip kube-proxy reject-chain rule 1")]
    # A client outside the cluster's pod network (10.0.0.0/8 in kube-proxy's tests): pods short-circuit.
    dropped = tracer.trace(Packet(IPv4("203.0.113.9"), IPv4("192.168.99.22"), dport=80), "external").outcomes
    assert [o.verdict for o in dropped] == ["DROP"]
