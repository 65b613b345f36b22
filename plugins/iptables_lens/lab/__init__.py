"""The kernel lab: real Linux netfilter inside network namespaces that the lab creates and always removes."""
