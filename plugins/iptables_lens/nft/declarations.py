"""The lines inside a table that are not rules: a base chain's hook, a set's properties, an object's
settings, a flowtable's hook and devices. Each function reads one line's tokens from a `Cursor`.
"""

from __future__ import annotations

from iptables_lens.nft import exprs, hooks
from iptables_lens.nft import types as ty
from iptables_lens.nft.model import Hook, Priority, Statement
from iptables_lens.nft.stateful import STATEFUL, counter, duration, limit, number, quota, stateful
from iptables_lens.nft.tokens import Cursor, shown

SET_FLAGS = ("constant", "dynamic", "interval", "timeout")
OBJECT_KINDS = ("counter", "quota", "limit", "secmark", "synproxy")
CT_OBJECT_KINDS = ("helper", "timeout", "expectation")
# What the kernel refuses an object without.
REQUIRED_SETTINGS = {"quota": ("bytes",), "limit": ("rate",), "ct helper": ("type",), "ct timeout": ("protocol",),
                     "ct expectation": ("protocol",), "secmark": ("context",)}
L3PROTOS = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


def name_list(cur: Cursor, what: str) -> tuple[str, ...]:
    """`{ a, b, c }` of names or strings, the cursor past `=`."""
    cur.expect("{")
    names = [cur.take(what).text]
    while cur.accept(","):
        names.append(cur.take(what).text)
    cur.expect("}")
    return tuple(names)


def priority(cur: Cursor, family: str, hook: str) -> Priority:
    """The words of a priority up to `;` (or the end), read for `hook` of `family`."""
    start = cur.peek()
    words = []
    while not cur.at_end() and cur.word() != ";":
        token = cur.take("a priority")
        if token.kind != "w":
            raise cur.error(token, f"expected a priority, got {shown(token)}")
        words.append(token.text)
    text = " ".join(words)
    try:
        return Priority(hooks.priority_value(text, family, hook), text)
    except ValueError as problem:
        raise cur.error(start, str(problem)) from None


def base_chain(cur: Cursor, family: str) -> Hook:
    """`type T hook H [device "d" | devices = { ... }] priority P; [policy P;] [flags offload;]`."""
    type_token = cur.take_word("a chain type (filter, nat, route)")
    if type_token.text not in hooks.CHAIN_TYPES:
        raise cur.error(type_token, f"expected a chain type (filter, nat, route), got {shown(type_token)}")
    cur.expect("hook")
    hook_token = cur.take_word("a hook")
    devices: tuple[str, ...] = ()
    if cur.accept("device"):
        devices = (cur.take("a device").text,)
    elif cur.accept("devices"):
        cur.expect("=")
        devices = name_list(cur, "a device")
    problem = hooks.hook_problem(family, type_token.text, hook_token.text, devices)
    if problem is not None:
        raise cur.error(hook_token, problem)
    cur.expect("priority")
    prio = priority(cur, family, hook_token.text)
    cur.expect(";", "';' after the priority")
    policy = None
    offload = False
    if cur.accept("policy"):
        policy_token = cur.take_word("accept or drop")
        if policy_token.text not in ("accept", "drop"):
            raise cur.error(policy_token, f"expected the policy accept or drop, got {shown(policy_token)}")
        policy = policy_token.text
        cur.expect(";", "';' after the policy")
    if cur.accept("flags"):
        cur.expect("offload")
        cur.expect(";")
        offload = True
    return Hook(type_token.text, hook_token.text, prio, policy, devices, offload)  # type: ignore[arg-type]


def set_flags(cur: Cursor) -> tuple[str, ...]:
    flags = []
    while True:
        token = cur.take_word("a set flag (constant, dynamic, interval, timeout)")
        if token.text not in SET_FLAGS:
            raise cur.error(token, f"expected a set flag (constant, dynamic, interval, timeout), got {shown(token)}")
        if token.text in flags:
            raise cur.error(token, f"flag {token.text} is given twice")
        flags.append(token.text)
        if not cur.accept(","):
            return tuple(flags)


def type_names(cur: Cursor, what: str) -> tuple[str, ...]:
    """`ipv4_addr . inet_proto . inet_service`."""
    names = []
    while True:
        token = cur.take_word(what)
        if token.text in ty.DATATYPES and token.text not in ty.SET_TYPE_NAMES:
            # What nft's JSON gives for a `typeof` key (the datatype of its expression), and nft refuses here.
            raise cur.error(token, f"unqualified type {token.text} specified in set definition: nft needs "
                            "`typeof EXPRESSION` for it")
        if token.text not in ty.SET_TYPE_NAMES:
            raise cur.error(token, f"unknown datatype {token.text!r} (such as ipv4_addr, inet_service, ifname)")
        names.append(token.text)
        if not cur.accept("."):
            return tuple(names)


