"""What kube-proxy writes: its chain families, hashed names, the Service index, and synthetic clusters
(`cluster_spec` describes a cluster, `synth` writes its dump).

>>> service_chain("KUBE-SVC", "default/my-nginx-service", "tcp")
'KUBE-SVC-OL4YPD43MBS7WVHD'
"""

from iptables_lens.kube.names import (
    FIXED_FAMILIES,
    HASHED_FAMILIES,
    ChainName,
    decode_chain,
    describe_family,
    endpoint_chain,
    family,
    join_host_port,
    service_chain,
    service_of_comment,
)
from iptables_lens.kube.services import ServiceIndex, service_chains

__all__ = [
    "FIXED_FAMILIES", "HASHED_FAMILIES", "ChainName", "ServiceIndex", "decode_chain", "describe_family",
    "endpoint_chain", "family", "join_host_port", "service_chain", "service_chains", "service_of_comment",
]
