"""The contributor's path: the template, validation of broken scenarios, scrubbing, the schema."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from iptables_lens.errors import DumpError
from iptables_lens.kube import decode_chain
from iptables_lens.scenario import load_scenario, metadata_json_schema, node_context, validate_scenario
from iptables_lens.scenario.flows import predict
from iptables_lens.scenario.load import read_scenario
from iptables_lens.scenario.scrub import AddressMap, scrub_scenario
from iptables_lens.trace import Packet, trace

from tests.conftest import REPO_ROOT, SEED
from tests.site_build import build, variant_config

TEMPLATE = REPO_ROOT / "templates" / "scenario"


def copy_seed(tmp_path: Path, name: str = "broken") -> Path:
    folder = tmp_path / name
    shutil.copytree(SEED, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


# Each breakage: (what to do to a copy of the seed, the file the first problem names, a fragment of it).
BREAKAGES = {
    "missing file": (lambda f: edit(f / "scenario.yaml", "file: worker-1-before.rules", "file: worker-9-before.rules"),
                     "scenario.yaml", "dumps[0].file: 'worker-9-before.rules' is not a file"),
    "misspelt key": (lambda f: edit(f / "scenario.yaml", "    node_port: 30080", "    node_prot: 30080"),
                     "scenario.yaml", "services[0].ports[0].node_prot: unknown key"),
    "Service not in the dump": (lambda f: edit(f / "scenario.yaml", "name: my-nginx-service", "name: other-service"),
                                "scenario.yaml", "no KUBE-SERVICES rule jumping to"),
    "wrong node port": (lambda f: edit(f / "scenario.yaml", "node_port: 30080", "node_port: 30081"),
                        "scenario.yaml", "opens node port 30080 for default/my-nginx-service port 80/TCP, not 30081"),
    "wrong cluster IP": (lambda f: edit(f / "scenario.yaml", "cluster_ip: 10.96.118.136", "cluster_ip: 10.96.118.137"),
                         "scenario.yaml", "not 10.96.118.137"),
    "endpoint not in the dump": (lambda f: edit(f / "scenario.yaml", "      - address: 10.244.2.2\n        port: 80",
                                                "      - address: 10.244.2.9\n        port: 80"),
                                 "scenario.yaml", "that DNATs default/my-nginx-service port 80/TCP to 10.244.2.9:80"),
    "dump the kernel refuses": (lambda f: edit(f / "worker-1-after.rules", "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
                                               "-A KUBE-FORWARD -j DNAT --to-destination 10.244.1.2"),
                                "worker-1-after.rules", "target DNAT is only valid in the nat table"),
    "node address the dumps contradict": (lambda f: edit(f / "scenario.yaml", "address: 172.20.0.4", "address: 172.20.0.9"),
                                          "worker-1-after.rules", "172.20.0.4 is on the underlay"),
    "pod outside its node's range": (lambda f: edit(f / "scenario.yaml", "    address: 10.244.1.2\n  - name",
                                                    "    address: 10.244.3.2\n  - name"),
                                     "scenario.yaml", "outside blog-worker's pod range"),
    "chain name that does not verify": (
        lambda f: (f / "worker-2-after.rules").write_text(
            (f / "worker-2-after.rules").read_text().replace("KUBE-SEP-S4QGHWZAQRZ7NT5K", "KUBE-SEP-AAAAAAAAAAAAAAAA")),
        "worker-2-after.rules", "chain KUBE-SEP-AAAAAAAAAAAAAAAA: its hash does not verify"),
    "YAML that does not parse": (lambda f: edit(f / "scenario.yaml", "  name: blog\n", "  name: [blog\n"),
                                 "scenario.yaml", "invalid YAML"),
    "flow on a node that does not exist": (lambda f: edit(f / "scenario.yaml", "    node: blog-worker\n    client",
                                                           "    node: blog-worker3\n    client"),
                                           "scenario.yaml", "flows: node 'blog-worker3' is not one of the nodes"),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_a_broken_scenario_fails_validation_naming_the_file_and_the_place(tmp_path, name):
    breakage, file_name, fragment = BREAKAGES[name]
    folder = copy_seed(tmp_path)
    breakage(folder)
    problems = validate_scenario(folder)
    assert problems, "validation found nothing"
    matching = [p for p in problems if fragment in str(p)]
    assert matching, "\n".join(map(str, problems))
    problem = matching[0]
    assert Path(problem.source).name == file_name
    assert problem.line > 0 and problem.column > 0
    assert str(problem).startswith(f"{problem.source}:{problem.line}:{problem.column}: ")


@pytest.mark.parametrize("name", BREAKAGES)
def test_a_broken_scenario_fails_the_docs_build_the_same_way(tmp_path, name):
    breakage, _, fragment = BREAKAGES[name]
    folder = copy_seed(tmp_path, "broken")
    breakage(folder)
    result = build(tmp_path / "site", variant_config(tmp_path, folder))
    assert result.returncode != 0
    assert fragment in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_validate_lists_every_problem_and_exits_1(tmp_path):
    folder = copy_seed(tmp_path)
    BREAKAGES["wrong node port"][0](folder)
    BREAKAGES["wrong cluster IP"][0](folder)
    proc = subprocess.run([sys.executable, "-m", "iptables_lens.cli", "validate", "--no-kernel", str(folder),
                           str(SEED)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "not 30081" in proc.stderr and "not 10.96.118.137" in proc.stderr
    assert f"{SEED}: ok" in proc.stdout and f"{folder}: " in proc.stdout


def test_loading_lists_every_file_that_is_missing_or_does_not_parse_and_keeps_the_rest(tmp_path):
    folder = copy_seed(tmp_path)
    BREAKAGES["missing file"][0](folder)
    BREAKAGES["dump the kernel refuses"][0](folder)
    scenario, problems = read_scenario(folder)
    assert [(Path(p.source).name, p.line) for p in problems] == [("scenario.yaml", 67), ("worker-1-after.rules", 38)]
    assert sorted(scenario.dumps) == ["worker-2-after.rules", "worker-2-before.rules"]
    with pytest.raises(DumpError) as raised:
        load_scenario(folder)
    assert str(raised.value) == "\n".join(str(p) for p in problems)


def test_a_flow_on_a_node_without_dumps_is_an_error_at_the_flow(tmp_path):
    folder = copy_seed(tmp_path)
    edit(folder / "scenario.yaml", "    node: blog-worker\n    client: a host", "    node: blog-control-plane\n    client: a host")
    scenario = load_scenario(folder)
    with pytest.raises(DumpError) as raised:
        predict(scenario, scenario.meta.flows[0])
    assert Path(raised.value.source).name == "scenario.yaml"
    assert raised.value.message == "flows[0].node: flow outside-to-nodeport: no after dump for node blog-control-plane"


def test_the_seed_scenario_is_valid():
    assert validate_scenario(SEED) == []


def test_a_folder_copied_from_the_template_and_filled_in_gets_its_pages(tmp_path):
    folder = tmp_path / "my-scenario"
    shutil.copytree(TEMPLATE, folder)
    (folder / "README.md").unlink()
    # Fill it in with the facts of the seed's first worker.
    meta = yaml.safe_load((folder / "scenario.yaml").read_text())
    seed = yaml.safe_load((SEED / "scenario.yaml").read_text())
    meta.update(title="My scenario", cluster=seed["cluster"], nodes=seed["nodes"], pods=seed["pods"],
                services=seed["services"], flows=seed["flows"][:1])
    meta["dumps"] = [{"file": "node-a-before.rules", "node": "blog-worker", "moment": "before"},
                     {"file": "node-a-after.rules", "node": "blog-worker", "moment": "after"}]
    (folder / "scenario.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    shutil.copy(SEED / "worker-1-before.rules", folder / "node-a-before.rules")
    shutil.copy(SEED / "worker-1-after.rules", folder / "node-a-after.rules")
    assert validate_scenario(folder) == []
    result = build(tmp_path / "site", variant_config(tmp_path, folder))
    assert result.returncode == 0, result.stderr
    pages = tmp_path / "site" / "scenarios" / "my-scenario"
    assert (pages / "index.html").is_file() and (pages / "blog-worker" / "index.html").is_file()
    assert (pages / "flows" / "outside-to-nodeport" / "index.html").is_file()


def test_the_template_is_not_a_scenario_of_the_site():
    assert not any(p.name == "scenario" for p in (REPO_ROOT / "dumps").iterdir())
    problems = validate_scenario(TEMPLATE)
    assert {Path(p.source).name for p in problems} == {"scenario.yaml"}  # only its missing dumps


def test_the_committed_json_schema_is_the_one_the_model_exports():
    committed = json.loads((REPO_ROOT / "docs" / "scenario.schema.json").read_text())
    assert committed == metadata_json_schema()


# -- scrubbing -------------------------------------------------------------------------------------------

_ADDRESS = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
KEPT = [ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4")]


def _addresses(folder: Path) -> set[str]:
    found = set()
    for path in folder.iterdir():
        if path.is_file():
            found |= set(_ADDRESS.findall(path.read_text()))
    return {a for a in found if not any(ipaddress.IPv4Address(a) in k for k in KEPT)}


@pytest.fixture(scope="module")
def scrubbed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scrub") / "scrubbed"
    return scrub_scenario(SEED, out, b"a test key", {"default/my-nginx-service": "shop/web"})


def test_a_scrubbed_scenario_holds_none_of_the_original_addresses(scrubbed):
    original = _addresses(SEED)
    assert len(original) > 10
    assert not original & _addresses(scrubbed)


def test_a_scrubbed_scenario_is_valid_and_its_chain_names_verify(scrubbed):
    assert validate_scenario(scrubbed) == []
    scenario = load_scenario(scrubbed)
    nat = scenario.dumps["worker-1-after.rules"].table("nat")
    decoded = decode_chain(nat, "KUBE-SVC-" + next(c.name for c in nat.chains if "shop/web" in
                                                   " ".join(r.comment or "" for r in c.rules)
                                                   and c.name.startswith("KUBE-SVC-"))[9:])
    assert decoded.verified and decoded.service_port == "shop/web"


def test_a_scrubbed_scenario_traces_to_the_same_outcomes_mapped(scrubbed):
    mapping = AddressMap(b"a test key")
    before, after = load_scenario(SEED), load_scenario(scrubbed)
    for flow, mapped_flow in zip(before.meta.flows, after.meta.flows, strict=True):
        assert mapped_flow.src == mapping.address(flow.src) and mapped_flow.dst == mapping.address(flow.dst)
        original = trace(before.dump_for(flow.node, "after"), Packet(flow.src, flow.dst, dport=flow.dport),
                         node_context(before, flow.node))
        again = trace(after.dump_for(flow.node, "after"), Packet(mapped_flow.src, mapped_flow.dst,
                                                                 dport=flow.dport),
                      node_context(after, flow.node))
        expected = sorted((o.probability, o.verdict, mapping.address(o.dnat[0]) if o.dnat else None,
                           mapping.address(o.snat[0]) if o.snat else None, [s.hook for s in o.path])
                          for o in original.outcomes)
        actual = sorted((o.probability, o.verdict, o.dnat[0] if o.dnat else None, o.snat[0] if o.snat else None,
                         [s.hook for s in o.path]) for o in again.outcomes)
        assert actual == expected


def test_the_address_map_preserves_prefixes():
    mapping = AddressMap(b"k")
    network = ipaddress.IPv4Network("10.244.0.0/16")
    mapped = mapping.network(network)
    for text in ("10.244.1.2", "10.244.200.7", "10.244.0.1"):
        assert mapping.address(ipaddress.IPv4Address(text)) in mapped
    assert mapping.address(ipaddress.IPv4Address("10.245.0.1")) not in mapped
    assert mapping.address(ipaddress.IPv4Address("127.0.0.1")) == ipaddress.IPv4Address("127.0.0.1")
    assert AddressMap(b"k").address(ipaddress.IPv4Address("10.244.1.2")) == mapping.address(
        ipaddress.IPv4Address("10.244.1.2"))


def test_the_address_map_preserves_ipv6_prefixes_exactly():
    mapping = AddressMap(b"k")
    v6 = ipaddress.IPv6Address
    pairs = [("fd00:10:244:1::2", "fd00:10:244:1::3"), ("fd00:10:244:1::2", "fd00:10:244:2::2"),
             ("fc00:f853:ccd:e793::2", "fd00:10:96::1"), ("2001:db8::1", "2001:db8:8000::1")]
    for first, second in pairs:
        a, b = v6(first), v6(second)
        shared = 128 - (int(a) ^ int(b)).bit_length()
        mapped_a, mapped_b = mapping.address(a), mapping.address(b)
        assert mapped_a != a and 128 - (int(mapped_a) ^ int(mapped_b)).bit_length() == shared


def test_the_address_map_keeps_ipv6_addresses_whose_place_is_their_meaning():
    mapping = AddressMap(b"k")
    v6 = ipaddress.IPv6Address
    for kept in ("::1", "::", "ff02::1"):
        assert mapping.address(v6(kept)) == v6(kept)
    link_local = mapping.address(v6("fe80::42:acff:fe14:2"))
    assert link_local in ipaddress.IPv6Network("fe80::/64") and link_local != v6("fe80::42:acff:fe14:2")
    assert mapping.address(v6("fd00:10:244:1::2")) not in ipaddress.IPv6Network("fe80::/10")


def test_the_address_map_rewrites_ipv6_in_free_text_and_leaves_port_names_alone():
    mapping = AddressMap(b"k")
    endpoint = ipaddress.IPv6Address("fd00:10:244:1::2")
    text = mapping.text("default/my-svc:http -> [fd00:10:244:1::2]:80 and 10.244.1.2:80")
    assert text.startswith("default/my-svc:http -> [") and str(mapping.address(endpoint)) in text
    assert str(mapping.address(ipaddress.IPv4Address("10.244.1.2"))) in text
    assert mapping.spec("fd00:10:244::/56,::1/128") == f"{mapping.network(ipaddress.IPv6Network('fd00:10:244::/56'))},::1/128"


def test_a_scrubbed_ipv6_dump_stays_an_ipv6_dump_with_its_addresses_mapped():
    from iptables_lens import format_dump, parse
    from iptables_lens.kube.synth_dual_stack import synth_dual_stack_nodeport
    from iptables_lens.scenario.scrub import Renamer, scrub_dump

    dump = parse(synth_dual_stack_nodeport()[("blog-worker", "after", 6)])
    scrubbed = scrub_dump(dump, AddressMap(b"k"), Renamer({}))
    text = format_dump(scrubbed)
    assert scrubbed.family == 6 and "fd00:10:244:1::2" not in text
    assert parse(text).family == 6
    for chain in (c for t in scrubbed.tables for c in t.chains if c.name.startswith("KUBE-SEP-")):
        decoded = decode_chain(next(t for t in scrubbed.tables if t.name == "nat"), chain.name)
        assert decoded is not None and decoded.verified, chain.name
