"""Logs: one JSON object a line when asked for, a request id on every access line."""

from __future__ import annotations

import io
import json
import logging

from rtanalytics.entrypoints.logs import JsonFormatter, configure


def test_json_lines_carry_the_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("rtanalytics.test.json")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log.info("GET /health 200", extra={"request_id": "abc123", "status": 200})
    record = json.loads(stream.getvalue())
    assert record["message"] == "GET /health 200"
    assert record["request_id"] == "abc123" and record["status"] == 200 and record["level"] == "info"


def test_log_level_is_applied() -> None:
    configure("WARNING")
    try:
        assert logging.getLogger().level == logging.WARNING
    finally:
        configure("INFO")


def test_log_level_holds_for_sanic_loggers_too() -> None:
    """Sanic set its own loggers to INFO with stdout handlers; with a service whose stderr is a
    pipe nobody reads, a line per closed WebSocket then filled the pipe and the service hung."""
    from rtanalytics.bootstrap import bootstrap
    from rtanalytics.config import Config
    from rtanalytics.entrypoints.http.app import create_app

    configure("WARNING")
    try:
        create_app(bootstrap(Config()))
        for name in ("sanic.websockets", "sanic.server", "sanic.root", "sanic.access", "sanic.error"):
            sanic_logger = logging.getLogger(name)
            assert sanic_logger.getEffectiveLevel() == logging.WARNING, name
            assert sanic_logger.handlers == [] and sanic_logger.propagate, name
    finally:
        configure("INFO")


async def test_access_lines_have_the_request_id(app, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rtanalytics.access")
    _, response = await app.asgi_client.get("/health", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    lines = [r for r in caplog.records if r.name == "rtanalytics.access"]
    assert lines and "request_id=req-42" in lines[-1].getMessage() and lines[-1].request_id == "req-42"
