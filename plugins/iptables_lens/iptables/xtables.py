"""What iptables knows about its extensions: which match modules and targets exist, which options they
take, and what their values look like.

The parser uses this to refuse what `iptables-restore` would refuse (an unknown module, an option of the
wrong module, a port that is not a port), so that a dump which passes `iptables-lens check` also loads.
Modules listed in KNOWN_MATCHES but absent from MATCH_OPTIONS are accepted with any options: they exist,
but we do not check their options.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

Validator = Callable[[tuple[str, ...]], "str | None"]

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

_HEX_OR_INT = re.compile(r"^(0x[0-9a-fA-F]+|[0-9]+)$")
_IFACE = re.compile(r"^[^\s/:]{1,15}$")


def _one(check: Callable[[str], str | None]) -> Validator:
    def validate(values: tuple[str, ...]) -> str | None:
        if len(values) != 1:
            return f"expects exactly one value, got {len(values)}"
        return check(values[0])

    validate.arity = 1  # type: ignore[attr-defined]
    return validate


def _flag(values: tuple[str, ...]) -> str | None:
    return None if not values else f"takes no value, got {' '.join(values)!r}"


_flag.arity = 0  # type: ignore[attr-defined]


def _two(values: tuple[str, ...]) -> str | None:
    return None if len(values) == 2 else "expects two values"


_two.arity = 2  # type: ignore[attr-defined]


def arity(validator: Validator) -> int | None:
    """How many arguments the option takes (getopt consumes exactly these), or None if not fixed."""
    return getattr(validator, "arity", None)


def _any_one(value: str) -> str | None:
    return None


def _number(value: str) -> str | None:
    return None if _HEX_OR_INT.match(value) else f"expected a number, got {value!r}"


def _port(value: str) -> str | None:
    # iptables accepts more (hex for tcp, service names, out-of-range udp ports that wrap), but prints
    # decimal; a dump that means a port writes it in decimal.
    if value.isdigit() and int(value) <= 65535:
        return None
    return f"expected a port number (0-65535, decimal), got {value!r}"


def _port_range(value: str) -> str | None:
    parts = value.split(":")
    if len(parts) > 2:
        return f"expected a port or a range PORT:PORT, got {value!r}"
    for part in parts:
        if part and _port(part):
            return f"expected a port or a range PORT:PORT, got {value!r}"
    return None


def _port_list(value: str) -> str | None:
    ports = value.split(",")
    if len(ports) > 15:
        return "multiport takes at most 15 ports"
    for p in ports:
        if p == "" or _port_range(p):
            return f"expected a comma-separated list of ports, got {value!r}"
    return None


def _mark(value: str) -> str | None:
    parts = value.split("/")
    if len(parts) > 2 or any(not _HEX_OR_INT.match(p) for p in parts):
        return f"expected VALUE[/MASK] as numbers, got {value!r}"
    if any(int(p, 0) > 0xFFFFFFFF for p in parts):
        return f"mark {value!r} does not fit in 32 bits"
    return None


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
_DOTTED = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/(?:3[0-2]|[12]?[0-9]))?$")


def address(value: str) -> str | None:
    """None if `value` is an IPv4 address or network as iptables accepts it, else why not."""
    if _DOTTED.match(value):
        return None
    try:
        if "/" in value:
            addr, _, mask = value.partition("/")
            ipaddress.IPv4Address(addr)
            if mask.isdigit():
                if int(mask) > 32:
                    raise ValueError
            else:
                ipaddress.IPv4Address(mask)
        else:
            ipaddress.IPv4Address(value)
    except ValueError:
        return f"expected an IPv4 address or ADDRESS/PREFIX, got {value!r}"
    return None


def address_list(value: str) -> str | None:
    for part in value.split(","):
        problem = address(part)
        if problem:
            return problem
    return None


def _ip_port(value: str) -> str | None:
    """A NAT destination: IP[-IP][:PORT[-PORT]] (either part may be omitted, not both)."""
    host, sep, ports = value.partition(":")
    if not host and not ports:
        return f"expected IP[:PORT], got {value!r}"
    for ip in host.split("-") if host else ():
        if address(ip) or "/" in ip:
            return f"expected IP[:PORT], got {value!r}"
    if sep:
        for port in ports.split("-"):
            if _port(port):
                return f"expected IP[:PORT], got {value!r}"
    return None


def _probability(value: str) -> str | None:
    try:
        p = float(value)
    except ValueError:
        return f"expected a probability between 0 and 1, got {value!r}"
    return None if 0.0 <= p <= 1.0 else f"probability {value!r} is not between 0 and 1"


def _interface(value: str) -> str | None:
    return None if _IFACE.match(value) else f"expected an interface name of at most 15 characters, got {value!r}"


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
        "--ctexpire": _ANY, "--ctdir": _one(_name_list({"ORIGINAL", "REPLY"}, "direction")),
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
    "iprange": {"--src-range": _ANY, "--dst-range": _ANY},
    "pkttype": {"--pkt-type": _one(_name_list({"unicast", "broadcast", "multicast"}, "packet type"))},
}

TARGET_OPTIONS: dict[str, dict[str, Validator]] = {
    "ACCEPT": {}, "DROP": {}, "RETURN": {}, "QUEUE": {}, "NOTRACK": {}, "TRACE": {},
    "DNAT": {"--to-destination": _one(_ip_port), "--random": _flag, "--persistent": _flag},
    "SNAT": {"--to-source": _one(_ip_port), "--random": _flag, "--random-fully": _flag, "--persistent": _flag},
    "MASQUERADE": {"--to-ports": _ANY, "--random": _flag, "--random-fully": _flag},
    "REDIRECT": {"--to-ports": _ANY, "--random": _flag},
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
        "--log-level": _ANY, "--log-prefix": _ANY, "--log-tcp-sequence": _flag, "--log-tcp-options": _flag,
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
        if value.lower() in _PROTOCOLS or (value.isdigit() and int(value) <= 255):
            return None
        return f"unknown protocol {value!r}"
    return None
