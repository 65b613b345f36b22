"""What kube-proxy (iptables mode) writes: its chain families, its hashed chain names, and the Service a
comment names (`kube.services` says from that which chains and rules serve a Service).

kube-proxy names per-Service chains with a hash: `KUBE-SVC-` + the first 16 characters of
base32(sha256(service port name + protocol)), where the service port name is `namespace/name`, plus
`:portname` when the port is named, and the protocol is lower case. Endpoint chains (`KUBE-SEP-`) hash the
same string followed by the endpoint as kube-proxy writes it (`join_host_port`): `ip:port`, or `[ip]:port` for
an IPv6 endpoint, the string its rules show in comments and in `--to-destination`.

>>> service_chain("KUBE-SVC", "default/my-nginx-service", "tcp")
'KUBE-SVC-OL4YPD43MBS7WVHD'
>>> endpoint_chain("default/my-nginx-service", "tcp", "10.244.1.2:80")
'KUBE-SEP-ULMINKU752SDK7IQ'
>>> endpoint_chain("default/my-nginx-service", "tcp", join_host_port("fd00:10:244:1::2", 80))
'KUBE-SEP-O56SWDBDBH2Z743T'
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from iptables_lens.iptables.model import Rule, Table


def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def service_chain(prefix: str, service_port: str, protocol: str) -> str:
    """`prefix-HASH` for a per-Service-port chain (prefix KUBE-SVC, KUBE-EXT, KUBE-FW or KUBE-SVL)."""
    return f"{prefix}-{_hash16(service_port + protocol.lower())}"


def join_host_port(address: str, port: int | str) -> str:
    """An endpoint as kube-proxy writes and hashes it (Go's `net.JoinHostPort`, which `BaseEndpointInfo` uses):
    `10.244.1.2:80`, `[fd00:10:244:1::2]:80`."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def endpoint_chain(service_port: str, protocol: str, endpoint: str) -> str:
    """`KUBE-SEP-HASH` for one endpoint (`ip:port` or `[ip]:port`, see `join_host_port`) of a Service port."""
    return f"KUBE-SEP-{_hash16(service_port + protocol.lower() + endpoint)}"


# Fixed chains kube-proxy (and the kubelet) write, with what each is for.
FIXED_FAMILIES: dict[str, str] = {
    "KUBE-SERVICES": "entry point for Service traffic: matches cluster IPs, then hands node-local traffic to node ports",
    "KUBE-NODEPORTS": "matches NodePort traffic by destination port",
    "KUBE-POSTROUTING": "masquerades traffic marked for it on the way out",
    "KUBE-MARK-MASQ": "marks a packet so KUBE-POSTROUTING masquerades it",
    "KUBE-MARK-DROP": "marks a packet to be dropped (older kube-proxy versions)",
    "KUBE-FORWARD": "accepts forwarded Service traffic and drops invalid packets",
    "KUBE-FIREWALL": "drops packets from elsewhere to 127.0.0.0/8 that belong to no connection",
    "KUBE-PROXY-FIREWALL": "load balancer source ranges",
    "KUBE-EXTERNAL-SERVICES": "rejects external traffic to Services with no endpoints",
    "KUBE-PROXY-CANARY": "empty chain kube-proxy watches to notice a flushed table",
    "KUBE-KUBELET-CANARY": "empty chain the kubelet watches to notice a flushed table",
    "KUBE-IPTABLES-HINT": "the kubelet's sign to tools in containers of which iptables back end the node uses",
}

# Per-Service chain prefixes, with what each is for.
HASHED_FAMILIES: dict[str, str] = {
    "KUBE-SVC": "load-balances one Service port across its endpoints",
    "KUBE-SVL": "load-balances across node-local endpoints only (externalTrafficPolicy: Local)",
    "KUBE-EXT": "external traffic to one Service port (NodePort, load balancer, external IP)",
    "KUBE-FW": "load balancer firewall for one Service port",
    "KUBE-SEP": "one endpoint: DNAT to the pod",
}

# A per-Service chain's name: one of HASHED_FAMILIES, a dash, 16 base32 characters.
PER_SERVICE_CHAIN = re.compile(r"^(KUBE-(?:SVC|SVL|EXT|FW|SEP))-([A-Z2-7]{16})$")


def family(chain: str) -> str | None:
    """The kube-proxy chain family of a chain name (`KUBE-SVC`, `KUBE-NODEPORTS`, ...), or None."""
    m = PER_SERVICE_CHAIN.match(chain)
    if m:
        return m.group(1)
    if chain in FIXED_FAMILIES:
        return chain
    return None


# Chains that have one name in two tables and a different job in each.
_FILTER_FAMILIES: dict[str, str] = {
    "KUBE-SERVICES": "rejects traffic to Services that have no endpoints",
    "KUBE-NODEPORTS": "accepts traffic to health check node ports",
}


def describe_family(name: str, table: str = "nat") -> str:
    """What a chain family is for, in the table the chain is in."""
    if table == "filter" and name in _FILTER_FAMILIES:
        return _FILTER_FAMILIES[name]
    return FIXED_FAMILIES.get(name) or HASHED_FAMILIES.get(name, "")


# "default/my-nginx-service", "default/my-nginx-service cluster IP", "ns/name:port -> 10.0.0.1:80",
# "masquerade traffic for ns/name:port external destinations"
_SERVICE_IN_COMMENT = re.compile(r"(?:^|\s)([a-z0-9][a-z0-9.-]*/[a-z0-9][a-z0-9.-]*(?::[a-z0-9-]+)?)(?=$|\s)")


def service_of_comment(comment: str | None) -> str | None:
    """The `namespace/name[:port]` a kube-proxy comment names, or None."""
    if not comment:
        return None
    m = _SERVICE_IN_COMMENT.search(comment)
    return m.group(1) if m else None


@dataclass(frozen=True)
class ChainName:
    """A hashed chain name checked against the Service it belongs to."""

    chain: str
    family: str
    service_port: str | None
    protocol: str | None
    endpoint: str | None
    verified: bool

    @property
    def explanation(self) -> str:
        if not self.verified or self.service_port is None:
            return f"{self.chain}: hash not verified (no Service and protocol found that produce it)"
        hashed = self.service_port + (self.protocol or "") + (self.endpoint or "")
        return (
            f"{self.chain} = {self.family}- + the first 16 characters of "
            f"base32(sha256(\"{hashed}\"))"
        )


def _protocol_of(rules: tuple[Rule, ...]) -> list[str]:
    found = [c.value for r in rules for c in r.criteria if c.flag == "-p"]
    return list(dict.fromkeys(found + ["tcp", "udp", "sctp"]))


def decode_chain(table: Table, chain: str) -> ChainName | None:
    """Decode a hashed kube-proxy chain name by recomputing its hash from the rules' comments.

    The chain's own comments name its Service almost always; only when they do not are the comments of the
    rules that jump to it read too (which means a scan of the table, so it is the second resort).
    """
    m = PER_SERVICE_CHAIN.match(chain)
    if not m or not table.has_chain(chain):
        return None
    rules = table.chain(chain).rules
    own = [r.comment for r in rules]
    found = _decode_from(m.group(1), chain, rules, own)
    if found.verified:
        return found
    jumpers = [r.comment for r in table.rules if r.target and r.target.name == chain]
    again = _decode_from(m.group(1), chain, rules, own + jumpers)
    return again if again.verified or again.service_port else found


def _decode_from(prefix: str, chain: str, rules: tuple[Rule, ...], comments: list[str | None]) -> ChainName:
    candidates = list(dict.fromkeys(s for s in map(service_of_comment, comments) if s))
    protocols = _protocol_of(rules)
    if prefix == "KUBE-SEP":
        endpoints = [o.value for r in rules if r.target and r.target.name == "DNAT"
                     for o in r.target.options if o.name == "--to-destination"]
        for svc in candidates:
            for proto in protocols:
                for ep in endpoints:
                    if endpoint_chain(svc, proto, ep) == chain:
                        return ChainName(chain, prefix, svc, proto, ep, True)
    else:
        for svc in candidates:
            for proto in protocols:
                if service_chain(prefix, svc, proto) == chain:
                    return ChainName(chain, prefix, svc, proto, None, True)
    return ChainName(chain, prefix, candidates[0] if candidates else None, None, None, False)


NFT_NAME_BASE_MAX = 256 - 16  # knftables.NameLengthMax less the longest chain-name prefix


def nft_name_base(text: str) -> str:
    """kube-proxy's nftables `hashAndTruncate` (pkg/proxy/nftables/proxier.go): `HASH-text`, HASH the first 8
    base32 characters of sha256(text).

    >>> nft_name_base("ns1/svc1/tcp/p80")
    'ULMVA6XW-ns1/svc1/tcp/p80'
    """
    # base32 writes each 5 bytes as 8 characters: the first 5 bytes of the digest give the 8 kept.
    digest = base64.b32encode(hashlib.sha256(text.encode()).digest()[:5]).decode()
    name = f"{digest}-{text}"
    return name if len(name) <= NFT_NAME_BASE_MAX else name[:NFT_NAME_BASE_MAX - 3] + "..."
