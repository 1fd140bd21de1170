"""The asyncio (uvloop) edge: the transport shared by accepted and initiated
FIX connections, the acceptor server, the initiator client.

It owns when bytes leave: an :class:`Outbox` writes, once per loop turn,
the order journal's batch first, then the session stores, then the sockets.
"""

from gateway.net.client import FixClient
from gateway.net.server import FixServer
from gateway.net.transport import FixTransportProtocol, Outbox, WriteBarrier

__all__ = ["FixClient", "FixServer", "FixTransportProtocol", "Outbox", "WriteBarrier"]
