"""The HTTP side of the daemon (aiohttp): health, readiness, /metrics, the
admin API and the dashboard.

``/admin/orders`` lists open orders; ``?client=X`` those of one client
(404 for a client with no order session here and no order known);
``?all=1`` the finished orders the matcher still retains too (the latest
1000 in time priority; ``&limit=N``, at most 10,000, for another count).

``/admin/*`` needs ``Authorization: Bearer <token>``: the admin token for
everything, the read token for ``GET`` only (:mod:`gateway.ops.tokens`);
without a configured token it answers 403 to everyone.  ``/dashboard`` is
a static page: it asks for a token in the browser and reads
``/admin/summary`` with it.

The listeners serve connections through
:class:`~gateway.ops.connections.HttpConnections`, which bounds those open
from one address (the daemon's descriptors are the FIX sessions' and the
journal's too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.fix.session import Session
from gateway.fix.states import SessionState
from gateway.net.peerlog import PeerLog
from gateway.ops import admin

if TYPE_CHECKING:
    from gateway.ops.view import Running
    from gateway.orderflow.flow import OrderFlow

_log = structlog.get_logger("gateway.ops.http")
_DASHBOARD = Path(__file__).with_name("static") / "dashboard.html"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_YES = frozenset({"1", "true", "yes"})


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
            "fixgw_session_garbled_messages",
            "Inbound garbage ignored after the Logon: 1 per frame refused as garbled (BodyLength, "
            "CheckSum, first three fields, tag syntax) and 1 per run of bytes dropped between "
            "two frames (junk, a BodyLength not a number, a frame over max_message_size), "
            "however long the run",
            labels=["session"],
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


def build_app(gateway: Running) -> web.Application:
    """Health, readiness, /metrics, the admin API (bearer token) and the
    dashboard page.  The daemon builds the app as it starts: that moment is
    the ``started_at`` of ``/admin/summary``."""
    started_at = time.time()
    refusals = PeerLog(_log, "admin_unauthorized", "refused_since_last")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok, detail = gateway.ready()
        return web.json_response(
            {"status": "ready" if ok else "not ready", "detail": detail}, status=200 if ok else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(gateway.metrics)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    @web.middleware
    async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/admin/"):
            return await handler(request)
        refusal = gateway.admin_tokens().refusal(
            request.headers.get("Authorization", ""), request.method
        )
        if refusal is None:
            return await handler(request)
        if refusal.status == 401:
            refusals.happened(request.remote or "", time.monotonic(), path=request.path)
            return web.json_response(
                {"error": refusal.error},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="fixgw"'},
            )
        return web.json_response({"error": refusal.error}, status=refusal.status)

    def _json(data: Any) -> web.Response:
        return web.json_response(data, dumps=_dumps)

    async def admin_sessions(_: web.Request) -> web.Response:
        return _json(admin.sessions(gateway))

    async def admin_lps(_: web.Request) -> web.Response:
        flow = gateway.order_flow
        return _json([] if flow is None else admin.lps(flow))

    async def admin_exposures(_: web.Request) -> web.Response:
        flow = gateway.order_flow
        return _json({} if flow is None else admin.exposures(flow))

    async def admin_orders(request: web.Request) -> web.Response:
        flow = gateway.order_flow
        query = request.query
        client = query.get("client") or None
        finished = query.get("all", "").lower() in _YES
        limit: int | None = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                limit = -1
            if not 0 <= limit <= admin.MAX_ORDERS_LIMIT:
                text = f"limit: a whole number of orders, 0 to {admin.MAX_ORDERS_LIMIT}"
                return _json_status({"error": text}, 400)
        listed = (
            [] if flow is None else await admin.orders(flow, client, finished=finished, limit=limit)
        )
        if client is not None and not listed and (flow is None or not _knows(flow, client)):
            # a name the gateway does not know (as /admin/margin/X), not a client without orders
            unknown = f"no client {client}: no order session is configured for it"
            return _json_status({"error": unknown}, 404)
        return await _json_in_slices(listed)

    async def admin_margin(_: web.Request) -> web.Response:
        flow = gateway.order_flow
        return _json(
            {"param_version": None, "accounts": []} if flow is None else admin.margin(flow)
        )

    async def admin_margin_account(request: web.Request) -> web.Response:
        flow = gateway.order_flow
        client = request.match_info["client"]
        account = None if flow is None else admin.margin_account(flow, client)
        if account is None:
            return _json_status({"error": f"no margin account for {client}"}, 404)
        return _json(account)

    async def admin_cluster(_: web.Request) -> web.Response:
        cluster = gateway.cluster
        if cluster is None:
            return _json({"instance": None, "detail": "this gateway runs alone (no [cluster])"})
        shown = cluster.snapshot()
        shown["peers"] = await cluster.peers()
        return _json(shown)

    async def admin_cluster_handover(request: web.Request) -> web.Response:
        cluster = gateway.cluster
        if cluster is None:
            return _json_status({"error": "this gateway runs alone (no [cluster])"}, 409)
        name, to = request.query.get("session", ""), request.query.get("to", "")
        if not name or not to:
            return _json_status(
                {"error": "session=<CompID or key> and to=<gateway> are needed"}, 400
            )
        session = cluster.session_of(name)
        if session is None:
            return _json_status({"error": f"no order session {name} here"}, 404)
        refusal = await cluster.hand_over(session, to)
        if refusal is not None:
            return _json_status({"session": session.session_id, "to": to, "error": refusal}, 409)
        return _json({"session": session.session_id, "to": to, "handed_over": True})

    async def admin_config(_: web.Request) -> web.Response:
        return _json(admin.config(gateway))

    async def admin_summary(_: web.Request) -> web.Response:
        return _json(admin.summary(gateway, started_at))

    async def admin_reload(_: web.Request) -> web.Response:
        outcome = await gateway.reloader.reload("http")
        status = {"applied": 200, "unchanged": 200, "invalid": 422, "restart_required": 409}
        return _json_status(outcome.to_json(), status[outcome.status])

    def _json_status(data: Any, status: int) -> web.Response:
        return web.json_response(data, status=status, dumps=_dumps)

    async def dashboard(_: web.Request) -> web.Response:
        return web.Response(body=_DASHBOARD.read_bytes(), content_type="text/html")

    app = web.Application(middlewares=[admin_auth])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/sessions", admin_sessions)
    app.router.add_get("/admin/lps", admin_lps)
    app.router.add_get("/admin/exposures", admin_exposures)
    app.router.add_get("/admin/orders", admin_orders)
    app.router.add_get("/admin/margin", admin_margin)
    app.router.add_get("/admin/margin/{client}", admin_margin_account)
    app.router.add_get("/admin/config", admin_config)
    app.router.add_get("/admin/cluster", admin_cluster)
    app.router.add_get("/admin/summary", admin_summary)
    app.router.add_post("/admin/reload", admin_reload)
    app.router.add_post("/admin/cluster/handover", admin_cluster_handover)
    app.router.add_get("/dashboard", dashboard)
    return app


def _knows(flow: OrderFlow, client: str) -> bool:
    """Whether ``client`` is known: an order session is configured for it,
    or the matcher knows an order of it (its session taken out of the
    config, its orders of the day still retained)."""
    if client in flow.sessions:
        return True
    ids = flow.matcher.ids_of(client)
    return ids is not None and not ids.is_empty()


def _dumps(data: Any) -> str:
    return orjson.dumps(data).decode()


async def _json_in_slices(items: list[Any]) -> web.Response:
    """A JSON array encoded :data:`admin.SLICE` items a loop turn (10,000
    orders at once would hold the loop for milliseconds)."""
    parts = []
    for start in range(0, len(items), admin.SLICE):
        parts.append(orjson.dumps(items[start : start + admin.SLICE])[1:-1])
        await asyncio.sleep(0)
    return web.Response(
        body=b"[" + b",".join(parts) + b"]", content_type="application/json", charset="utf-8"
    )
