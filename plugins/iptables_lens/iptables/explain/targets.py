"""Phrases for targets: what each target does, one explainer per target, in `TARGET_EXPLAINERS`.

An explainer gets the target and its rule and table (some phrases depend on the rule's neighbours); an
option it does not account for is shown after its phrase, followed by "(not explained)".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from iptables_lens.iptables import values, xtables
from iptables_lens.iptables.explain.words import join_and
from iptables_lens.iptables.fmt import format_option
from iptables_lens.iptables.model import Option, Rule, Table, Target


def action_phrase(rule: Rule, table: Table) -> str:
    """What the rule's target does: "jump to KUBE-SVC-...", "DNAT to 10.244.1.2:80", "drops"."""
    target = rule.target
    if target is None:
        return "counts the packet (no target) and goes on to the next rule"
    if target.goto:
        return f"goes to {target.name} and does not come back here"
    explainer = TARGET_EXPLAINERS.get(target.name)
    if explainer is not None:
        return explainer(target, rule, table)
    if target.name in xtables.KNOWN_TARGETS or target.options:
        return _target_not_explained(target, target.options)
    return f"jump to {target.name}"


def _target_not_explained(target: Target, options: Sequence[Option]) -> str:
    return " ".join(["-j", target.name, *(format_option(o) for o in options)]) + " (not explained)"


def _with_unknown(action: str, target: Target, known: set[str]) -> str:
    """`action`, followed by the target's options it does not account for, so none go unmentioned."""
    unknown = [o for o in target.options if o.name not in known]
    if not unknown:
        return action
    return f"{action}; {' '.join(format_option(o) for o in unknown)} (not explained)"


def _return(target: Target, rule: Rule, table: Table) -> str:
    if table.has_chain(rule.chain):
        chain = table.chain(rule.chain)
        if chain.builtin:
            return f"ends the built-in chain {chain.name}: its policy {chain.policy} decides"
    return "returns to the calling chain"


def _mark_change(option: Option, subject: str) -> str | None:
    """What a MARK or CONNMARK option does to `subject` ("packet mark" or "connection mark")."""
    value, _, mask = option.value.partition("/")
    if option.name == "--set-xmark":
        # The kernel computes mark = (mark AND NOT mask) XOR value.
        bits, keep = values.mark(option.value)
        if keep == values.U32_MAX:
            return f"sets the {subject} to {value}"
        if keep == 0:
            return f"flips bits {value} of the {subject} (XOR)" if bits else f"leaves the {subject} unchanged"
        if bits == 0:
            return f"clears bits {mask} of the {subject}"
        if bits == keep:
            return f"sets bits {value} of the {subject}"
        if bits & ~keep == 0:
            return f"sets the bits {mask} of the {subject} to {value}"
        return f"sets the {subject} to ({subject} AND NOT {mask}) XOR {value}"
    if option.name == "--set-mark":
        if mask:
            return f"sets the bits {mask} of the {subject} to {value}"
        return f"sets the {subject} to {value}"
    if option.name == "--and-mark":
        return f"keeps only bits {value} of the {subject} (AND)"
    if option.name == "--or-mark":
        return f"sets bits {value} of the {subject} (OR)"
    if option.name == "--xor-mark":
        return f"flips bits {value} of the {subject} (XOR)"
    return None


def _bits_set(option: Option) -> int | None:
    """The bits a MARK option turns on without touching others (kube-proxy's way of marking), or None."""
    bits, mask = values.mark(option.value)
    if option.name == "--or-mark" or (option.name == "--set-xmark" and "/" in option.value and mask == bits):
        return bits
    return None


def _bits_flipped(option: Option) -> int | None:
    bits, mask = values.mark(option.value)
    if option.name == "--xor-mark" or (option.name == "--set-xmark" and "/" in option.value and mask == 0):
        return bits
    return None


def _only_marked_reach(rule: Rule, table: Table, bits: int) -> bool:
    """Whether an earlier rule of the chain returns every packet that lacks `bits`, as kube-proxy writes
    KUBE-POSTROUTING, so the rule sees only packets that carry them."""
    for earlier in table.chain(rule.chain).rules[: rule.position - 1]:
        mark = earlier.match("mark")
        test = mark.option("--mark") if mark is not None else None
        if earlier.target is None or earlier.target.name != "RETURN" or test is None or not test.negated:
            continue
        tested = values.mark(test.value)
        if not earlier.criteria and len(earlier.matches) == 1 and "/" in test.value and tested.value == bits == tested.mask:
            return True
    return False


