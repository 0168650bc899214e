"""Settings: every bad value is named at once, and the CLI stops with one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rtanalytics.config import Config
from rtanalytics.core.errors import ValidationError


def problems(env: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        Config.from_mapping(env)
    return {p.field: p.message for p in caught.value.details}


def test_every_bad_setting_is_named_with_its_limit() -> None:
    found = problems(
        {
            "RTA_BACKEND": "mongo",
            "RTA_PORT": "-1",
            "RTA_IGNITE_FLUSH_MS": "5000",
            "RTA_IGNITE_BACKUPS": "many",
            "IGNITE_HOST": "a:10800,b:port",
            "RTA_FOLD_SPIN": "maybe",
            "RTA_WS_PING_TIMEOUT": "0",
        }
    )
    assert "use one of memory, ignite" in found["RTA_BACKEND"]
    assert "integer >= 0" in found["RTA_PORT"]
    assert "at most 1000" in found["RTA_IGNITE_FLUSH_MS"]
    assert "integer >= 0" in found["RTA_IGNITE_BACKUPS"]
    assert "'b:port'" in found["IGNITE_HOST"]
    assert "one of 1, 0, true, false" in found["RTA_FOLD_SPIN"] and "'maybe'" in found["RTA_FOLD_SPIN"]
    assert "integer >= 1" in found["RTA_WS_PING_TIMEOUT"]
    pings = Config.from_mapping({"RTA_WS_PING_INTERVAL": "5", "RTA_WS_PING_TIMEOUT": "7"})
    assert (pings.ws_ping_interval_s, pings.ws_ping_timeout_s) == (5, 7)


def test_fold_spin_reads_the_usual_spellings() -> None:
    for text, flag in (("0", False), ("off", False), ("No", False), ("1", True), ("true", True), ("", True)):
        assert Config.from_mapping({"RTA_FOLD_SPIN": text}).fold_spin is flag, text


def test_ignite_nodes_take_the_default_port_where_none_is_given() -> None:
    config = Config.from_mapping({"IGNITE_HOST": "n1, n2:10801", "IGNITE_PORT": "10900"})
    assert config.ignite_nodes() == (("n1", 10900), ("n2", 10801))
    assert Config.from_mapping({}).ignite_nodes() == (("127.0.0.1", 10800),)


def test_the_cli_stops_with_one_line_naming_the_setting() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rtanalytics.entrypoints.cli", "serve"],
        env={"RTA_IGNITE_FLUSH_MS": "5000", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "RTA_IGNITE_FLUSH_MS" in lines[0], done.stderr


def test_yes_no_settings_share_their_spellings() -> None:
    """RTA_SMTP_TLS takes a yes/no for starttls/none besides its own names; RTA_LOG_JSON a yes/no."""
    for text, tls in (
        ("true", "starttls"),
        ("ON", "starttls"),
        ("0", "none"),
        ("off", "none"),
        ("ssl", "ssl"),
    ):
        assert Config.from_mapping({"RTA_SMTP_TLS": text}).smtp_tls == tls, text
    for text, flag in (("1", True), ("yes", True), ("on", True), ("0", False), ("no", False)):
        assert Config.from_mapping({"RTA_LOG_JSON": text}).log_json is flag, text
