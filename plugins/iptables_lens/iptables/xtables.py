"""What iptables knows about its extensions: which match modules and targets exist in each family, which
options they take, and what their values look like.

The parser uses this to refuse what `iptables-restore` (or `ip6tables-restore`) would refuse (an unknown
module, an option of the wrong module, a port that is not a port, an IPv4 address in an IPv6 dump), so that
a dump which passes `iptables-lens check` also loads. Modules a family knows but whose options are not in
its `Extensions.match_options` are accepted with any options: they exist, but we do not check their options.
The facts are those of iptables 1.8.9 (its extensions' `libxt_*.c`, `libipt_*.c`, `libip6t_*.c`) and of
its restore commands, checked in a network namespace (tests/test_parse_kernel.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from iptables_lens.iptables import options, protocols, values
from iptables_lens.iptables.model import Criterion, Family, Match, Option, Target
from iptables_lens.iptables.options import (
    Validator,
    address_list,
    any_one,
    by_family,
    byte_from,
    flag,
    hbh_options,
    hops,
    interface,
    name_list,
    one,
    prefix_network,
    read_by,
    two,
)

arity = options.arity  # the parser asks the tables how many arguments an option takes

MAX_CHAIN_NAME = 28  # XT_EXTENSION_MAXNAMELEN - 1: what both iptables variants accept

# Every match extension shipped with iptables 1.8.9, plus a few that older versions had: those of both
# families (libxt_*), then each family's own (libipt_*, libip6t_*). A name outside its family's set makes
# iptables-restore fail with "Couldn't load match".
_SHARED_MATCHES = frozenset(
    """addrtype bpf cgroup cluster comment connbytes connlabel connlimit connmark conntrack cpu dccp devgroup
    dscp ecn esp hashlimit helper ipcomp iprange ipvs length limit mac mark multiport nfacct owner physdev
    pkttype policy quota rateest recent rpfilter sctp set socket state statistic string tcp tcpmss time tos
    u32 udp udplite""".split()
)
MATCHES_BY_FAMILY: dict[Family, frozenset[str]] = {
    4: _SHARED_MATCHES | {"ah", "icmp", "osf", "realm", "ttl"},
    6: _SHARED_MATCHES | {"ah", "dst", "eui64", "frag", "hbh", "hl", "icmp6", "ipv6header", "mh", "rt", "srh"},
}
KNOWN_MATCHES = MATCHES_BY_FAMILY[4] | MATCHES_BY_FAMILY[6]

# Every target extension, plus the standard verdicts, likewise.
STANDARD_TARGETS = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE"})
_SHARED_TARGETS = STANDARD_TARGETS | frozenset(
    """AUDIT CHECKSUM CLASSIFY CONNMARK CONNSECMARK CT DNAT DSCP HMARK IDLETIMER LED LOG MARK MASQUERADE
    NETMAP NFLOG NFQUEUE NOTRACK RATEEST REDIRECT REJECT SECMARK SET SNAT SYNPROXY TCPMSS TCPOPTSTRIP TEE TOS
    TPROXY TRACE""".split()
)
TARGETS_BY_FAMILY: dict[Family, frozenset[str]] = {
    4: _SHARED_TARGETS | {"CLUSTERIP", "ECN", "TTL", "ULOG"},
    6: _SHARED_TARGETS | {"DNPT", "HL", "SNPT"},
}
KNOWN_TARGETS = TARGETS_BY_FAMILY[4] | TARGETS_BY_FAMILY[6]
# Names that are a target in one family only: elsewhere `-j NAME` is refused, not read as a jump to a chain.
FAMILY_TARGETS = KNOWN_TARGETS - _SHARED_TARGETS

# Targets the kernel allows only in one table.
TARGET_TABLES = {
    "DNAT": {"nat"},
    "SNAT": {"nat"},
    "MASQUERADE": {"nat"},
    "REDIRECT": {"nat"},
    "NETMAP": {"nat"},
    "NOTRACK": {"raw"},
    "CT": {"raw"},
    "TRACE": {"raw"},
    "REJECT": {"filter"},
    "CHECKSUM": {"mangle"},
    "TPROXY": {"mangle"},
    "ECN": {"mangle"},
    "TOS": {"mangle"},
    "TTL": {"mangle"},
    "DSCP": {"mangle"},
    "HL": {"mangle"},
    "CLASSIFY": {"mangle"},
    "DNPT": {"mangle"},
    "SNPT": {"mangle"},
}

# Options of which a match module or target needs at least one ("-m comment" alone is refused).
REQUIRED_OPTIONS: dict[str, tuple[str, ...]] = {
    "comment": ("--comment",),
    "mark": ("--mark",),
    "connmark": ("--mark",),
    "state": ("--state",),
    "statistic": ("--mode",),
    "multiport": ("--sports", "--dports", "--ports", "--source-ports", "--destination-ports"),
    "addrtype": ("--src-type", "--dst-type"),
    "DNAT": ("--to-destination",),
    "SNAT": ("--to-source",),
    "MARK": ("--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark"),
    "icmp": ("--icmp-type",),
    "icmp6": ("--icmpv6-type",),
    "ipv6header": ("--header",),
    "hl": ("--hl-eq", "--hl-lt", "--hl-gt", "--hl"),
    "HL": ("--hl-set", "--hl-dec", "--hl-inc"),
    "NETMAP": ("--to",),
}

# Options of a module or target of which at most one may be given (xtables' `.excl`).
EXCLUSIVE_OPTIONS: dict[str, frozenset[str]] = {
    "hl": frozenset(REQUIRED_OPTIONS["hl"]),
    "HL": frozenset(REQUIRED_OPTIONS["HL"]),
    "frag": frozenset({"--fragmore", "--fraglast"}),
}

# Targets that the nat table refuses: it translates, it does not filter.
NAT_FORBIDDEN_TARGETS = frozenset({"DROP", "REJECT"})

# Protocols whose ports a NAT target may rewrite (libxt_NAT's `portok`: TCP, UDP, SCTP, DCCP, and ICMP).
# libxt_NAT looks at the protocol's number even when `!` negates it.
PORT_PROTOCOLS = frozenset({6, 17, 132, 33, 1})

# Match modules that need `-p PROTO` on the same rule, not negated (the kernel checks the protocol's number).
_PORT_MATCH_PROTOCOLS = {"tcp": {6}, "udp": {17}, "sctp": {132}, "dccp": {33}, "udplite": {136},
                         "multiport": {6, 17, 136, 132, 33}, "esp": {50}}
MODULE_PROTOCOLS_BY_FAMILY: dict[Family, dict[str, set[int]]] = {
    4: {**_PORT_MATCH_PROTOCOLS, "icmp": {1}, "ah": {51}},  # IPv6's ah reads an extension header instead
    6: {**_PORT_MATCH_PROTOCOLS, "icmp6": {58}, "mh": {135}},
}
MODULE_PROTOCOLS = MODULE_PROTOCOLS_BY_FAMILY[4]

_number = read_by(values.unsigned)
_port_range = read_by(values.port_range)
_port_list = read_by(values.port_list)
_mark = read_by(values.mark)
_probability = read_by(values.probability)
_nat_ports = read_by(values.nat_ports)
_number_range = read_by(values.unsigned_range)
_byte = read_by(lambda value: values.unsigned(value, maximum=0xFF))

_CTSTATES = {"INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED", "SNAT", "DNAT"}
_STATES = {"INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED"}
_CTSTATUS = {"NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"}
_ADDRTYPES = {
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
    "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
}


_NUMBER = one(_number)
_ANY = one(any_one)
_BYTE = one(_byte)


@dataclass(frozen=True)
class Extensions:
    """What one family's iptables accepts: its match modules and targets, and the options we check, each
    with the check of its values (None: good, else what is wrong)."""

    family: Family
    matches: frozenset[str]
    targets: frozenset[str]
    match_options: dict[str, dict[str, Validator]]
    target_options: dict[str, dict[str, Validator]]


def _extensions(family: Family) -> Extensions:
    on_address = one(lambda value: options.address(value, family))
    match_options: dict[str, dict[str, Validator]] = {
        "tcp": {
            "--sport": one(_port_range), "--dport": one(_port_range),
            "--tcp-flags": two,
            "--syn": flag, "--tcp-option": _NUMBER,
        },
        "udp": {"--sport": one(_port_range), "--dport": one(_port_range)},
        "sctp": {"--sport": one(_port_range), "--dport": one(_port_range), "--chunk-types": lambda v: None},
        "multiport": {
            "--sports": one(_port_list), "--dports": one(_port_list), "--ports": one(_port_list),
            "--source-ports": one(_port_list), "--destination-ports": one(_port_list),
        },
        "comment": {"--comment": _ANY},
        "conntrack": {
            "--ctstate": one(name_list(_CTSTATES, "conntrack state")),
            "--ctstatus": one(name_list(_CTSTATUS, "conntrack status")),
            "--ctproto": _ANY, "--ctorigsrc": on_address, "--ctorigdst": on_address,
            "--ctreplsrc": on_address, "--ctrepldst": on_address,
            "--ctorigsrcport": one(_port_range), "--ctorigdstport": one(_port_range),
            "--ctreplsrcport": one(_port_range), "--ctrepldstport": one(_port_range),
            "--ctexpire": one(_number_range), "--ctdir": one(name_list({"ORIGINAL", "REPLY"}, "direction")),
        },
        "state": {"--state": one(name_list(_STATES, "state"))},
        "mark": {"--mark": one(_mark)},
        "connmark": {"--mark": one(_mark)},
        "addrtype": {
            "--src-type": one(name_list(_ADDRTYPES, "address type")),
            "--dst-type": one(name_list(_ADDRTYPES, "address type")),
            "--limit-iface-in": flag, "--limit-iface-out": flag,
        },
        "statistic": {
            "--mode": one(name_list({"random", "nth"}, "mode")),
            "--probability": one(_probability), "--every": _NUMBER, "--packet": _NUMBER,
        },
        "recent": {
            "--set": flag, "--rcheck": flag, "--update": flag, "--remove": flag,
            "--seconds": _NUMBER, "--reap": flag, "--hitcount": _NUMBER, "--rttl": flag,
            "--name": _ANY, "--mask": on_address, "--rsource": flag, "--rdest": flag,
        },
        "limit": {"--limit": _ANY, "--limit-burst": _NUMBER},
        "iprange": {
            "--src-range": one(by_family(family, values.address_range)),
            "--dst-range": one(by_family(family, values.address_range)),
        },
        "pkttype": {"--pkt-type": one(name_list({"unicast", "broadcast", "multicast"}, "packet type"))},
    }
    nat_range = one(by_family(family, values.nat_range))
    target_options: dict[str, dict[str, Validator]] = {
        "ACCEPT": {}, "DROP": {}, "RETURN": {}, "QUEUE": {}, "NOTRACK": {}, "TRACE": {},
        "DNAT": {"--to-destination": nat_range, "--random": flag, "--persistent": flag},
        "SNAT": {"--to-source": nat_range, "--random": flag, "--random-fully": flag, "--persistent": flag},
        "MASQUERADE": {"--to-ports": one(_nat_ports), "--random": flag, "--random-fully": flag},
        "REDIRECT": {"--to-ports": one(_nat_ports), "--random": flag},
        "NETMAP": {"--to": one(prefix_network(family))},
        "MARK": {
            "--set-xmark": one(_mark), "--set-mark": one(_mark), "--and-mark": one(_mark),
            "--or-mark": one(_mark), "--xor-mark": one(_mark),
        },
        "CONNMARK": {
            "--set-xmark": one(_mark), "--set-mark": one(_mark), "--save-mark": flag, "--restore-mark": flag,
            "--and-mark": one(_mark), "--or-mark": one(_mark), "--xor-mark": one(_mark),
            "--mask": one(_mark), "--nfmask": one(_mark), "--ctmask": one(_mark),
        },
        "REJECT": {"--reject-with": one(by_family(family, protocols.reject_with))},
        "LOG": {
            "--log-level": one(read_by(values.syslog_level)), "--log-prefix": _ANY, "--log-tcp-sequence": flag,
            "--log-tcp-options": flag, "--log-ip-options": flag, "--log-uid": flag, "--log-macdecode": flag,
        },
        "NFLOG": {"--nflog-group": _NUMBER, "--nflog-prefix": _ANY, "--nflog-range": _NUMBER,
                  "--nflog-size": _NUMBER, "--nflog-threshold": _NUMBER},
        "CT": {"--notrack": flag, "--helper": _ANY, "--ctevents": _ANY, "--expevents": _ANY, "--zone": _ANY,
               "--zone-orig": _ANY, "--zone-reply": _ANY, "--timeout": _ANY},
    }
    icmp_type = one(by_family(family, protocols.icmp_type))
    if family == 4:
        match_options["icmp"] = {"--icmp-type": icmp_type}
    else:
        match_options.update({module: dict(spec) for module, spec in _IPV6_MATCH_OPTIONS.items()})
        match_options["icmp6"] = {"--icmpv6-type": icmp_type}
        match_options["rt"]["--rt-0-addrs"] = one(read_by(hops))
        match_options["srh"].update({f"--srh-{kind}sid": one(prefix_network(6)) for kind in "pnl"})
        target_options["HL"] = {"--hl-set": _BYTE, "--hl-dec": one(byte_from(1)), "--hl-inc": one(byte_from(1))}
    return Extensions(family, MATCHES_BY_FAMILY[family], TARGETS_BY_FAMILY[family], match_options, target_options)


_UINT32_RANGE = one(_number_range)
_IPV6_MATCH_OPTIONS: dict[str, dict[str, Validator]] = {
    "hl": {"--hl-eq": _BYTE, "--hl-lt": _BYTE, "--hl-gt": _BYTE, "--hl": _BYTE},
    "rt": {"--rt-type": _NUMBER, "--rt-segsleft": _UINT32_RANGE, "--rt-len": _NUMBER, "--rt-0-res": flag,
           "--rt-0-not-strict": flag},
    "frag": {"--fragid": _UINT32_RANGE, "--fraglen": _NUMBER, "--fragres": flag, "--fragfirst": flag,
             "--fragmore": flag, "--fraglast": flag},
    "ipv6header": {"--header": one(read_by(protocols.ipv6_headers)), "--soft": flag},
    "hbh": {"--hbh-len": _NUMBER, "--hbh-opts": one(hbh_options)},
    "dst": {"--dst-len": _NUMBER, "--dst-opts": one(hbh_options)},
    "mh": {"--mh-type": one(read_by(protocols.mh_types))},
    "eui64": {},
    "ah": {"--ahspi": _UINT32_RANGE, "--ahlen": _NUMBER, "--ahres": flag},
    "srh": {
        f"--srh-{field}": _BYTE
        for field in ("next-hdr", "hdr-len-eq", "hdr-len-gt", "hdr-len-lt", "segs-left-eq", "segs-left-gt",
                      "segs-left-lt", "last-entry-eq", "last-entry-gt", "last-entry-lt")
    } | {"--srh-tag": one(read_by(lambda value: values.unsigned(value, maximum=0xFFFF)))},
}

EXTENSIONS: dict[Family, Extensions] = {4: _extensions(4), 6: _extensions(6)}
# IPv4's, under the names callers used before there were two families.
MATCH_OPTIONS = EXTENSIONS[4].match_options
TARGET_OPTIONS = EXTENSIONS[4].target_options

# Options whose values are free text: formatting quotes them the way iptables-save does.
STRING_OPTIONS = frozenset({"--comment", "--log-prefix", "--nflog-prefix", "--name", "--helper"})

CRITERION_FLAGS = {
    "-s": "-s", "--source": "-s", "--src": "-s",
    "-d": "-d", "--destination": "-d", "--dst": "-d",
    "-i": "-i", "--in-interface": "-i",
    "-o": "-o", "--out-interface": "-o",
    "-p": "-p", "--protocol": "-p",
    "-f": "-f", "--fragment": "-f",
}


def check_criterion(flag: str, value: str, family: Family = 4, negated: bool = False) -> str | None:
    """None if `value` is acceptable for `-s/-d/-i/-o/-p` in a dump of `family`, else why not."""
    if flag in ("-s", "-d"):
        return address_list(value, family)
    if flag in ("-i", "-o"):
        return interface(value)
    if flag == "-p":
        try:
            number = protocols.protocol(value)
        except values.BadValue as problem:
            return str(problem)
        if number == 0 and negated:
            return "'! -p all' would never match: every packet has a protocol"
    return None


# Options that iptables does not let '!' negate.
NOT_NEGATABLE = frozenset({"--comment", "--mode", "--name", "--seconds", "--reap", "--rsource", "--rdest",
                           "--limit-burst", "--limit-iface-in", "--limit-iface-out",
                           "--hl-lt", "--hl-gt", "--hl", "--rt-0-res", "--rt-0-addrs", "--rt-0-not-strict",
                           "--fragres", "--fragfirst", "--fragmore", "--fraglast", "--soft", "--hbh-opts",
                           "--dst-opts", "--ahres"})


def _protocol(criteria: list[Criterion]) -> tuple[int | None, bool]:
    """The rule's protocol number (None: no `-p`) and whether `!` negates it."""
    for criterion in criteria:
        if criterion.flag == "-p":
            return protocols.protocol(criterion.value), criterion.negated
    return None, False


