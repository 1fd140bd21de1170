"""Lines about what one peer does again and again (a wrong admin token, a
flood of connections, a market data reader falling behind), written at most
once a minute per peer."""

from __future__ import annotations

from typing import Any

LOGGED_EVERY = 60.0
"""Seconds between two lines of one peer."""
MAX_PEERS = 4096
"""Peers whose occurrences are counted between their lines."""


class PeerLog:
    """``event`` once per peer every :data:`LOGGED_EVERY` seconds, with the
    times it happened since the peer's last line (``since``, on the next
    line): a peer doing it as fast as it can does not write the log at its
    own rate.  Past :data:`MAX_PEERS` peers, the one logged longest ago is
    forgotten."""

    def __init__(
        self, log: Any, event: str, since: str, *, level: str = "warning", peer_field: str = "peer"
    ) -> None:
        self._write = getattr(log, level)
        self._event = event
        self._since = since
        self._peer_field = peer_field
        # peer -> (when its last line was written, occurrences since)
        self._peers: dict[str, tuple[float, int]] = {}

    def happened(self, peer: str, now: float, **fields: Any) -> bool:
        """Once more from ``peer``; ``now`` on a monotonic clock, ``fields``
        those of the line.  Whether this time was logged."""
        seen = self._peers.get(peer)
        if seen is not None and now - seen[0] < LOGGED_EVERY:
            self._peers[peer] = (seen[0], seen[1] + 1)
            return False
        if seen is not None:
            del self._peers[peer]
        elif len(self._peers) >= MAX_PEERS:
            del self._peers[next(iter(self._peers))]  # the one logged longest ago
        self._peers[peer] = (now, 0)
        if seen is not None and seen[1]:
            fields[self._since] = seen[1]
        fields[self._peer_field] = peer
        self._write(self._event, **fields)
        return True
