"""Plain-English explanations of rules: what each phrase says, for the seed dumps and for every rule form."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iptables_lens import kube, parse, parse_file
from iptables_lens.iptables.explain import RuleExplanation, explain_chain, explain_rule, statistic_probability
from iptables_lens.iptables.model import BUILTIN_CHAINS

from tests.conftest import SEED, SEED_DUMPS
from tests.dumpgen import random_dump

NGINX_SVC = "KUBE-SVC-OL4YPD43MBS7WVHD"
NGINX_EXT = "KUBE-EXT-OL4YPD43MBS7WVHD"
NGINX_SEP = "KUBE-SEP-ULMINKU752SDK7IQ"


@pytest.fixture(scope="module")
def after():
    return parse_file(SEED / "worker-1-after.rules")


def seed_rule(dump, table: str, chain: str, position: int) -> RuleExplanation:
    t = dump.table(table)
    return explain_rule(t.chain(chain).rules[position - 1], t)


def explained(rule_line: str, table: str = "filter", chains: tuple[str, ...] = ()) -> RuleExplanation:
    """The explanation of one rule line, in a table with the built-in chains and `chains` declared."""
    heads = [f":{c} ACCEPT [0:0]" for c in BUILTIN_CHAINS[table]] + [f":{c} - [0:0]" for c in chains]
    text = "\n".join([f"*{table}", *heads, rule_line, "COMMIT", ""])
    parsed = parse(text).table(table)
    chain = rule_line.split()[1]
    return explain_rule(parsed.chain(chain).rules[0], parsed)


def action_of(rule_line: str, table: str = "filter", chains: tuple[str, ...] = ()) -> str:
    return explained(rule_line, table, chains).action


# -- the seed dumps -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SEED_DUMPS, ids=lambda p: p.name)
def test_every_rule_of_a_seed_dump_is_explained_in_full(path):
    dump = parse_file(path)
    for table in dump.tables:
        for chain in table.chains:
            explanation = explain_chain(chain, table)
            assert len(explanation.rules) == len(chain.rules)
            for rule in explanation.rules:
                assert rule.action and rule.summary.endswith(".")
                assert not any("not explained" in text for text in (*rule.conditions, rule.action)), rule


def test_a_node_port_rule_is_tcp_to_the_port_then_the_external_chain(after):
    rule = seed_rule(after, "nat", "KUBE-NODEPORTS", 1)
    assert rule.conditions == ("only TCP", "only to port 30080")
    assert rule.action == f"jump to {NGINX_EXT}"
    assert rule.summary == f"Only TCP to port 30080: jump to {NGINX_EXT}."
    assert (rule.family, rule.service, rule.comment) == (
        "KUBE-NODEPORTS", "default/my-nginx-service", "default/my-nginx-service")


def test_kube_mark_masq_marks_the_packet_for_masquerading(after):
    rule = seed_rule(after, "nat", "KUBE-MARK-MASQ", 1)
    assert rule.conditions == ()
    assert rule.action == "marks the packet with 0x4000 so it is masqueraded on the way out"
    assert rule.summary == "Marks the packet with 0x4000 so it is masqueraded on the way out."


def test_a_service_chain_picks_its_first_endpoint_with_probability_one_half(after):
    rule = seed_rule(after, "nat", NGINX_SVC, 2)
    assert rule.conditions == ("picks this branch with probability 1/2",)
    assert rule.action == f"jump to {NGINX_SEP}"
    assert rule.summary == f"Picks this branch with probability 1/2: jump to {NGINX_SEP}."
    assert rule.comment == "default/my-nginx-service -> 10.244.1.2:80"
    assert (rule.family, rule.service) == ("KUBE-SVC", "default/my-nginx-service")


def test_a_service_chain_sends_its_last_endpoint_everything_left(after):
    rule = seed_rule(after, "nat", NGINX_SVC, 3)
    assert rule.conditions == ()
    assert rule.summary == "Jump to KUBE-SEP-S4QGHWZAQRZ7NT5K."


def test_a_service_chain_marks_cluster_ip_traffic_from_outside_the_pod_network(after):
    rule = seed_rule(after, "nat", NGINX_SVC, 1)
    assert rule.conditions == (
        "not from the pod network 10.244.0.0/16", "only to 10.96.118.136", "only TCP", "only to port 80")
    assert rule.summary == (
        "Only TCP to 10.96.118.136 port 80, not from the pod network 10.244.0.0/16: jump to KUBE-MARK-MASQ.")


def test_an_endpoint_chain_marks_a_pod_calling_itself_through_its_service(after):
    rule = seed_rule(after, "nat", NGINX_SEP, 1)
    assert rule.conditions == ("only from the endpoint's own address 10.244.1.2",)
    dnat = seed_rule(after, "nat", NGINX_SEP, 2)
    assert dnat.summary == "Only TCP: DNAT to 10.244.1.2:80."


def test_kube_postrouting_returns_unmarked_packets_clears_the_mark_and_masquerades(after):
    returns, clears, masquerades = (seed_rule(after, "nat", "KUBE-POSTROUTING", n) for n in (1, 2, 3))
    assert returns.conditions == ("not marked 0x4000 (mask 0x4000)",)
    assert returns.summary == "Not marked 0x4000 (mask 0x4000): returns to the calling chain."
    assert clears.action.startswith("clears the masquerade mark 0x4000")
    assert masquerades.action == (
        "masquerades: rewrites the source to the address of the interface the packet leaves by, "
        "with fully random source ports")
    assert masquerades.comment == "kubernetes service traffic requiring SNAT"


def test_kube_firewall_drops_outside_traffic_to_loopback_unless_the_connection_is_known(after):
    rule = seed_rule(after, "filter", "KUBE-FIREWALL", 1)
    assert rule.conditions == (
        "not from the loopback network 127.0.0.0/8",
        "only to the loopback network 127.0.0.0/8",
        "not related, established or destination-NATed connections",
    )
    assert rule.action == "drops"
    # A phrase with commas of its own makes the summary separate phrases with semicolons.
    assert rule.summary == (
        "Only to the loopback network 127.0.0.0/8; not from the loopback network 127.0.0.0/8; "
        "not related, established or destination-NATed connections: drops.")


def test_kube_services_hands_local_destinations_to_the_node_ports(after):
    rule = seed_rule(after, "nat", "KUBE-SERVICES", 6)
    assert rule.conditions == ("only if the destination is one of this node's addresses",)
    assert rule.summary == "Only if the destination is one of this node's addresses: jump to KUBE-NODEPORTS."


def test_a_chain_explanation_names_the_family_and_the_service_its_hash_stands_for(after):
    nat = after.table("nat")
    explanation = explain_chain(nat.chain(NGINX_SVC), nat)
    assert explanation.chain == NGINX_SVC
    assert explanation.family == "KUBE-SVC"
    assert explanation.family_description == kube.describe_family("KUBE-SVC")
    assert explanation.decoded is not None and explanation.decoded.verified
    assert explanation.decoded.service_port == "default/my-nginx-service"
    assert [r.conditions for r in explanation.rules][1] == ("picks this branch with probability 1/2",)


def test_a_chain_kube_proxy_did_not_write_has_no_family(after):
    nat = after.table("nat")
    explanation = explain_chain(nat.chain("PREROUTING"), nat)
    assert (explanation.family, explanation.family_description, explanation.decoded) == (None, None, None)


# -- criteria -------------------------------------------------------------------------------------------------


def test_a_comment_is_not_a_condition():
    rule = explained('-A INPUT -m comment --comment "ssh from the office" -j ACCEPT')
    assert rule.conditions == ()
    assert rule.comment == "ssh from the office"
    assert rule.summary == "Accepts."


def test_negated_criteria_say_not():
    rule = explained("-A INPUT ! -s 10.0.0.0/8 ! -i lo ! -p udp -j DROP")
    assert rule.conditions == ("not from 10.0.0.0/8", "not arriving on interface lo", "not UDP")


def test_a_host_address_is_shown_without_its_prefix_length():
    assert explained("-A OUTPUT -d 192.0.2.7/32 -j ACCEPT").conditions == ("only to 192.0.2.7",)


def test_an_interface_wildcard_reads_as_a_name_prefix():
    rule = explained("-A FORWARD -i veth+ -o eth0 -j ACCEPT")
    assert rule.conditions == ("only arriving on an interface whose name starts with veth",
                               "only leaving by interface eth0")
    assert rule.summary == ("Only arriving on an interface whose name starts with veth leaving by interface eth0: "
                            "accepts.")


def test_fragments_are_named_as_such():
    assert explained("-A INPUT -f -j DROP").conditions == ("only second and later fragments",)


def test_a_protocol_number_without_a_name_is_shown_as_a_number():
    assert explained("-A INPUT -p 47 -j ACCEPT").conditions == ("only protocol 47",)


# -- match modules --------------------------------------------------------------------------------------------


def test_a_port_range_reads_from_low_to_high():
    rule = explained("-A INPUT -p tcp -m tcp --dport 30000:32767 --sport 1024: -j ACCEPT")
    assert rule.conditions == ("only TCP", "only to ports 30000 to 32767", "only from ports 1024 to 65535")


def test_a_negated_port_says_not():
    rule = explained("-A INPUT -p udp -m udp ! --dport 53 -j DROP")
    assert rule.conditions == ("only UDP", "not to port 53")
    assert rule.summary == "Only UDP, not to port 53: drops."


def test_multiport_lists_its_ports_and_ranges():
    rule = explained("-A INPUT -p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT")
    assert rule.conditions == ("only TCP", "only to ports 80, 443 or 8000 to 8080")
    either = explained("-A INPUT -p tcp -m multiport --ports 22 -j ACCEPT")
    assert either.conditions == ("only TCP", "only from or to port 22")


def test_tcp_flags_and_syn_are_explained():
    syn = explained("-A INPUT -p tcp -m tcp --syn -j ACCEPT")
    assert syn.conditions[1] == "only connection openings (SYN set, ACK, RST and FIN clear)"
    flags = explained("-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT")
    assert flags.conditions[1] == "only if exactly SYN of the TCP flags FIN,SYN,RST,ACK are set"


def test_conntrack_new_means_new_connections():
    assert explained("-A INPUT -m conntrack --ctstate NEW -j ACCEPT").conditions == ("only new connections",)


@pytest.mark.parametrize(("states", "phrase"), [
    ("RELATED,ESTABLISHED", "only related or established connections"),
    ("DNAT", "only destination-NATed connections"),
    ("SNAT", "only source-NATed connections"),
    ("INVALID", "only invalid packets (conntrack cannot tie them to a connection)"),
    ("UNTRACKED", "only untracked packets (exempt from connection tracking)"),
    ("NEW,INVALID", "only packets in conntrack state new or invalid"),
])
def test_conntrack_states_are_named_including_dnat_and_snat(states, phrase):
    assert explained(f"-A INPUT -m conntrack --ctstate {states} -j ACCEPT").conditions == (phrase,)


def test_a_negated_conntrack_state_says_not():
    rule = explained("-A INPUT -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP")
    assert rule.conditions == ("not related or established connections",)


def test_the_old_state_module_reads_like_conntrack():
    assert explained("-A INPUT -m state --state ESTABLISHED -j ACCEPT").conditions == ("only established connections",)


def test_conntrack_original_destination_is_explained():
    rule = explained("-A FORWARD -m conntrack --ctorigdst 10.96.0.1/32 --ctorigdstport 443 -j ACCEPT")
    assert rule.conditions == ("only connections originally to 10.96.0.1", "only connections originally to port 443")


def test_a_mark_match_shows_value_and_mask():
    rule = explained("-A FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT")
    assert rule.conditions == ("only packets marked 0x4000 (mask 0x4000)",)
    assert explained("-A FORWARD -m mark --mark 0x1 -j ACCEPT").conditions == ("only packets marked 0x1",)


def test_a_connmark_match_is_about_the_connection():
    rule = explained("-A FORWARD -m connmark ! --mark 0x1/0xff -j ACCEPT")
    assert rule.conditions == ("not in a connection marked 0x1 (mask 0xff)",)


def test_addrtype_local_means_one_of_this_nodes_addresses():
    rule = explained("-A PREROUTING -m addrtype --dst-type LOCAL -j ACCEPT", "nat")
    assert rule.conditions == ("only if the destination is one of this node's addresses",)


def test_a_negated_addrtype_says_the_address_is_not_of_that_type():
    rule = explained("-A POSTROUTING -m addrtype ! --dst-type LOCAL -j ACCEPT", "nat")
    assert rule.conditions == ("only if the destination is not one of this node's addresses",)
    both = explained("-A INPUT -m addrtype --src-type BROADCAST,MULTICAST -j DROP")
    assert both.conditions == ("only if the source is a broadcast address or a multicast address",)


@pytest.mark.parametrize(("printed", "fraction"), [
    ("0.50000000000", "1/2"),
    ("0.33333333349", "1/3"),
    ("0.25000000000", "1/4"),
    ("0.20000000019", "1/5"),
    ("0.16666666651", "1/6"),
    ("0.14285714272", "1/7"),
    ("0.10000000009", "1/10"),
    ("1.00000000000", "1"),
])
def test_a_random_statistic_reads_as_the_fraction_the_kernel_keeps(printed, fraction):
    rule = explained(f"-A INPUT -m statistic --mode random --probability {printed} -j ACCEPT")
    assert rule.conditions == (f"picks this branch with probability {fraction}",)


def test_the_probability_is_the_simplest_fraction_within_one_kernel_step():
    assert statistic_probability("0.33333333349") == Fraction(1, 3)
    # 0.3 is not a kernel value; the nearest kept value is 644245094 / 2**31, and 3/10 lies within a step.
    assert statistic_probability("0.3") == Fraction(3, 10)
    kept = Fraction(123456789, 2**31)
    assert abs(statistic_probability(f"{float(kept):.11f}") - kept) <= Fraction(1, 2**31)


def test_a_negated_random_statistic_picks_the_other_side():
    rule = explained("-A INPUT -m statistic --mode random ! --probability 0.25000000000 -j ACCEPT")
    assert rule.conditions == ("picks this branch with probability 3/4 (the printed 1/4, negated)",)


def test_an_nth_statistic_picks_one_packet_in_n():
    rule = explained("-A INPUT -m statistic --mode nth --every 3 --packet 0 -j ACCEPT")
    assert rule.conditions == ("picks one packet in every 3 (the counter starts at 0)",)


def test_recent_rcheck_with_a_service_endpoint_list_is_session_affinity():
    sep = "KUBE-SEP-AAAAAAAAAAAAAAAA"
    rule = explained(
        f'-A KUBE-SVC-BBBBBBBBBBBBBBBB -m comment --comment "default/web -> 10.244.1.2:80" -m recent --name {sep} '
        f"--mask 255.255.255.255 --rsource --rcheck --seconds 10800 --reap -j {sep}",
        "nat", chains=("KUBE-SVC-BBBBBBBBBBBBBBBB", sep),
    )
    assert rule.conditions == (
        f"only if the source address was seen in the recent list {sep} in the last 10800 seconds (3 hours) "
        "for session affinity",
    )


def test_recent_set_records_the_client_for_session_affinity():
    sep = "KUBE-SEP-AAAAAAAAAAAAAAAA"
    rule = explained(
        f'-A {sep} -p tcp -m comment --comment "default/web" -m recent --set --name {sep} --mask 255.255.255.255 '
        "--rsource -m tcp -j DNAT --to-destination 10.244.1.2:80",
        "nat", chains=(sep,),
    )
    assert rule.conditions == ("only TCP", f"records the source address in the recent list {sep} for session affinity")
    assert rule.action == "DNAT to 10.244.1.2:80"


@pytest.mark.parametrize(("icmp_type", "phrase"), [
    ("8", "only ICMP type 8 (echo request)"),
    ("3/4", "only ICMP type 3 code 4 (fragmentation needed)"),
    ("any", "only ICMP of any type"),
    ("echo-request", "only ICMP echo request"),
])
def test_icmp_types_are_named(icmp_type, phrase):
    rule = explained(f"-A INPUT -p icmp -m icmp --icmp-type {icmp_type} -j ACCEPT")
    assert rule.conditions == ("only ICMP", phrase)


def test_limit_reads_as_a_rate_with_its_burst():
    rule = explained("-A INPUT -m limit --limit 5/min --limit-burst 10 -j LOG")
    assert rule.conditions == ("only up to 5 packets per minute (in bursts of up to 10)",)


def test_an_ipset_match_is_shown_as_written_and_marked_not_explained():
    rule = explained("-A INPUT -m set --match-set blocked src -j DROP")
    assert rule.conditions == ("-m set --match-set blocked src (not explained)",)
    assert rule.summary == "-m set --match-set blocked src (not explained): drops."


def test_an_unknown_option_of_a_known_module_is_shown_as_not_explained():
    rule = explained("-A INPUT -p sctp -m sctp --chunk-types any INIT --dport 9 -j ACCEPT")
    assert rule.conditions == ("only SCTP", "only to port 9", "-m sctp --chunk-types any INIT (not explained)")


# -- targets --------------------------------------------------------------------------------------------------


def test_jump_and_goto_differ_in_coming_back():
    assert action_of("-A INPUT -j MINE", chains=("MINE",)) == "jump to MINE"
    assert action_of("-A INPUT -g MINE", chains=("MINE",)) == "goes to MINE and does not come back here"


def test_return_goes_back_to_the_calling_chain():
    assert action_of("-A MINE -j RETURN", chains=("MINE",)) == "returns to the calling chain"


def test_return_in_a_built_in_chain_leaves_it_to_the_policy():
    assert action_of("-A INPUT -j RETURN") == "ends the built-in chain INPUT: its policy ACCEPT decides"


def test_a_rule_without_a_target_only_counts():
    assert action_of("-A INPUT -p tcp") == "counts the packet (no target) and goes on to the next rule"


@pytest.mark.parametrize(("option", "action"), [
    ("--set-xmark 0x4000/0x4000", "sets bits 0x4000 of the packet mark"),
    ("--set-xmark 0x1/0xffffffff", "sets the packet mark to 0x1"),
    ("--set-xmark 0x0/0xff", "clears bits 0xff of the packet mark"),
    ("--set-xmark 0x4000/0x0", "flips bits 0x4000 of the packet mark (XOR)"),
    ("--set-xmark 0x10/0xff", "sets the bits 0xff of the packet mark to 0x10"),
    ("--set-xmark 0x101/0xff", "sets the packet mark to (packet mark AND NOT 0xff) XOR 0x101"),
    ("--set-mark 0x1", "sets the packet mark to 0x1"),
    ("--set-mark 0x1/0xf", "sets the bits 0xf of the packet mark to 0x1"),
    ("--and-mark 0xff", "keeps only bits 0xff of the packet mark (AND)"),
    ("--or-mark 0x100", "sets bits 0x100 of the packet mark (OR)"),
    ("--xor-mark 0x2", "flips bits 0x2 of the packet mark (XOR)"),
], ids=lambda v: v if v.startswith("--") else None)
def test_every_mark_form_says_what_happens_to_the_mark(option, action):
    assert action_of(f"-A FORWARD -j MARK {option}", "mangle") == action


@pytest.mark.parametrize(("option", "action"), [
    ("--set-xmark 0x1/0xffffffff", "sets the connection mark to 0x1"),
    ("--set-mark 0x2", "sets the connection mark to 0x2"),
    ("--and-mark 0xf", "keeps only bits 0xf of the connection mark (AND)"),
    ("--or-mark 0x1", "sets bits 0x1 of the connection mark (OR)"),
    ("--xor-mark 0x1", "flips bits 0x1 of the connection mark (XOR)"),
    ("--save-mark", "copies the packet mark to the connection mark"),
    ("--restore-mark --nfmask 0xff --ctmask 0xff", "copies the connection mark to the packet mark (nfmask 0xff, ctmask 0xff)"),
], ids=lambda v: v if v.startswith("--") else None)
def test_every_connmark_form_says_what_happens_to_the_connection_mark(option, action):
    assert action_of(f"-A FORWARD -j CONNMARK {option}", "mangle") == action


def test_the_drop_mark_chain_marks_for_dropping():
    rule = "-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000"
    assert action_of(rule, "nat", ("KUBE-MARK-DROP",)) == "marks the packet with 0x8000 so it is dropped"


def test_dnat_names_the_new_destination():
    rule = "-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.2:8080"
    assert action_of(rule, "nat") == "DNAT to 10.244.1.2:8080"
    port_only = "-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination :8080"
    assert action_of(port_only, "nat") == "DNAT to port 8080 (address unchanged)"


def test_snat_names_the_new_source():
    rule = "-A POSTROUTING -s 10.0.0.0/8 -j SNAT --to-source 192.0.2.1 --random-fully"
    assert action_of(rule, "nat") == "SNAT to 192.0.2.1, with fully random source ports"


def test_masquerade_rewrites_to_the_outgoing_interface_address():
    assert action_of("-A POSTROUTING -o eth0 -j MASQUERADE", "nat") == (
        "masquerades: rewrites the source to the address of the interface the packet leaves by")


def test_redirect_sends_the_packet_to_this_node():
    rule = "-A PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080"
    assert action_of(rule, "nat") == "redirects to this node (the address of the interface it came in by), port 8080"


@pytest.mark.parametrize(("reject_with", "reply"), [
    ("--reject-with tcp-reset", "a TCP reset"),
    ("--reject-with icmp-port-unreachable", "ICMP port unreachable"),
    ("--reject-with icmp-host-prohibited", "ICMP host prohibited"),
    ("", "ICMP port unreachable"),
])
def test_reject_says_what_it_answers_with(reject_with, reply):
    rule = f"-A INPUT -p tcp -j REJECT {reject_with}".rstrip()
    assert action_of(rule) == f"rejects: drops and answers with {reply}"


def test_log_says_where_and_that_the_packet_goes_on():
    rule = '-A INPUT -j LOG --log-prefix "dropped: " --log-level 6'
    assert action_of(rule) == 'logs the packet to the kernel log with prefix "dropped: " at level info, and goes on to the next rule'


def test_nflog_names_the_group():
    rule = '-A INPUT -j NFLOG --nflog-group 5 --nflog-prefix "x"'
    assert action_of(rule) == 'sends a copy of the packet to netlink log group 5 with prefix "x", and goes on to the next rule'


def test_notrack_and_ct_notrack_exempt_the_packet_from_conntrack():
    assert action_of("-A PREROUTING -j NOTRACK", "raw") == "exempts the packet from connection tracking"
    assert action_of("-A PREROUTING -j CT --notrack", "raw") == "exempts the packet from connection tracking"
    assert action_of("-A PREROUTING -p tcp -j CT --helper ftp", "raw") == "assigns the connection tracking helper ftp"


def test_an_unknown_target_is_shown_as_written_and_marked_not_explained():
    rule = "-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"
    assert action_of(rule, "mangle") == "-j TCPMSS --clamp-mss-to-pmtu (not explained)"


# -- the summary and robustness -------------------------------------------------------------------------------


def test_the_summary_leads_with_the_protocol_and_folds_address_and_port_into_it():
    rule = explained("-A INPUT -s 192.0.2.0/24 -p tcp -m conntrack --ctstate NEW -m tcp --dport 22 -j ACCEPT")
    assert rule.summary == "Only TCP from 192.0.2.0/24 to port 22, only new connections: accepts."


def test_the_summary_groups_addresses_and_ports_by_direction():
    rule = explained("-A INPUT -s 10.0.0.1/32 -d 10.0.0.2/32 -p tcp -m tcp --sport 5 --dport 80 -j ACCEPT")
    assert rule.summary == "Only TCP from 10.0.0.1 port 5 to 10.0.0.2 port 80: accepts."


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_rule_of_a_generated_dump_is_explained_without_error(seed):
    dump = parse(random_dump(random.Random(seed)))
    for table in dump.tables:
        for chain in table.chains:
            for rule in explain_chain(chain, table).rules:
                assert rule.summary[:1].isupper() or rule.summary[:1] == "-"
                assert rule.summary.endswith(".")