def rule_problem(
    table: str, criteria: list[Criterion], matches: tuple[Match, ...], target: Target | None, family: Family = 4
) -> tuple[str, int | None] | None:
    """What the kernel would refuse in a rule as a whole, as (message, index of the match to point at, or
    None for the target); None if nothing."""
    number, negated = _protocol(criteria)
    module_protocols = MODULE_PROTOCOLS_BY_FAMILY[family]
    for index, match in enumerate(matches):
        needed = module_protocols.get(match.module)
        if needed is not None and (number not in needed or negated):
            names = "/".join(sorted(protocols.saved_protocol_name(n) or str(n) for n in needed))
            return f"match module {match.module!r} needs '-p {names}' on the same rule", index
        if lacks_required(match.module, match.options):
            return f"{match.module} needs {' or '.join(REQUIRED_OPTIONS[match.module])}", index
    if target is None:
        return None
    name = target.name
    allowed = TARGET_TABLES.get(name)
    if allowed and table not in allowed:
        return f"target {name} is only valid in the {'/'.join(sorted(allowed))} table, not in {table!r}", None
    if table == "nat" and name in NAT_FORBIDDEN_TARGETS:
        return f"the nat table does not filter: {name} is not allowed there (use filter)", None
    if lacks_required(name, target.options):
        return f"{name} needs {' or '.join(REQUIRED_OPTIONS[name])}", None
    if rewrites_ports(target, family) and number not in PORT_PROTOCOLS:
        return f"{name} with a port needs '-p tcp', udp, sctp, dccp or icmp on the same rule", None
    if resets_tcp(target, family) and (number != 6 or negated):
        return "REJECT --reject-with tcp-reset needs '-p tcp' on the same rule", None
    return None


