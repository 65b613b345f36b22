"""Anonymize a scenario so that dumps from a real cluster can be shared.

Addresses are mapped prefix-preservingly (two addresses that share their first n bits still do after
mapping, so every CIDR relation between them holds), with a keyed pseudo-random function: the same key gives
the same mapping, a secret key gives one nobody can undo. Loopback, multicast, 0.0.0.0/8 and the broadcast
address keep their meaning and are left alone. Namespaces and Service names can be renamed too. Every
hashed kube-proxy chain name is then recomputed from the new names and addresses, so the scrubbed scenario
still verifies, and traces to the same outcomes, mapped. nft rulesets are scrubbed with the same mapping by
`scenario.scrub_nft` (`scrub_rules` takes a dump of either dialect).

The work goes through the model: a dump is parsed, rewritten object by object, and formatted again.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import shutil
from dataclasses import replace
from pathlib import Path

import yaml

from iptables_lens.dialects import dialect_of
from iptables_lens.iptables.model import Chain, Dump, Match, Option, Rule, Table, Target
from iptables_lens.kube.names import HASHED_FAMILIES, decode_chain, endpoint_chain, service_chain
from iptables_lens.nft.model import Ruleset
from iptables_lens.scenario.load import METADATA_FILE, load_scenario
from iptables_lens.scenario.model import HEADLESS, ScenarioMeta
from iptables_lens.scenario.scrub_nft import scrub_ruleset

IPv4 = ipaddress.IPv4Address
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BITS = {4: 32, 6: 128}
# Addresses whose meaning is their place: left as they are. In IPv6 the unspecified and loopback addresses and
# multicast; link-local addresses keep their fe80::/64 prefix and have their interface part mapped, since it
# is made from a MAC address.
_KEPT: dict[int, list[Network]] = {
    4: [ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32")],
    6: [ipaddress.IPv6Network(n) for n in ("::/128", "::1/128", "ff00::/8")],
}
_LINK_LOCAL = ipaddress.IPv6Network("fe80::/64")
# Where a mapped address must not land, and the bit flipped to move it out: special ranges are for special
# addresses only.
_RESERVED: dict[int, list[Network]] = {
    4: _KEPT[4],
    6: [*_KEPT[6], ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("fe80::/10")],
}
_MOVE_OUT = {4: 1 << 30, 6: 1 << 126}
_IPV4_IN_TEXT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
# Candidates only: a run of hex digits and colons with at least two colons; ipaddress decides.
_IPV6_IN_TEXT = re.compile(r"(?<![0-9A-Za-z:])([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![0-9A-Za-z:])")


class AddressMap:
    """A keyed, prefix-preserving map of IPv4 and IPv6 addresses (the idea of Crypto-PAn, with HMAC-SHA256 as
    the pseudo-random function: bit i of the output is bit i of the input flipped by a function of the bits
    before it, so equal prefixes stay equal). The two families are mapped apart, each within itself.

    >>> mapping = AddressMap(b"k")
    >>> pods = mapping.network(ipaddress.IPv6Network("fd00:10:244::/56"))
    >>> mapping.address(ipaddress.IPv6Address("fd00:10:244:1::2")) in pods
    True
    """

    def __init__(self, key: bytes):
        self.key = key
        self._cache: dict[Address, Address] = {}

    def address(self, address: Address) -> Address:
        version = address.version
        if any(address in kept for kept in _KEPT[version]):
            return address
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        if version == 6 and address in _LINK_LOCAL:
            # The prefix stays fe80::/64; the interface part is mapped, prefix-preservingly within itself.
            mapped: Address = ipaddress.IPv6Address(int(_LINK_LOCAL.network_address) | self._bits(int(address), 128, 64))
        else:
            out = self._bits(int(address), BITS[version], 0)
            if any(ipaddress.ip_address(out) in reserved for reserved in _RESERVED[version]):
                out ^= _MOVE_OUT[version]
            mapped = ipaddress.IPv4Address(out) if version == 4 else ipaddress.IPv6Address(out)
        self._cache[address] = mapped
        return mapped

    def _bits(self, value: int, width: int, keep: int) -> int:
        """`value`'s bits after the first `keep` mapped, each flipped by a keyed function of those before it;
        the first `keep` bits are dropped from the result."""
        out = 0
        size = width // 8
        for bit in range(keep, width):
            prefix = value >> (width - bit) if bit else 0
            message = bit.to_bytes(1, "big") + prefix.to_bytes(size, "big")
            flip = hmac.new(self.key, message, hashlib.sha256).digest()[0] & 1
            out = (out << 1) | (((value >> (width - 1 - bit)) & 1) ^ flip)
        return out

    def network(self, network: Network) -> Network:
        mapped = self.address(network.network_address)
        return ipaddress.ip_network(f"{mapped}/{network.prefixlen}", strict=False)

    def text(self, value: str) -> str:
        """Map every address written in free text (comments, `ip:port`, `[ip]:port`, `ip/prefix`)."""

        def one(m: re.Match) -> str:
            try:
                return str(self.address(ipaddress.ip_address(m.group(1))))
            except ValueError:
                return m.group(0)

        return _IPV6_IN_TEXT.sub(one, _IPV4_IN_TEXT.sub(one, value))

    def spec(self, value: str) -> str:
        """Map an address written as iptables writes it: ADDRESS, ADDRESS/PREFIX, or a comma list of those."""
        parts = []
        for part in value.split(","):
            address, slash, prefix = part.partition("/")
            if slash and prefix.isdigit():
                parts.append(str(self.network(ipaddress.ip_network(part, strict=False))))
            else:
                parts.append(self.text(part))
        return ",".join(parts)


class Renamer:
    """Renames namespaces and Services in `namespace/name[:port]` strings, and whole names in free text."""

    def __init__(self, names: dict[str, str]):
        # Longest first, so that "default/my-nginx-service" is replaced before "default".
        self.names = dict(sorted(names.items(), key=lambda item: -len(item[0])))

    def service(self, service_port: str) -> str:
        namespace, _, rest = service_port.partition("/")
        name, colon, port = rest.partition(":")
        full = f"{namespace}/{name}"
        if full in self.names:
            full = self.names[full]
        elif namespace in self.names:
            full = f"{self.names[namespace]}/{name}"
        return full + (f":{port}" if colon else "")

    def text(self, value: str) -> str:
        for old, new in self.names.items():
            if "/" in old:
                value = value.replace(old, new)
        return re.sub(r"(?<![\w.-])([a-z0-9][a-z0-9.-]*)/", lambda m: self.names.get(m.group(1), m.group(1)) + "/",
                      value)


def _chain_renames(dump: Dump, addresses: AddressMap, names: Renamer) -> dict[tuple[str, str], str]:
    renames = {}
    for table in dump.tables:
        for chain in table.chains:
            if chain.builtin or not any(chain.name.startswith(f"{f}-") for f in HASHED_FAMILIES):
                continue
            decoded = decode_chain(table, chain.name)
            if decoded is None or not decoded.verified or decoded.service_port is None or decoded.protocol is None:
                continue  # a name we cannot recompute keeps its old hash
            service = names.service(decoded.service_port)
            if decoded.endpoint is not None:
                new = endpoint_chain(service, decoded.protocol, addresses.text(decoded.endpoint))
            else:
                new = service_chain(decoded.family, service, decoded.protocol)
            renames[(table.name, chain.name)] = new
    return renames


def scrub_dump(dump: Dump, addresses: AddressMap, names: Renamer) -> Dump:
    """The dump with addresses mapped, names renamed and hashed chain names recomputed."""
    renames = _chain_renames(dump, addresses, names)
    tables = []
    for table in dump.tables:

        def chain_name(name: str, table_name: str = table.name) -> str:
            return renames.get((table_name, name), name)

        def option(o: Option) -> Option:
            if o.name == "--comment":
                return replace(o, values=tuple(names.text(addresses.text(v)) for v in o.values))
            if o.name in ("--to-destination", "--to-source", "--ctorigsrc", "--ctorigdst", "--ctreplsrc",
                          "--ctrepldst", "--src-range", "--dst-range"):
                return replace(o, values=tuple(addresses.text(v) for v in o.values))
            if o.name == "--name":  # -m recent lists are named after endpoint chains
                return replace(o, values=tuple(chain_name(v) for v in o.values))
            return o

        chains = []
        for chain in table.chains:
            rules = []
            for rule in chain.rules:
                criteria = tuple(
                    replace(c, value=addresses.spec(c.value)) if c.flag in ("-s", "-d") else c for c in rule.criteria
                )
                matches = tuple(Match(m.module, tuple(option(o) for o in m.options)) for m in rule.matches)
                target = rule.target
                if target is not None:
                    target = Target(chain_name(target.name), target.goto, tuple(option(o) for o in target.options))
                new_rule = Rule(rule.table, chain_name(rule.chain), rule.position, rule.line, "", criteria, matches,
                                target, rule.counters)
                rules.append(new_rule)
            chains.append(Chain(chain_name(chain.name), table.name, chain.builtin, chain.policy, chain.counters,
                                chain.line, tuple(rules)))
        tables.append(Table(table.name, table.line, tuple(_sorted_chains(chains)), table.comments_before,
                            table.comments_after))
    return Dump(dump.source, tuple(tables), dump.comments_after, dump.family)


def scrub_rules(dump: Dump | Ruleset, addresses: AddressMap, names: Renamer) -> Dump | Ruleset:
    """A dump of either dialect scrubbed: an iptables-save dump by `scrub_dump`, an nft ruleset by
    `scenario.scrub_nft.scrub_ruleset`, with one mapping of addresses for both."""
    if isinstance(dump, Ruleset):
        return scrub_ruleset(dump, addresses, names)
    return scrub_dump(dump, addresses, names)


def scrub_text(dump: Dump | Ruleset, key: bytes, rename: dict[str, str] | None = None) -> str:
    """The text of `dump` scrubbed with `key` (and Services renamed), as its dialect prints it: iptables-save
    text, or an nft listing (also for a ruleset read from nft's JSON)."""
    scrubbed = scrub_rules(dump, AddressMap(key), Renamer(rename or {}))
    return dialect_of(scrubbed).format(scrubbed)


def _sorted_chains(chains: list[Chain]) -> list[Chain]:
    """iptables-save prints built-in chains first, then user chains by name: keep that after renaming."""
    builtin = [c for c in chains if c.builtin]
    return builtin + sorted((c for c in chains if not c.builtin), key=lambda c: c.name)


def scrub_metadata(meta: ScenarioMeta, addresses: AddressMap, names: Renamer) -> dict:
    data = meta.model_dump(mode="json", exclude_none=True)
    # An nft ruleset holds both families' tables, so its entry names none (the model refuses one).
    for entry, dumped in zip(meta.dumps, data["dumps"], strict=True):
        if entry.is_ruleset:
            dumped.pop("family", None)

    def walk(value, key: str = ""):
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            # A dual-stack cluster's IPv6 facts carry the same names, ending in _v6.
            plain = key.removesuffix("_v6")
            if value == HEADLESS and key == "cluster_ip":
                return value
            if plain in ("address", "cluster_ip", "src", "dst", "underlay_gateway", "pod_gateway", "returning_to",
                         "load_balancer_ips", "external_ips"):
                return str(addresses.address(ipaddress.ip_address(value)))
            if plain in ("pod_cidr", "underlay_cidr", "load_balancer_source_ranges"):
                return str(addresses.network(ipaddress.ip_network(value)))
            if key in ("title", "summary", "description", "client"):
                return names.text(addresses.text(value))
        return value

    data = walk(data)
    # The pod gateway is derived from the pod range unless stated; mapped, it is no longer derivable.
    for node, original in zip(data["nodes"], meta.nodes, strict=True):
        node["pod_gateway"] = str(addresses.address(original.gateway))
        gateway_v6 = original.gateway_of(6)
        if gateway_v6 is not None:
            node["pod_gateway_v6"] = str(addresses.address(gateway_v6))
    for service in data.get("services", []):
        renamed = names.service(f"{service['namespace']}/{service['name']}")
        service["namespace"], service["name"] = renamed.split("/", 1)
    for pod in data.get("pods", []):
        pod["namespace"] = names.service(f"{pod['namespace']}/x").split("/", 1)[0]
    return data


def scrub_scenario(folder: str | Path, out: str | Path, key: bytes, rename: dict[str, str] | None = None) -> Path:
    """Write the scrubbed copy of the scenario in `folder` to `out` (which must not exist yet).

    Kernel recordings are not copied: they hold the original addresses; run the lab on the copy to make new
    ones. Manifests are copied with addresses and names replaced as text.
    """
    scenario = load_scenario(folder)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists")
    addresses = AddressMap(key)
    names = Renamer(rename or {})
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for entry in scenario.meta.dumps:
            dump = scenario.dumps.get(entry.file) or scenario.rulesets[entry.file]
            scrubbed = scrub_rules(dump, addresses, names)
            (staging / entry.file).write_text(dialect_of(scrubbed).format(scrubbed))
        for name in scenario.meta.manifests:
            text = (scenario.folder / name).read_text()
            (staging / name).write_text(names.text(addresses.text(_rename_manifest(text, names))))
        data = scrub_metadata(scenario.meta, addresses, names)
        header = "# Scrubbed by `iptables-lens scrub`: addresses mapped prefix-preservingly, names replaced.\n"
        (staging / METADATA_FILE).write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _rename_manifest(text: str, names: Renamer) -> str:
    for old, new in names.names.items():
        if "/" in old:
            old_ns, old_name = old.split("/", 1)
            new_ns, new_name = new.split("/", 1)
            text = re.sub(rf"\b{re.escape(old_name)}\b", new_name, text)
            if old_ns != new_ns:
                text = re.sub(rf"(namespace:\s*){re.escape(old_ns)}\b", rf"\g<1>{new_ns}", text)
    return text
