"""The HTTP side of the daemon (aiohttp): health, readiness and /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.fix.session import Session
from gateway.fix.states import SessionState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SessionCollector(Collector):
    """Reads session state and counters at scrape time (nothing on the hot path)."""

    def __init__(self, sessions: Callable[[], Iterable[Session]]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "fixgw_session_state",
            "FIX session state (1 for the state the session is in)",
            labels=["session", "state"],
        )
        logged_on = GaugeMetricFamily(
            "fixgw_session_logged_on", "1 when the FIX session is logged on", labels=["session"]
        )
        messages = CounterMetricFamily(
            "fixgw_session_messages",
            "FIX messages per session and direction",
            labels=["session", "direction"],
        )
        rejects = CounterMetricFamily(
            "fixgw_session_rejects",
            "Session-level Rejects (3) per session and direction",
            labels=["session", "direction"],
        )
        garbled = CounterMetricFamily(
            "fixgw_session_garbled_messages", "Garbled inbound messages ignored", labels=["session"]
        )
        seqnums = GaugeMetricFamily(
            "fixgw_session_next_seqnum",
            "Next MsgSeqNum per session and direction",
            labels=["session", "direction"],
        )
        for s in self._sessions():
            sid = s.session_id
            for st in SessionState:
                state.add_metric([sid, st.value], 1.0 if s.state is st else 0.0)
            logged_on.add_metric([sid], 1.0 if s.is_logged_on else 0.0)
            messages.add_metric([sid, "in"], s.stats.messages_in)
            messages.add_metric([sid, "out"], s.stats.messages_out)
            rejects.add_metric([sid, "sent"], s.stats.rejects_sent)
            rejects.add_metric([sid, "received"], s.stats.rejects_received)
            garbled.add_metric([sid], s.stats.garbled)
            seqnums.add_metric([sid, "sender"], s.store.next_sender_seq)
            seqnums.add_metric([sid, "target"], s.store.next_target_seq)
        yield from (state, logged_on, messages, rejects, garbled, seqnums)


def build_app(
    registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]]
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok, detail = ready()
        return web.json_response(
            {"status": "ready" if ok else "not ready", "detail": detail}, status=200 if ok else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
