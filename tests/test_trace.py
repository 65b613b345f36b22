"""The packet tracer: netfilter's walk, match by match and target by target."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iptables_lens import parse
from iptables_lens.iptables import evaluate as evaluate_module
from iptables_lens.kube.synth import cluster_ip, nodeport_spec, synth_cluster
from iptables_lens.scenario import load_scenario, node_context
from iptables_lens.trace import IPv4, NodeContext, Packet, Route, Tracer, trace

from tests.conftest import SEED
from tests.dumpgen import random_dump

NODE = NodeContext.simple("node", "192.0.2.10/24", (Route(__import__("ipaddress").IPv4Network("10.1.0.0/16"), "eth0",
                                                          IPv4("192.0.2.1")),))
OUTSIDE = IPv4("192.0.2.50")
POD = IPv4("10.1.2.3")


def tables(**bodies: str) -> str:
    """A dump from table bodies (chain declarations and rules); built-in chains are declared for you."""
    from iptables_lens.iptables.model import BUILTIN_CHAINS

    text = ""
    for name, body in bodies.items():
        heads = "".join(f":{c} ACCEPT [0:0]\n" for c in BUILTIN_CHAINS[name])
        text += f"*{name}\n{heads}{body.strip()}\nCOMMIT\n"
    return text


def run(text: str, packet: Packet | None = None, origin: str = "external", **kw):
    packet = packet or Packet(OUTSIDE, POD, dport=80)
    return trace(parse(text), packet, NODE, origin, **kw)


def only(result):
    assert len(result.outcomes) == 1, result.outcomes
    return result.outcomes[0]


# -- the seed scenario -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed():
    return load_scenario(SEED)


def seed_trace(seed, src, dst, dport, origin=None, node="blog-worker"):
    return trace(seed.dump_for(node, "after"), Packet(IPv4(src), IPv4(dst), dport=dport),
                 node_context(seed, node), origin)


def test_outside_client_to_the_nodeport_reaches_each_pod_with_probability_one_half(seed):
    result = seed_trace(seed, "172.20.0.100", "172.20.0.2", 30080)
    assert result.origin == "external"
    assert sorted((o.probability, o.endpoint) for o in result.outcomes) == [
        (Fraction(1, 2), "10.244.1.2:80"), (Fraction(1, 2), "10.244.2.2:80")]
    for outcome in result.outcomes:
        assert outcome.verdict == "ACCEPT" and outcome.masquerade
        assert outcome.chains == [
            "PREROUTING", "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXT-OL4YPD43MBS7WVHD", "KUBE-MARK-MASQ",
            "KUBE-EXT-OL4YPD43MBS7WVHD", "KUBE-SVC-OL4YPD43MBS7WVHD", outcome.path[9].chain,
            "FORWARD", "KUBE-FORWARD", "POSTROUTING", "KUBE-POSTROUTING"]
        assert outcome.path[9].chain.startswith("KUBE-SEP-")
        hooks = [s.hook for s in outcome.path]
        assert "INPUT" not in hooks and "FORWARD" in hooks  # after DNAT the packet is forwarded
        accept = next(s for s in outcome.path if s.chain == "KUBE-FORWARD")
        assert accept.action == "ACCEPT" and accept.rule == 2  # accepted on the 0x4000 mark
        assert outcome.path[-2].action.startswith("MASQUERADE")


def test_masquerade_picks_the_address_of_the_way_out(seed):
    result = seed_trace(seed, "172.20.0.100", "172.20.0.2", 30080)
    by_endpoint = {o.endpoint: o for o in result.outcomes}
    # To the pod on the other node the packet leaves by eth0: the node's own address.
    assert by_endpoint["10.244.2.2:80"].snat[0] == IPv4("172.20.0.2")
    # To the local pod it leaves by the pod's veth, whose host side holds the pod gateway address.
    assert by_endpoint["10.244.1.2:80"].snat[0] == IPv4("10.244.1.1")
    entry = by_endpoint["10.244.2.2:80"].conntrack
    assert entry.original == (IPv4("172.20.0.100"), IPv4("172.20.0.2"), 40000, 30080)
    assert entry.reply[:3] == (IPv4("10.244.2.2"), IPv4("172.20.0.2"), 80)


def test_a_pod_calling_the_cluster_ip_is_not_masqueraded(seed):
    result = seed_trace(seed, "10.244.1.10", "10.96.118.136", 80)
    assert sorted(o.endpoint for o in result.outcomes) == ["10.244.1.2:80", "10.244.2.2:80"]
    for outcome in result.outcomes:
        assert not outcome.masquerade and outcome.snat is None
        assert "KUBE-MARK-MASQ" not in outcome.chains


def test_the_node_calling_its_own_nodeport_takes_the_output_path(seed):
    result = seed_trace(seed, "172.20.0.2", "172.20.0.2", 30080)
    assert result.origin == "local"
    for outcome in result.outcomes:
        hooks = [s.hook for s in outcome.path]
        assert hooks[0] == "OUTPUT" and "PREROUTING" not in hooks and "FORWARD" not in hooks
        assert outcome.masquerade
    assert {o.probability for o in result.outcomes} == {Fraction(1, 2)}


def test_before_the_service_existed_the_nodeport_is_delivered_locally_to_nothing(seed):
    result = trace(seed.dump_for("blog-worker", "before"), Packet(IPv4("172.20.0.100"), IPv4("172.20.0.2"),
                   dport=30080), node_context(seed, "blog-worker"))
    outcome = only(result)
    assert outcome.dnat is None and "INPUT" in [s.hook for s in outcome.path]
    assert outcome.delivery.startswith("a local process")


# -- criteria ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule,verdict", [
    ("-A FORWARD -s 192.0.2.0/24 -j DROP", "DROP"),
    ("-A FORWARD ! -s 192.0.2.0/24 -j DROP", "ACCEPT"),
    ("-A FORWARD -d 10.1.2.3/32 -j REJECT", "REJECT"),
    ("-A FORWARD -d 10.1.0.0/16,172.16.0.0/12 -j DROP", "DROP"),
    ("-A FORWARD -p udp -j DROP", "ACCEPT"),
    ("-A FORWARD ! -p udp -j DROP", "DROP"),
    ("-A FORWARD -i eth0 -j DROP", "DROP"),
    ("-A FORWARD -i eth+ -j DROP", "DROP"),
    ("-A FORWARD -i veth+ -j DROP", "ACCEPT"),
    ("-A FORWARD -o eth0 -j DROP", "DROP"),
    ("-A FORWARD -f -j DROP", "ACCEPT"),
])
def test_criteria_with_negation_and_cidrs(rule, verdict):
    assert only(run(tables(filter=rule))).verdict == verdict


@pytest.mark.parametrize("rule,verdict", [
    ("-A FORWARD -p tcp -m tcp --dport 80 -j DROP", "DROP"),
    ("-A FORWARD -p tcp -m tcp ! --dport 80 -j DROP", "ACCEPT"),
    ("-A FORWARD -p tcp -m tcp --dport 70:90 -j DROP", "DROP"),
    ("-A FORWARD -p tcp -m tcp --dport 81: -j DROP", "ACCEPT"),
    ("-A FORWARD -p tcp -m tcp --sport 40000 -j DROP", "DROP"),
    ("-A FORWARD -p tcp -m tcp --syn -j DROP", "DROP"),
    ("-A FORWARD -p tcp -m tcp --tcp-flags SYN,ACK SYN -j DROP", "DROP"),
    ("-A FORWARD -p tcp -m tcp --tcp-flags SYN,ACK ACK -j DROP", "ACCEPT"),
    ("-A FORWARD -p tcp -m multiport --dports 22,80:81 -j DROP", "DROP"),
    ("-A FORWARD -p tcp -m multiport --dports 22,443 -j DROP", "ACCEPT"),
    ("-A FORWARD -p tcp -m multiport --ports 40000 -j DROP", "DROP"),
    ("-A FORWARD -m comment --comment \"anything\" -j DROP", "DROP"),
])
def test_port_and_flag_matches(rule, verdict):
    assert only(run(tables(filter=rule))).verdict == verdict


def test_udp_and_sctp_ports():
    text = tables(filter="-A FORWARD -p udp -m udp --dport 53 -j DROP\n-A FORWARD -p sctp -m sctp --dport 9 -j REJECT")
    assert only(run(text, Packet(OUTSIDE, POD, "udp", dport=53))).verdict == "DROP"
    assert only(run(text, Packet(OUTSIDE, POD, "sctp", dport=9))).verdict == "REJECT"
    assert only(run(text, Packet(OUTSIDE, POD, "tcp", dport=53))).verdict == "ACCEPT"


def test_icmp_types():
    text = tables(filter="-A FORWARD -p icmp -m icmp --icmp-type 8 -j DROP")
    ping = Packet(OUTSIDE, POD, "icmp", None, None, icmp_type=8, icmp_code=0)
    assert only(run(text, ping)).verdict == "DROP"
    reply = Packet(OUTSIDE, POD, "icmp", None, None, icmp_type=0, icmp_code=0)
    assert only(run(text, reply)).verdict == "ACCEPT"
    named = tables(filter="-A FORWARD -p icmp -m icmp --icmp-type echo-request -j DROP")
    assert only(run(named, ping)).verdict == "DROP"


@pytest.mark.parametrize("rule,dst,verdict", [
    ("-A INPUT -m addrtype --dst-type LOCAL -j DROP", "192.0.2.10", "DROP"),
    ("-A FORWARD -m addrtype --dst-type LOCAL -j DROP", "10.1.2.3", "ACCEPT"),
    ("-A FORWARD -m addrtype ! --dst-type LOCAL -j DROP", "10.1.2.3", "DROP"),
    ("-A FORWARD -m addrtype --dst-type UNICAST -j DROP", "10.1.2.3", "DROP"),
    ("-A FORWARD -m addrtype --src-type LOCAL -j DROP", "10.1.2.3", "ACCEPT"),
    ("-A INPUT -m addrtype --dst-type BROADCAST -j DROP", "192.0.2.255", "ACCEPT"),
    ("-A FORWARD -m addrtype --dst-type LOCAL --limit-iface-out -j DROP", "10.1.2.3", "ACCEPT"),
])
def test_addrtype(rule, dst, verdict):
    outcome = only(run(tables(filter=rule), Packet(OUTSIDE, IPv4(dst), dport=80)))
    assert outcome.verdict == verdict


def test_addrtype_broadcast_on_a_local_network():
    node_result = Tracer(parse(tables(filter="-A INPUT -m addrtype --dst-type BROADCAST -j DROP")), NODE)
    assert NODE.address_type(IPv4("192.0.2.255")) == "BROADCAST"
    assert node_result.node.address_type(IPv4("192.0.2.10")) == "LOCAL"


@pytest.mark.parametrize("rule,verdict", [
    ("-A FORWARD -m conntrack --ctstate NEW -j DROP", "DROP"),
    ("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j DROP", "ACCEPT"),
    ("-A FORWARD -m conntrack ! --ctstate INVALID -j DROP", "DROP"),
    ("-A FORWARD -m state --state NEW -j DROP", "DROP"),
    ("-A FORWARD -m conntrack --ctstate DNAT -j DROP", "ACCEPT"),  # nothing translated it
    ("-A FORWARD -m conntrack --ctorigdst 10.1.2.3/32 -j DROP", "DROP"),
])
def test_conntrack_states_of_a_first_packet(rule, verdict):
    assert only(run(tables(filter=rule))).verdict == verdict


def test_the_dnat_state_is_seen_after_translation():
    text = tables(
        nat="-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.2.3:80",
        filter="-A FORWARD -m conntrack --ctstate DNAT --ctorigdstport 8080 -j DROP",
    )
    outcome = only(run(text, Packet(OUTSIDE, IPv4("192.0.2.10"), dport=8080)))
    assert outcome.verdict == "DROP" and outcome.endpoint == "10.1.2.3:80"


@pytest.mark.parametrize("mark_rule,match,verdict", [
    ("--set-xmark 0x4000/0x4000", "-m mark --mark 0x4000/0x4000", "DROP"),
    ("--set-mark 0x4001", "-m mark --mark 0x4001", "DROP"),
    ("--set-mark 0x1/0x1", "-m mark ! --mark 0x1/0x1", "ACCEPT"),
    ("--or-mark 0x6", "-m mark --mark 0x6", "DROP"),
    ("--and-mark 0x0", "-m mark --mark 0x0", "DROP"),
    ("--xor-mark 0x3", "-m mark --mark 0x3/0xff", "DROP"),
])
def test_marks_set_and_matched_with_masks(mark_rule, match, verdict):
    text = tables(mangle=f"-A PREROUTING -j MARK {mark_rule}", filter=f"-A FORWARD {match} -j DROP")
    assert only(run(text)).verdict == verdict


def test_set_xmark_with_an_empty_mask_flips_bits_as_kube_postrouting_does():
    text = tables(mangle="-A PREROUTING -j MARK --set-xmark 0x4000/0x4000\n-A FORWARD -j MARK --set-xmark 0x4000/0x0",
                  filter="-A FORWARD -m mark --mark 0x0/0x4000 -j DROP")
    assert only(run(text)).verdict == "DROP"


def test_connmark_saves_and_restores():
    text = tables(
        mangle="-A PREROUTING -j MARK --set-mark 0x7\n-A PREROUTING -j CONNMARK --save-mark\n"
               "-A PREROUTING -j MARK --set-mark 0x0\n-A FORWARD -j CONNMARK --restore-mark",
        filter="-A FORWARD -m connmark --mark 0x7 -m mark --mark 0x7 -j DROP",
    )
    assert only(run(text)).verdict == "DROP"


# -- statistic and recent ------------------------------------------------------------------------------


def test_three_endpoints_get_one_third_each_from_probabilities_one_third_one_half_rest():
    text = tables(nat="""