def _mark(target: Target, rule: Rule, table: Table) -> str:
    if len(target.options) != 1:
        return _target_not_explained(target, target.options)
    option = target.options[0]
    change = _mark_change(option, "packet mark")
    if change is None:
        return _target_not_explained(target, target.options)
    bits = _bits_set(option)
    if bits is not None and rule.chain == "KUBE-MARK-MASQ":
        return f"marks the packet with {option.value.partition('/')[0]} so it is masqueraded on the way out"
    if bits is not None and rule.chain == "KUBE-MARK-DROP":
        return f"marks the packet with {option.value.partition('/')[0]} so it is dropped"
    flipped = _bits_flipped(option)
    if (flipped and rule.chain == "KUBE-POSTROUTING" and table.has_chain(rule.chain)
            and _only_marked_reach(rule, table, flipped)):
        # kube-proxy clears its mark with an XOR, knowing the bit is set here, so that a packet that passes
        # through the stack again is not masqueraded a second time.
        return (f"clears the masquerade mark {option.value.partition('/')[0]} (an XOR: only marked packets reach "
                "this rule), so the packet is not masqueraded again")
    return change


def _connmark(target: Target, rule: Rule, table: Table) -> str:
    masks = {o.name: o.value for o in target.options if o.name in ("--mask", "--nfmask", "--ctmask")}
    mask_text = ", ".join(f"{name.lstrip('-')} {value}" for name, value in masks.items())
    masked = f" ({mask_text})" if mask_text else ""
    actions = []
    for option in target.options:
        if option.name == "--save-mark":
            actions.append(f"copies the packet mark to the connection mark{masked}")
        elif option.name == "--restore-mark":
            actions.append(f"copies the connection mark to the packet mark{masked}")
        elif option.name not in masks:
            change = _mark_change(option, "connection mark")
            if change is None:
                return _target_not_explained(target, target.options)
            actions.append(change)
    if len(actions) != 1:
        return _target_not_explained(target, target.options)
    return actions[0]


def _port_randomness(target: Target) -> str:
    if target.option("--random-fully"):
        return ", with fully random source ports"
    if target.option("--random"):
        return ", with random ports"
    return ""


def _dnat(target: Target, rule: Rule, table: Table) -> str:
    to = target.option("--to-destination")
    if to is None:
        return _target_not_explained(target, target.options)
    if to.value.startswith(":"):
        action = f"DNAT to port {to.value[1:]} (address unchanged)"
    else:
        action = f"DNAT to {to.value}"
    if target.option("--persistent"):
        action += ", the same address for a client every time"
    return _with_unknown(action + _port_randomness(target), target,
                         {"--to-destination", "--random", "--persistent"})


def _snat(target: Target, rule: Rule, table: Table) -> str:
    to = target.option("--to-source")
    if to is None:
        return _target_not_explained(target, target.options)
    action = f"SNAT to {to.value}"
    if target.option("--persistent"):
        action += ", the same address for a client every time"
    return _with_unknown(action + _port_randomness(target), target,
                         {"--to-source", "--random", "--random-fully", "--persistent"})


def _masquerade(target: Target, rule: Rule, table: Table) -> str:
    action = "masquerades: rewrites the source to the address of the interface the packet leaves by"
    ports = target.option("--to-ports")
    if ports is not None:
        action += f", source port from {ports.value}"
    return _with_unknown(action + _port_randomness(target), target, {"--to-ports", "--random", "--random-fully"})


def _redirect(target: Target, rule: Rule, table: Table) -> str:
    ports = target.option("--to-ports")
    action = "redirects to this node (the address of the interface it came in by)"
    if ports is not None:
        action += f", port {ports.value}"
    return _with_unknown(action + _port_randomness(target), target, {"--to-ports", "--random"})


_REJECT_REPLIES = {
    "icmp-net-unreachable": "ICMP network unreachable",
    "icmp-host-unreachable": "ICMP host unreachable",
    "icmp-port-unreachable": "ICMP port unreachable",
    "icmp-proto-unreachable": "ICMP protocol unreachable",
    "icmp-net-prohibited": "ICMP network prohibited",
    "icmp-host-prohibited": "ICMP host prohibited",
    "icmp-admin-prohibited": "ICMP administratively prohibited",
    "tcp-reset": "a TCP reset",
    "icmp6-no-route": "ICMPv6 no route to destination",
    "icmp6-adm-prohibited": "ICMPv6 administratively prohibited",
    "icmp6-addr-unreachable": "ICMPv6 address unreachable",
    "icmp6-port-unreachable": "ICMPv6 port unreachable",
    "icmp6-policy-fail": "ICMPv6 source address failed ingress/egress policy",
    "icmp6-reject-route": "ICMPv6 reject route to destination",
}


def _reject(target: Target, rule: Rule, table: Table) -> str:
    reply = target.option("--reject-with")
    kind = reply.value if reply is not None else "icmp-port-unreachable"
    return _with_unknown(f"rejects: drops and answers with {_REJECT_REPLIES.get(kind, kind)}", target, {"--reject-with"})


def _hop_limit(target: Target, rule: Rule, table: Table) -> str:
    changes = {"--hl-set": "sets the hop limit to {}", "--hl-dec": "decreases the hop limit by {}",
               "--hl-inc": "increases the hop limit by {}"}
    done = [changes[o.name].format(o.value) for o in target.options if o.name in changes]
    return _with_unknown(join_and(done), target, set(changes)) if done else _target_not_explained(target, target.options)


