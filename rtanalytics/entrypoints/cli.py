"""`rtanalytics serve`: the command line; flags override the environment (SPEC §7)."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Mapping, Sequence

from rtanalytics.config import BACKENDS, Config
from rtanalytics.core.errors import RtAnalyticsError

# flag -> environment variable it overrides
FLAGS = {
    "host": "RTA_HOST",
    "port": "RTA_PORT",
    "backend": "RTA_BACKEND",
    "log_level": "LOG_LEVEL",
    "ignite_host": "IGNITE_HOST",
    "ignite_port": "IGNITE_PORT",
    "pulsar_url": "PULSAR_URL",
    "cassandra_hosts": "CASSANDRA_HOSTS",
    "cache_ttl": "CACHE_TTL",
    "max_query_size": "MAX_QUERY_SIZE",
    "max_series": "RTA_MAX_SERIES",
    "api_keys": "RTA_API_KEYS",
    "event_topics": "RTA_EVENT_TOPICS",
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rtanalytics", description="Real-time analytics service")
    commands = top.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; RTA_HOST)")
    serve.add_argument("--port", help="port (default 8000; RTA_PORT)")
    serve.add_argument("--backend", choices=BACKENDS, help="storage backend (default memory; RTA_BACKEND)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (LOG_LEVEL)")
    serve.add_argument("--log-json", action="store_true", help="one JSON object per log line (RTA_LOG_JSON)")
    for flag in (
        "ignite_host",
        "ignite_port",
        "pulsar_url",
        "cassandra_hosts",
        "cache_ttl",
        "max_query_size",
        "max_series",
        "api_keys",
        "event_topics",
    ):
        serve.add_argument("--" + flag.replace("_", "-"), help=f"see {FLAGS[flag]}")
    return top


def config_from(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    merged = dict(env)
    for flag, var in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            merged[var] = str(value)
    if getattr(args, "log_json", False):
        merged["RTA_LOG_JSON"] = "1"
    return Config.from_mapping(merged)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = config_from(args, os.environ)
    except RtAnalyticsError as exc:
        print(f"rtanalytics: configuration error: {exc}", file=sys.stderr)
        return 2
    from rtanalytics.entrypoints import logs

    logs.configure(config.log_level, config.log_json)
    if args.command == "serve":
        return serve(config)
    return 2  # pragma: no cover - argparse rejects unknown commands


def preflight(config: Config) -> None:
    """Fail before the server starts, in one line, when the backend cannot be reached."""
    if config.backend != "ignite":
        return
    import socket

    from rtanalytics.core.errors import BackendUnavailableError

    nodes = config.ignite_nodes()
    for host, port in nodes:
        try:
            socket.create_connection((host, port), timeout=3).close()
            return
        except OSError:
            continue
    where = ", ".join(f"{h}:{p}" for h, p in nodes)
    raise BackendUnavailableError(
        f"Ignite is unreachable at {where}; start it (scripts/devservices up ignite) or set IGNITE_HOST/IGNITE_PORT"
    )


def tune_gc() -> None:
    """The service's cyclic GC: what was loaded at start-up is frozen (never scanned again), and
    collections run every 50,000 new container objects rather than 700. A full collection over
    the embedded store's indexes took 10-25 ms, and with Python's defaults one ran every ~70
    queries: it was the p99 of a group_by query (bench/query_http.py: 44 -> ~9 ms). Memory is
    reclaimed by reference counting as before; only reference cycles wait longer. Process-wide,
    so done by `serve`, not by importing the library."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def serve(config: Config) -> int:
    from rtanalytics.bootstrap import bootstrap
    from rtanalytics.entrypoints.http.app import create_app

    try:
        preflight(config)
        services = bootstrap(config)
    except RtAnalyticsError as exc:
        print(f"rtanalytics: cannot start: {exc}", file=sys.stderr)
        return 2
    app = create_app(services, name="rtanalytics")
    tune_gc()
    app.run(
        host=config.host,
        port=config.port,
        single_process=True,  # embedded state lives in this one process
        access_log=False,
        motd=False,
        debug=False,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
