"""Phrases for a rule's criteria: `-s`, `-d`, `-i`, `-o`, `-p` and `-f`."""

from __future__ import annotations

from iptables_lens import kube
from iptables_lens.iptables import values
from iptables_lens.iptables.explain.words import join_or, plain_address, protocol_name
from iptables_lens.iptables.model import Criterion, Rule, Table


def is_positive_protocol(criterion: Criterion) -> bool:
    """Whether the criterion asks for one protocol (not `-p all`, not negated)."""
    return not criterion.negated and criterion.value.lower() not in ("all", "0")


def criterion_phrase(criterion: Criterion, rule: Rule, table: Table) -> str:
    """"only TCP", "not from the pod network 10.244.0.0/16", "only arriving on interface eth0"."""
    flag, value, negated = criterion.flag, criterion.value, criterion.negated
    only = "not" if negated else "only"
    if flag == "-p":
        if value.lower() in ("all", "0"):
            return "no packet (not any protocol)" if negated else "any protocol"
        return f"{only} {protocol_name(value)}"
    if flag in ("-s", "-d"):
        direction = "from" if flag == "-s" else "to"
        return f"{only} {direction} {_addresses(criterion, rule, table)}"
    if flag == "-i":
        return f"{only} arriving on {_interface(value)}"
    if flag == "-o":
        return f"{only} leaving by {_interface(value)}"
    # -f: the kernel matches fragments after the first, which carry no ports.
    return "not a second or later fragment" if negated else "only second and later fragments"


def _interface(name: str) -> str:
    if name == "+":
        return "any interface"
    if name.endswith("+"):
        return f"an interface whose name starts with {name[:-1]}"
    return f"interface {name}"


def _addresses(criterion: Criterion, rule: Rule, table: Table) -> str:
    values = criterion.value.split(",")
    if len(values) == 1:
        name = _address_name(criterion, rule, table)
        if name:
            return name
    return join_or([plain_address(v) for v in values])


def _address_name(criterion: Criterion, rule: Rule, table: Table) -> str | None:
    """A name for the address when the rule's place says what it is, e.g. the pod network."""
    value = criterion.value
    if value in ("0.0.0.0/0", "::/0"):
        return "anywhere"
    if value == "127.0.0.0/8":
        return "the loopback network 127.0.0.0/8"
    if value == "::1/128":
        return "the loopback address ::1"
    if criterion.flag != "-s" or table.name != "nat" or rule.target is None:
        return None
    chain_family = kube.family(rule.chain)
    target = rule.target.name
    is_network = "/" in value and plain_address(value) == value
    # kube-proxy's local-traffic detector writes the pod range (--cluster-cidr, or the node's pod CIDR) as
    # `! -s RANGE -j KUBE-MARK-MASQ` in a Service chain, and as `-s RANGE -j KUBE-SVC-...` in an external
    # chain with externalTrafficPolicy: Local.
    if is_network and chain_family in ("KUBE-SERVICES", "KUBE-SVC", "KUBE-EXT"):
        if target == "KUBE-MARK-MASQ" or kube.family(target) == "KUBE-SVC":
            return f"the pod network {value}"
    # kube-proxy masquerades a pod that reaches itself through its Service (hairpin): the endpoint chain
    # marks packets whose source is the endpoint it DNATs to.
    if chain_family == "KUBE-SEP" and target == "KUBE-MARK-MASQ" and not is_network:
        host = plain_address(value)
        if host in _dnat_hosts(table, rule.chain):
            return f"the endpoint's own address {host}"
    return None


def _dnat_hosts(table: Table, chain: str) -> set[str]:
    if not table.has_chain(chain):
        return set()
    hosts = set()
    for rule in table.chain(chain).rules:
        if rule.target is not None and rule.target.name == "DNAT":
            to = rule.target.option("--to-destination")
            if to is not None:
                first = values.nat_range(to.value, values.address_family(to.value)).first
                if first is not None:
                    hosts.add(str(first))
    return hosts
