"""The Sanic app factory: one blueprint per resource, errors mapped in one place."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from sanic import HTTPResponse, Request, Sanic

from rtanalytics.bootstrap import App
from rtanalytics.entrypoints.http import (
    alerts_bp,
    dashboards_bp,
    errors,
    health_bp,
    live_bp,
    metrics_bp,
    openapi,
    prometheus_bp,
    query_bp,
)
from rtanalytics.entrypoints.http.telemetry import Telemetry
from rtanalytics.ports.notifier import AlertMessage

_names = itertools.count()
access_log = logging.getLogger("rtanalytics.access")
TICK_SECONDS = 60.0


def create_app(services: App, name: str | None = None) -> Sanic:  # type: ignore[type-arg]
    """A Sanic app serving `services`; it starts and closes them with the server."""
    # configure_logging=False: Sanic would otherwise set its loggers (sanic.websockets too) to
    # INFO with their own stdout handlers, and LOG_LEVEL would not hold for them.
    app: Sanic = Sanic(name or f"rtanalytics_{next(_names)}", configure_logging=False)  # type: ignore[type-arg]
    app.config.REQUEST_MAX_SIZE = services.config.max_request_bytes
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.KEEP_ALIVE_TIMEOUT = 75
    app.ctx.rta = services
    app.ctx.telemetry = Telemetry()
    app.ctx.outboxes = {}
    # the server pings; a peer silent past the timeout is closed (and its subscriptions freed)
    app.config.WEBSOCKET_PING_INTERVAL = services.config.ws_ping_interval_s
    app.config.WEBSOCKET_PING_TIMEOUT = services.config.ws_ping_timeout_s

    def push_alert(tenant: str, _rule: object, message: AlertMessage) -> None:
        for connection in services.live.connections_of(tenant):
            outbox = app.ctx.outboxes.get(connection)
            if outbox is not None:
                outbox.say(live_bp.alert_message(message))

    services.alerts.on_transition(push_alert)
    app.error_handler.add(Exception, errors.handle)
    for blueprint in (
        metrics_bp.bp,
        query_bp.bp,
        health_bp.bp,
        openapi.bp,
        prometheus_bp.bp,
        alerts_bp.bp,
        live_bp.bp,
        dashboards_bp.bp,
    ):
        app.blueprint(blueprint)

    @app.before_server_start
    async def start_services(app: Sanic) -> None:  # type: ignore[type-arg]
        await services.start()

    @app.after_server_start
    async def start_housekeeping(app: Sanic) -> None:  # type: ignore[type-arg]
        # Plain asyncio tasks rather than app.add_task: they work however the server was started
        # (app.run, or create_server inside another program's loop).
        loop = asyncio.get_running_loop()
        app.ctx.background = [loop.create_task(job(app)) for job in (_housekeeping, _alerting, _live)]

    @app.before_server_stop
    async def stop_housekeeping(app: Sanic) -> None:  # type: ignore[type-arg]
        tasks = getattr(app.ctx, "background", [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @app.after_server_stop
    async def close_services(app: Sanic) -> None:  # type: ignore[type-arg]
        await services.aclose()

    @app.on_request
    async def stamp(request: Request) -> None:
        request.ctx.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.ctx.started = time.perf_counter()

    @app.on_response  # type: ignore[untyped-decorator]
    async def log_access(request: Request, response: HTTPResponse) -> None:
        request_id = getattr(request.ctx, "request_id", "-")
        response.headers["x-request-id"] = request_id
        took = (time.perf_counter() - getattr(request.ctx, "started", time.perf_counter())) * 1000
        route = "/" + request.route.path if request.route is not None else "unmatched"
        app.ctx.telemetry.observe(route, request.method, response.status, took / 1000)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %s %.2fms request_id=%s",
                request.method,
                request.path,
                response.status,
                took,
                request_id,
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "took_ms": round(took, 3),
                },
            )

    return app


async def _every(seconds: float, step: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `step` every `seconds` until cancelled; a failing step is logged, never fatal."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except Exception:  # background work must never take the server down
            logging.getLogger("rtanalytics").exception("%s failed", what)


async def _housekeeping(app: Sanic) -> None:  # type: ignore[type-arg]
    """Forget series with no data left, every TICK_SECONDS."""
    await _every(TICK_SECONDS, app.ctx.rta.engine.tick, "housekeeping")


async def _alerting(app: Sanic) -> None:  # type: ignore[type-arg]
    """Rules on changed metrics every second; every rule each RTA_ALERT_INTERVAL (time passing)."""
    services: App = app.ctx.rta
    since_tick = 0.0

    async def step() -> None:
        nonlocal since_tick
        since_tick += 1.0
        if since_tick >= services.config.alert_interval_s:
            since_tick = 0.0
            await services.alerts.tick()
        else:
            await services.alerts.evaluate_noticed()

    await _every(1.0, step, "alert evaluation")


LIVE_TICK_S = 0.05


async def _live(app: Sanic) -> None:  # type: ignore[type-arg]
    """Push live queries whose metrics changed (or whose window moved on), each at its interval."""
    await _every(LIVE_TICK_S, app.ctx.rta.live.run_due, "live query evaluation")
