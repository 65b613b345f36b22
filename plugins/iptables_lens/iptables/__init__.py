"""The iptables-save dialect: its model, strict parser, formatter, what iptables accepts (xtables), the
plain-English explanation of its rules, and the evaluation of its matches and targets for the tracer."""