# Match modules the kernel allows only in some hooks (`.hooks` of the kernel's match). The parser checks them
# in built-in chains; what reaches a user chain is not followed.
CHAIN_BOUND_MATCHES: dict[str, frozenset[str]] = {"eui64": frozenset({"PREROUTING", "INPUT", "FORWARD"})}


def chain_problem(chain: str, matches: tuple[Match, ...]) -> tuple[str, int | None] | None:
    """A match module in a built-in chain whose hook the kernel does not allow it in, as rule_problem says."""
    for index, match in enumerate(matches):
        allowed = CHAIN_BOUND_MATCHES.get(match.module)
        if allowed is not None and chain not in allowed:
            return f"match module {match.module!r} works only in {', '.join(sorted(allowed))}, not in {chain}", index
    return None


def lacks_required(name: str, options: tuple[Option, ...]) -> bool:
    """Whether a match module or target misses all of the options of which it needs one."""
    required = REQUIRED_OPTIONS.get(name)
    if not required:
        return False
    return not any(o.name in required for o in options)


def rewrites_ports(target: Target, family: Family = 4) -> bool:
    """Whether a NAT target changes ports, which needs a protocol with ports on the rule."""
    for option in target.options:
        if option.name == "--to-ports":
            return True
        if option.name in ("--to-destination", "--to-source"):
            try:
                if values.nat_range(option.value, family).ports is not None:
                    return True
            except values.BadValue:
                continue  # the parser refuses the value itself
    return False


