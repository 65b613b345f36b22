"""How the lab reads the kernel's trace of an nft ruleset: `nft -a monitor trace` events as kernel steps, rule
handles as positions, and what the kernel prints for each kind of rule (checked in namespaces, on this kernel
and nft)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from iptables_lens.lab.kernel_trace import (
    KernelStep,
    TracedNames,
    base_chain_hooks,
    chain_handles,
    first_packet_steps,
)
from iptables_lens.lab.tracing import TRACE_TABLE, trace_nft, trace_table
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.nft import parse_ruleset
from iptables_lens.scenario.model import Flow

# A kube-proxy-like ruleset: chain names with "/", "__" and ".", maps, a numgen verdict map, a reject, a rule
# without a verdict whose comment looks like the end of an event, a policy, and an inet table beside it.
SERVICE = "service-ABCDEFGH-default/web/tcp/"
ENDPOINTS = ("endpoint-AAAAAAAA-default/web/tcp/__10.98.0.2/8081", "endpoint-BBBBBBBB-default/web/tcp/__10.98.0.2/8082")
RULESET = f"""\
table ip kube-proxy {{
	map service-ips {{
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = {{ 10.99.0.1 . tcp . 80 : goto {SERVICE}, 10.99.0.2 . tcp . 80 : jump no-verdict }}
	}}
	map no-endpoint-services {{
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = {{ 10.99.0.3 . tcp . 80 : goto reject-chain }}
	}}
	chain nat-prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}}
	chain services {{
		ip daddr . meta l4proto . th dport vmap @service-ips
	}}
	chain {SERVICE} {{
		ip daddr 10.99.0.1 jump mark-for-masquerade
		numgen random mod 2 vmap {{ 0 : goto {ENDPOINTS[0]}, 1 : goto {ENDPOINTS[1]} }}
	}}
	chain mark-for-masquerade {{
		meta mark set meta mark | 0x00004000
	}}
	chain {ENDPOINTS[0]} {{
		meta l4proto tcp dnat to 10.98.0.2:8081
	}}
	chain {ENDPOINTS[1]} {{
		meta l4proto tcp dnat to 10.98.0.2:8082
	}}
	chain no-verdict {{
		counter comment "no verdict (verdict accept) # handle 99"
	}}
	chain filter-forward {{
		type filter hook forward priority filter; policy accept;
		ct state new jump service-endpoints-check
	}}
	chain service-endpoints-check {{
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}}
	chain reject-chain {{
		reject
	}}
	chain nat-postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00000000 return
		masquerade fully-random
	}}
}}
table inet fw.v1 {{
	chain forward {{
		type filter hook forward priority filter - 1; policy accept;
		meta l4proto tcp counter
	}}
}}
"""
CLIENT, NODE = "10.98.0.2", "10.98.0.1"


def _steps(*steps: tuple) -> list[KernelStep]:
    return [KernelStep(*s) for s in steps]


# -- reading the monitor's lines (no root) ------------------------------------------------------------------

# What nft 1.0.6 printed on Linux 6.18 for a packet to 10.99.0.1:80 (packet lines shortened), with the lab's
# trace table first. A policy event ends with a space.
END = " "
MONITOR = f"""\
trace id 2d1fa0c3 inet {TRACE_TABLE} trace packet: iif "eth0" ip saddr 10.98.0.2 ip daddr 10.99.0.1 tcp dport 80
trace id 2d1fa0c3 inet {TRACE_TABLE} trace rule ip saddr 10.98.0.2 tcp flags syn / fin,syn,rst,ack meta nftrace set 1 # handle 2 (verdict continue)
trace id 2d1fa0c3 inet {TRACE_TABLE} trace policy accept{END}
trace id 2d1fa0c3 ip kube-proxy nat-prerouting packet: iif "eth0" ip saddr 10.98.0.2 ip daddr 10.99.0.1
trace id 2d1fa0c3 ip kube-proxy nat-prerouting rule jump services # handle 17 (verdict jump services)
trace id 2d1fa0c3 ip kube-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips # handle 18 (verdict goto {SERVICE})
trace id 2d1fa0c3 ip kube-proxy {SERVICE} rule ip daddr 10.99.0.1 jump mark-for-masquerade # handle 19 (verdict jump mark-for-masquerade)
trace id 2d1fa0c3 ip kube-proxy mark-for-masquerade rule meta mark set meta mark | 0x00004000 # handle 22 (verdict continue)
trace id 2d1fa0c3 ip kube-proxy {SERVICE} rule numgen random mod 2 vmap {{ 0 : goto {ENDPOINTS[0]}, 1 : goto {ENDPOINTS[1]} }} # handle 21 (verdict goto {ENDPOINTS[1]})
trace id 2d1fa0c3 ip kube-proxy {ENDPOINTS[1]} rule meta l4proto tcp dnat to 10.98.0.2:8082 # handle 24 (verdict accept)
trace id 2d1fa0c3 inet fw.v1 forward packet: iif "eth0" oif "eth0" ip saddr 10.98.0.2 ip daddr 10.98.0.2
trace id 2d1fa0c3 inet fw.v1 forward rule meta l4proto tcp counter packets 0 bytes 0 # handle 2 (verdict continue)
trace id 2d1fa0c3 inet fw.v1 forward policy accept meta mark 0x00004000{END}
trace id 2d1fa0c3 ip kube-proxy filter-forward rule ct state new jump service-endpoints-check # handle 26 (verdict jump service-endpoints-check)
trace id 2d1fa0c3 ip kube-proxy filter-forward policy accept meta mark 0x00004000{END}
trace id 2d1fa0c3 ip kube-proxy nat-postrouting rule masquerade fully-random # handle 31 (verdict accept)
trace id 5e0c11aa ip kube-proxy nat-prerouting rule jump services # handle 17 (verdict jump services)
"""


KP = "ip kube-proxy"
HANDLES = {(KP, "nat-prerouting"): [17], (KP, "services"): [18], (KP, SERVICE): [19, 21], (KP, "mark-for-masquerade"): [22],
           (KP, ENDPOINTS[0]): [23], (KP, ENDPOINTS[1]): [24], (KP, "no-verdict"): [27], (KP, "filter-forward"): [26],
           (KP, "service-endpoints-check"): [28], (KP, "reject-chain"): [29], (KP, "nat-postrouting"): [30, 31],
           ("inet fw.v1", "forward"): [2]}


def test_the_handles_of_an_nft_listing_are_read_by_the_parser_with_tables_named_by_family():
    listing = RULESET.replace("jump services\n", "jump services # handle 5\n").replace(
        "masquerade fully-random\n", "masquerade fully-random # handle 40\n")
    handles = chain_handles(listing, None, leave_out=frozenset({"inet fw.v1"}))
    assert handles[(KP, "nat-prerouting")] == [5]
    assert handles[(KP, ENDPOINTS[0])] == []  # a rule listed without its handle has none to name it by
    assert ("inet fw.v1", "forward") not in handles
    # An iptables dump's tables are named bare, of one family.
    bare = chain_handles(listing, 4)
    assert bare[("kube-proxy", "nat-prerouting")] == [5] and not any(t.startswith("inet") for t, _ in bare)


def test_nft_events_become_kernel_steps_in_the_tracers_terms():
    hooks = base_chain_hooks(parse_ruleset(RULESET))
    tables = TracedNames.of(parse_ruleset(RULESET)).tables
    steps = first_packet_steps(MONITOR, HANDLES, tables=tables, hooks=hooks)
    assert steps == _steps(
        ("PREROUTING", "ip kube-proxy", "nat-prerouting", 1, "JUMP:services"),
        ("PREROUTING", "ip kube-proxy", "services", 1, f"GOTO:{SERVICE}"),
        ("PREROUTING", "ip kube-proxy", SERVICE, 1, "JUMP:mark-for-masquerade"),
        ("PREROUTING", "ip kube-proxy", "mark-for-masquerade", 1, "CONTINUE"),
        ("PREROUTING", "ip kube-proxy", SERVICE, 2, f"GOTO:{ENDPOINTS[1]}"),
        ("PREROUTING", "ip kube-proxy", ENDPOINTS[1], 1, "ACCEPT"),
        ("FORWARD", "inet fw.v1", "forward", 1, "CONTINUE"),
        ("FORWARD", "inet fw.v1", "forward", None, "policy ACCEPT"),
        ("FORWARD", "ip kube-proxy", "filter-forward", 1, "JUMP:service-endpoints-check"),
        ("FORWARD", "ip kube-proxy", "filter-forward", None, "policy ACCEPT"),
        ("POSTROUTING", "ip kube-proxy", "nat-postrouting", 2, "ACCEPT"),
    )


def test_the_handle_is_the_last_on_the_line_whatever_a_comment_says():
    line = ("trace id 0a ip kube-proxy no-verdict rule counter packets 0 bytes 0 comment "
            '"no verdict (verdict accept) # handle 99" # handle 27 (verdict continue)')
    [step] = first_packet_steps(line, HANDLES, hooks=base_chain_hooks(parse_ruleset(RULESET)))
    assert (step.chain, step.rule, step.verdict) == ("no-verdict", 1, "CONTINUE")


def test_a_rule_nft_cannot_name_is_read_by_its_handle_and_one_no_listing_shows_is_an_error():
    handles = HANDLES
    [step] = first_packet_steps("trace id 0b ip kube-proxy services unknown rule handle 18 (verdict drop)", handles)
    assert (step.table, step.chain, step.rule, step.verdict) == ("ip kube-proxy", "services", 1, "DROP")
    with pytest.raises(ValueError, match="handle 77, which `nft -a list` does not show"):
        first_packet_steps("trace id 0c ip kube-proxy services rule drop # handle 77 (verdict drop)", handles)


def test_an_ipv6_flow_of_an_iptables_dump_names_its_tables_bare():
    handles = {("nat", "PREROUTING"): [3], ("nat", "KUBE-SERVICES"): [9, 10]}
    output = ("trace id 1 ip6 nat PREROUTING rule jump KUBE-SERVICES # handle 3 (verdict jump KUBE-SERVICES)\n"
              "trace id 1 ip6 nat KUBE-SERVICES rule meta l4proto tcp # handle 10 (verdict continue)\n"
              "trace id 1 ip6 nat PREROUTING policy accept meta mark 0x00004000 \n")
    assert first_packet_steps(output, handles, tables=frozenset({"nat"})) == _steps(
        ("PREROUTING", "nat", "PREROUTING", 1, "JUMP:KUBE-SERVICES"),
        ("PREROUTING", "nat", "KUBE-SERVICES", 2, "CONTINUE"),
        ("PREROUTING", "nat", "PREROUTING", None, "policy ACCEPT"),
    )


def test_the_trace_table_sets_nftrace_on_the_first_packet_only_and_uses_no_conntrack():
    flow = Flow(id="f", title="t", node="n", client="c", src=CLIENT, dst="10.99.0.1", dport=80)
    text = trace_table(flow, 42000, local=False)
    assert f"delete table inet {TRACE_TABLE}" in text and "priority raw - 50" in text and "hook prerouting" in text
    assert "tcp sport 42000 tcp dport 80 tcp flags & (fin | syn | rst | ack) == syn meta nftrace set 1" in text
    assert " ct " not in text
    assert "hook output" in trace_table(flow, 42000, local=True)
    udp = trace_table(flow.model_copy(update={"protocol": "udp"}), 42000, local=False)
    assert "udp dport 80 meta nftrace set 1" in udp


# -- what the kernel prints (root) --------------------------------------------------------------------------

kernel = pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))


@pytest.fixture(scope="module")
def wired():
    """A client and a node, 10.98.0.2 and 10.98.0.1 on a veth, the node routing 10.99.0.0/16 back to the
    client (so packets no rule translates are forwarded too)."""
    if can_run_kernel_lab() is not None:
        pytest.skip(str(can_run_kernel_lab()))
    with Namespace("nftclient") as client, Namespace("nftnode") as node:
        made = subprocess.run(["ip", "link", "add", "eth0", "netns", client.name, "type", "veth", "peer", "name",
                               "eth0", "netns", node.name], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        for ns, address in ((client, CLIENT), (node, NODE)):
            for argv in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{address}/16", "dev", "eth0"],
                         ["ip", "link", "set", "eth0", "up"]):
                assert ns.run(argv).ok
        assert client.run(["ip", "route", "add", "10.99.0.0/16", "via", NODE]).ok
        assert node.run(["ip", "route", "add", "10.99.0.0/16", "via", CLIENT]).ok
        assert node.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]).ok
        yield client, node


def _traced(client: Namespace, node: Namespace, ruleset: str, dst: str, sport: int) -> list[KernelStep]:
    """Load `ruleset` on the node and trace one connection from the client to dst:80, as the lab does."""
    loaded = node.run(["nft", "-f", "-"], input=f"flush ruleset\n{ruleset}")
    assert loaded.ok, loaded.stderr
    flow = Flow(id="f", title="t", node="n", client="c", src=CLIENT, dst=dst, dport=80)
    send = [sys.executable, "-m", "iptables_lens.lab.agents", "client", "tcp", CLIENT, dst, "80", "1", str(sport), "1"]
    trace = trace_nft(node, flow, sport, False, lambda: client.run(send))
    names = TracedNames.of(parse_ruleset(ruleset))
    assert f"inet {TRACE_TABLE}" in trace.output and node.run(["nft", "list", "tables"]).stdout.count(TRACE_TABLE) == 0
    return first_packet_steps(trace.output, trace.handles, trace.skip, names.tables, names.hooks)


@pytest.mark.kernel
@kernel
def test_the_kernel_names_the_numgen_branch_and_accepts_with_a_nat_statement(wired):
    client, node = wired
    seen = {}
    for sport in range(43000, 43040):
        steps = _traced(client, node, RULESET, "10.99.0.1", sport)
        seen[steps[4].verdict] = steps
        if len(seen) == 2:
            break
    assert sorted(seen) == [f"GOTO:{e}" for e in ENDPOINTS]
    for endpoint in ENDPOINTS:
        assert seen[f"GOTO:{endpoint}"] == _steps(
            ("PREROUTING", "ip kube-proxy", "nat-prerouting", 1, "JUMP:services"),
            ("PREROUTING", "ip kube-proxy", "services", 1, f"GOTO:{SERVICE}"),
            ("PREROUTING", "ip kube-proxy", SERVICE, 1, "JUMP:mark-for-masquerade"),
            ("PREROUTING", "ip kube-proxy", "mark-for-masquerade", 1, "CONTINUE"),
            ("PREROUTING", "ip kube-proxy", SERVICE, 2, f"GOTO:{endpoint}"),
            ("PREROUTING", "ip kube-proxy", endpoint, 1, "ACCEPT"),  # dnat to: the nat chain accepts
            ("FORWARD", "inet fw.v1", "forward", 1, "CONTINUE"),
            ("FORWARD", "inet fw.v1", "forward", None, "policy ACCEPT"),
            # The lookup in @no-endpoint-services finds nothing: no event, back to filter-forward's end.
            ("FORWARD", "ip kube-proxy", "filter-forward", 1, "JUMP:service-endpoints-check"),
            ("FORWARD", "ip kube-proxy", "filter-forward", None, "policy ACCEPT"),
            ("POSTROUTING", "ip kube-proxy", "nat-postrouting", 2, "ACCEPT"),  # masquerade accepts
        )


@pytest.mark.kernel
@kernel
def test_the_kernel_traces_a_rule_without_verdict_a_return_and_a_policy(wired):
    client, node = wired
    assert _traced(client, node, RULESET, "10.99.0.2", 43100) == _steps(
        ("PREROUTING", "ip kube-proxy", "nat-prerouting", 1, "JUMP:services"),
        ("PREROUTING", "ip kube-proxy", "services", 1, "JUMP:no-verdict"),  # the vmap's jump
        ("PREROUTING", "ip kube-proxy", "no-verdict", 1, "CONTINUE"),  # a counter: goes on
        # no-verdict and services run out of rules without an event; nat-prerouting's policy ends the hook.
        ("PREROUTING", "ip kube-proxy", "nat-prerouting", None, "policy ACCEPT"),
        ("FORWARD", "inet fw.v1", "forward", 1, "CONTINUE"),
        ("FORWARD", "inet fw.v1", "forward", None, "policy ACCEPT"),
        ("FORWARD", "ip kube-proxy", "filter-forward", 1, "JUMP:service-endpoints-check"),
        ("FORWARD", "ip kube-proxy", "filter-forward", None, "policy ACCEPT"),
        ("POSTROUTING", "ip kube-proxy", "nat-postrouting", 1, "RETURN"),  # a return in a base chain...
        ("POSTROUTING", "ip kube-proxy", "nat-postrouting", None, "policy ACCEPT"),  # ...ends it by its policy
    )


@pytest.mark.kernel
@kernel
def test_the_kernel_traces_a_reject_as_a_drop(wired):
    client, node = wired
    steps = _traced(client, node, RULESET, "10.99.0.3", 43200)
    assert steps[-3:] == _steps(
        ("FORWARD", "ip kube-proxy", "filter-forward", 1, "JUMP:service-endpoints-check"),
        ("FORWARD", "ip kube-proxy", "service-endpoints-check", 1, "GOTO:reject-chain"),
        ("FORWARD", "ip kube-proxy", "reject-chain", 1, "DROP"),
    )


NAT_ONLY = """\
table ip t {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		counter
	}
}
"""


@pytest.mark.kernel
@kernel
def test_a_nat_chain_sees_packets_only_once_a_rule_uses_conntrack_and_the_trace_table_uses_none(wired):
    client, node = wired
    # With the lab's trace table the only other table, the nat chain sees nothing: conntrack stays off.
    assert _traced(client, node, NAT_ONLY, "10.99.0.4", 43300) == []
    with_ct = NAT_ONLY + "table ip f {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n" \
                         "\t\tct state new counter\n\t}\n}\n"
    assert _traced(client, node, with_ct, "10.99.0.4", 43301) == _steps(
        ("PREROUTING", "ip t", "pre", 1, "CONTINUE"),
        ("PREROUTING", "ip t", "pre", None, "policy ACCEPT"),
        ("FORWARD", "ip f", "forward", 1, "CONTINUE"),
        ("FORWARD", "ip f", "forward", None, "policy ACCEPT"),
    )


def _table(name: str, kind: str) -> str:
    return (f"table ip {name} {{\n\tchain c {{\n\t\ttype {kind} hook prerouting priority 0; policy accept;\n"
            "\t\tct state new counter\n\t}\n}\n")


@pytest.mark.kernel
@kernel
@pytest.mark.parametrize("kind", ["nat", "filter"])
def test_at_one_priority_the_chain_registered_last_runs_first_in_the_kernel_and_the_tracer(wired, kind):
    from iptables_lens.dialects import base_chains
    from iptables_lens.trace.walk import at_hooks

    client, node = wired
    ruleset = _table("a", kind) + _table("b", kind)  # one transaction: a is registered, then b
    kernel_order = [s.table for s in _traced(client, node, ruleset, "10.99.0.5", 43400) if s.rule is not None]
    assert kernel_order == ["ip b", "ip a"]
    assert [c.table for c in at_hooks(base_chains(parse_ruleset(ruleset)))["PREROUTING"]] == kernel_order


# -- the nftables scenario's recordings (no root) -------------------------------------------------------------


def test_an_nft_recording_replays_and_a_hop_the_tracer_does_not_take_is_reported():
    from iptables_lens.lab.run import recording_problems
    from iptables_lens.scenario import load_scenario
    from iptables_lens.scenario.flows import recording_path

    from tests.conftest import REPO_ROOT

    scenario = load_scenario(REPO_ROOT / "dumps" / "kind-nodeport-nftables")
    flow = next(f for f in scenario.meta.flows if f.id == "outside-to-nodeport")
    text = recording_path(scenario, flow).read_text()
    assert recording_problems(scenario, flow, text) == []
    # The kernel's marking for masquerade, had it not happened: the next hops no longer line up.
    unmarked = re.sub(r"(rule jump mark-for-masquerade # handle \d+) \(verdict jump mark-for-masquerade\)",
                      r"\1 (verdict continue)", text)
    assert unmarked != text
    problems = recording_problems(scenario, flow, unmarked)
    assert len(problems) == 2 and all("!! tracer: PREROUTING ip kube-proxy external-PIDQJHUF" in p for p in problems)


@kernel
def test_a_returning_client_is_put_in_its_nft_affinity_set_and_the_others_are_emptied():
    from iptables_lens.lab.affinity import recorded_lists, reset_recent
    from iptables_lens.trace import IPv4

    text = """table ip kube-proxy {
	set affinity-a {
		type ipv4_addr
		flags dynamic,timeout
		timeout 3h
		elements = { 10.0.0.9 expires 1h }
	}
	set affinity-b {
		type ipv4_addr
		flags dynamic,timeout
		timeout 3h
	}
	chain endpoint-a {
		update @affinity-a { ip saddr }
	}
	chain endpoint-b {
		update @affinity-b { ip saddr }
	}
}
"""
    lists = recorded_lists(parse_ruleset(text, "affinity.nft"))
    assert lists == {"ip kube-proxy affinity-a", "ip kube-proxy affinity-b"}
    with Namespace("affinity") as node:
        assert node.run(["nft", "-f", "-"], input=text).ok
        reset_recent(node, lists, frozenset({"affinity-b"}), IPv4("10.0.0.7"))
        listed = parse_ruleset(node.run(["nft", "list", "ruleset"]).stdout, "listed.nft").table("ip", "kube-proxy")
    elements = {s.name: [e.key.value for e in s.elements] for s in listed.sets}
    assert elements == {"affinity-a": [], "affinity-b": ["10.0.0.7"]}
    assert listed.set("affinity-b").elements[0].expires is not None  # the set's own timeout, as kube-proxy's update
