"""kube-proxy's names over IPv6 endpoints, and the Service index on IPv6 rules.

kube-proxy hashes an endpoint as Go's net.JoinHostPort writes it (`BaseEndpointInfo.String()`): `[addr]:port`
for IPv6, the string its comments and DNAT targets show. The expected hashes below are literal: computed once
by kube-proxy's rule (sha256, base32, the first 16 characters), and for ns1/svc1:p80 taken from kube-proxy's
own unit test (tests/data/kube-proxy/TestEnableLocalhostNodePortsIPv6.restore).

The parser does not read IPv6 yet, so the tables here are built by hand as it would build them; the tests
that read a generated dump through the parser are marked.
"""

from __future__ import annotations

import re

import pytest
from iptables_lens import parse
from iptables_lens.iptables.model import Chain, Criterion, Dump, Match, Option, Rule, Table, Target
from iptables_lens.kube import ServiceIndex, decode_chain, endpoint_chain, service_chain, service_of_comment
from iptables_lens.kube.dual_stack import ipv6_cluster
from iptables_lens.kube.names import join_host_port
from iptables_lens.kube.synth import synth_cluster

from tests.test_kube_synth_ipv6 import KUBE_PROXY_IPV6
from tests.test_synth import SEED_NODE

NGINX = "default/my-nginx-service"


# -- hashes ----------------------------------------------------------------------------------------------


def test_an_ipv6_endpoint_is_written_in_brackets_and_an_ipv4_one_without():
    assert join_host_port("fd00:10:244:1::2", 80) == "[fd00:10:244:1::2]:80"
    assert join_host_port("10.244.1.2", "80") == "10.244.1.2:80"


def test_ipv6_endpoint_chains_hash_the_bracketed_endpoint_as_in_kube_proxys_unit_test():
    assert service_chain("KUBE-SVC", "ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert endpoint_chain("ns1/svc1:p80", "tcp", "[ff06::c1]:80") == "KUBE-SEP-LIGRYQQLSZN4UWQ5"
    assert endpoint_chain("ns1/svc1:p80", "tcp", "[ff06::c2]:80") == "KUBE-SEP-XJJ5QXWGJG344QDZ"


def test_the_unbracketed_ipv6_endpoint_gives_another_hash():
    assert endpoint_chain("ns1/svc1:p80", "tcp", "ff06::c1:80") != "KUBE-SEP-LIGRYQQLSZN4UWQ5"


def test_the_seed_services_ipv6_endpoint_chains():
    assert endpoint_chain(NGINX, "tcp", "[fd00:10:244:1::2]:80") == "KUBE-SEP-O56SWDBDBH2Z743T"
    assert endpoint_chain(NGINX, "tcp", "[fd00:10:244:2::2]:80") == "KUBE-SEP-DIRUDSH75JG7XAEK"


def test_every_endpoint_chain_in_kube_proxys_ipv6_expectation_is_the_hash_of_its_dnat_target():
    text = KUBE_PROXY_IPV6.read_text()
    targets = re.findall(r"^-A (KUBE-SEP-\S+) .* -p (\w+) -j DNAT --to-destination (\S+)$", text, re.M)
    assert len(targets) == 2
    for chain, protocol, endpoint in targets:
        assert endpoint_chain("ns1/svc1:p80", protocol, endpoint) == chain


# -- comments --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("comment,service", [
    ("default/my-nginx-service -> [fd00:10:244:1::2]:80", NGINX),
    ("ns1/svc1:p80 -> [ff06::c1]:80", "ns1/svc1:p80"),
    ("kube-system/kube-dns:dns-tcp -> [fd00:10:244::3]:53", "kube-system/kube-dns:dns-tcp"),
    ("masquerade traffic for ns1/svc1:p80 external destinations", "ns1/svc1:p80"),
])
def test_the_service_an_ipv6_comment_names(comment, service):
    assert service_of_comment(comment) == service


# -- tables as the parser builds them --------------------------------------------------------------------


def _comment(text: str) -> Match:
    return Match("comment", (Option("--comment", (text,)),))


def _rule(chain: str, position: int, criteria=(), matches=(), target: Target | None = None) -> Rule:
    return Rule("nat", chain, position, 0, "", tuple(criteria), tuple(matches), target)


def _jump(name: str, *options: Option) -> Target:
    return Target(name, options=options)