def resets_tcp(target: Target, family: Family = 4) -> bool:
    """Whether a REJECT answers with a TCP reset, which needs `-p tcp` on the rule."""
    reply = target.option("--reject-with") if target.name == "REJECT" else None
    if reply is None:
        return False
    try:
        return protocols.reject_with(reply.value, family) == "tcp-reset"
    except values.BadValue:
        return False


def target_facts(target: Target, family: Family) -> tuple[object, ...]:
    """What rule_problem looks at of a target besides the rule's table and protocol: targets alike in these
    pass or fail its checks alike (the fast path checks a shape of rule once)."""
    name = target.name if target.name in CHECKED_TARGETS else ""
    return (name, lacks_required(target.name, target.options), rewrites_ports(target, family),
            resets_tcp(target, family))


def option_problem(owner: str, options: list[Option]) -> tuple[str, int] | None:
    """An option given twice to one module or target, or two options of which one may be given, as
    (message, index of the offending option); None if neither. Only `-m policy` repeats options."""
    seen: set[str] = set()
    exclusive = EXCLUSIVE_OPTIONS.get(owner, frozenset())
    for index, option in enumerate(options):
        if option.name in seen and owner != "policy":
            return f"{owner}: option {option.name} can only be used once", index
        if option.name in exclusive and seen & exclusive:
            return f"{owner}: {option.name} cannot be given with {', '.join(sorted(seen & exclusive))}", index
        seen.add(option.name)
    return None


# Targets that rule_problem looks at by name, and targets that only one family has (which the parser refuses
# in the other by name); any other target passes or fails its checks as any other does.
CHECKED_TARGETS = frozenset(TARGET_TABLES) | NAT_FORBIDDEN_TARGETS | frozenset(REQUIRED_OPTIONS) | FAMILY_TARGETS
