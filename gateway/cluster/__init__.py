"""Several gateways live at once: session ownership by leases in a NATS
JetStream key-value bucket (see :mod:`gateway.cluster.leases`)."""

from gateway.cluster.headroom import Headroom
from gateway.cluster.leases import (
    INSTANCE_NAME,
    Cluster,
    ClusterError,
    ClusterStats,
    LeaseView,
    id_namespace,
    instance_name,
    session_key,
)
from gateway.cluster.replica import CopiedOrders

__all__ = [
    "INSTANCE_NAME",
    "Cluster",
    "ClusterError",
    "ClusterStats",
    "CopiedOrders",
    "Headroom",
    "LeaseView",
    "id_namespace",
    "instance_name",
    "session_key",
]
