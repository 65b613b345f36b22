"""`iptables-lens scrub` on nft rulesets: every address mapped as in iptables-save dumps with the same key,
kube-proxy's endpoint names rewritten with verified hashes, and a listing that reads back and formats
unchanged."""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from iptables_lens.cli import main
from iptables_lens.dialects import parse_dump, read_dump
from iptables_lens.errors import DumpError
from iptables_lens.kube.nft_services import NftServiceIndex, decode_name
from iptables_lens.nft import format_ruleset
from iptables_lens.nft.jsonread import json_view
from iptables_lens.nft.model import Const, Nat, Prefix, Range, Ruleset
from iptables_lens.scenario.scrub import AddressMap, Renamer, scrub_dump, scrub_rules

from tests.conftest import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"
KUBE_PROXY = sorted((DATA / "kube-proxy-nftables" / "listings").glob("*.nft"))
KEY = b"a test key"


def _readable(paths: list[Path]) -> list[Path]:
    """The listings of `paths` the parser reads (the corpus keeps some it refuses on purpose), whose text our
    fmt gives reads back (a JSON listing's text form does not always: nft -j leaves out what the text says)."""
    found = []
    for path in paths:
        try:
            parse_dump(format_ruleset(read_dump(path)), "formatted", dialect="nft")
        except DumpError:
            continue
        found.append(path)
    return found


CORPUS = _readable(sorted((DATA / "nft" / "listed").glob("*.alist")))
CORPUS_JSON = _readable(sorted((DATA / "nft" / "listed").glob("*.json")))


def scrubbed(ruleset: Ruleset, key: bytes = KEY, rename: dict[str, str] | None = None) -> Ruleset:
    result = scrub_rules(ruleset, AddressMap(key), Renamer(rename or {}))
    assert isinstance(result, Ruleset)
    return result


def addresses(node: object) -> Counter[str]:
    """Every address a ruleset holds (prefixes by their network), counted."""
    found: Counter[str] = Counter()
    if isinstance(node, tuple):
        for item in node:
            found += addresses(item)
    elif isinstance(node, Const):
        if node.type in ("ipv4_addr", "ipv6_addr") and isinstance(node.value, str):
            found[node.value] += 1
    elif isinstance(node, Prefix):
        found[f"{node.base.value}/{node.length}"] += 1
    elif is_dataclass(node):
        for field in fields(node):
            found += addresses(getattr(node, field.name))
    return found


def mapped_text(address: str, key: bytes = KEY) -> str:
    """What the iptables scrub maps `address` (or `network/length`) to with `key`, as nft writes it."""
    mapping = AddressMap(key)
    if "/" in address:
        network = mapping.network(ipaddress.ip_network(address, strict=False))
        base = network.network_address
        length = network.prefixlen
        return f"{_nft(base)}/{length}"
    return _nft(mapping.address(ipaddress.ip_address(address)))


