"""What iptables knows about its extensions: which match modules and targets exist, which options they
take, and what their values look like.

The parser uses this to refuse what `iptables-restore` would refuse (an unknown module, an option of the
wrong module, a port that is not a port), so that a dump which passes `iptables-lens check` also loads.
Modules listed in KNOWN_MATCHES but absent from MATCH_OPTIONS are accepted with any options: they exist,
but we do not check their options.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from iptables_lens.iptables import values
from iptables_lens.iptables.model import Criterion, Match, Option, Target

Validator = Callable[[tuple[str, ...]], "str | None"]

MAX_CHAIN_NAME = 28  # XT_EXTENSION_MAXNAMELEN - 1: what both iptables variants accept

# Every match extension shipped with iptables 1.8 (libxt_*, libipt_*), plus a few that older
# versions had. A name outside this set makes iptables-restore fail with "Couldn't load match".
KNOWN_MATCHES = frozenset(
    """addrtype ah bpf cgroup cluster comment connbytes connlabel connlimit connmark conntrack cpu dccp
    devgroup dscp ecn esp hashlimit helper hl icmp iprange ipvs length limit mac mark multiport nfacct osf
    owner physdev pkttype policy quota rateest realm recent rpfilter sctp set socket state statistic string
    tcp tcpmss time tos ttl u32 udp udplite""".split()
)

# Every target extension (libxt_*, libipt_*), plus the standard verdicts.
STANDARD_TARGETS = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE"})
KNOWN_TARGETS = STANDARD_TARGETS | frozenset(
    """AUDIT CHECKSUM CLASSIFY CLUSTERIP CONNMARK CONNSECMARK CT DNAT DSCP ECN HL HMARK IDLETIMER LED LOG
    MARK MASQUERADE NETMAP NFLOG NFQUEUE NOTRACK RATEEST REDIRECT REJECT SECMARK SET SNAT SYNPROXY TCPMSS
    TCPOPTSTRIP TEE TOS TPROXY TRACE TTL ULOG""".split()
)

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
}

# Targets that the nat table refuses: it translates, it does not filter.
NAT_FORBIDDEN_TARGETS = frozenset({"DROP", "REJECT"})

# Protocols with ports, which a NAT target that rewrites ports needs on its rule.
PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "dccp", "udplite"})

# Match modules that need `-p PROTO` on the same rule (the kernel checks the protocol).
MODULE_PROTOCOLS = {
    "tcp": {"tcp"},
    "udp": {"udp"},
    "sctp": {"sctp"},
    "dccp": {"dccp"},
    "icmp": {"icmp"},
    "udplite": {"udplite"},
    "multiport": {"tcp", "udp", "udplite", "sctp", "dccp"},
}

_IFACE = re.compile(r"[^\s/:]{1,15}")


def _one(check: Callable[[str], str | None]) -> Validator:
    def validate(given: tuple[str, ...]) -> str | None:
        if len(given) != 1:
            return f"expects exactly one value, got {len(given)}"
        return check(given[0])

    validate.arity = 1  # type: ignore[attr-defined]
    return validate


def _flag(given: tuple[str, ...]) -> str | None:
    return None if not given else f"takes no value, got {' '.join(given)!r}"


_flag.arity = 0  # type: ignore[attr-defined]


def _two(given: tuple[str, ...]) -> str | None:
    return None if len(given) == 2 else "expects two values"


_two.arity = 2  # type: ignore[attr-defined]


def arity(validator: Validator) -> int | None:
    """How many arguments the option takes (getopt consumes exactly these), or None if not fixed."""
    return getattr(validator, "arity", None)


def _any_one(value: str) -> str | None:
    return None


def _read_by(reader: Callable[[str], object]) -> Callable[[str], str | None]:
    """A check that `value` is one `reader` reads (see `values`): None, or what is wrong with it."""

    def check(value: str) -> str | None:
        try:
            reader(value)
        except values.BadValue as problem:
            return str(problem)
        return None

    return check


_number = _read_by(values.unsigned)
_port_range = _read_by(values.port_range)
_port_list = _read_by(values.port_list)
_mark = _read_by(values.mark)
_probability = _read_by(values.probability)
_nat_range = _read_by(values.nat_range)
_nat_ports = _read_by(values.nat_ports)
_address_range = _read_by(values.address_range)
_number_range = _read_by(values.unsigned_range)


_CTSTATES = {"INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED", "SNAT", "DNAT"}
_STATES = {"INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED"}
_CTSTATUS = {"NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"}
_ADDRTYPES = {
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
    "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
}


def _name_list(allowed: set[str], what: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        for name in value.split(","):
            if name not in allowed:
                return f"unknown {what} {name!r} (expected one of {', '.join(sorted(allowed))})"
        return None

    return check


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# The common `-s 10.0.0.0/8`, checked without building a Network.
_DOTTED = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/(?:3[0-2]|[12]?[0-9]))?")
_network = _read_by(values.network)


def address(value: str) -> str | None:
    """None if `value` is an IPv4 address or network as the parser accepts it (see values.network), else why not."""
    return None if _DOTTED.fullmatch(value) else _network(value)


def address_list(value: str) -> str | None:
    for part in value.split(","):
        problem = address(part)
        if problem:
            return problem
    return None


def _interface(value: str) -> str | None:
    return None if _IFACE.fullmatch(value) else f"expected an interface name of at most 15 characters, got {value!r}"


_NUMBER = _one(_number)
_ANY = _one(_any_one)

MATCH_OPTIONS: dict[str, dict[str, Validator]] = {
    "tcp": {
        "--sport": _one(_port_range), "--dport": _one(_port_range),
        "--tcp-flags": _two,
        "--syn": _flag, "--tcp-option": _NUMBER,
    },
    "udp": {"--sport": _one(_port_range), "--dport": _one(_port_range)},
    "sctp": {"--sport": _one(_port_range), "--dport": _one(_port_range), "--chunk-types": lambda v: None},
    "multiport": {
        "--sports": _one(_port_list), "--dports": _one(_port_list), "--ports": _one(_port_list),
        "--source-ports": _one(_port_list), "--destination-ports": _one(_port_list),
    },
    "comment": {"--comment": _ANY},
    "conntrack": {
        "--ctstate": _one(_name_list(_CTSTATES, "conntrack state")),
        "--ctstatus": _one(_name_list(_CTSTATUS, "conntrack status")),
        "--ctproto": _ANY, "--ctorigsrc": _one(address), "--ctorigdst": _one(address),
        "--ctreplsrc": _one(address), "--ctrepldst": _one(address),
        "--ctorigsrcport": _one(_port_range), "--ctorigdstport": _one(_port_range),
        "--ctreplsrcport": _one(_port_range), "--ctrepldstport": _one(_port_range),
        "--ctexpire": _one(_number_range), "--ctdir": _one(_name_list({"ORIGINAL", "REPLY"}, "direction")),
    },
    "state": {"--state": _one(_name_list(_STATES, "state"))},
    "mark": {"--mark": _one(_mark)},
    "connmark": {"--mark": _one(_mark)},
    "addrtype": {
        "--src-type": _one(_name_list(_ADDRTYPES, "address type")),
        "--dst-type": _one(_name_list(_ADDRTYPES, "address type")),
        "--limit-iface-in": _flag, "--limit-iface-out": _flag,
    },
    "statistic": {
        "--mode": _one(_name_list({"random", "nth"}, "mode")),
        "--probability": _one(_probability), "--every": _NUMBER, "--packet": _NUMBER,
    },
    "recent": {
        "--set": _flag, "--rcheck": _flag, "--update": _flag, "--remove": _flag,
        "--seconds": _NUMBER, "--reap": _flag, "--hitcount": _NUMBER, "--rttl": _flag,
        "--name": _ANY, "--mask": _one(address), "--rsource": _flag, "--rdest": _flag,
    },
    "icmp": {"--icmp-type": _ANY},
    "limit": {"--limit": _ANY, "--limit-burst": _NUMBER},
    "iprange": {"--src-range": _one(_address_range), "--dst-range": _one(_address_range)},
    "pkttype": {"--pkt-type": _one(_name_list({"unicast", "broadcast", "multicast"}, "packet type"))},
}

TARGET_OPTIONS: dict[str, dict[str, Validator]] = {
    "ACCEPT": {}, "DROP": {}, "RETURN": {}, "QUEUE": {}, "NOTRACK": {}, "TRACE": {},
    "DNAT": {"--to-destination": _one(_nat_range), "--random": _flag, "--persistent": _flag},
    "SNAT": {"--to-source": _one(_nat_range), "--random": _flag, "--random-fully": _flag, "--persistent": _flag},
    "MASQUERADE": {"--to-ports": _one(_nat_ports), "--random": _flag, "--random-fully": _flag},
    "REDIRECT": {"--to-ports": _one(_nat_ports), "--random": _flag},
    "MARK": {
        "--set-xmark": _one(_mark), "--set-mark": _one(_mark), "--and-mark": _one(_mark),
        "--or-mark": _one(_mark), "--xor-mark": _one(_mark),
    },
    "CONNMARK": {
        "--set-xmark": _one(_mark), "--set-mark": _one(_mark), "--save-mark": _flag, "--restore-mark": _flag,
        "--and-mark": _one(_mark), "--or-mark": _one(_mark), "--xor-mark": _one(_mark),
        "--mask": _one(_mark), "--nfmask": _one(_mark), "--ctmask": _one(_mark),
    },
    "REJECT": {"--reject-with": _ANY},
    "LOG": {
        "--log-level": _one(_read_by(values.syslog_level)), "--log-prefix": _ANY, "--log-tcp-sequence": _flag, "--log-tcp-options": _flag,
        "--log-ip-options": _flag, "--log-uid": _flag, "--log-macdecode": _flag,
    },
    "NFLOG": {"--nflog-group": _NUMBER, "--nflog-prefix": _ANY, "--nflog-range": _NUMBER,
              "--nflog-size": _NUMBER, "--nflog-threshold": _NUMBER},
    "CT": {"--notrack": _flag, "--helper": _ANY, "--ctevents": _ANY, "--expevents": _ANY, "--zone": _ANY,
           "--zone-orig": _ANY, "--zone-reply": _ANY, "--timeout": _ANY},
}

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

_PROTOCOLS = {"tcp", "udp", "udplite", "icmp", "esp", "ah", "sctp", "dccp", "gre", "all", "ipv6-icmp", "icmpv6", "mh"}


def check_criterion(flag: str, value: str) -> str | None:
    """None if `value` is acceptable for `-s/-d/-i/-o/-p`, else why not."""
    if flag in ("-s", "-d"):
        return address_list(value)
    if flag in ("-i", "-o"):
        return _interface(value)
    if flag == "-p":
        if value.lower() in _PROTOCOLS or _protocol_number(value) is None:
            return None
        return f"unknown protocol {value!r}"
    return None


_protocol_number = _read_by(lambda value: values.unsigned(value, maximum=255))



# Options that iptables does not let '!' negate.
NOT_NEGATABLE = frozenset({"--comment", "--mode", "--name", "--seconds", "--reap", "--rsource", "--rdest",
                           "--limit-burst", "--limit-iface-in", "--limit-iface-out"})


def rule_problem(
    table: str, criteria: list[Criterion], matches: tuple[Match, ...], target: Target | None
) -> tuple[str, int | None] | None:
    """What the kernel would refuse in a rule as a whole, as (message, index of the match to point at, or
    None for the target); None if nothing."""
    proto = next((c for c in criteria if c.flag == "-p"), None)
    proto_name = None if proto is None or proto.negated else proto.value.lower()
    for index, match in enumerate(matches):
        needed = MODULE_PROTOCOLS.get(match.module)
        if needed is not None and proto_name not in needed:
            return f"match module {match.module!r} needs '-p {'/'.join(sorted(needed))}' on the same rule", index
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
    if rewrites_ports(target) and proto_name not in PORT_PROTOCOLS:
        return f"{name} with a port needs '-p tcp', udp, sctp or dccp on the same rule", None
    return None


def lacks_required(name: str, options: tuple[Option, ...]) -> bool:
    """Whether a match module or target misses all of the options of which it needs one."""
    required = REQUIRED_OPTIONS.get(name)
    if not required:
        return False
    return not any(o.name in required for o in options)


def rewrites_ports(target: Target) -> bool:
    """Whether a NAT target changes ports, which needs a protocol with ports on the rule."""
    return any(
        (o.name in ("--to-destination", "--to-source") and ":" in o.value) or o.name == "--to-ports"
        for o in target.options
    )


# Targets that rule_problem looks at by name; any other target passes or fails its checks as any other does.
CHECKED_TARGETS = frozenset(TARGET_TABLES) | NAT_FORBIDDEN_TARGETS | frozenset(REQUIRED_OPTIONS)