:SVC - [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j SVC
-A SVC -p tcp -m statistic --mode random --probability 0.33333333349 -j DNAT --to-destination 10.1.0.1:80
-A SVC -p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.1.0.2:80
-A SVC -p tcp -j DNAT --to-destination 10.1.0.3:80
""")
    result = run(text)
    assert sorted((o.endpoint, o.probability) for o in result.outcomes) == [
        ("10.1.0.1:80", Fraction(1, 3)), ("10.1.0.2:80", Fraction(1, 3)), ("10.1.0.3:80", Fraction(1, 3))]
    assert sum(o.probability for o in result.outcomes) == 1


def test_nth_mode_takes_its_turn_once_in_every_n():
    text = tables(nat="""
-A PREROUTING -p tcp -m statistic --mode nth --every 4 --packet 0 -j DNAT --to-destination 10.1.0.1:80
-A PREROUTING -p tcp -j DNAT --to-destination 10.1.0.2:80
""")
    result = run(text)
    assert sorted((o.endpoint, o.probability) for o in result.outcomes) == [
        ("10.1.0.1:80", Fraction(1, 4)), ("10.1.0.2:80", Fraction(3, 4))]
    assert any("nth" in c for o in result.outcomes for c in o.choices)


AFFINITY = tables(nat="""
:SVC - [0:0]
:SEP-A - [0:0]
:SEP-B - [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j SVC
-A SVC -m recent --rcheck --seconds 10800 --reap --name SEP-B --mask 255.255.255.255 --rsource -j SEP-B
-A SVC -m statistic --mode random --probability 0.50000000000 -j SEP-A
-A SVC -j SEP-B
-A SEP-A -p tcp -m recent --set --name SEP-A --mask 255.255.255.255 --rsource -j DNAT --to-destination 10.1.0.1:80
-A SEP-B -p tcp -m recent --set --name SEP-B --mask 255.255.255.255 --rsource -j DNAT --to-destination 10.1.0.2:80
""")


def test_session_affinity_first_request_and_returning_client_are_separate_cases():
    first = run(AFFINITY)
    assert sorted(o.endpoint for o in first.outcomes) == ["10.1.0.1:80", "10.1.0.2:80"]
    returning = run(AFFINITY, recent=frozenset({"SEP-B"}))
    assert only(returning).endpoint == "10.1.0.2:80"


# -- targets and chains --------------------------------------------------------------------------------


def test_goto_returns_to_the_caller_of_the_chain_that_went_there():
    text = tables(filter="""
:OUTER - [0:0]
:INNER - [0:0]
-A FORWARD -j OUTER
-A FORWARD -j DROP
-A OUTER -g INNER
-A OUTER -j REJECT
-A INNER -j RETURN
""")
    # INNER returns past OUTER's REJECT (the goto replaced OUTER), back to FORWARD, which drops.
    outcome = only(run(text))
    assert outcome.verdict == "DROP"
    assert [s.action for s in outcome.path if s.table == "filter"] == ["jump to OUTER", "goto INNER", "RETURN", "DROP"]


def test_jump_returns_to_the_next_rule_of_the_chain_that_jumped():
    text = tables(filter="""
:OUTER - [0:0]
:INNER - [0:0]
-A FORWARD -j OUTER
-A FORWARD -j DROP
-A OUTER -j INNER
-A OUTER -j REJECT
-A INNER -j RETURN
""")
    assert only(run(text)).verdict == "REJECT"


def test_return_from_a_builtin_chain_applies_its_policy():
    text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j RETURN\n" \
           "-A FORWARD -j ACCEPT\nCOMMIT\n"
    outcome = only(run(text))
    assert outcome.verdict == "DROP"
    assert outcome.path[-1].action == "policy DROP" and outcome.path[-1].rule is None
    assert outcome.delivery == "dropped at filter FORWARD policy"


def test_logging_targets_go_on():
    text = tables(filter='-A FORWARD -j LOG --log-prefix "seen: "\n-A FORWARD -j NFLOG --nflog-group 2\n-A FORWARD -j DROP')
    outcome = only(run(text))
    assert outcome.verdict == "DROP"
    assert [s.action for s in outcome.path if s.table == "filter"] == ["LOG (goes on)", "NFLOG (goes on)", "DROP"]


def test_notrack_keeps_the_packet_away_from_nat():
    text = tables(raw="-A PREROUTING -j NOTRACK",
                  nat="-A PREROUTING -p tcp -j DNAT --to-destination 10.1.0.9:80",
                  filter="-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT\n-A FORWARD -j DROP")
    outcome = only(run(text))
    assert outcome.dnat is None and outcome.verdict == "ACCEPT" and outcome.conntrack is None


def test_snat_and_redirect():
    snat = tables(nat="-A POSTROUTING -j SNAT --to-source 192.0.2.10")
    outcome = only(run(snat))
    assert outcome.snat == (IPv4("192.0.2.10"), 40000) and not outcome.masquerade
    redirect = tables(nat="-A PREROUTING -p tcp -j REDIRECT --to-ports 15001")
    outcome = only(run(redirect))
    assert outcome.endpoint == "192.0.2.10:15001" and outcome.delivery.startswith("a local process")


def test_an_undecidable_match_is_an_explicit_undecided_outcome():
    text = tables(filter='-A FORWARD -m limit --limit 5/sec -j ACCEPT\n-A FORWARD -j DROP')
    outcome = only(run(text))
    assert outcome.verdict == "UNDECIDED"
    assert "filter FORWARD rule 1" in outcome.reason and "-m limit" in outcome.reason


def test_an_unknown_target_is_an_explicit_unsupported_outcome():
    text = tables(mangle="-A PREROUTING -j TPROXY --on-port 1 --on-ip 0.0.0.0 --tproxy-mark 0x1")
    outcome = only(run(text))
    assert outcome.verdict == "UNSUPPORTED" and "TPROXY" in outcome.reason


def test_no_route_is_a_drop_that_says_so():
    outcome = only(run(tables(filter=""), Packet(OUTSIDE, IPv4("203.0.113.9"), dport=80)))
    assert outcome.verdict == "DROP" and outcome.delivery == "no route to 203.0.113.9"


# -- invariants ----------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["tcp", "udp"]), st.integers(1, 65535),
       st.sampled_from(["external", "local"]))
def test_outcome_probabilities_always_sum_to_exactly_one(seed, proto, dport, origin):
    rng = random.Random(seed)
    dump = parse(random_dump(rng))
    src = IPv4("192.0.2.10") if origin == "local" else IPv4(f"192.0.2.{rng.randint(20, 200)}")
    dst = rng.choice([IPv4("192.0.2.10"), IPv4("10.1.2.3"), IPv4(f"10.1.{rng.randint(0, 255)}.9")])
    result = trace(dump, Packet(src, dst, proto, rng.randint(1024, 65535), dport), NODE, origin)
    assert sum(o.probability for o in result.outcomes) == 1
    assert all(o.probability > 0 for o in result.outcomes)


def test_the_rule_index_gives_the_same_outcomes_as_a_full_scan(monkeypatch):
    dump = parse(synth_cluster(nodeport_spec(300, 3)))
    node = NodeContext.simple("n", "172.20.0.2/16", (Route(__import__("ipaddress").IPv4Network("10.244.0.0/16"),
                                                              "eth0", IPv4("172.20.0.3")),))
    packets = [Packet(IPv4("172.20.0.100"), IPv4("172.20.0.2"), dport=30000 + i) for i in (0, 17, 299)]
    packets += [Packet(IPv4("10.244.9.9"), IPv4(cluster_ip(i)), dport=80) for i in (3, 150)]
    packets.append(Packet(IPv4("172.20.0.100"), IPv4("172.20.0.2"), dport=31000))
    indexed = [trace(dump, p, node) for p in packets]
    monkeypatch.setattr(evaluate_module, "INDEXED_CHAIN_SIZE", 10**9)
    scanned = [trace(dump, p, node) for p in packets]
    assert indexed == scanned
    assert {len(r.outcomes) for r in indexed[:5]} == {3}


# -- the walk's base chains and the match registries ------------------------------------------------


def test_the_tables_at_each_hook_are_in_the_order_of_their_kernel_priorities():
    from iptables_lens.iptables.evaluate import TABLE_PRIORITIES
    from iptables_lens.trace import HOOKS, TABLES_AT_HOOK

    derived = {hook: tuple(sorted((t for t, hooks in TABLE_PRIORITIES.items() if hook in hooks),
                                  key=lambda t: TABLE_PRIORITIES[t][hook])) for hook in HOOKS}
    assert derived == TABLES_AT_HOOK


def test_a_dump_with_every_table_gives_the_walk_its_base_chains_in_that_order():
    from iptables_lens.iptables.model import BUILTIN_CHAINS
    from iptables_lens.trace import HOOKS, TABLES_AT_HOOK
    from iptables_lens.trace.walk import at_hooks

    dump = parse(tables(**{name: "" for name in BUILTIN_CHAINS}))
    chains = at_hooks(evaluate_module.base_chains(dump))
    assert {hook: tuple(c.table for c in chains[hook]) for hook in HOOKS} == TABLES_AT_HOOK
    kinds = {(c.table, c.hook): c.kind for hook in HOOKS for c in chains[hook]}
    assert kinds[("nat", "PREROUTING")] == "nat" and kinds[("mangle", "OUTPUT")] == "route"
    assert kinds[("filter", "INPUT")] == "filter"


def test_every_match_module_the_parser_knows_is_evaluated_or_deliberately_undecided():
    from iptables_lens.iptables.matches import MATCH_EVALUATORS, UNDECIDED_MATCHES
    from iptables_lens.iptables.xtables import KNOWN_MATCHES

    assert set(MATCH_EVALUATORS) | set(UNDECIDED_MATCHES) == KNOWN_MATCHES
    assert not set(MATCH_EVALUATORS) & set(UNDECIDED_MATCHES)
    assert all(reason for reason in UNDECIDED_MATCHES.values())


def test_every_criterion_flag_the_parser_knows_is_evaluated():
    from iptables_lens.iptables.matches import CRITERION_EVALUATORS
    from iptables_lens.iptables.xtables import CRITERION_FLAGS

    assert set(CRITERION_EVALUATORS) == set(CRITERION_FLAGS.values())


def test_an_undecided_module_ends_the_branch_with_its_name():
    outcome = only(run(tables(filter="-A FORWARD -m limit --limit 5/sec -j DROP")))
    assert outcome.verdict == "UNDECIDED" and "-m limit" in outcome.reason


class ToyRuleset:
    """A ruleset of another language: base chains only, each a fixed list of verdicts by destination port."""

    def __init__(self, chains):
        self.chains = chains


def toy_chain(hook, priority, name, kind="filter", verdicts=None, policy="ACCEPT"):
    from iptables_lens.trace.walk import BaseChain

    def evaluate(state, node):
        verdict = (verdicts or {}).get(state.packet.dport, "END")
        if verdict == "NAT":
            new = state.packet.with_destination(IPv4("10.1.9.9"), 8080)
            state = state.changed(packet=new, dnat=(new.dst, new.dport), after_dnat=new)
        return [(state.step("toy", name, None, f"{name} says {verdict}"), verdict)]

    return BaseChain(hook, priority, "toy", name, kind, policy, evaluate)


@pytest.fixture
def toy_dialect(monkeypatch):
    from iptables_lens import dialects

    toy = dialects.Dialect(name="toy", dump_type=ToyRuleset, detect=lambda text: False, parse=None, parse_file=None,
                           format=None, explain=lambda dump: (), base_chains=lambda dump: dump.chains)
    monkeypatch.setitem(dialects.DIALECTS, "toy", toy)
    return toy


def test_the_walk_runs_any_dialects_base_chains_by_priority(toy_dialect):
    ruleset = ToyRuleset((toy_chain("FORWARD", 10, "late", verdicts={80: "DROP"}),
                          toy_chain("FORWARD", -10, "early", verdicts={80: "ACCEPT"})))
    outcome = only(trace(ruleset, Packet(OUTSIDE, POD, dport=80), NODE))
    # An accept ends only its base chain: the later one still drops.
    assert outcome.verdict == "DROP"
    assert [s.chain for s in outcome.path if s.chain] == ["early", "late"]


def test_a_nat_base_chain_translates_once_and_the_route_follows(toy_dialect):
    ruleset = ToyRuleset((toy_chain("PREROUTING", -100, "dstnat", "nat", verdicts={30080: "NAT"}),))
    outcome = only(trace(ruleset, Packet(OUTSIDE, IPv4("192.0.2.10"), dport=30080), NODE))
    assert outcome.endpoint == "10.1.9.9:8080" and outcome.delivery.startswith("forwarded to 10.1.9.9")
    # Sent from the node to itself, the packet loops back in on lo, where nat is not consulted again.
    local = trace(ruleset, Packet(IPv4("192.0.2.10"), IPv4("192.0.2.10"), dport=30080), NODE)
    assert only(local).dnat is None
    assert [s.chain for s in only(local).path if s.chain] == []


def test_a_base_chain_policy_decides_when_its_rules_run_out(toy_dialect):
    ruleset = ToyRuleset((toy_chain("FORWARD", 0, "filter", policy="DROP"),))
    outcome = only(trace(ruleset, Packet(OUTSIDE, POD, dport=80), NODE))
    assert outcome.verdict == "DROP" and outcome.path[-1].action == "policy DROP"


def test_a_reject_says_what_it_answers_with():
    said = tables(filter="-A FORWARD -d 10.1.2.3/32 -p tcp -j REJECT --reject-with tcp-reset\n"
                         "-A FORWARD -d 10.1.2.4/32 -j REJECT")
    reset = only(run(said, Packet(OUTSIDE, IPv4("10.1.2.3"), dport=80)))
    default = only(run(said, Packet(OUTSIDE, IPv4("10.1.2.4"), dport=80)))
    assert reset.verdict == default.verdict == "REJECT"
    assert reset.path[-1].action == "REJECT with tcp-reset"
    assert default.path[-1].action == "REJECT with icmp-port-unreachable"