def _nft(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def test_the_corpus_to_scrub_is_the_corpus():
    assert len(KUBE_PROXY) == 4 and len(CORPUS) > 150 and len(CORPUS_JSON) > 150


@pytest.mark.parametrize("path", KUBE_PROXY + CORPUS + CORPUS_JSON, ids=lambda p: p.name)
def test_a_scrubbed_listing_reads_back_and_formats_unchanged(path):
    text = format_ruleset(scrubbed(read_dump(path)))
    again = parse_dump(text, "scrubbed.nft", dialect="nft")
    assert format_ruleset(again) == text


@pytest.mark.parametrize("path", KUBE_PROXY + CORPUS, ids=lambda p: p.name)
def test_every_address_is_mapped_as_the_iptables_scrub_maps_it(path):
    original = read_dump(path)
    before = addresses(original)
    after = addresses(scrubbed(original))
    expected: Counter[str] = Counter()
    for address, count in before.items():
        expected[mapped_text(address)] += count
    assert after == expected


def test_the_kube_proxy_listings_hold_none_of_their_addresses_after_the_scrub():
    for path in KUBE_PROXY:
        original = read_dump(path)
        text = format_ruleset(scrubbed(original))
        kept = {a for a in addresses(original) if mapped_text(a) == a}
        assert kept <= {"0.0.0.0/0", "::/0"}, path
        for address in addresses(original):
            plain = address.split("/")[0]
            assert f" {plain}" not in text and f"__{plain.replace(':', '.')}/" not in text, (path, address)


def test_an_address_maps_to_the_same_address_in_an_iptables_dump_and_an_nft_listing():
    iptables = parse_dump("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.96.0.10/32 -p udp -j DNAT "
                          "--to-destination 10.244.1.5:53\nCOMMIT\n", "node.rules")
    nft = parse_dump("table ip t {\n\tchain c {\n\t\tip daddr 10.96.0.10 udp dport 53 dnat to 10.244.1.5:53\n\t}\n}\n", "node.nft")
    dump = scrub_dump(iptables, AddressMap(KEY), Renamer({}))
    rule = dump.tables[0].chains[0].rules[0]
    destination = rule.criteria[0].value.removesuffix("/32")
    dnat = rule.target.options[0].values[0]
    (match, _, nat) = scrubbed(nft).tables[0].chains[0].rules[0].statements
    assert isinstance(nat, Nat) and isinstance(nat.addr, Const)
    assert (match.right.value, f"{nat.addr.value}:53") == (destination, dnat)
    assert destination != "10.96.0.10"


@pytest.mark.parametrize("path", KUBE_PROXY, ids=lambda p: p.name)
def test_kube_proxy_names_verify_after_the_scrub_and_endpoint_names_carry_the_mapped_endpoint(path):
    original = read_dump(path)
    after = scrubbed(original)
    owners = list(NftServiceIndex.of(after).owners())
    assert owners and all(o.verified for o in owners)
    table = after.tables[0]
    endpoints = [c for c in table.chains if c.name.startswith("endpoint-")]
    for chain in endpoints:
        owner = decode_name(chain.name)
        assert owner is not None and owner.endpoint is not None
        ip, port = owner.endpoint.rsplit("/", 1)
        dnat = next(s for r in chain.rules for s in r.statements if isinstance(s, Nat))
        assert isinstance(dnat.addr, Const) and isinstance(dnat.port, Const)
        assert (dnat.addr.value.replace(":", "."), str(dnat.port.value)) == (ip, port)
    affinity = {s.name.removeprefix("affinity-") for s in table.sets if s.name.startswith("affinity-")}
    assert affinity <= {c.name.removeprefix("endpoint-") for c in endpoints}


@pytest.mark.parametrize("path", KUBE_PROXY, ids=lambda p: p.name)
def test_the_scrub_keeps_every_service_and_what_serves_it(path):
    before = NftServiceIndex.of(read_dump(path))
    after = NftServiceIndex.of(scrubbed(read_dump(path)))
    assert after.services() == before.services()

    def shape(index: NftServiceIndex) -> Counter[tuple[str, str]]:
        return Counter((o.kind, o.service_port) for o in index.owners())

    assert shape(after) == shape(before)
    for service in before.services():
        assert {k: len(v) for k, v in after.of_service(service)[1].items()} == {
            k: len(v) for k, v in before.of_service(service)[1].items()}


def test_a_renamed_service_is_renamed_in_every_name_and_comment_with_verified_hashes():
    path = DATA / "kube-proxy-nftables" / "listings" / "TestOverallNFTablesRules.v1.34.nft"
    after = scrubbed(read_dump(path), rename={"ns2/svc2": "shop/web", "ns5": "store"})
    index = NftServiceIndex.of(after)
    assert "ns2/svc2" not in index.services() and "shop/web" in index.services()
    assert not [s for s in index.services() if s.startswith("ns5/")]
    assert all(o.verified for o in index.owners())
    text = format_ruleset(after)
    assert "ns2/svc2" not in text and 'comment "shop/web:p80"' in text


def test_a_cluster_ip_stays_inside_the_service_range_after_the_scrub():
    path = DATA / "kube-proxy-nftables" / "listings" / "TestOverallNFTablesRules.v1.34.nft"
    table = scrubbed(read_dump(path)).tables[0]
    (drop,) = [r for r in table.chain("cluster-ips-check").rules if isinstance(r.statements[0].right, Prefix)]
    prefix = drop.statements[0].right
    service_range = ipaddress.ip_network(f"{prefix.base.value}/{prefix.length}")
    cluster_ips = [ipaddress.ip_address(e.key.value) for e in table.set("cluster-ips").elements]
    assert cluster_ips and all(ip in service_range for ip in cluster_ips)


def test_an_address_range_is_mapped_end_by_end_and_kept_in_order():
    text = "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.1.2.3-10.1.2.200 }\n\t}\n}\n"
    ruleset = parse_dump(text, "range.nft")
    # A key under which the map turns the two ends around, so that the scrub has to put them in order again.
    key = next(k for k in (str(i).encode() for i in range(200))
               if AddressMap(k).address(ipaddress.IPv4Address("10.1.2.3"))
               > AddressMap(k).address(ipaddress.IPv4Address("10.1.2.200")))
    (element,) = scrubbed(ruleset, key).tables[0].set("s").elements
    assert isinstance(element.key, Range)
    ends = {element.key.low.value, element.key.high.value}
    assert ends == {mapped_text("10.1.2.3", key), mapped_text("10.1.2.200", key)}
    assert ipaddress.ip_address(element.key.low.value) < ipaddress.ip_address(element.key.high.value)


def test_loopback_and_the_unspecified_network_keep_their_meaning():
    text = "table inet t {\n\tchain c {\n\t\tip saddr 127.0.0.1 accept\n\t\tip6 saddr ::1 accept\n\t\tip daddr 0.0.0.0/0 drop\n\t}\n}\n"
    assert format_ruleset(scrubbed(parse_dump(text, "kept.nft"))) == text


def test_the_scrub_command_writes_a_listing_that_fmt_prints_unchanged(tmp_path):
    path = DATA / "kube-proxy-nftables" / "listings" / "mixed-ipv6.v1.34.nft"
    out = tmp_path / "scrubbed.nft"
    result = CliRunner().invoke(main, ["scrub", str(path), "-o", str(out), "--key", "k"])
    assert result.exit_code == 0 and result.output == f"wrote {out}\n"
    assert "fd00:10:244" not in out.read_text()
    formatted = CliRunner().invoke(main, ["fmt", str(out)])
    assert formatted.exit_code == 0 and formatted.output == out.read_text()


def test_the_scrub_command_scrubs_a_listing_and_its_json_alike_and_prints_a_text_listing():
    listing, as_json = (DATA / "nft" / "listed" / f"kube-proxy-overall.{suffix}" for suffix in ("alist", "json"))
    printed = [CliRunner().invoke(main, ["scrub", str(p), "-o", "-", "--key", "k"]) for p in (listing, as_json)]
    assert [r.exit_code for r in printed] == [0, 0]
    from_text, from_json = (parse_dump(r.output, "scrubbed.nft", dialect="nft") for r in printed)
    # nft -j leaves out some of what the text says (a table's comment, ...): compare what both say.
    assert json_view(from_text) == json_view(from_json)


def test_the_same_key_gives_the_same_scrub_and_another_key_another():
    path = KUBE_PROXY[0]
    runs = [CliRunner().invoke(main, ["scrub", str(path), "-o", "-", "--key", key]) for key in ("a", "a", "b")]
    assert runs[0].output == runs[1].output != runs[2].output


def test_the_scrub_command_does_not_overwrite_a_file(tmp_path):
    out = tmp_path / "there.nft"
    out.write_text("mine\n")
    result = CliRunner().invoke(main, ["scrub", str(KUBE_PROXY[0]), "-o", str(out)])
    assert result.exit_code == 2 and "already exists" in result.output
    assert out.read_text() == "mine\n"
