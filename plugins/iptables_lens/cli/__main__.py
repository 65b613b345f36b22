"""`python -m iptables_lens.cli`: the `iptables-lens` command."""

from iptables_lens.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
