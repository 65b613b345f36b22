"""iptables-lens: read kube-proxy's iptables-save dumps, trace packets through them, render them.

The core (model, parse, fmt, and the analysis and rendering modules) knows nothing of MkDocs or of the
command line; `mkdocs_plugin` and `cli` are thin layers over it.

>>> from iptables_lens import parse
>>> dump = parse("*nat\\n:PREROUTING ACCEPT [0:0]\\nCOMMIT\\n")
>>> [t.name for t in dump.tables]
['nat']
"""

from iptables_lens.errors import DumpError
from iptables_lens.iptables.fmt import format_dump
from iptables_lens.iptables.model import Chain, Counters, Criterion, Dump, Match, Option, Rule, Table, Target
from iptables_lens.iptables.parse import parse, parse_file

__all__ = [
    "Chain", "Counters", "Criterion", "Dump", "DumpError", "Match", "Option", "Rule", "Table", "Target",
    "format_dump", "parse", "parse_file",
]
__version__ = "0.1.0"