def _netmap(target: Target, rule: Rule, table: Table) -> str:
    to = target.option("--to")
    if to is None:
        return _target_not_explained(target, target.options)
    # The kernel maps the destination in PREROUTING and OUTPUT, the source in POSTROUTING and INPUT.
    end = {"POSTROUTING": "source", "INPUT": "source", "PREROUTING": "destination", "OUTPUT": "destination"}
    which = end.get(rule.chain, "destination (source, if called from POSTROUTING or INPUT)")
    return _with_unknown(f"maps the {which} address into {to.value}, keeping its host part", target, {"--to"})


def _prefix_translation(end: str) -> Callable[[Target, Rule, Table], str]:
    def explain(target: Target, rule: Rule, table: Table) -> str:
        source, destination = target.option("--src-pfx"), target.option("--dst-pfx")
        if source is None or destination is None:
            return _target_not_explained(target, target.options)
        return _with_unknown(f"translates the {end} prefix {source.value} to {destination.value} (RFC 6296, "
                             "without connection tracking)", target, {"--src-pfx", "--dst-pfx"})

    return explain


_LOG_FLAGS = {
    "--log-tcp-sequence": "TCP sequence numbers", "--log-tcp-options": "TCP options",
    "--log-ip-options": "IP options", "--log-uid": "the sending process's user", "--log-macdecode": "MAC addresses",
}


def _log(target: Target, rule: Rule, table: Table) -> str:
    action = "logs the packet to the kernel log"
    prefix = target.option("--log-prefix")
    if prefix is not None:
        action += f' with prefix "{prefix.value}"'
    level = target.option("--log-level")
    if level is not None:
        action += f" at level {values.SYSLOG_LEVELS[values.syslog_level(level.value)]}"
    extras = [text for flag, text in _LOG_FLAGS.items() if target.option(flag)]
    if extras:
        action += f", including {join_and(extras)}"
    action += ", and goes on to the next rule"
    return _with_unknown(action, target, {"--log-prefix", "--log-level", *_LOG_FLAGS})


def _nflog(target: Target, rule: Rule, table: Table) -> str:
    group = target.option("--nflog-group")
    action = f"sends a copy of the packet to netlink log group {group.value if group is not None else '0'}"
    prefix = target.option("--nflog-prefix")
    if prefix is not None:
        action += f' with prefix "{prefix.value}"'
    size = target.option("--nflog-size") or target.option("--nflog-range")
    if size is not None:
        action += f" (first {size.value} bytes)"
    threshold = target.option("--nflog-threshold")
    if threshold is not None:
        action += f", queued in batches of {threshold.value}"
    action += ", and goes on to the next rule"
    return _with_unknown(action, target, {"--nflog-group", "--nflog-prefix", "--nflog-size", "--nflog-range",
                                          "--nflog-threshold"})


_NOTRACK = "exempts the packet from connection tracking"


def _ct(target: Target, rule: Rule, table: Table) -> str:
    parts = []
    if target.option("--notrack"):
        parts.append(_NOTRACK)
    helper = target.option("--helper")
    if helper is not None:
        parts.append(f"assigns the connection tracking helper {helper.value}")
    zone = target.option("--zone")
    if zone is not None:
        parts.append(f"tracks the connection in conntrack zone {zone.value}")
    timeout = target.option("--timeout")
    if timeout is not None:
        parts.append(f"applies the conntrack timeout policy {timeout.value}")
    if not parts:
        return _target_not_explained(target, target.options)
    return _with_unknown(join_and(parts), target, {"--notrack", "--helper", "--zone", "--timeout"})


def _fixed(text: str) -> Callable[[Target, Rule, Table], str]:
    def explain(target: Target, rule: Rule, table: Table) -> str:
        return _with_unknown(text, target, set())

    return explain


TARGET_EXPLAINERS: dict[str, Callable[[Target, Rule, Table], str]] = {
    "ACCEPT": _fixed("accepts"),
    "DROP": _fixed("drops"),
    "RETURN": _return,
    "QUEUE": _fixed("queues the packet to a user-space program"),
    "MARK": _mark,
    "CONNMARK": _connmark,
    "DNAT": _dnat,
    "SNAT": _snat,
    "MASQUERADE": _masquerade,
    "REDIRECT": _redirect,
    "REJECT": _reject,
    "LOG": _log,
    "NFLOG": _nflog,
    "NOTRACK": _fixed(_NOTRACK),
    "CT": _ct,
    "TRACE": _fixed("traces the packet: the kernel reports each rule it passes"),
    "HL": _hop_limit,
    "NETMAP": _netmap,
    "SNPT": _prefix_translation("source"),
    "DNPT": _prefix_translation("destination"),
}
