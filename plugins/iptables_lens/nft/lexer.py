"""A Pygments lexer for `nft list ruleset` listings, so nftables rulesets on the site are highlighted.

Registered as the Pygments plugin `nftables` (aliases `nft`, `nftables`, files `*.nft`). Like the iptables
lexer, every character of the input comes back in some token and none is an error, whatever the input: a
listing shown on a page is shown whole, whether or not it would load. The words it knows (datatypes, header
fields, meta and conntrack keys, hooks, priorities) come from the dialect's own tables (`nft.types`,
`nft.hooks`), so that the highlighting and the parser name the same things.

>>> from pygments.token import Keyword, Name
>>> tokens = list(NftablesLexer().get_tokens("\\t\\tip daddr @cluster-ips jump services\\n"))
>>> (Name.Variable, "@cluster-ips") in tokens, (Name.Function, "services") in tokens
(True, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

from iptables_lens.iptables.lexer import IPV4
from iptables_lens.nft.hooks import BRIDGE_PRIORITIES, CHAIN_TYPES, HOOKS, STANDARD_PRIORITIES
from iptables_lens.nft.model import FAMILIES
from iptables_lens.nft.types import (
    CT_DIRECTIONS,
    CT_KEYS,
    DATATYPES,
    EXTHDR_FIELDS,
    FIB_RESULTS,
    IP_OPTIONS,
    IPSEC_KEYS,
    META_KEYS,
    PAYLOAD_FIELDS,
    RT_KEYS,
    SCTP_CHUNKS,
    SOCKET_KEYS,
    TCP_OPTIONS,
)

# What nft reads as a name (its scanner's `string`, as `nft.tokens.NAME`): chain, set and table names, with
# kube-proxy's `service-ULMVA6XW-ns1/svc1/tcp/p80` and `endpoint-…__fd00.10.244.1..2/80` among them.
_NAME = r"[A-Za-z_.][A-Za-z0-9/_.-]*"
# A word starts where no name character touches it on the left, and ends where none follows.
_BEFORE = r"(?<![\w/.@-])"
_AFTER = r"(?![\w/.-])"
# A number or address may follow a `-` (the end of a range, a negative priority) or a `:` (a port).
_NUMBER_BEFORE = r"(?<![\w/.@])"
# IPv6 candidates: hex groups and at least two colons, perhaps ending in an IPv4 address (`::ffff:1.2.3.4`);
# a MAC address (`00:11:22:33:44:55`) is one too, and it is an address as well.
_IPV6 = rf"(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:{IPV4}|[0-9A-Fa-f]{{1,4}})?"
_PREFIX = r"(?:/[0-9]{1,3})?"
_DURATION = r"(?:[0-9]+(?:ms|d|h|m|s))+"

_OBJECTS = ("counter", "quota", "limit", "secmark", "synproxy")
_PROPERTIES = ("type", "typeof", "hook", "priority", "policy", "elements", "flags", "size", "timeout",
               "gc-interval", "auto-merge", "comment", "devices", "device", "expires", "packets", "bytes",
               "offload", "handle", "index", "position", "include", "define")
# What a rule does, and the words that go with it.
_STATEMENTS = ("dnat", "snat", "masquerade", "redirect", "reject", "log", "counter", "limit", "quota", "notrack",
               "queue", "update", "add", "delete", "vmap", "map", "set", "to", "with", "prefix", "level", "group",
               "snaplen", "queue-threshold", "numgen", "random", "inc", "mod", "offset", "seed", "jhash", "symhash",
               "fully-random", "persistent", "rate", "over", "burst", "used", "dup", "fwd", "tproxy", "flow",
               "name", "fanout", "bypass", "tcp reset", "icmpx", "ct count", "xt", "mss", "wscale", "spnum", "loose", "skip",
               "synproxy", "monitor", "trace", "flush", "insert", "create", "replace", "rule", "ruleset", "element",
               "destroy", "list")
_VERDICTS = ("accept", "drop", "continue", "return")
# Where a rule reads from: header protocols, meta, conntrack, routing, sockets, IPv6 extension headers.
_SELECTORS = (*PAYLOAD_FIELDS, *EXTHDR_FIELDS, "meta", "ct", "fib", "rt", "socket", "osf", "ipsec", "option",
              "chunk", "exthdr", "frag", "hbh", "mh", "srh", "th", "ih", "nh", "ll", *CT_DIRECTIONS)
_FIELD_TABLES: tuple[Mapping[str, object], ...] = (
    *PAYLOAD_FIELDS.values(), *EXTHDR_FIELDS.values(), *TCP_OPTIONS.values(), META_KEYS, CT_KEYS, FIB_RESULTS, RT_KEYS,
    SOCKET_KEYS, TCP_OPTIONS, *IP_OPTIONS.values(), IP_OPTIONS, *SCTP_CHUNKS.values(), SCTP_CHUNKS, IPSEC_KEYS)
_FIELDS = tuple(sorted({word for table in _FIELD_TABLES for key in table for word in key.split()} - set(_SELECTORS)))
# Hooks, chain types and named priorities of base chains.
_HOOK_WORDS = tuple(sorted({hook for hooks in HOOKS.values() for hook in hooks} | set(CHAIN_TYPES)
                           | {name for name, _ in (*STANDARD_PRIORITIES, *BRIDGE_PRIORITIES)}))


def _words(names: tuple[str, ...]) -> Any:
    return words(sorted(set(names), key=len, reverse=True), prefix=_BEFORE, suffix=_AFTER)


class NftablesLexer(RegexLexer):
    """Tokens: `# handle N` Comment.Special and other `#` comments Comment.Single; `table`, `chain`, `set`,
    `map`, `flowtable` Keyword.Declaration, a table's family Keyword.Namespace and its name Name.Namespace;
    chain names where declared Name.Class, jump and goto targets Name.Function, set and map names (declared,
    or `@name` in a rule) Name.Variable; declaration properties (type, hook, priority, policy, elements,
    flags, comment, ...) and statements (dnat, masquerade, update, vmap, ...) Keyword; verdicts
    Keyword.Constant; datatypes Keyword.Type; hooks, chain types and named priorities Name.Constant; header
    protocols, meta and ct Name.Builtin with their fields Name.Attribute; IPv4 and IPv6 addresses and
    prefixes Number, `0x` numbers Number.Hex, other numbers and durations Number.Integer; quoted text
    String.Double; `==`, `!=`, `&`, `|`, `.`, `-` and the like Operator; braces, commas, colons and
    semicolons Punctuation; any other word Text.

    Leading and trailing newlines are kept (Pygments strips them by default), so the tokens' values put
    together give the input back, as Pygments normalises it: `\\n` line endings and a final newline.
    """

    name = "nftables"
    aliases: ClassVar[list[str]] = ["nftables", "nft"]
    filenames: ClassVar[list[str]] = ["*.nft"]
    mimetypes: ClassVar[list[str]] = []
    url = "https://www.netfilter.org/projects/nftables/"

    tokens: ClassVar[dict[str, Any]] = {
        "root": [
            (r"\n", Whitespace),
            (r"[^\S\n]+", Whitespace),
            (r"#[^\S\n]*handle[^\S\n]+[0-9]+(?:[^\S\n]+progname[^\S\n]+\S+)?(?=[^\S\n]*$)", Comment.Special),
            (r"#[^\n]*", Comment.Single),
            (r'"[^"\n]*"', String.Double),
            (r'"', String.Double),  # a quote the line never closes: nft refuses it, the lexer shows it
            (
                rf"{_BEFORE}(table)([^\S\n]+)({'|'.join(FAMILIES)})([^\S\n]+)({_NAME})",
                bygroups(Keyword.Declaration, Whitespace, Keyword.Namespace, Whitespace, Name.Namespace),
            ),
            (rf"{_BEFORE}(chain)([^\S\n]+)({_NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (
                rf"{_BEFORE}(set|map)([^\S\n]+)({_NAME})(?=[^\S\n]*\{{)",
                bygroups(Keyword.Declaration, Whitespace, Name.Variable),
            ),
            (rf"{_BEFORE}(flowtable|meter)([^\S\n]+)({_NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Variable)),
            (
                rf"{_BEFORE}({'|'.join(_OBJECTS)}|ct[^\S\n]+(?:helper|timeout|expectation))([^\S\n]+)({_NAME})"
                rf"(?=[^\S\n]*\{{)",
                bygroups(Keyword.Declaration, Whitespace, Name.Variable),
            ),
            (rf"{_BEFORE}(jump|goto)([^\S\n]+)({_NAME})", bygroups(Keyword, Whitespace, Name.Function)),
            (rf"@{_NAME}", Name.Variable),
            (rf"{_NUMBER_BEFORE}(?:{_IPV6}){_PREFIX}(?![\w:])", Number),
            (rf"{_NUMBER_BEFORE}{IPV4}{_PREFIX}(?![\w.])", Number),
            (rf"{_NUMBER_BEFORE}0[xX][0-9a-fA-F]+(?!\w)", Number.Hex),
            (rf"{_NUMBER_BEFORE}{_DURATION}(?!\w)", Number.Integer),
            (rf"{_NUMBER_BEFORE}[0-9]+(?!\w)", Number.Integer),
            # A field after what it is read from (`meta mark`, `icmp type`), though the word names a datatype or
            # a property elsewhere.
            (
                rf"{_BEFORE}({'|'.join(_SELECTORS)})([^\S\n]+)({'|'.join(sorted(_FIELDS, key=len, reverse=True))}){_AFTER}",
                bygroups(Name.Builtin, Whitespace, Name.Attribute),
            ),
            (_words(_VERDICTS), Keyword.Constant),
            (_words(tuple(DATATYPES)), Keyword.Type),
            (_words(_PROPERTIES), Keyword),
            (_words(_STATEMENTS), Keyword),
            (_words(_HOOK_WORDS), Name.Constant),
            (_words(_SELECTORS), Name.Builtin),
            (_words(_FIELDS), Name.Attribute),
            (r"!=|==|<=|>=|<<|>>|[<>&|^!=+]", Operator),
            (r"(?<=\s)\.(?=\s)", Operator),  # a concatenation: `ip daddr . meta l4proto . th dport`
            (r"-", Operator),
            (r"[{}()\[\],;:/*]", Punctuation),
            (rf"{_NAME}|[0-9][\w/.-]*", Text),
            (r"[^\s]", Text),
        ],
    }

    def __init__(self, **options: Any) -> None:
        options.setdefault("stripnl", False)
        super().__init__(**options)
