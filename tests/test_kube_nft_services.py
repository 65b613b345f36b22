"""The Service index of kube-proxy's nftables tables: every per-Service chain and set, and every element of its
maps and sets, tied to the Service port it serves, with the names' hashes verified."""

from __future__ import annotations

import pytest
from iptables_lens.dialects import read_dump
from iptables_lens.kube.nft_services import NftServiceIndex, decode_name, kube_proxy_tables
from iptables_lens.nft.parse import parse

from tests.conftest import REPO_ROOT

LISTINGS = sorted((REPO_ROOT / "tests" / "data" / "kube-proxy-nftables" / "listings").glob("*.nft"))
OVERALL = REPO_ROOT / "tests" / "data" / "kube-proxy-nftables" / "listings" / "TestOverallNFTablesRules.v1.34.nft"


def test_a_chain_name_gives_its_service_port_and_its_hash_is_checked():
    owner = decode_name("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80")
    assert (owner.kind, owner.service_port, owner.protocol, owner.endpoint, owner.verified) == (
        "endpoint", "ns1/svc1:p80", "tcp", "10.180.0.1/80", True)
    assert decode_name("service-AAAAAAAA-ns1/svc1/tcp/p80").verified is False
    assert decode_name("service-ULMVA6XW-default/web/tcp/").service_port == "default/web"


@pytest.mark.parametrize("name", ["services", "cluster-ips", "service-ips", "filter-prerouting-pre-dnat",
                                  "endpoint-5OJB2KTY-ns1/svc1/tcp/p80", "service-ULMVA6XW-ns1/svc1/p80",
                                  "nat-prerouting", "reject-chain", "firewall-SHORT-ns/a/tcp/p"])
def test_names_not_of_that_form_belong_to_no_service(name):
    assert decode_name(name) is None


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: p.name)
def test_every_per_service_object_of_kube_proxys_listings_verifies_and_every_map_element_is_owned(path):
    ruleset = read_dump(path)
    index = NftServiceIndex.of(ruleset)
    owners = list(index.owners())
    assert owners and all(o.verified for o in owners)
    for table in kube_proxy_tables(ruleset):
        for item in table.sets:
            if item.name in ("service-ips", "service-nodeports", "firewall-ips", "no-endpoint-services",
                             "no-endpoint-nodeports", "cluster-ips"):
                assert len(index.element_owners(table.family, table.name, item.name)) == len(item.elements), item.name


def test_the_overall_test_clusters_elements_serve_the_services_kube_proxys_test_gives_them():
    ruleset = read_dump(OVERALL)
    index = NftServiceIndex.of(ruleset)
    assert index.services() == ["ns1/svc1", "ns2/svc2", "ns3/svc3", "ns4/svc4", "ns5/svc5", "ns6/svc6"]
    by_key = {str(e.key): (o.service_port, o.by) for e, o in index.element_owners("ip", "kube-proxy", "cluster-ips")}
    assert len(by_key) == 6
    rejected = {o.service_port for _, o in index.element_owners("ip", "kube-proxy", "no-endpoint-services")}
    assert rejected == {"ns2/svc2:p80", "ns6/svc6:p80"}
    chains, elements = index.of_service("ns5/svc5")
    assert {o.kind for o in chains} == {"service", "external", "firewall", "endpoint", "affinity"}
    assert set(elements) == {("ip", "kube-proxy", "cluster-ips"), ("ip", "kube-proxy", "service-ips"),
                             ("ip", "kube-proxy", "service-nodeports"), ("ip", "kube-proxy", "firewall-ips")}


def test_tables_other_than_kube_proxys_own_nothing():
    ruleset = parse("table inet filter {\n\tchain service-ULMVA6XW-ns1/svc1/tcp/p80 {\n\t}\n}\n", "other.nft")
    assert NftServiceIndex.of(ruleset).services() == []


def test_a_large_generated_listing_is_indexed_whole():
    from tests.bench.scale import nodeport_listing

    index = NftServiceIndex.of(parse(nodeport_listing(50, 2), "big.nft"))
    assert len(index.services()) == 50 and all(o.verified for o in index.owners())