def set_statements(cur: Cursor) -> tuple[Statement, ...]:
    found: list[Statement] = []
    while cur.word() in STATEFUL:
        found.append(stateful(cur))
    return tuple(found)


def object_settings(kind: str, cur: Cursor, seen: dict[str, object]) -> None:
    """Read one line of a named object's body into `seen` (setting name -> value)."""
    word = cur.word()
    if kind == "counter":
        cur.expect("packets", "packets N bytes M")
        cur.pos -= 1
        found = counter(cur)
        seen.update(packets=found.packets, bytes=found.bytes)
    elif kind == "quota":
        found_quota = quota(cur)
        seen.update(bytes=found_quota.bytes, over=found_quota.over, used=found_quota.used)
    elif kind == "limit":
        _limit_settings(cur, seen)
    elif kind == "secmark":
        seen["context"] = cur.quoted("the security context")
    elif kind == "synproxy":
        if word in ("mss", "wscale"):
            cur.pos += 1
            seen[word] = exprs.integer_word(cur, f"the {word}", 16)
        else:
            flags = [cur.take_word("timestamp or sack-perm").text]
            if not cur.at_end():
                flags.append(cur.take_word("sack-perm").text)
            if any(flag not in ("timestamp", "sack-perm") for flag in flags):
                raise cur.error(cur.tokens[cur.pos - 1], "expected mss, wscale, timestamp or sack-perm")
            seen["flags"] = tuple(flags)
    else:
        _ct_object_settings(kind, cur, seen)


def _limit_settings(cur: Cursor, seen: dict[str, object]) -> None:
    found = limit(cur)
    seen.update(rate=found.rate, per=found.per, burst=found.burst, bytes=found.bytes, over=found.over)


def _ct_object_settings(kind: str, cur: Cursor, seen: dict[str, object]) -> None:
    token = cur.take_word("a setting")
    key = token.text
    if kind == "ct helper" and key == "type":
        seen["type"] = cur.take("the helper's name, in double quotes").text
        cur.expect("protocol")
        seen["protocol"] = cur.take_word("a protocol").text
    elif key == "protocol":
        seen["protocol"] = cur.take_word("a protocol").text
    elif key == "l3proto":
        l3 = cur.take_word("a family")
        if l3.text not in L3PROTOS:
            raise cur.error(l3, f"expected a family (ip, ip6, inet, ...), got {shown(l3)}")
        seen["l3proto"] = l3.text
    elif kind == "ct timeout" and key == "policy":
        cur.expect("=")
        cur.expect("{")
        policy = {}
        while not cur.accept("}"):
            state = cur.take_word("a state").text
            cur.expect(":")
            policy[state] = number(cur, "a timeout in seconds", 32)
            cur.accept(",")
        seen["policy"] = tuple(policy.items())
    elif kind == "ct expectation" and key in ("dport", "size"):
        seen[key] = number(cur, f"the {key}", 16)
    elif kind == "ct expectation" and key == "timeout":
        seen["timeout"] = duration(cur)
    else:
        raise cur.error(token, f"unexpected {shown(token)} in a {kind}")


def flowtable_line(cur: Cursor, seen: dict[str, object]) -> None:
    """One line of a flowtable's body."""
    word = cur.word()
    if word == "hook":
        cur.pos += 1
        hook = cur.take_word("the hook (ingress)")
        if hook.text != "ingress":
            raise cur.error(hook, f"a flowtable hooks ingress, not {shown(hook)}")
        cur.expect("priority")
        seen["hook"] = hook.text
        seen["priority"] = priority(cur, "netdev", "ingress")
    elif word == "devices":
        cur.pos += 1
        cur.expect("=")
        seen["devices"] = name_list(cur, "a device")
    elif word == "flags":
        cur.pos += 1
        cur.expect("offload")
        seen["offload"] = True
    elif word == "counter":
        cur.pos += 1
        seen["counter"] = True
    else:
        raise cur.error(cur.peek(), f"expected hook, devices, flags or counter in a flowtable, got "
                        f"{shown(cur.peek())}")
    cur.accept(";")

