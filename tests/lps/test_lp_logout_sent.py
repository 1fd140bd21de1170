"""After the gateway's Logout to an LP is out, FIX sends nothing more on
the session: a child routed in the time the LP takes to answer (or
``LogoutTimeout``) is refused at once, not written behind the Logout
where the LP may still fill it while the gateway ends it at the drop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lp_test_kit import INSTRUMENTS
from test_fix_adapter import HandWrittenLp, Sink, child, lp_settings

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from lp_adapters.fix import FixLp
from router.model import ChildCanceled, ChildReject


class SlowToLeaveLp(HandWrittenLp):
    """Answers the Logon, and never the adapter's Logout (the link ends
    at the adapter's ``LogoutTimeout``)."""

    def answer(self, msg: FixMessage) -> None:
        if msg.msg_type == b"A":
            self.send(b"A", (98, b"0"), (108, b"30"))

    def send_stale(self) -> None:
        """A Heartbeat whose SendingTime is ten minutes old: the adapter's
        session rejects it and logs out."""
        assert self._writer is not None
        header = [(34, b"%d" % self.next_seq), (49, b"LPT")]
        header += [(52, codec.format_utc_timestamp(time.time() - 600)), (56, b"GW")]
        self.next_seq += 1
        self._writer.write(codec.encode_message(b"FIX.4.4", b"0", header, b""))


@pytest.mark.asyncio
async def test_a_child_routed_while_the_logout_is_out_is_refused_not_sent(
    tmp_path: Path,
) -> None:
    lp = SlowToLeaveLp()
    port = await lp.start()
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(port, tmp_path))
    try:
        await adapter.connect()
        lp.send_stale()
        await lp.until("the adapter's Logout", lambda m: m.msg_type == b"5")
        adapter.send(child("C1", qty=4))
        await sink.until((ChildReject, ChildCanceled))
        (first,) = [e for e in sink.events if isinstance(e, (ChildReject, ChildCanceled))][:1]
        assert isinstance(first, ChildReject), first
        assert first.reason == "LPT is logging out"
        assert not [m for m in lp.received if m.msg_type == b"D"]
    finally:
        await adapter.disconnect()
        await lp.stop()
