"""Configuration: one frozen Config built from an explicit mapping (os.environ only at the edge)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import attrs

from rtanalytics.core.durations import parse_duration
from rtanalytics.core.errors import Problem, ValidationError

BACKENDS = ("memory", "ignite")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TENANT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_TENANT_RE = re.compile(TENANT_PATTERN)
# How a yes/no setting may be spelled (any case)
_SWITCH = {
    "1": True,
    "0": False,
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
}


def physical_memory_bytes() -> int | None:
    """The machine's memory, or None where the system does not say (not POSIX)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return None


def default_memory_budget_mb() -> int:
    """Half the machine's memory: what the embedded store's rings may take before refusing series."""
    total = physical_memory_bytes()
    if total is None:  # pragma: no cover - not a POSIX system
        return 4_096
    return max(256, total // 2 // 2**20)


@attrs.frozen
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "memory"
    log_level: str = "INFO"
    log_json: bool = False
    ignite_host: str = "127.0.0.1"
    ignite_port: int = 10800
    pulsar_url: str = "pulsar://127.0.0.1:6650"
    cassandra_hosts: tuple[str, ...] = ("127.0.0.1",)
    cache_ttl_s: int = 3_600
    ignite_backups: int = 1
    ignite_flush_ms: int = 500
    writer_id: str | None = None  # default: host name and port (the service) or host name and pid
    max_query_size: int = 100_000
    max_series_per_tenant: int = 100_000
    max_request_bytes: int = 10 * 1024 * 1024
    max_points_per_request: int = 10_000
    coarse_retention_s: int = 30 * 86_400
    memory_budget_mb: int = attrs.field(factory=lambda: default_memory_budget_mb())
    api_keys: Mapping[str, str] = attrs.field(factory=dict)  # key -> tenant
    public_url: str = "http://127.0.0.1:8000"
    max_subscriptions_per_tenant: int = 10_000
    max_subscriptions_per_connection: int = 1_000
    # The server pings each WebSocket every ws_ping_interval_s; a peer that has not answered
    # ws_ping_timeout_s later is taken for dead: closed, and its subscriptions freed.
    ws_ping_interval_s: int = 20
    ws_ping_timeout_s: int = 20
    # Live updates to clients that keep up are written to the socket at once rather than through
    # each connection's queue and sender task (entrypoints/http/live_bp.py); False: always queue.
    ws_direct_writes: bool = True
    # The embedded store's fold thread and its readers spin briefly before sleeping, with two
    # CPUs or more (adapters/memory/_kernel.c); False: they never do (under a CPU quota, say).
    fold_spin: bool = True
    alert_interval_s: int = 10
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_tls: str = "none"
    smtp_from: str = "rtanalytics@localhost"
    smtp_ca_file: str | None = None
    alert_email_to: tuple[str, ...] = ()
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    event_topics: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Config:
        """Read the environment variables of SPEC §7; every bad value is reported at once."""
        problems: list[Problem] = []
        values: dict[str, object] = {}

        def integer(var: str, attr: str, minimum: int = 1) -> None:
            if env.get(var) not in (None, ""):
                try:
                    number = int(env[var])
                    if number < minimum:
                        raise ValueError
                    values[attr] = number
                except ValueError:
                    problems.append(Problem(var, f"must be an integer >= {minimum}, got {env[var]!r}"))

        def text(var: str, attr: str) -> None:
            if env.get(var):
                values[attr] = env[var]

        text("RTA_HOST", "host")
        integer("RTA_PORT", "port", 0)
        text("RTA_BACKEND", "backend")
        text("LOG_LEVEL", "log_level")
        text("IGNITE_HOST", "ignite_host")
        integer("IGNITE_PORT", "ignite_port")
        text("PULSAR_URL", "pulsar_url")
        integer("CACHE_TTL", "cache_ttl_s")
        integer("RTA_IGNITE_BACKUPS", "ignite_backups", 0)
        integer("RTA_IGNITE_FLUSH_MS", "ignite_flush_ms", 10)
        text("RTA_WRITER_ID", "writer_id")
        integer("MAX_QUERY_SIZE", "max_query_size")
        integer("RTA_MAX_SERIES", "max_series_per_tenant")
        integer("RTA_MAX_REQUEST_BYTES", "max_request_bytes")
        integer("RTA_MEMORY_BUDGET_MB", "memory_budget_mb")
        integer("RTA_ALERT_INTERVAL", "alert_interval_s")
        integer("RTA_MAX_SUBSCRIPTIONS", "max_subscriptions_per_tenant")
        integer("RTA_WS_PING_INTERVAL", "ws_ping_interval_s")
        integer("RTA_WS_PING_TIMEOUT", "ws_ping_timeout_s")
        integer("RTA_SMTP_PORT", "smtp_port")
        for var, attr in (
            ("RTA_PUBLIC_URL", "public_url"),
            ("RTA_SMTP_HOST", "smtp_host"),
            ("RTA_SMTP_USER", "smtp_user"),
            ("RTA_SMTP_PASSWORD", "smtp_password"),
            ("RTA_SMTP_FROM", "smtp_from"),
            ("RTA_SMTP_CA_FILE", "smtp_ca_file"),
            ("RTA_SLACK_WEBHOOK_URL", "slack_webhook_url"),
            ("RTA_WEBHOOK_URL", "webhook_url"),
        ):
            text(var, attr)
        if env.get("RTA_SMTP_TLS"):
            tls = env["RTA_SMTP_TLS"].lower()
            switch = _SWITCH.get(tls)
            values["smtp_tls"] = tls if switch is None else "starttls" if switch else "none"
        if env.get("RTA_ALERT_EMAIL_TO"):
            values["alert_email_to"] = tuple(
                a.strip() for a in env["RTA_ALERT_EMAIL_TO"].split(",") if a.strip()
            )
        if env.get("CASSANDRA_HOSTS"):
            values["cassandra_hosts"] = tuple(
                h.strip() for h in env["CASSANDRA_HOSTS"].split(",") if h.strip()
            )
        if env.get("RTA_EVENT_TOPICS"):
            values["event_topics"] = tuple(t.strip() for t in env["RTA_EVENT_TOPICS"].split(",") if t.strip())
        if env.get("RTA_LOG_JSON"):
            values["log_json"] = _SWITCH.get(env["RTA_LOG_JSON"].strip().lower()) is True
        if env.get("RTA_FOLD_SPIN"):
            flag = _SWITCH.get(env["RTA_FOLD_SPIN"].strip().lower())
            if flag is None:
                problems.append(
                    Problem(
                        "RTA_FOLD_SPIN", f"must be one of {', '.join(_SWITCH)}; got {env['RTA_FOLD_SPIN']!r}"
                    )
                )
            else:
                values["fold_spin"] = flag
        if env.get("RTA_COARSE_RETENTION"):
            try:
                values["coarse_retention_s"] = parse_duration(env["RTA_COARSE_RETENTION"]) // 1000
            except ValueError as exc:
                problems.append(Problem("RTA_COARSE_RETENTION", str(exc)))
        if env.get("RTA_API_KEYS"):
            keys = {}
            for pair in env["RTA_API_KEYS"].split(","):
                key, sep, tenant = pair.strip().partition(":")
                if not sep or not key or not _TENANT_RE.match(tenant):
                    problems.append(Problem("RTA_API_KEYS", f"entries are key:tenant, got {pair.strip()!r}"))
                else:
                    keys[key] = tenant
            values["api_keys"] = keys
        try:
            config = cls(**values)  # type: ignore[arg-type]
        except TypeError as exc:  # pragma: no cover - a programming error, not user input
            raise ValidationError(str(exc)) from exc
        problems.extend(config.problems())
        if problems:
            raise ValidationError.of(problems)
        return config

    def ignite_nodes(self) -> tuple[tuple[str, int], ...]:
        """IGNITE_HOST is a host, or a comma-separated list of host[:port] (port: IGNITE_PORT)."""
        nodes = []
        for part in self.ignite_host.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep:
                host, port = port, str(self.ignite_port)
            if not host or not port.isdigit():
                raise ValueError(f"entries are host or host:port, got {part.strip()!r}")
            nodes.append((host, int(port)))
        return tuple(nodes)

    def problems(self) -> list[Problem]:
        """What is wrong with these settings, all at once."""
        out = []
        if self.backend not in BACKENDS:
            out.append(
                Problem("RTA_BACKEND", f"{self.backend!r} is not available; use one of {', '.join(BACKENDS)}")
            )
        try:
            self.ignite_nodes()
        except ValueError as exc:
            out.append(Problem("IGNITE_HOST", str(exc)))
        if self.ignite_flush_ms > 1_000:
            out.append(
                Problem(
                    "RTA_IGNITE_FLUSH_MS",
                    f"must be at most 1000 (flush at least every second), got {self.ignite_flush_ms}",
                )
            )
        if self.smtp_tls not in ("none", "starttls", "ssl"):
            out.append(
                Problem(
                    "RTA_SMTP_TLS", f"must be none, starttls or ssl (or true/false), got {self.smtp_tls!r}"
                )
            )
        if self.log_level.upper() not in LOG_LEVELS:
            out.append(
                Problem("LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
            )
        return out