def seed_node_ipv6_nat() -> Table:
    """The nat chains of the seed's Service on blog-worker's ip6tables (as `synth_cluster` writes them)."""
    tcp = Match("tcp")
    svc, ext = "KUBE-SVC-OL4YPD43MBS7WVHD", "KUBE-EXT-OL4YPD43MBS7WVHD"
    seps = {"KUBE-SEP-DIRUDSH75JG7XAEK": "fd00:10:244:2::2", "KUBE-SEP-O56SWDBDBH2Z743T": "fd00:10:244:1::2"}
    chains = {
        ext: [_rule(ext, 1, (), [_comment(f"masquerade traffic for {NGINX} external destinations")],
                    _jump("KUBE-MARK-MASQ")),
              _rule(ext, 2, (), (), _jump(svc))],
        "KUBE-MARK-MASQ": [],
        "KUBE-NODEPORTS": [_rule("KUBE-NODEPORTS", 1, [Criterion("-p", "tcp")],
                                 [_comment(NGINX), Match("tcp", (Option("--dport", ("30080",)),))], _jump(ext))],
    }
    for sep, address in seps.items():
        chains[sep] = [
            _rule(sep, 1, [Criterion("-s", f"{address}/128")], [_comment(NGINX)], _jump("KUBE-MARK-MASQ")),
            _rule(sep, 2, [Criterion("-p", "tcp")], [_comment(NGINX), tcp],
                  _jump("DNAT", Option("--to-destination", (f"[{address}]:80",)))),
        ]
    chains["KUBE-SERVICES"] = [_rule("KUBE-SERVICES", 1, [Criterion("-d", "fd00:10:96::7688/128"),
                                                         Criterion("-p", "tcp")],
                                     [_comment(f"{NGINX} cluster IP"), Match("tcp", (Option("--dport", ("80",)),))],
                                     _jump(svc))]
    chains[svc] = [
        _rule(svc, 1, (), [_comment(f"{NGINX} -> [fd00:10:244:1::2]:80")], _jump("KUBE-SEP-O56SWDBDBH2Z743T")),
        _rule(svc, 2, (), [_comment(f"{NGINX} -> [fd00:10:244:2::2]:80")], _jump("KUBE-SEP-DIRUDSH75JG7XAEK")),
    ]
    return Table("nat", 1, tuple(Chain(name, "nat", False, None, None, 1, tuple(rules))
                                 for name, rules in chains.items()))


def test_an_ipv6_endpoint_chain_decodes_from_its_dnat_target():
    name = decode_chain(seed_node_ipv6_nat(), "KUBE-SEP-O56SWDBDBH2Z743T")
    assert name.verified and name.endpoint == "[fd00:10:244:1::2]:80" and name.service_port == NGINX
    assert name.explanation == ("KUBE-SEP-O56SWDBDBH2Z743T = KUBE-SEP- + the first 16 characters of "
                                f'base32(sha256("{NGINX}tcp[fd00:10:244:1::2]:80"))')


def test_the_service_index_reads_ipv6_comments_and_prints_addresses_in_brackets():
    index = ServiceIndex.of(Dump("<ipv6>", (seed_node_ipv6_nat(),)))
    assert index.owner("nat", "KUBE-SEP-DIRUDSH75JG7XAEK") == NGINX
    assert [str(reach) for reach in index.reached_at(NGINX)] == [
        "node port 30080", "endpoint [fd00:10:244:2::2]:80", "endpoint [fd00:10:244:1::2]:80",
        "[fd00:10:96::7688]:80"]


# -- through the parser (not yet) ------------------------------------------------------------------------


def test_every_hashed_chain_of_a_generated_ipv6_dump_verifies():
    from iptables_lens.kube import family
    from iptables_lens.kube.cluster_spec import mixed_spec
    nat = parse(synth_cluster(ipv6_cluster(mixed_spec(120, 3, seed=3)))).table("nat")
    hashed = [c.name for c in nat.chains if family(c.name) in ("KUBE-SVC", "KUBE-SVL", "KUBE-EXT", "KUBE-FW",
                                                                 "KUBE-SEP")]
    assert hashed and [c for c in hashed if not decode_chain(nat, c).verified] == []


def test_the_service_index_of_the_generated_seed_node_on_ipv6():
    index = ServiceIndex.of(parse(synth_cluster(ipv6_cluster(SEED_NODE))))
    assert [str(reach) for reach in index.reached_at(NGINX)] == [
        "node port 30080", "endpoint [fd00:10:244:2::2]:80", "endpoint [fd00:10:244:1::2]:80",
        "[fd00:10:96::7688]:80"]
